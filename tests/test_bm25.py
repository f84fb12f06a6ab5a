"""bm25s with Pyserini-like settings: ranking sanity, Porter stemming, stopwords, on-disk cache."""

from __future__ import annotations

from dear.data.bm25 import BM25Index, BM25Params, cached_index

DOCS = {"a": "Running dogs and cats", "b": "the the the of of", "c": "A dog runs in the park", "d": "Cats sleep"}


def test_stemmed_match_ranks_relevant_first():
    index = BM25Index.build(list(DOCS), list(DOCS.values()))
    hits = index.search(["dog running"], k=4)[0]
    assert {d for d, _ in hits[:2]} == {"a", "c"}
    assert "b" not in {d for d, _ in hits}  # stopwords only: no match, not returned


def test_stopword_only_query_matches_nothing():
    index = BM25Index.build(list(DOCS), list(DOCS.values()))
    assert index.search(["the of"], k=4) == [[]]


def test_index_is_cached_and_reused(tmp_path):
    calls = []

    def corpus():
        calls.append(1)
        return iter(DOCS.items())

    first = cached_index(tmp_path, "toy", BM25Params(), corpus)
    second = cached_index(tmp_path, "toy", BM25Params(), corpus)
    assert len(calls) == 1
    assert first.search(["cats"], 2) == second.search(["cats"], 2)
    cached_index(tmp_path, "toy", BM25Params(k1=1.2), corpus)  # other parameters: another index
    assert len(calls) == 2
