"""What differs between two runs: environments (``repro.json``), configs, and each shared metric's Δ with paired
tests.

    python -m dear.report --diff RUN_A RUN_B [--out DIR]

Environment: score-deciding packages first, then other packages, Python, commit, hardware, and loaded models' and
tokenizers' identities; where and when a run happened (host, paths, command, timestamps, job ids) is not compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from dear.errors import DataError
from dear.eval.significance import paired_test
from dear.report.runs import RunResult, flatten, load_run_dir
from dear.utils.repro import normal_name, read_record, scoring_versions

MISSING = "—"


@dataclass
class Change:
    key: str
    a: object
    b: object


def environment(record: dict) -> dict[str, object]:
    """The comparable facts of a ``repro.json`` record, flat, score-deciding packages first."""
    packages = {normal_name(k): v for k, v in (record.get("packages") or {}).items()}
    scoring = {**scoring_versions(packages), **(record.get("scoring") or {})}
    hardware = record.get("hardware") or {}
    git = record.get("git") or {}
    out = {f"package {name}": version for name, version in scoring.items()}
    out.update(
        {
            f"package {name}": version
            for name, version in sorted(packages.items())
            if name not in scoring
        }
    )
    out.update(
        {
            "python": record.get("python"),
            "git commit": git.get("commit"),
            "git dirty": git.get("dirty"),
            "cpu": hardware.get("cpu"),
            "gpus": ", ".join(g.get("name", "?") for g in hardware.get("gpus") or []),
            "cuda": hardware.get("cuda"),
            "cudnn": hardware.get("cudnn"),
        }
    )
    for name, facts in (
        record.get("loaded") or {}
    ).items():  # one row per model/tokenizer, paths left out
        out[f"loaded {name}"] = " ".join(
            f"{k}={v}" for k, v in flatten(facts).items() if k != "path" and not k.endswith(".path")
        )
    return out


def changes(a: dict, b: dict) -> list[Change]:
    """Keys whose values differ (a key one side lacks counts), in ``a``'s order then ``b``'s."""
    keys = list(dict.fromkeys([*a, *b]))
    return [
        Change(k, a.get(k, MISSING), b.get(k, MISSING))
        for k in keys
        if a.get(k, MISSING) != b.get(k, MISSING)
    ]


@dataclass
class MetricDiff:
    benchmark: str
    stage: str
    metric: str
    a: float
    b: float
    n: int | None = None  # queries both judged (None: no per-query values)
    t_test_p: float | None = None
    randomisation_p: float | None = None

    @property
    def delta(self) -> float:
        return self.b - self.a


def metric_diffs(run_a: RunResult, run_b: RunResult) -> list[MetricDiff]:
    """Every (benchmark, stage, metric) both runs have, with paired tests where both have per-query values."""
    out = []
    for bench in (b for b in run_a.metrics if b in run_b.metrics):
        for stage in (s for s in run_a.metrics[bench] if s in run_b.metrics[bench]):
            values_a, values_b = run_a.metrics[bench][stage], run_b.metrics[bench][stage]
            if not isinstance(values_a, dict) or not isinstance(values_b, dict):
                continue
            for metric in (m for m in values_a if m in values_b and not m.startswith("sec_")):
                if not all(
                    isinstance(v, (int, float)) for v in (values_a[metric], values_b[metric])
                ):
                    continue
                diff = MetricDiff(
                    bench, stage, metric, float(values_a[metric]), float(values_b[metric])
                )
                qa, qb = (
                    run_a.per_query(bench, stage, metric),
                    run_b.per_query(bench, stage, metric),
                )
                if qa is not None and qb is not None:
                    common = sorted(qa.keys() & qb.keys())
                    test = paired_test(
                        np.array([qb[q] for q in common]), np.array([qa[q] for q in common])
                    )
                    diff.n, diff.t_test_p, diff.randomisation_p = (
                        test.n,
                        test.t_test_p,
                        test.randomisation_p,
                    )
                out.append(diff)
    return out


@dataclass
class RunDiff:
    a: str
    b: str
    environment: list[Change]
    config: list[Change]
    metrics: list[MetricDiff]


def diff_runs(dir_a: str | Path, dir_b: str | Path) -> RunDiff:
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    for d in (dir_a, dir_b):
        if not d.is_dir():
            raise DataError(f"{d}: not a run directory")
    run_a, run_b = load_run_dir(dir_a), load_run_dir(dir_b)
    config_a = flatten(OmegaConf.to_container(run_a.config, resolve=False))
    config_b = flatten(OmegaConf.to_container(run_b.config, resolve=False))
    return RunDiff(
        str(dir_a),
        str(dir_b),
        changes(environment(read_record(dir_a)), environment(read_record(dir_b))),
        changes(config_a, config_b),
        metric_diffs(run_a, run_b),
    )


def _p(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4f}"


def markdown(d: RunDiff) -> str:
    lines = [
        f"## {d.a} (A) vs {d.b} (B)",
        "",
        f"### Environment: {len(d.environment)} difference(s)",
        "",
    ]
    lines += (
        ["| | A | B |", "|---|---|---|", *(f"| {c.key} | {c.a} | {c.b} |" for c in d.environment)]
        if d.environment
        else ["(same)"]
    )
    lines += ["", f"### Config: {len(d.config)} difference(s)", ""]
    lines += (
        ["| key | A | B |", "|---|---|---|", *(f"| {c.key} | {c.a} | {c.b} |" for c in d.config)]
        if d.config
        else ["(same)"]
    )
    lines += [
        "",
        "### Metrics (×100; Δ = B − A; paired over the queries both judged: t-test and randomisation "
        "p, two-sided, uncorrected)",
        "",
    ]
    if d.metrics:
        lines += [
            "| benchmark | stage | metric | A | B | Δ | queries | t-test p | randomisation p |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {m.benchmark} | {m.stage} | {m.metric} | {100 * m.a:.2f} | {100 * m.b:.2f} "
            f"| {100 * m.delta:+.2f} | {m.n if m.n is not None else MISSING} | {_p(m.t_test_p)} "
            f"| {_p(m.randomisation_p)} |"
            for m in d.metrics
        ]
    else:
        lines.append("(no metric both runs have)")
    return "\n".join(lines) + "\n"


def to_json(d: RunDiff) -> dict:
    return {
        "a": d.a,
        "b": d.b,
        "environment": [vars(c) for c in d.environment],
        "config": [vars(c) for c in d.config],
        "metrics": [{**vars(m), "delta": m.delta} for m in d.metrics],
    }
