"""Paired significance of systems against one baseline on the same queries.

A paired t-test and a two-sided paired randomisation test (``permutation_test``, ``samples``; exact when 2^n ≤ the
resample budget; fixed seed), Holm–Bonferroni adjusted across systems. The † marker uses the adjusted randomisation
p-value: no normality is assumed of bounded, skewed per-query differences. Holm is written here rather than adding
statsmodels (scipy's ``false_discovery_control`` is Benjamini–Hochberg).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from dear.errors import DataError

ALPHA = 0.05
RESAMPLES = 10_000
SEED = 0
MARKER = "†"


@dataclass
class PairedTest:
    """One system against the baseline: p-values (None where a test is undefined: one query)."""

    n: int  # queries
    mean_diff: float  # mean over queries of system − baseline
    t_test_p: float | None
    randomisation_p: float | None
    t_test_p_holm: float | None = None
    randomisation_p_holm: float | None = None

    @property
    def significant(self) -> bool:
        p = self.randomisation_p_holm
        return p is not None and p < ALPHA

    def to_json(self) -> dict:
        return asdict(self)


def paired_test(
    system: np.ndarray, baseline: np.ndarray, seed: int = SEED, resamples: int = RESAMPLES
) -> PairedTest:
    """Two-sided paired tests of ``system`` vs ``baseline``, both shape (n_queries,), same query order."""
    system, baseline = np.asarray(system, dtype=float), np.asarray(baseline, dtype=float)
    diff = system - baseline
    n = len(diff)
    if n < 2:
        return PairedTest(n, float(diff.mean()) if n else 0.0, None, None)
    if not diff.any():  # identical systems: nothing to test (ttest_rel would divide 0 by 0)
        return PairedTest(n, 0.0, 1.0, 1.0)
    if np.ptp(diff) <= 1e-12:  # a constant shift (up to rounding): no variance, t is infinite
        t_p = 0.0
    else:
        t_p = float(stats.ttest_rel(system, baseline).pvalue)
    result = stats.permutation_test(
        (system, baseline),
        _mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
        batch=500,
    )
    return PairedTest(n, float(diff.mean()), t_p, float(result.pvalue))


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values in the given order (None stays None, not counted): for sorted p_(1) ≤ … ≤
    p_(m), p_(i) = max over j ≤ i of min(1, (m − j + 1)·p_(j))."""
    present = [i for i, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, i in enumerate(sorted(present, key=lambda i: p_values[i])):
        running = max(running, min(1.0, (len(present) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def compare_to_baseline(
    per_query: dict[str, dict[str, float]], baseline: str
) -> dict[str, PairedTest]:
    """``{system: {qid: value}}`` → ``{system: PairedTest}``, Holm-adjusted; all need the baseline's queries."""
    if baseline not in per_query:
        raise DataError(f"significance: no baseline {baseline!r} among {list(per_query)}")
    qids = sorted(per_query[baseline])
    tests = {}
    for name, values in per_query.items():
        if name == baseline:
            continue
        if set(values) != set(qids):
            missing = sorted(set(qids) ^ set(values))
            raise DataError(
                f"significance: {name!r} and the baseline {baseline!r} differ in queries, "
                f"e.g. {missing[:3]} (a paired test needs the same queries)"
            )
        tests[name] = paired_test(
            np.array([values[q] for q in qids]), np.array([per_query[baseline][q] for q in qids])
        )
    adjust_holm(list(tests.values()))
    return tests


def adjust_holm(tests: list[PairedTest]) -> None:
    """Fill in the Holm-adjusted p-values of one family of tests."""
    for t, p in zip(tests, holm([t.t_test_p for t in tests])):
        t.t_test_p_holm = p
    for t, p in zip(tests, holm([t.randomisation_p for t in tests])):
        t.randomisation_p_holm = p


def note(baseline: str, family: str, marker: str = MARKER) -> str:
    """The sentence under a table that explains its markers."""
    return (
        f"{marker}: differs from {baseline} (better or worse) at p < {ALPHA}, two-sided paired randomisation "
        f"test over queries ({RESAMPLES:,} resamples, seed {SEED}), Holm–Bonferroni corrected over {family}; "
        "paired t-test p-values beside it in the JSON."
    )


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


SIGNIFICANCE = (
    "significance"  # the key, in a stage's row of metrics.json, of its tests against the baseline
)


def stage_significance(
    per_query: dict[str, dict[str, dict[str, float]]], metrics: list[str], baseline: str
) -> dict[str, dict]:
    """per_query.json's ``{stage: {qid: {metric: v}}}`` → tests per stage and metric, Holm over the stages."""
    out: dict[str, dict] = {
        stage: {"baseline": baseline} for stage in per_query if stage != baseline
    }
    for metric in metrics:
        values = {
            stage: {qid: row[metric] for qid, row in rows.items()}
            for stage, rows in per_query.items()
        }
        for stage, test in compare_to_baseline(values, baseline).items():
            out[stage][metric] = test.to_json()
    return out


def significant_cells(significance: dict[str, dict]) -> set[tuple[str, str]]:
    """(stage, metric) pairs whose Holm-adjusted randomisation p-value is below ALPHA."""
    return {
        (stage, metric)
        for stage, tests in significance.items()
        for metric, t in tests.items()
        if isinstance(t, dict)
        and t["randomisation_p_holm"] is not None
        and t["randomisation_p_holm"] < ALPHA
    }


def with_significance(metrics: dict[str, dict], significance: dict[str, dict]) -> dict[str, dict]:
    """metrics.json's content: each tested stage's row with its tests under ``SIGNIFICANCE``."""
    return {
        stage: {**row, SIGNIFICANCE: significance[stage]} if stage in significance else row
        for stage, row in metrics.items()
    }
