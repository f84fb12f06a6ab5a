"""Stage-1 validation: a harness benchmark's judged queries (held out of training), reranked by the student; its
candidates are flat (qid, docid) pairs in a fixed order, scored in chunks, turned back into rankings by ``evaluate``."""

from __future__ import annotations

import numpy as np

from dear.data.contract import Ranking
from dear.eval.judges import build_judge
from dear.rerank.pointwise import sort_flat


class ValidationSet:
    """``benchmark``: anything with ``load() -> (run, judgments)`` (dear.data.benchmarks); loaded once."""

    def __init__(self, benchmark):
        self.benchmark = benchmark
        self.run: list[Ranking] | None = None
        self.judge = None

    def load(self) -> ValidationSet:
        if self.run is None:
            loaded = self.benchmark.load()
            self.run, self.judge = list(loaded.run.values()), build_judge(loaded.judgments)
        return self

    @property
    def held_out(self) -> set[str]:
        """The judged query ids: never trained on."""
        return set(self.load().judge.qids)

    @property
    def queries(self) -> dict[str, str]:
        return {r.qid: r.query.text for r in self.load().run}

    @property
    def docs(self) -> dict[str, tuple[str, str]]:
        """{docid: (title, text)} of every candidate (the benchmark carries them)."""
        return {c.docid: (c.title, c.text) for r in self.load().run for c in r.candidates}

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every (qid, docid) to score, in the order ``rankings`` reads flat scores."""
        return [(r.qid, c.docid) for r in self.load().run for c in r.candidates]

    def rankings(self, scores: np.ndarray) -> dict[str, Ranking]:
        """The validation run from flat pair scores (in ``pairs`` order)."""
        return {r.qid: r for r in sort_flat(self.load().run, scores)}

    def evaluate(self, scores: np.ndarray) -> dict[str, float]:
        """The benchmark's aggregate metrics of the run ``scores`` give."""
        aggregate, _ = self.judge.evaluate(self.rankings(scores))
        return aggregate
