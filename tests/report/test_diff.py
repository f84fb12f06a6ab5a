"""python -m dear.report --diff RUN_A RUN_B: exactly what differs (environment, config), and each
shared metric's Δ with paired p-values over the queries both runs judged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import stats

from dear.report.diff import diff_runs, environment
from dear.utils.repro import SCORING_PACKAGES
from tests.helpers import ROOT

QIDS = [f"q{i}" for i in range(12)]
RECORD = {
    "command": "python evaluate.py benchmark=toy",
    "argv": ["evaluate.py"],
    "cwd": "/somewhere",
    "python": "3.11.7",
    "git": {"commit": "abc123", "dirty": False, "changed": []},
    "packages": {
        "torch": "2.13.0+cpu",
        "transformers": "5.23.0",
        "peft": "0.21.2",
        "numpy": "2.4.6",
        "tokenizers": "0.23.3",
        "rich": "14.0.0",
    },
    "hardware": {
        "host": "node-a",
        "cpu": "Xeon",
        "cpu_count": 2,
        "memory_gb": 24.0,
        "gpus": [],
        "cuda": None,
    },
    "cluster": {},
    "finished": "2026-12-03T10:00:00+00:00",
    "loaded": {
        "model:org/m": {"path": "/a/m", "revision": "c0ffee", "dtype": "float32", "device": "cpu"},
        "tokenizer:org/m": {"path": "/a/m", "fingerprint": "f00d"},
    },
}


def write_run(
    run_dir: Path, record: dict, config: dict, per_query: dict[str, dict[str, float]]
) -> Path:
    """An evaluate.py-shaped run: .hydra/config.yaml, repro.json, metrics.json, per_query.json."""
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(config), run_dir / ".hydra" / "config.yaml")
    (run_dir / "repro.json").write_text(json.dumps(record))
    metrics = {
        stage: {"nDCG@10": float(np.mean(list(values.values()))), "sec_per_query": 0.1}
        for stage, values in per_query.items()
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "per_query.json").write_text(
        json.dumps(
            {
                stage: {q: {"nDCG@10": v} for q, v in values.items()}
                for stage, values in per_query.items()
            }
        )
    )
    return run_dir


@pytest.fixture
def two_runs(tmp_path):
    rng = np.random.default_rng(0)
    first = {q: float(v) for q, v in zip(QIDS, rng.uniform(0.2, 0.6, len(QIDS)))}
    reranked_a = {q: min(1.0, v + 0.05) for q, v in first.items()}
    reranked_b = {
        q: min(1.0, v + 0.05 + (0.1 if i % 2 else 0.0)) for i, (q, v) in enumerate(first.items())
    }
    config = {
        "benchmark": {"name": "toy", "depth": 100},
        "pipeline": {"stages": {"pointwise": {"depth": 100}}},
        "seed": 0,
    }
    a = write_run(tmp_path / "a", RECORD, config, {"first_stage": first, "pointwise": reranked_a})
    record_b = json.loads(json.dumps(RECORD))
    record_b["packages"]["transformers"] = "5.24.0"  # the one package that differs
    # not compared
    record_b.update(cwd="/elsewhere", argv=["other"], finished="2026-12-04T10:00:00+00:00")
    record_b["hardware"]["host"] = "node-b"  # where, not what: not compared
    config_b = json.loads(json.dumps(config))
    config_b["pipeline"]["stages"]["pointwise"]["depth"] = 50  # the one config value that differs
    b = write_run(
        tmp_path / "b", record_b, config_b, {"first_stage": first, "pointwise": reranked_b}
    )
    return a, b, (first, reranked_a, reranked_b)


def test_names_exactly_the_differing_package_and_config_value_with_paired_p_values(two_runs):
    a, b, (first, reranked_a, reranked_b) = two_runs
    d = diff_runs(a, b)
    assert [(c.key, c.a, c.b) for c in d.environment] == [
        ("package transformers", "5.23.0", "5.24.0")
    ]
    assert [(c.key, c.a, c.b) for c in d.config] == [("pipeline.stages.pointwise.depth", 100, 50)]
    rows = {(m.stage, m.metric): m for m in d.metrics}
    assert set(rows) == {("first_stage", "nDCG@10"), ("pointwise", "nDCG@10")}  # no sec_per_query
    same, changed = rows["first_stage", "nDCG@10"], rows["pointwise", "nDCG@10"]
    assert same.delta == 0 and same.randomisation_p == 1.0
    expected = np.mean(list(reranked_b.values())) - np.mean(list(reranked_a.values()))
    assert changed.delta == pytest.approx(expected) and changed.n == len(QIDS)
    t_p = stats.ttest_rel([reranked_b[q] for q in QIDS], [reranked_a[q] for q in QIDS]).pvalue
    # scipy's paired t-test on the same pairs, computed here
    assert changed.t_test_p == pytest.approx(t_p)
    assert 0 < changed.randomisation_p < 0.05


def test_command_prints_and_writes_the_diff(two_runs, tmp_path):
    a, b, _ = two_runs
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dear.report",
            "--diff",
            str(a),
            str(b),
            "--out",
            str(tmp_path / "d"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| package transformers | 5.23.0 | 5.24.0 |" in proc.stdout
    assert "| pipeline.stages.pointwise.depth | 100 | 50 |" in proc.stdout
    assert (
        "### Environment: 1 difference(s)" in proc.stdout
        and "### Config: 1 difference(s)" in proc.stdout
    )
    assert (
        json.loads((tmp_path / "d" / "diff.json").read_text())["environment"][0]["key"]
        == "package transformers"
    )
    assert (tmp_path / "d" / "diff.md").read_text() == proc.stdout.rstrip("\n") + "\n"


def test_identical_runs_have_no_differences_and_missing_record_is_one_line(two_runs, tmp_path):
    a, _, _ = two_runs
    d = diff_runs(a, a)
    assert d.environment == [] and d.config == [] and all(m.delta == 0 for m in d.metrics)
    (tmp_path / "bare").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "dear.report", "--diff", str(a), str(tmp_path / "bare")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_score_deciding_packages_come_first_and_a_loaded_model_is_one_row():
    record = json.loads(json.dumps(RECORD))
    env = environment(record)
    keys = list(env)
    assert keys[: len(SCORING_PACKAGES)] == [f"package {p}" for p in SCORING_PACKAGES]
    assert env["package rich"] == "14.0.0" and env["package vllm"] is None
    # the path left out
    assert env["loaded model:org/m"] == "revision=c0ffee dtype=float32 device=cpu"
    record["loaded"]["model:org/m"]["revision"] = "deadbeef"
    assert environment(record)["loaded model:org/m"] != env["loaded model:org/m"]
