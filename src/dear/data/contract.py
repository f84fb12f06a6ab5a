"""The data contract every stage speaks: a query, its candidates, and the ranked list.

Retrieval produces ``Ranking`` objects, rerankers return new ``Ranking`` objects in their own
order, evaluation reads the order. A run is ``dict[qid, Ranking]`` in query order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


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

    def with_score(self, score: float) -> "Candidate":
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

    def head(self, k: int) -> "Ranking":
        return Ranking(self.query, self.candidates[:k], dict(self.meta))

    def eval_scores(self) -> dict[str, float]:
        """Scores that reproduce this exact order under trec_eval's sort.

        trec_eval sorts by score and breaks ties by docid, so a list whose scores are not
        strictly decreasing (ties, or an order given without scores, e.g. listwise output)
        is scored by rank instead: ``n - position``. Every run file and every metric this
        project writes goes through here, so the file and the reported figure always agree.
        """
        scores = [c.score for c in self.candidates]
        if all(a > b for a, b in zip(scores, scores[1:])):
            return {c.docid: float(c.score) for c in self.candidates}
        n = len(self.candidates)
        return {c.docid: float(n - i) for i, c in enumerate(self.candidates)}


Run = dict[str, Ranking]
