"""The data contract every stage speaks: ``Ranking`` (a query and its candidates, best first); rerankers return new
ones, evaluation reads the order. A run is ``dict[qid, Ranking]`` in query order."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True, slots=True)
class Query:
    qid: str
    text: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """One retrieved document: id, text (title kept apart for templates), and its stage score."""

    docid: str
    text: str = ""
    title: str = ""
    score: float = 0.0

    def with_score(self, score: float) -> Candidate:
        return replace(self, score=float(score))

    @property
    def full_text(self) -> str:
        """Title and body joined the way BEIR/Pyserini join them for lexical matching."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass(slots=True)
class Ranking:
    """Candidates for one query, best first; ``meta``: per-query stage notes (justification, parse status)."""

    query: Query
    candidates: list[Candidate]
    meta: dict = field(default_factory=dict)

    @property
    def qid(self) -> str:
        return self.query.qid

    def head(self, k: int) -> Ranking:
        return Ranking(self.query, self.candidates[:k], dict(self.meta))

    def eval_scores(self) -> dict[str, float]:
        """The scores made strictly decreasing, so trec_eval's sort (score desc, docid desc) reproduces this order.

        Scores are rounded to float32 (as trec_eval holds them), then changed only where needed, never reordered: ties
        nudged one float32 step below the one before; a score above its predecessor (a tail past a stage's depth)
        shifts the rest of the tail down by one constant.
        """
        scores = np.asarray([c.score for c in self.candidates], dtype=np.float64)
        if not np.isfinite(scores.astype(np.float32)).all():
            bad = self.candidates[int(np.flatnonzero(~np.isfinite(scores.astype(np.float32)))[0])]
            raise ValueError(
                f"query {self.qid!r}: document {bad.docid!r} has score {bad.score}; "
                "a run needs finite (float32) scores"
            )
        return {
            c.docid: float(x) for c, x in zip(self.candidates, strictly_decreasing_float32(scores))
        }


def strictly_decreasing_float32(scores: np.ndarray) -> np.ndarray:
    """(n,) scores in rank order → (n,) float32 strictly decreasing (see ``Ranking.eval_scores``)."""
    out = scores.astype(np.float32)
    if np.all(out[1:] < out[:-1]):  # the usual case: nothing to change
        return out
    shift = 0.0
    for i in range(1, len(out)):
        if scores[i] > scores[i - 1]:
            shift = float(out[i - 1]) - scores[i]
        out[i] = np.float32(scores[i] + shift)
        if out[i] >= out[i - 1]:
            out[i] = np.nextafter(out[i - 1], np.float32(-np.inf))
    return out


Run = dict[str, Ranking]
