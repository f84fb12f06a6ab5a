"""30 toy queries, their documents, a cache fingerprint and deterministic (optionally slow) scorers."""

from __future__ import annotations

import time

from dear.data.texts import DocStore
from dear.distill.sources import TrainQuery
from dear.distill.teacher_cache import fingerprint

QUERIES = [
    TrainQuery(f"q{i}", f"query {i}", (f"d{i}",), tuple(f"d{(i + k) % 30}" for k in range(1, 9)))
    for i in range(30)
]
DOCS = DocStore("mem", {f"d{i}": ("", f"document {i}") for i in range(30)})
FP = fingerprint({"model": "fake", "template": {"query_max_len": 32}}, {"dataset": "toy"})


class FakeScorer:
    """Deterministic scores from the texts; optionally slow, to be killed mid-way."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def score(self, rankings, desc=""):
        time.sleep(self.delay)
        return [
            [len(r.query.text) * 0.1 + int(c.text.split()[-1]) for c in r.candidates]
            for r in rankings
        ]


class Recording(FakeScorer):
    """Records the shards it scores (from the ``desc`` the cache passes); ``nan_at`` poisons a pair."""

    def __init__(self, nan_at: tuple[str, str] | None = None):
        super().__init__()
        self.scored, self.nan_at = [], nan_at

    def score(self, rankings, desc=""):
        self.scored.append(desc)
        out = super().score(rankings, desc)
        return [
            [
                float("nan") if (r.qid, c.docid) == self.nan_at else s
                for c, s in zip(r.candidates, scores)
            ]
            for r, scores in zip(rankings, out)
        ]
