"""Data contract, TREC IO, texts, qrels, BEIR folders, QA and DeAR-COT records, BM25 and benchmarks."""

from dear.data.contract import Candidate, Query, Ranking

__all__ = ["Candidate", "Query", "Ranking"]
