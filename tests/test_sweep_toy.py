"""Acceptance: the 2 x 2 toy sweep (alpha x loss) runs with submitit_local exactly as
sweeps/toy.yaml's header says, the report turns it into the tables and the figure, and the toy
listwise sweep reranks each of its runs. Minutes of CPU: `pytest -m slow`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, shared

pytestmark = pytest.mark.slow


def run(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def toy_sweep(tmp_path_factory):
    shared("ir_datasets", "beir", "scifact")
    shared("noveleval", "corpus.tsv")
    sweep = tmp_path_factory.mktemp("toy") / "sweep"
    run("train.py", "-m", "--config-dir", "sweeps", "--config-name", "toy", f"hydra.sweep.dir={sweep}")
    return sweep


def test_toy_sweep_runs_four_jobs_on_submitit_local(toy_sweep):
    assert len([p for p in (toy_sweep / ".submitit").iterdir() if p.name != "%j"]) == 4  # one submitit job each
    for job in range(4):
        run_dir = toy_sweep / str(job)
        for bench in ("scifact", "noveleval"):
            metrics = json.loads((run_dir / "benchmarks" / bench / "metrics.json").read_text())
            assert list(metrics) == ["first_stage", "student"] and 0 <= metrics["student"]["nDCG@10"] <= 1
        assert json.loads((run_dir / "repro.json").read_text())["command"].startswith(
            "python train.py --config-dir sweeps --config-name toy alpha=")


def test_report_of_the_toy_sweep(toy_sweep):
    proc = run("-m", "dear.report", str(toy_sweep))
    report = toy_sweep / "report"
    rows = [line.strip("| ").split(" | ") for line in (report / "table.md").read_text().splitlines()[4:8]]
    assert [r[:2] for r in rows] == [["pointce", "0.1"], ["ranknet", "0.1"], ["pointce", "0.5"], ["ranknet", "0.5"]]
    for job, row in enumerate(rows):
        numbers = [float(c.strip("*")) if c != "–" else None for c in row[2:]]
        scifact, noveleval = (json.loads((toy_sweep / str(job) / "benchmarks" / b / "metrics.json").read_text())
                              ["student"]["nDCG@10"] * 100 for b in ("scifact", "noveleval"))
        assert numbers[:6] == [None] * 6 and numbers[7:10] == [None] * 3  # no DL19 ... DBPedia, Signal ... Robust04
        assert numbers[6] == pytest.approx(scifact, abs=0.005) and numbers[10] == pytest.approx(noveleval, abs=0.005)
        assert numbers[11] == pytest.approx((scifact + noveleval) / 2, abs=0.005)
    assert (report / "figure.png").read_bytes()[:4] == b"\x89PNG" and "figure.png" in proc.stderr
    assert r"\begin{tabular}{llrrrrrrrrrrrr}" in (report / "table.tex").read_text()


def test_toy_listwise_sweep_on_the_toy_runs(toy_sweep, tmp_path):
    sweep = tmp_path / "listwise"
    paths = ",".join(str(toy_sweep / str(job)) for job in range(4))
    run("evaluate.py", "-m", "--config-dir", "sweeps", "--config-name", "toy_listwise", f"pointwise.path={paths}",
        f"hydra.sweep.dir={sweep}")
    run("-m", "dear.report", str(sweep))
    cells = json.loads((sweep / "report" / "cells.json").read_text())
    assert [r["row"]["Pointwise"] for r in cells["rows"]] == [str(toy_sweep / str(job)) for job in range(4)]
    for row in cells["rows"]:
        assert set(row["cells"]) == {"noveleval"} and row["average"] == row["cells"]["noveleval"]["value"]
        assert {c["stage"] for c in row["cells"].values()} == {"listwise"}
