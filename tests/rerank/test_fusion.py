"""The fused teacher (dear.rerank.fusion) and BM25 as a pointwise scorer (dear.rerank.lexical)."""

from __future__ import annotations

import numpy as np
import pytest

from dear.data.contract import Candidate, Query, Ranking
from dear.rerank.fusion import FusionScorer, normalise
from tests.helpers import shared


class Fixed:
    def __init__(self, *scores):
        self.scores = [np.array(s, dtype=np.float32) for s in scores]

    def score(self, rankings, desc=""):
        return self.scores[: len(rankings)]


def test_normalisations_against_hand_computation():
    s = np.array([3.0, 1.0, 2.0, 2.0])
    # ties keep input order
    np.testing.assert_allclose(normalise(s, "rrf", 60), [1 / 61, 1 / 64, 1 / 62, 1 / 63])
    np.testing.assert_allclose(normalise(s, "zscore"), (s - 2.0) / np.sqrt(0.5))
    np.testing.assert_allclose(normalise(s, "minmax"), [1.0, 0.0, 0.5, 0.5])
    assert not normalise(np.ones(3), "zscore").any() and not normalise(np.ones(3), "minmax").any()
    with pytest.raises(ValueError, match="rrf"):
        normalise(s, "softmax")


def test_fusion_weights_members_per_query_and_scales():
    rankings = [Ranking(Query("q", "t"), [Candidate(d) for d in "abc"])]
    lexical, dense = Fixed([10.0, 5.0, 0.0]), Fixed([0.1, 0.9, 0.5])
    fused = FusionScorer(
        {"lexical": {"scorer": lexical, "weight": 1.0}, "dense": {"scorer": dense, "weight": 2.0}},
        normalisation="rrf",
        rrf_k=60,
        scale=100.0,
    ).score(rankings)[0]
    expected = 100 * (np.array([1 / 61, 1 / 62, 1 / 63]) + 2 * np.array([1 / 63, 1 / 61, 1 / 62]))
    np.testing.assert_allclose(fused, expected, rtol=1e-6)
    assert np.argmax(fused) == 1  # the dense member's top document wins with weight 2
    with pytest.raises(ValueError, match="normalisation"):
        FusionScorer({"x": {"scorer": lexical}}, normalisation="sum")


def test_the_fused_teachers_settings_reach_the_cache_fingerprint():
    from omegaconf import OmegaConf

    from dear.distill.teacher_cache import fingerprint
    from tests.helpers.configs import compose_cfg

    def teacher(*overrides):
        return OmegaConf.to_container(compose_cfg("train", list(overrides)).teacher, resolve=True)

    rrf, zscore = teacher(), teacher("teacher.normalisation=zscore")
    assert (
        rrf["_target_"] == "dear.rerank.fusion.FusionScorer"
        and rrf["members"]["lexical"]["scorer"]["dataset"] == "beir/scifact/train"
    )
    assert fingerprint(rrf, {"d": 1}) != fingerprint(zscore, {"d": 1})


def test_bm25_scorer_gives_the_first_stages_own_scores_and_scores_unretrieved_documents():
    import os

    shared("ir_datasets", "beir", "scifact")
    from dear.data.benchmarks import IrDatasetsBenchmark
    from dear.rerank.lexical import BM25Scorer

    cache = os.path.join(os.environ["DEAR_CACHE_DIR"], "bm25")
    run = list(
        IrDatasetsBenchmark(
            "scifact", "beir/scifact/test", ["nDCG@10"], depth=30, limit=5, cache_dir=cache
        )
        .load()
        .run.values()
    )
    scorer = BM25Scorer("beir/scifact/train", cache_dir=cache)  # the same corpus and index
    for ranking, scores in zip(run, scorer.score(run)):
        np.testing.assert_allclose(scores, [c.score for c in ranking.candidates], rtol=1e-5)
    # not in q0's top 30
    other = Ranking(run[0].query, [run[1].candidates[-1], run[0].candidates[0]])
    low, top = scorer.score([other])[0]
    assert 0.0 <= low < top
    with pytest.raises(Exception, match="not in the BM25 corpus"):
        scorer.score([Ranking(run[0].query, [Candidate("no-such-doc")])])


def test_first_stage_scorer_gives_each_candidates_own_score():
    from dear.data.contract import Candidate, Query, Ranking
    from dear.rerank.lexical import FirstStageScorer

    ranking = Ranking(Query("q", "text"), [Candidate("a", score=3.5), Candidate("b", score=-1.0)])
    assert FirstStageScorer().score([ranking])[0].tolist() == [3.5, -1.0]
