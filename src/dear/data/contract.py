"""The data contract every stage speaks: a query, its candidates, and the ranked list.

Retrieval produces ``Ranking`` objects, rerankers return new ``Ranking`` objects in their own
order, evaluation reads the order. A run is ``dict[qid, Ranking]`` in query order.
"""

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
    """Candidates for one query, best first. ``meta`` carries per-query stage notes
    (e.g. the listwise justification or parse status)."""

    query: Query
    candidates: list[Candidate]
    meta: dict = field(default_factory=dict)

    @property
    def qid(self) -> str:
        return self.query.qid

    def head(self, k: int) -> Ranking:
        return Ranking(self.query, self.candidates[:k], dict(self.meta))

    def eval_scores(self) -> dict[str, float]:
        """The candidates' own scores, made strictly decreasing in this order, so trec_eval's
        sort (score descending, ties by docid descending) reproduces the order exactly.

        Every run file and every metric this project writes goes through here, so the file and
        the reported figure always agree. trec_eval (and pytrec_eval, which ir_measures uses)
        holds scores as 32-bit floats: 1.0 and 1.0 - 1e-9 tie there. So scores are rounded to
        float32 first, and two cases change a score, never the order:
        - ties (and equal scores after rounding or the shift below): each is nudged one float32
          step (``numpy.nextafter``) below the score before it, in rank order;
        - a score higher than the one above it (the tail past a stage's depth keeps the previous
          stage's scores): from there on the scores are shifted by one constant so that it falls
          just below, keeping the differences within the tail.
        """
        scores = np.asarray([c.score for c in self.candidates], dtype=np.float64)
        if not np.isfinite(scores.astype(np.float32)).all():
            bad = self.candidates[int(np.flatnonzero(~np.isfinite(scores.astype(np.float32)))[0])]
            raise ValueError(f"query {self.qid!r}: document {bad.docid!r} has score {bad.score}; "
                             "a run needs finite (float32) scores")
        return {c.docid: float(x) for c, x in zip(self.candidates, strictly_decreasing_float32(scores))}


def strictly_decreasing_float32(scores: np.ndarray) -> np.ndarray:
    """Scores shape (n,) in rank order → float32 shape (n,), strictly decreasing (see
    ``Ranking.eval_scores``: ties nudged one step, a higher tail shifted below)."""
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
