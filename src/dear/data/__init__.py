"""Data contract, TREC IO, text sources, BM25 and benchmarks."""

from dear.data.contract import Candidate, Query, Ranking

__all__ = ["Candidate", "Query", "Ranking"]
