"""evaluate.py pipeline=dual_stage as a user runs it: first stage → pointwise → listwise, one command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, shared


def evaluate(*overrides: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "evaluate.py", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def check_dual_stage_outputs(out, proc, n_queries: int, depth: int) -> list[dict]:
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["first_stage", "pointwise", "listwise"]
    listwise = metrics["listwise"]
    assert listwise["parse_clean"] + listwise["parse_repaired"] + listwise[
        "parse_fallback"
    ] == pytest.approx(1.0)
    assert listwise["sec_per_query"] > 0
    details = [
        json.loads(line) for line in (out / "listwise.details.jsonl").read_text().splitlines()
    ]
    assert len(details) == n_queries
    for row in details:
        assert {"qid", "parse", "justification", "windows"} <= set(row)
        assert row["windows"][-1]["ranks"] == [1, depth]  # the last window always covers the top
    ranked = (out / "runs" / "listwise.trec").read_text().splitlines()
    assert len(ranked) == len((out / "runs" / "pointwise.trec").read_text().splitlines())
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| stage"))
    assert "parse_clean" in header and "parse_fallback" in header
    assert any(line.startswith("| listwise |") for line in proc.stdout.splitlines())
    return details


def test_dual_stage_on_files_with_the_tiny_listwise_model(toy_files, tmp_path):
    out = tmp_path / "out"
    proc = evaluate(
        "benchmark=files",
        f"benchmark.candidates={toy_files['run']}",
        f"benchmark.qrels={toy_files['qrels']}",
        f"benchmark.docs={toy_files['docs']}",
        f"benchmark.queries={toy_files['queries']}",
        "pipeline=dual_stage",
        "listwise=tiny",
        f"hydra.run.dir={out}",
    )
    details = check_dual_stage_outputs(out, proc, n_queries=2, depth=3)
    # Random weights never write a ranking: every query falls back to the pointwise order.
    assert all(row["parse"] == "fallback" for row in details)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["listwise"]["nDCG@10"] == metrics["pointwise"]["nDCG@10"]


@pytest.mark.slow
def test_dual_stage_on_noveleval_end_to_end(tmp_path):
    """Acceptance: the tiny-model dual-stage pipeline runs on NovelEval from one command."""
    shared("noveleval", "corpus.tsv")
    out = tmp_path / "out"
    proc = evaluate(
        "benchmark=noveleval", "pipeline=dual_stage", "listwise=tiny", f"hydra.run.dir={out}"
    )
    details = check_dual_stage_outputs(out, proc, n_queries=21, depth=20)
    # 20 passages x 300 words overflow the tiny model's 4,096 positions: the auto budget cuts them.
    assert all(0 < row["windows"][0]["words_per_passage"] < 300 for row in details)
    assert all(row["windows"][0]["prompt_tokens"] <= 4096 - 48 for row in details)
