"""bm25s with Pyserini-like settings: ranking sanity, Porter stemming, stopwords, on-disk cache."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

from dear.data.bm25 import BM25Index, BM25Params, cached_index

DOCS = {
    "a": "Running dogs and cats",
    "b": "the the the of of",
    "c": "A dog runs in the park",
    "d": "Cats sleep",
}


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


def test_concurrent_builds_on_a_fresh_cache_build_once_and_agree(tmp_path):
    """Six processes start on an empty cache at once (a multirun on a fresh machine): none crashes,
    the index is built once, every process gets the same hits."""
    script = tmp_path / "build.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, sys, time
        from dear.data.bm25 import BM25Params, cached_index

        def corpus():  # slow enough that every process is inside the build window together
            with open({str(tmp_path / "builds.txt")!r}, "a") as f:
                f.write("1\\n")
            time.sleep(0.5)
            return ((f"d{{i}}", f"document {{i}} about topic {{i % 17}}") for i in range(3000))

        while time.time() < float(sys.argv[1]):  # start together
            time.sleep(0.01)
        index = cached_index(sys.argv[2], "toy", BM25Params(), corpus)
        print(json.dumps(index.search(["topic 5"], 10)))
    """)
    )
    start = time.time() + 8  # after every interpreter has imported bm25s
    jobs = [
        subprocess.Popen(
            [sys.executable, str(script), str(start), str(tmp_path / "cache")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [job.communicate(timeout=300) for job in jobs]
    assert [job.returncode for job in jobs] == [0] * 6, [err[-2000:] for _, err in results]
    assert (tmp_path / "builds.txt").read_text().split() == ["1"]
    hits = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert all(h == hits[0] for h in hits) and len(hits[0][0]) == 10
    # no temp dirs left
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".") and p.is_dir()]
