"""Paired significance (dear.eval.significance) on synthetic per-query scores of known outcome,
and its place in evaluate.py's outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dear.errors import DataError
from dear.eval.significance import (
    ALPHA,
    compare_to_baseline,
    holm,
    paired_test,
    significant_cells,
    stage_significance,
)
from dear.eval.tables import markdown_table
from tests.helpers import ROOT


def per_query(values) -> dict[str, float]:
    return {f"q{i}": float(v) for i, v in enumerate(values)}


@pytest.fixture
def baseline() -> np.ndarray:
    return np.random.default_rng(0).uniform(0.2, 0.8, size=60)


def test_a_clearly_better_system_is_significant(baseline):
    better = np.clip(baseline + 0.1 + np.random.default_rng(1).normal(0, 0.05, size=60), 0, 1)
    test = paired_test(better, baseline)
    assert test.t_test_p < 1e-6 and test.randomisation_p < 1e-3
    assert test.mean_diff == pytest.approx(float(np.mean(better - baseline)))


def test_identical_systems_are_not_significant(baseline):
    test = paired_test(baseline, baseline)
    assert test.t_test_p == 1.0 and test.randomisation_p == 1.0 and test.mean_diff == 0.0


def test_noise_around_the_baseline_is_not_significant(baseline):
    noisy = baseline + np.random.default_rng(2).normal(0, 0.05, size=60) * np.resize([1, -1], 60)
    assert paired_test(noisy, baseline).randomisation_p > ALPHA


def test_small_sample_is_the_exact_randomisation_test():
    """4 queries, all better by 0.1..0.4: of the 2^4 sign flips only all-+ and all-− reach the
    observed |mean difference|, so the two-sided p is exactly 2/16."""
    test = paired_test(np.array([0.6, 0.7, 0.8, 0.9]), np.array([0.5, 0.5, 0.5, 0.5]))
    assert test.randomisation_p == pytest.approx(2 / 16)


def test_fixed_seed_gives_the_same_p_value(baseline):
    other = baseline + np.random.default_rng(3).normal(0.01, 0.1, size=60)
    assert (
        paired_test(other, baseline).randomisation_p == paired_test(other, baseline).randomisation_p
    )


def test_holm_against_a_hand_computation():
    # sorted: 0.005·4 = 0.02; 0.01·3 = 0.03; 0.03·2 = 0.06; 0.04·1 = 0.04 → raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, None, 0.005]) == pytest.approx([0.03, 0.06, 0.06, None, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_compare_to_baseline_adjusts_across_systems(baseline):
    rng = np.random.default_rng(4)
    systems = {
        "base": per_query(baseline),
        "same": per_query(baseline),
        "better": per_query(baseline + 0.2 + rng.normal(0, 0.05, 60)),
        "noisy": per_query(baseline + rng.normal(0, 0.1, 60)),
    }
    tests = compare_to_baseline(systems, "base")
    assert list(tests) == ["same", "better", "noisy"]
    raw = [tests[s].randomisation_p for s in tests]
    assert [tests[s].randomisation_p_holm for s in tests] == pytest.approx(holm(raw))
    assert tests["better"].significant and not tests["same"].significant


def test_different_queries_are_refused(baseline):
    systems = {"base": per_query(baseline), "other": per_query(baseline[:-1])}
    with pytest.raises(
        DataError, match=r"'other' and the baseline 'base' differ in queries, e.g. \['q59'\]"
    ):
        compare_to_baseline(systems, "base")


def test_stage_significance_per_metric(baseline):
    def rows(v):
        return {f"q{i}": {"nDCG@10": float(x), "RR": 0.5} for i, x in enumerate(v)}

    sig = stage_significance(
        {"first_stage": rows(baseline), "student": rows(baseline + 0.2)},
        ["nDCG@10", "RR"],
        "first_stage",
    )
    assert list(sig) == ["student"] and sig["student"]["baseline"] == "first_stage"
    assert sig["student"]["nDCG@10"]["randomisation_p_holm"] < ALPHA
    assert sig["student"]["RR"]["randomisation_p"] == 1.0  # equal per query


def test_significant_cells_get_the_marker_in_the_stage_table(baseline):
    def rows(v):
        return {f"q{i}": {"nDCG@10": float(x)} for i, x in enumerate(v)}

    sig = stage_significance(
        {"first_stage": rows(baseline), "better": rows(baseline + 0.2), "same": rows(baseline)},
        ["nDCG@10"],
        "first_stage",
    )
    assert significant_cells(sig) == {("better", "nDCG@10")}
    metrics = {
        s: {"nDCG@10": float(np.mean(baseline)) + d, "sec_per_query": 0.1}
        for s, d in [("first_stage", 0), ("better", 0.2), ("same", 0)]
    }
    lines = markdown_table(metrics, ["nDCG@10"], significant_cells(sig)).splitlines()
    assert lines[3] == f"| better | {100 * metrics['better']['nDCG@10']:.2f}† | 0.100 |"
    assert "†" not in lines[2] + lines[4]


def test_evaluate_writes_p_values_and_markers(toy_files, tmp_path):
    """MiniLM reranking the toy run (which ranks the relevant documents last) against the first
    stage: 2 queries are too few for p < 0.05, so no marker, but the note and the p-values."""
    args = [
        "benchmark=files",
        f"benchmark.candidates={toy_files['run']}",
        f"benchmark.qrels={toy_files['qrels']}",
        f"benchmark.docs={toy_files['docs']}",
        f"benchmark.queries={toy_files['queries']}",
        "pipeline=pointwise",
        "pointwise=minilm_bi_encoder",
        f"hydra.run.dir={tmp_path}",
    ]
    proc = subprocess.run(
        [sys.executable, "evaluate.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (
        list(metrics) == ["first_stage", "pointwise"]
        and "significance" not in metrics["first_stage"]
    )
    test = metrics["pointwise"]["significance"]["nDCG@10"]
    assert metrics["pointwise"]["significance"]["baseline"] == "first_stage" and test["n"] == 2
    assert set(test) == {
        "n",
        "mean_diff",
        "t_test_p",
        "randomisation_p",
        "t_test_p_holm",
        "randomisation_p_holm",
    }
    # 2 queries: 4 sign flips, the observed one and its mirror at least
    assert test["randomisation_p"] >= 0.5
    results = (tmp_path / "results.md").read_text()
    assert (
        "†" not in results.split("\n\n")[1]
        and "†: differs from first_stage (better or worse) at p < 0.05" in results
    )
