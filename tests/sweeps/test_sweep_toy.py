"""The toy alpha ablation (sweeps/toy.yaml) runs as its header says — shrunk here to 2 alphas x
2 seeds of 4 steps — the report turns it into mean ± sd cells with paired tests against alpha = 0,
and the toy listwise sweep reranks each of its runs. Minutes of CPU: `pytest -m slow`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, shared

pytestmark = pytest.mark.slow
SHRINK = [
    "alpha=a0,a0.5",
    "seed=0,1",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "data.train.max_queries=60",
    "data.val.limit=5",
    "evaluation.benchmarks.scifact.limit=10",
]


def run(*args: str, timeout: int = 3000) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def toy_sweep(tmp_path_factory):
    shared("ir_datasets", "beir", "scifact")
    shared("noveleval", "corpus.tsv")
    sweep = tmp_path_factory.mktemp("toy") / "sweep"
    run(
        "train.py",
        "-m",
        "--config-dir",
        "sweeps",
        "--config-name",
        "toy",
        *SHRINK,
        f"hydra.sweep.dir={sweep}",
    )
    return sweep


def test_toy_sweep_runs_every_alpha_and_seed(toy_sweep):
    for job in range(4):
        run_dir = toy_sweep / str(job)
        for bench in ("scifact", "noveleval"):
            metrics = json.loads((run_dir / "benchmarks" / bench / "metrics.json").read_text())
            # "warnings": input checks on the shrunk sets
            stages = [k for k in metrics if k != "warnings"]
            assert (
                stages == ["first_stage", "student_init", "student"]
                and 0 <= metrics["student"]["nDCG@10"] <= 1
            )
        assert json.loads((run_dir / "repro.json").read_text())["command"].startswith(
            "python train.py --config-dir sweeps --config-name toy alpha="
        )


def test_report_of_the_toy_sweep_gives_mean_sd_over_seeds_and_tests_against_alpha_zero(toy_sweep):
    import statistics

    proc = run("-m", "dear.report", str(toy_sweep))
    report = toy_sweep / "report"
    cells = json.loads((report / "cells.json").read_text())
    assert [r["row"]["α"] for r in cells["rows"]] == ["0", "0.5"]
    values = {}
    for job in range(4):
        overrides = json.loads((toy_sweep / str(job) / "repro.json").read_text())["command"]
        alpha = "0.5" if "alpha=a0.5" in overrides else "0"
        metrics = json.loads(
            (toy_sweep / str(job) / "benchmarks" / "scifact" / "metrics.json").read_text()
        )
        values.setdefault(alpha, []).append(100 * metrics["student"]["nDCG@10"])
    for row in cells["rows"]:
        cell = row["cells"]["scifact"]
        assert sorted(cell["values"]) == pytest.approx(sorted(values[row["row"]["α"]]), abs=0.005)
        assert cell["sd"] == pytest.approx(statistics.stdev(values[row["row"]["α"]]), abs=0.005)
    tested = next(r for r in cells["rows"] if r["row"]["α"] == "0.5")["cells"]["scifact"]
    assert tested["significance"]["baseline"] == {"α": "0"}  # tested against the alpha = 0 row
    assert 0 <= tested["significance"]["randomisation_p_holm"] <= 1
    table = (report / "table.md").read_text()
    assert " ± " in table
    assert (report / "figure.png").read_bytes()[:4] == b"\x89PNG" and "figure.png" in proc.stderr


def test_toy_listwise_sweep_on_the_toy_runs(toy_sweep, tmp_path):
    sweep = tmp_path / "listwise"
    paths = ",".join(str(toy_sweep / str(job)) for job in range(2))
    run(
        "evaluate.py",
        "-m",
        "--config-dir",
        "sweeps",
        "--config-name",
        "toy_listwise",
        f"pointwise.path={paths}",
        f"hydra.sweep.dir={sweep}",
    )
    run("-m", "dear.report", str(sweep))
    cells = json.loads((sweep / "report" / "cells.json").read_text())
    assert [r["row"]["Pointwise"] for r in cells["rows"]] == [
        str(toy_sweep / str(job)) for job in range(2)
    ]
    for row in cells["rows"]:
        assert (
            set(row["cells"]) == {"noveleval"}
            and row["average"] == row["cells"]["noveleval"]["value"]
        )
        assert {c["stage"] for c in row["cells"].values()} == {"listwise"}
