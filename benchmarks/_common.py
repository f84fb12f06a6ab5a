"""Shared set-up for the benchmarks: offline env, real BM25 candidates (SciFact, NovelEval, DL21), timing."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
DATA = Path(os.environ.get("DEAR_DATA_DIR", ROOT.parent / "shared" / "data"))


def scifact_candidates(queries: int, depth: int = 100):
    """The harness's own BM25 top-``depth`` for the first ``queries`` SciFact test queries."""
    from dear.data.benchmarks import IrDatasetsBenchmark
    from dear.data.irds import use_home

    use_home(None, str(DATA / "ir_datasets"))
    bench = IrDatasetsBenchmark(
        "scifact",
        "beir/scifact/test",
        ["nDCG@10"],
        depth=depth,
        limit=queries,
        cache_dir=str(ROOT / ".cache" / "bm25"),
    )
    return list(bench.load().run.values())


def noveleval_candidates(depth: int = 100):
    """BM25 top-``depth`` of NovelEval's pooled corpus, every query (21)."""
    from dear.data.benchmarks import PooledBM25Benchmark

    d = DATA / "noveleval"
    bench = PooledBM25Benchmark(
        "noveleval",
        str(d / "corpus.tsv"),
        str(d / "queries.tsv"),
        str(d / "qrels.txt"),
        ["nDCG@10"],
        depth=depth,
    )
    return list(bench.load().run.values())


def dl21_candidates(queries: int, depth: int = 100):
    """rank_llm's BM25 top-``depth`` for the first ``queries`` TREC DL21 queries (MS MARCO v2
    passages: short and of varied length, where fixed padding wastes most)."""
    from dear.data.candidates import rankllm_json

    run = rankllm_json(str(DATA / "trec-dl21" / "retrieve_results_dl21_top100.json"), depth)
    return list(run.values())[:queries]


def interleaved(fns: dict, repeats: int = 3) -> tuple[dict[str, float], dict[str, object]]:
    """Time every function ``repeats`` times in interleaved rounds (drift in machine load hits
    them alike) → ({name: fastest seconds}, {name: last result})."""
    times, results = {name: [] for name in fns}, {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}, results


def table(rows: list[tuple], header: tuple) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
