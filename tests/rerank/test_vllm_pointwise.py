"""The vLLM pointwise engine: configs (the engine a choice of its own, conf/engine/pointwise/), what
it refuses (on CPU, before vLLM is imported), and on a GPU with vLLM its scores against the
transformers engine."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
from hydra.utils import get_class, instantiate

from dear.config import CONF_DIR
from dear.data.contract import Candidate, Query, Ranking
from dear.errors import ConfigError, DataError
from dear.rerank.pointwise import CrossEncoderScorer
from dear.rerank.vllm_pointwise import VLLMPointwiseScorer
from tests.helpers.configs import compose_resolved

HAS_VLLM = importlib.util.find_spec("vllm") is not None
VLLM = "engine/pointwise@pointwise=vllm"

# What the configs resolved to before the engine became a group of its own (captured at 9a095d0,
# when each model had a `*_vllm` twin): the transformers engine must resolve to exactly this (the
# teacher-cache fingerprints and the figures depend on it), and `engine/pointwise@pointwise=vllm`
# to exactly what the removed `<model>_vllm` file resolved to.
DEAR_P_TEMPLATE = {
    "query_prefix": "query: ",
    "doc_prefix": "document: ",
    "query_max_len": 32,
    "doc_max_len": 193,
    "join": "reference",
    "segment_specials": False,
    "max_length": 228,
    "overflow": "only_second",
    "append_eos": False,
}
RANKLLAMA_TEMPLATE = {**DEAR_P_TEMPLATE, "segment_specials": True, "overflow": "only_first"}
WAS_TRANSFORMERS = {
    "_target_": "dear.rerank.pointwise.CrossEncoderScorer",
    "adapter": None,
    "revision": None,
    "template": DEAR_P_TEMPLATE,
    "pooling": "reference",
    "max_batch_pairs": 64,
    "max_batch_tokens": 16384,
    "dtype": "auto",
    "device": "auto",
}
WAS_VLLM = {
    "_target_": "dear.rerank.vllm_pointwise.VLLMPointwiseScorer",
    "adapter": None,
    "revision": None,
    "template": DEAR_P_TEMPLATE,
    "pooling": "last",
    "dtype": "bfloat16",
    "max_model_len": None,
    "gpu_memory_utilization": 0.9,
    "tensor_parallel_size": 1,
    "seed": 0,
    "device": "auto",
}
# The removed conf/pointwise/*_vllm.yaml files (dear_p_vllm: the base, no model yet).
WAS_VLLM_FILES = {
    "dear_p": "???",
    "dear_8b_ce": "abdoelsayed/dear-8b-reranker-ce-v1",
    "dear_8b_ranknet": "abdoelsayed/dear-8b-reranker-ranknet-v1",
    "dear_3b_ce": "abdoelsayed/dear-3b-reranker-ce-v1",
    "dear_3b_ranknet": "abdoelsayed/dear-3b-reranker-ranknet-v1",
}
WAS_LORA = {
    f"{name}_lora": model.replace("-v1", "-lora-v1")
    for name, model in WAS_VLLM_FILES.items()
    if name != "dear_p"
}


def _scorer_cfg(name: str, *overrides: str) -> dict:
    cfg = compose_resolved(
        "evaluate", ["benchmark=noveleval", "pipeline=pointwise", f"pointwise={name}", *overrides]
    )
    return cfg["pipeline"]["stages"]["pointwise"]["reranker"]["scorer"]


@pytest.mark.parametrize("name", [*WAS_VLLM_FILES, *WAS_LORA])
def test_transformers_engine_resolves_exactly_as_before(name):
    assert _scorer_cfg(name) == {**WAS_TRANSFORMERS, "model": {**WAS_VLLM_FILES, **WAS_LORA}[name]}
    assert _scorer_cfg(name, "engine/pointwise@pointwise=transformers") == _scorer_cfg(name)


@pytest.mark.parametrize("name", WAS_VLLM_FILES)
def test_vllm_engine_resolves_as_the_removed_vllm_file(name):
    assert _scorer_cfg(name, VLLM) == {**WAS_VLLM, "model": WAS_VLLM_FILES[name]}


def test_no_model_file_names_its_engine():
    assert not sorted(CONF_DIR.glob("pointwise/*_vllm.yaml")) and not sorted(
        CONF_DIR.glob("listwise/*_vllm.yaml")
    )


@pytest.mark.parametrize("primary, place", [("evaluate", "pointwise"), ("train", "teacher")])
def test_the_teacher_and_rankllama_take_the_engine_too(primary, place):
    """The DeAR teacher config is unchanged (its cache fingerprint is a function of it); the same
    group key with the teacher's place puts it on vLLM."""

    def scorer(*overrides: str) -> dict:
        if primary == "evaluate":
            return _scorer_cfg("rankllama_13b", *overrides)
        return compose_resolved("train", ["teacher=rankllama_13b", *overrides])["teacher"]

    model = {"model": "abdoelsayed/llama2-13b-rankllama-teacher", "template": RANKLLAMA_TEMPLATE}
    assert scorer() == {**WAS_TRANSFORMERS, **model}
    assert scorer(f"engine/pointwise@{place}=vllm") == {**WAS_VLLM, **model}


@pytest.mark.parametrize(
    "teacher, model", [("qwen25_14b", "Qwen/Qwen2.5-14B"), ("qwen3_14b", "Qwen/Qwen3-14B")]
)
def test_pairing_teachers_resolve_exactly_as_before(teacher, model):
    assert compose_resolved("train", [f"teacher={teacher}"])["teacher"] == {
        **WAS_TRANSFORMERS,
        "model": model,
    }


@pytest.mark.parametrize("name", [n for n in WAS_VLLM_FILES if n != "dear_p"])
def test_vllm_engine_feeds_the_transformers_engines_input(name):
    vllm, hf = _scorer_cfg(name, VLLM), _scorer_cfg(name)
    assert get_class(vllm["_target_"]) is VLLMPointwiseScorer
    # same checkpoint, same token ids
    assert (vllm["model"], vllm["template"]) == (
        hf["model"],
        hf["template"],
    )
    assert vllm["pooling"] == "last" and vllm["dtype"] == "bfloat16"


def test_the_vllm_engine_config_builds_up_to_the_vllm_import(tiny_llama_cls):
    """Without vLLM (CPU machines) the composed config reaches the scorer, which says what to
    install; reference pooling asked for on vLLM is refused in one line saying what to set, as
    the entry points show it (dear.cli.our_error), before anything is imported."""
    from dear.cli import one_line, our_error

    if not HAS_VLLM:
        with pytest.raises(Exception) as caught:
            instantiate({**_scorer_cfg("dear_8b_ce", VLLM), "model": tiny_llama_cls})
        assert isinstance(caught.value.__cause__, ImportError)
        assert re.search(
            r"needs vLLM \(pip install vllm, CUDA only\).*transformers engine",
            str(caught.value.__cause__),
        )
    with pytest.raises(Exception) as caught:
        instantiate(
            {
                **_scorer_cfg("dear_8b_ce", VLLM, "pointwise.pooling=reference"),
                "model": tiny_llama_cls,
            }
        )
    error = our_error(caught.value)
    assert isinstance(error, ConfigError) and "\n" not in str(error)
    assert re.fullmatch(
        r"pointwise.pooling='reference': .*set pointwise.pooling=last.*", one_line(error)
    )


def test_reference_pooling_is_refused_with_the_reason(tiny_llama_cls):
    with pytest.raises(
        ConfigError,
        match=r"pooling='reference'.*only pooling 'last'.*no attention mask or position",
    ):
        VLLMPointwiseScorer(tiny_llama_cls, pooling="reference")


def test_adapters_and_pinned_devices_are_refused(tiny_llama_cls):
    with pytest.raises(DataError, match="full checkpoints only.*merge it first"):
        VLLMPointwiseScorer(tiny_llama_cls, adapter="some/adapter")
    with pytest.raises(DataError, match="CUDA_VISIBLE_DEVICES"):
        VLLMPointwiseScorer(tiny_llama_cls, device="cuda:1")


@pytest.mark.skipif(
    HAS_VLLM, reason="vLLM is installed: the missing-package message cannot be shown"
)
def test_without_vllm_the_error_says_what_to_install(tiny_llama_cls):
    with pytest.raises(
        ImportError, match=r"needs vLLM \(pip install vllm, CUDA only\).*CrossEncoderScorer"
    ):
        VLLMPointwiseScorer(tiny_llama_cls)


@pytest.mark.gpu
def test_vllm_scores_match_the_transformers_path(tmp_path):
    """A tiny random Llama classifier (head_dim 64, as vLLM's attention kernels need), bf16 on both
    paths, the same pairs: the same scores within bf16 tolerance, from the same token ids."""
    import torch

    if not torch.cuda.is_available() or not HAS_VLLM:
        pytest.skip("needs a CUDA device and vLLM (pip install vllm)")
    from dear.models.tiny import build_tiny

    model = build_tiny(tmp_path / "llama-cls", "llama", "seqcls", hidden=256, layers=2, heads=4)
    rankings = [
        Ranking(
            Query(f"q{i}", f"what is topic {i}"),
            [
                Candidate(
                    f"d{j}", f"passage {j} on topic {(i * j) % 7} " * (1 + j % 5), f"title {j}"
                )
                for j in range(12)
            ],
        )
        for i in range(4)
    ]
    hf = CrossEncoderScorer(model, pooling="last", dtype="bfloat16", device="cuda")
    vllm = VLLMPointwiseScorer(model, gpu_memory_utilization=0.3)
    assert vllm.encode(rankings) == hf.encode(rankings)
    expected, got = np.concatenate(hf.score(rankings)), np.concatenate(vllm.score(rankings))
    spread = expected.max() - expected.min()
    np.testing.assert_allclose(got, expected, atol=0.05 * spread + 1e-3)
    assert np.corrcoef(got, expected)[0, 1] > 0.98
