"""Dual-stage inference on one base in memory (dear.models.shared, pipeline.shared_base): a Stage-1
DeAR-P adapter (LoRA + its own ``score`` head) and a Stage-2 listwise LoRA on the same tiny base give
the rankings two separate models give; adapters trained on different bases fail in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from dear.cli import our_error
from dear.config import CONF_DIR, build_stages, register_resolvers
from dear.errors import ConfigError
from dear.eval.pipeline import run_pipeline
from dear.listwise.backends.hf import TransformersBackend
from dear.listwise.synthetic import synthetic_rankings
from dear.models.shared import SharedBase
from dear.rerank.pointwise import EXPORT_META, scorer_from_export
from tests.helpers import ROOT

register_resolvers()
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CPU = {"dtype": "float32", "device": "cpu"}
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny matrices, one thread


def random_lora(net, task_type: str, out, seed: int, **lora) -> str:
    """``net`` with a LoRA whose B weights (and modules_to_save) are random, so the adapter changes
    every output, saved with the base's tokenizer as an export is."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    net = get_peft_model(
        net, LoraConfig(task_type=task_type, r=4, lora_alpha=8, target_modules=TARGETS, **lora)
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif "modules_to_save" in name and "lm_head" in name:
                p.add_(torch.randn(p.shape, generator=gen))
    net.save_pretrained(out)
    AutoTokenizer.from_pretrained(
        net.peft_config["default"].base_model_name_or_path
    ).save_pretrained(out)
    return str(out)


def stage1_export(base: str, out) -> str:
    """A Stage-1 DeAR-P export on ``base``: a SEQ_CLS LoRA (its ``score`` head saved as modules_to_save)
    and dear_scorer.json."""
    from transformers import AutoModelForSequenceClassification

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        net = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
        net.score.weight.data *= 20  # well-separated scores
    path = random_lora(net, "SEQ_CLS", out, seed=1)
    (out / EXPORT_META).write_text(
        json.dumps({"kind": "cross_encoder", "template": {}, "pooling": "reference"})
    )
    return path


def stage2_adapter(base: str, out) -> str:
    from transformers import AutoModelForCausalLM

    # Its own lm_head too, as conf/student/tiny_instruct.yaml trains it (modules_to_save).
    return random_lora(
        AutoModelForCausalLM.from_pretrained(base),
        "CAUSAL_LM",
        out,
        seed=2,
        modules_to_save=["lm_head"],
    )


@pytest.fixture(scope="module")
def adapters(tiny_llama_causal, tmp_path_factory):
    root = tmp_path_factory.mktemp("shared-base")
    return {
        "pointwise": stage1_export(tiny_llama_causal, root / "stage1"),
        "listwise": stage2_adapter(tiny_llama_causal, root / "stage2"),
    }


@pytest.fixture(scope="module")
def rankings():
    return synthetic_rankings(3, 5)[0]


def chats(rankings):
    return [
        [{"role": "user", "content": f"{r.query.text}: " + " ".join(c.text for c in r.candidates)}]
        for r in rankings
    ]


def test_one_base_scores_and_generates_as_two_models(adapters, rankings, tiny_llama_causal):
    shared = SharedBase()
    one = (
        scorer_from_export(adapters["pointwise"], shared=shared, **CPU),
        TransformersBackend(adapters["listwise"], max_new_tokens=12, shared=shared, **CPU),
    )
    two = (
        scorer_from_export(adapters["pointwise"], **CPU),
        TransformersBackend(adapters["listwise"], max_new_tokens=12, **CPU),
    )
    assert shared.adapters == {"pointwise": adapters["pointwise"], "listwise": adapters["listwise"]}
    scores = np.concatenate(two[0].score(rankings))
    generations = two[1].generate(chats(rankings))
    answers = [[f"[{i}]" for i in range(1, 12)]] * len(rankings)  # listwise.scoring=first_id
    first_ids = np.array(two[1].score_answers(chats(rankings), answers))
    # Interleaved: every call switches the adapter back.
    for _ in range(2):
        # merged vs unmerged LoRA: fp rounding
        np.testing.assert_allclose(
            np.concatenate(one[0].score(rankings)), scores, rtol=1e-5, atol=1e-5
        )
        assert one[1].generate(chats(rankings)) == generations
        np.testing.assert_allclose(
            one[1].score_answers(chats(rankings), answers), first_ids, rtol=1e-5, atol=1e-4
        )
    # One copy of the base's weights: all else on it is the adapters' (LoRA, Stage 2's own lm_head).
    base = sum(p.numel() for p in two[1].model.parameters())
    assert (
        sum(
            p.numel()
            for n, p in shared.net.named_parameters()
            if "lora_" not in n and "modules_to_save" not in n
        )
        == base
    )

    # The adapters matter: the wrong adapter changes the scores, the bare base the generations.
    activate = shared.activate
    shared.activate = lambda name: activate("listwise")
    assert not np.allclose(np.concatenate(one[0].score(rankings)), scores, rtol=1e-3)
    shared.activate = activate
    bare = TransformersBackend(tiny_llama_causal, max_new_tokens=12, **CPU)
    assert bare.generate(chats(rankings)) != generations


TINY_LISTWISE = (
    "listwise=tiny",
    "listwise.cache_dir=null",
    "listwise.backend.device=cpu",
    "listwise.backend.max_new_tokens=12",
)


def overrides_for(toy_files, listwise=TINY_LISTWISE) -> list[str]:
    """evaluate.py on the toy files: DeAR-P export → a listwise config (the tiny one), on the CPU in fp32."""
    return [
        "benchmark=files",
        f"benchmark.candidates={toy_files['run']}",
        f"benchmark.qrels={toy_files['qrels']}",
        f"benchmark.docs={toy_files['docs']}",
        f"benchmark.queries={toy_files['queries']}",
        "pipeline=dual_stage",
        "pointwise=export",
        "pointwise.dtype=float32",
        "pointwise.device=cpu",
        *listwise,
    ]


def compose_evaluate(toy_files, *overrides: str, listwise=TINY_LISTWISE):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(
            "evaluate",
            overrides=[
                "paths.output_dir=/tmp/dear-compose",
                *overrides_for(toy_files, listwise),
                *overrides,
            ],
        )


def test_the_dual_stage_pipeline_ranks_alike_on_one_base(adapters, toy_files, tmp_path):
    outputs = {}
    for shared in ("false", "true"):
        cfg = compose_evaluate(
            toy_files,
            f"pointwise.path={adapters['pointwise']}",
            f"listwise.backend.model={adapters['listwise']}",
            f"pipeline.shared_base={shared}",
        )
        out = tmp_path / shared
        run_pipeline(instantiate(cfg.benchmark), build_stages(cfg.pipeline, instantiate), out)
        details = [
            json.loads(line) for line in (out / "listwise.details.jsonl").read_text().splitlines()
        ]
        outputs[shared] = {
            stage: [
                line.split()[:4]
                for line in (out / "runs" / f"{stage}.trec").read_text().splitlines()
            ]
            for stage in ("pointwise", "listwise")
        } | {
            "generations": [w["output"] for row in details for w in row["windows"]],
            "scores": [
                float(line.split()[4])
                for line in (out / "runs" / "pointwise.trec").read_text().splitlines()
            ],
        }
    same, one = outputs["false"], outputs["true"]
    assert one["pointwise"] == same["pointwise"] and one["listwise"] == same["listwise"]
    assert one["generations"] == same["generations"] and all(one["generations"])
    # merged vs unmerged LoRA: fp rounding
    np.testing.assert_allclose(one["scores"], same["scores"], rtol=1e-5, atol=1e-5)


def test_adapters_of_different_bases_fail_in_one_line_naming_both(adapters, toy_files, tmp_path):
    """As a user meets it: evaluate.py exits 2 with one line naming both adapters and both bases."""
    from dear.models.tiny import build_tiny

    other_base = build_tiny(tmp_path / "other-base", "llama", "causal", seed=1)
    other = stage2_adapter(other_base, tmp_path / "other")
    proc = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            *overrides_for(toy_files),
            f"pointwise.path={adapters['pointwise']}",
            f"listwise.backend.model={other}",
            "pipeline.shared_base=true",
            f"hydra.run.dir={tmp_path / 'out'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(errors) == 1, (
        proc.stderr[-2000:]
    )
    assert (
        adapters["pointwise"] in errors[0]
        and other in errors[0]
        and f"trained on {other_base!r}" in errors[0]
    )


def user_error(cfg) -> str:
    """The error ``build_stages`` raises, as the entry point reports it (Hydra wraps it)."""
    with pytest.raises(Exception) as err:
        build_stages(cfg.pipeline, instantiate)
    ours = our_error(err.value)
    assert isinstance(ours, ConfigError), err.value
    return str(ours)


@pytest.mark.parametrize(
    "override, says",
    [
        (
            "listwise.backend.model=tiny:llama-causal",
            "the listwise model 'tiny:llama-causal' is not a PEFT adapter dir",
        ),
        (
            "listwise.backend.dtype=float64",
            "the listwise adapter {listwise} asks for dtype torch.float64",
        ),
    ],
)
def test_a_stage_that_cannot_share_the_base_is_named(adapters, toy_files, override, says):
    cfg = compose_evaluate(
        toy_files,
        f"pointwise.path={adapters['pointwise']}",
        f"listwise.backend.model={adapters['listwise']}",
        override,
        "pipeline.shared_base=true",
    )
    message = user_error(cfg)
    assert says.format(**adapters) in message and "\n" not in message


def test_a_scorer_without_an_adapter_is_refused_before_loading(toy_files):
    cfg = compose_evaluate(
        toy_files,
        "pointwise=minilm_bi_encoder",
        "listwise.backend.model=tiny:llama-causal",
        "pipeline.shared_base=true",
    )
    assert "BiEncoderScorer cannot load onto a shared base" in user_error(cfg)


def test_a_pointwise_adapter_without_a_score_head_fails_before_loading(adapters):
    shared = SharedBase()
    with pytest.raises(ConfigError, match="carries no score head"):
        shared.sequence_classifier(adapters["listwise"], **CPU)
    assert shared.net is None and not shared.attached


def test_a_listwise_export_shares_the_base_through_its_backend_options(
    adapters, toy_files, tmp_path
):
    """``listwise=export``: the reranker's factory builds the back end from a mapping of options;
    the shared base travels in it, and the rankings are those of two models."""
    pytest.importorskip("dear.listwise.exported")
    import shutil

    from omegaconf import OmegaConf

    export = tmp_path / "listwise-export"
    shutil.copytree(adapters["listwise"], export)
    prompt = OmegaConf.to_container(
        OmegaConf.load(CONF_DIR / "prompt" / "compact.yaml"), resolve=True
    )
    prompt.pop("_target_", None)
    (export / "dear_listwise.json").write_text(
        json.dumps(
            {
                "format": 1,
                "prompt": prompt,
                "window_size": 20,
                "step": 10,
                "generation": {"max_new_tokens": 12, "dtype": "float32", "device": "cpu"},
            }
        )
    )
    generations = {}
    for shared in ("false", "true"):
        cfg = compose_evaluate(
            toy_files,
            f"pointwise.path={adapters['pointwise']}",
            f"pipeline.shared_base={shared}",
            listwise=(
                "listwise=export",
                f"listwise.path={export}",
                "listwise.cache_dir=null",
                "listwise.top_k=20",
            ),
        )
        out = tmp_path / shared
        run_pipeline(instantiate(cfg.benchmark), build_stages(cfg.pipeline, instantiate), out)
        details = [
            json.loads(line) for line in (out / "listwise.details.jsonl").read_text().splitlines()
        ]
        generations[shared] = [w["output"] for row in details for w in row["windows"]]
    assert generations["true"] == generations["false"] and all(generations["true"])
