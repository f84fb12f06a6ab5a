"""The vLLM pointwise back end: configs, what it refuses (on CPU, before vLLM is imported), and on a
GPU with vLLM its scores against the transformers path."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hydra.utils import get_class
from test_configs import compose_resolved

from dear.data.contract import Candidate, Query, Ranking
from dear.errors import DataError
from dear.rerank.pointwise import CrossEncoderScorer
from dear.rerank.vllm_pointwise import VLLMPointwiseScorer

VLLM_CONFIGS = ["dear_8b_ce", "dear_8b_ranknet", "dear_3b_ce", "dear_3b_ranknet"]
HAS_VLLM = importlib.util.find_spec("vllm") is not None


def _scorer_cfg(name: str) -> dict:
    cfg = compose_resolved("evaluate", ["benchmark=noveleval", "pipeline=pointwise", f"pointwise={name}"])
    return cfg["pipeline"]["stages"]["pointwise"]["reranker"]["scorer"]


@pytest.mark.parametrize("name", VLLM_CONFIGS)
def test_vllm_configs_feed_the_transformers_configs_input(name):
    vllm, hf = _scorer_cfg(f"{name}_vllm"), _scorer_cfg(name)
    assert get_class(vllm["_target_"]) is VLLMPointwiseScorer
    assert (vllm["model"], vllm["template"]) == (hf["model"], hf["template"])  # same checkpoint, same token ids
    assert vllm["pooling"] == "last" and vllm["dtype"] == "bfloat16"


def test_reference_pooling_is_refused_with_the_reason(tiny_llama_cls):
    with pytest.raises(DataError, match=r"pooling='reference'.*only pooling 'last'.*no attention mask or position ids"):
        VLLMPointwiseScorer(tiny_llama_cls, pooling="reference")


def test_adapters_and_pinned_devices_are_refused(tiny_llama_cls):
    with pytest.raises(DataError, match="full checkpoints only.*merge it first"):
        VLLMPointwiseScorer(tiny_llama_cls, adapter="some/adapter")
    with pytest.raises(DataError, match="CUDA_VISIBLE_DEVICES"):
        VLLMPointwiseScorer(tiny_llama_cls, device="cuda:1")


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed: the missing-package message cannot be shown")
def test_without_vllm_the_error_says_what_to_install(tiny_llama_cls):
    with pytest.raises(ImportError, match=r"needs vLLM \(pip install vllm, CUDA only\).*CrossEncoderScorer"):
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
    rankings = [Ranking(Query(f"q{i}", f"what is topic {i}"),
                        [Candidate(f"d{j}", f"passage {j} on topic {(i * j) % 7} " * (1 + j % 5), f"title {j}")
                         for j in range(12)]) for i in range(4)]
    hf = CrossEncoderScorer(model, pooling="last", dtype="bfloat16", device="cuda")
    vllm = VLLMPointwiseScorer(model, gpu_memory_utilization=0.3)
    assert vllm.encode(rankings) == hf.encode(rankings)
    expected, got = np.concatenate(hf.score(rankings)), np.concatenate(vllm.score(rankings))
    spread = expected.max() - expected.min()
    np.testing.assert_allclose(got, expected, atol=0.05 * spread + 1e-3)
    assert np.corrcoef(got, expected)[0, 1] > 0.98
