"""The toy_files fixture's TREC run as a benchmark (texts from its docs and queries TSVs)."""

from __future__ import annotations

from dear.data.benchmarks import FilesBenchmark


def toy_benchmark(toy_files, measures=("nDCG@1",)) -> FilesBenchmark:
    return FilesBenchmark(
        "files",
        str(toy_files["run"]),
        str(toy_files["qrels"]),
        list(measures),
        docs=str(toy_files["docs"]),
        queries=str(toy_files["queries"]),
    )
