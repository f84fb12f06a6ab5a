"""BM25 as a pointwise scorer: the first stage's own score for any (query, document) pair, read from the same cached
bm25s index (``dear.data.bm25``) over the whole corpus, so a document outside the BM25 pool still gets its real score.
A member of fused teachers (``dear.rerank.fusion``)."""

from __future__ import annotations

import numpy as np

from dear.data.bm25 import BM25Params
from dear.data.contract import Ranking
from dear.errors import DataError


class BM25Scorer:
    """``dataset``: the ir_datasets corpus the first stage indexes; BM25 parameters as the first stage's."""

    # Fingerprinted whole: ``cache_dir`` holds the index the scores come from.
    runtime_only = frozenset()

    def __init__(
        self,
        dataset: str,
        cache_dir: str = ".cache/bm25",
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        stemmer: str | None = "porter",
        stopwords: str | None = "en",
    ):
        from dear.data.candidates import dataset_bm25_index

        self.name = f"bm25:{dataset}"
        self.index = dataset_bm25_index(
            dataset, cache_dir, BM25Params(k1, b, method, stemmer, stopwords)
        )
        self.position = {docid: i for i, docid in enumerate(self.index.docids)}

    def score(self, rankings: list[Ranking], desc: str = "bm25") -> list[np.ndarray]:
        tokens = self.index.query_tokens([r.query.text for r in rankings])
        out = []
        for ranking, query_tokens in zip(rankings, tokens):
            missing = [c.docid for c in ranking.candidates if c.docid not in self.position]
            if missing:
                raise DataError(
                    f"{self.name}: query {ranking.qid}: documents not in the BM25 corpus, "
                    f"e.g. {missing[:3]}"
                )
            corpus_scores = self.index.retriever.get_scores(query_tokens) if query_tokens else None
            out.append(
                np.array(
                    [
                        0.0
                        if corpus_scores is None
                        else float(corpus_scores[self.position[c.docid]])
                        for c in ranking.candidates
                    ],
                    dtype=np.float32,
                )
            )
        return out


class FirstStageScorer:
    """Each candidate's first-stage score: the lexical fusion member where the corpus has no index (DL21, NovelEval)."""

    runtime_only = frozenset()

    def __init__(self):
        self.name = "first_stage"

    def score(self, rankings: list[Ranking], desc: str = "first stage") -> list[np.ndarray]:
        return [np.array([c.score for c in r.candidates], dtype=np.float32) for r in rankings]
