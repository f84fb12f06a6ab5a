"""A fused (hybrid) scorer: several pointwise scorers combined per query, e.g. BM25 + a dense bi-encoder.

Normalisations over one query's candidates: ``rrf`` Σ w / (k + rank) (Cormack et al. 2009, k = 60); ``zscore`` Σ w ·
(s − mean) / sd and ``minmax`` Σ w · (s − min) / (max − min) (CombSUM). Scores are ``scale`` × the fused value (sets
how peaked a teacher's distribution is). Normalisation is per ranking: a query's candidates must be scored together.
"""

from __future__ import annotations

import numpy as np

from dear.data.contract import Ranking

NORMALISATIONS = ("rrf", "zscore", "minmax")


def normalise(scores: np.ndarray, how: str, rrf_k: float = 60.0) -> np.ndarray:
    """One query's member scores (n,) → normalised (n,) float64."""
    s = np.asarray(scores, dtype=np.float64)
    if how == "rrf":
        ranks = np.empty(len(s))
        ranks[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
        return 1.0 / (rrf_k + ranks)
    if how == "zscore":
        sd = s.std()
        return (s - s.mean()) / sd if sd > 0 else np.zeros_like(s)
    if how == "minmax":
        span = s.max() - s.min() if len(s) else 0.0
        return (s - s.min()) / span if span > 0 else np.zeros_like(s)
    raise ValueError(f"fusion normalisation must be one of {NORMALISATIONS}, got {how!r}")


class FusionScorer:
    """``members``: {name: {"scorer": a pointwise scorer, "weight": float}} (Hydra builds the scorers)."""

    # Members' configs are fingerprinted whole (nested runtime knobs included, as existing caches were).
    runtime_only = frozenset()
    # Scores are normalised over all of a ranking's candidates: score a ranking whole, never in parts.
    whole_rankings = True

    def __init__(
        self, members: dict, normalisation: str = "rrf", rrf_k: float = 60.0, scale: float = 1.0
    ):
        if normalisation not in NORMALISATIONS:
            raise ValueError(
                f"teacher.normalisation must be one of {NORMALISATIONS}, got {normalisation!r}"
            )
        if not members:
            raise ValueError("a fusion scorer needs at least one member")
        self.members = {
            name: (m["scorer"], float(m.get("weight", 1.0))) for name, m in members.items()
        }
        self.normalisation, self.rrf_k, self.scale = normalisation, rrf_k, scale
        self.name = (
            "fusion("
            + ", ".join(f"{w:g}·{n}" for n, (_, w) in self.members.items())
            + f"; {normalisation})"
        )

    def score(self, rankings: list[Ranking], desc: str = "fusion") -> list[np.ndarray]:
        fused = [np.zeros(len(r.candidates)) for r in rankings]
        for name, (scorer, weight) in self.members.items():
            for total, scores in zip(fused, scorer.score(rankings, desc=f"{desc} {name}")):
                total += weight * normalise(scores, self.normalisation, self.rrf_k)
        return [(self.scale * f).astype(np.float32) for f in fused]
