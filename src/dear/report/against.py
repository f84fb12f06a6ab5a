"""Measured cells beside the DeAR paper's published ones: Δ = measured − published (×100) and whether it is within
tolerance.

Tolerances (points ×100): first stage ±0.5 (same BM25 over the same data: larger means the index or collection
differs); models ±2.0 (other hardware, seeds, library versions). A cell measured in another setup is shown with what
differs and never flagged. The first stage is compared with the paper's BM25, the final stage with the cells its
config names in ``paper.cells``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dear.report import paper
from dear.utils.io import atomic_write_json, atomic_write_text
from dear.utils.paths import ROOT

TOLERANCE = {"first_stage": 0.5, "model": 2.0}
FIRST_STAGE = "first_stage"
PAPER_AVERAGES = {"beir8-avg": "BEIR-8"}
# What the paper trained each stage on (conf/data option names).
PAPER_TRAIN_DATA = {"pointwise": "msmarco", "listwise": "dear_cot"}
FLAG, OK, OTHER = "⚠", "✓", "‡"


@dataclass
class Comparison:
    stage: str
    benchmark: str
    metric: str
    measured: float  # ×100
    cells: list  # the published cells with this value (several tables may print the same number)
    # the setup's differences; empty: the paper's setup
    differences: list[str] = field(default_factory=list)

    @property
    def published(self) -> float:
        return self.cells[0].value

    @property
    def delta(self) -> float:
        return self.measured - self.published

    @property
    def tolerance(self) -> float:
        return TOLERANCE["first_stage" if self.stage == FIRST_STAGE else "model"]

    @property
    def within(self) -> bool | None:
        """|Δ| within the tolerance; None when the setup differs (nothing to judge)."""
        return None if self.differences else abs(self.delta) <= self.tolerance + 1e-9

    @property
    def where(self) -> str:
        tables = ", ".join(dict.fromkeys(c.table for c in self.cells))
        return f"{tables}: {self.cells[0].method}"

    def to_json(self) -> dict:
        return {
            "stage": self.stage,
            "benchmark": self.benchmark,
            "metric": self.metric,
            "measured": self.measured,
            "published": self.published,
            "delta": self.delta,
            "tolerance": self.tolerance,
            "within": self.within,
            "cells": [c.cell for c in self.cells],
            "differences": self.differences,
        }


# -- the run's setup against a cell's ------------------------------------------------------------


@cache
def option_model(group: str, option: str) -> str | None:
    """The ``model`` a config option sets (``conf/<group>/<option>.yaml``, following its defaults)."""
    path = ROOT / "conf" / group / f"{option}.yaml"
    if not path.is_file():
        return None
    node = OmegaConf.to_container(OmegaConf.load(path))
    if isinstance(node.get("model"), str):
        return node["model"]
    for entry in reversed(node.get("defaults") or []):
        if isinstance(entry, dict) and len(entry) == 1:  # {/group@package: option}
            ((key, option_name),) = entry.items()
            inner = (key.split("@")[0].strip("/"), str(option_name))
        elif (
            isinstance(entry, str) and entry != "_self_"
        ):  # "/group/option@package", or a sibling "option"
            ref = entry.split("@")[0]
            inner = tuple(ref.strip("/").rsplit("/", 1)) if ref.startswith("/") else (group, ref)
        else:
            continue
        model = option_model(*inner) if len(inner) == 2 else None
        if model:
            return model
    return None


def same_model(role: str, option: str, run_model, choices: dict) -> bool:
    """Whether a run's ``<role>.model`` is the one the paper's ``option`` sets (by the model id; by
    the option name only when the option sets no model)."""
    model = option_model(role, option)
    return run_model == model if model else choices.get(role) == option


def setup_differences(
    cell, config: DictConfig, choices: dict, benchmark_label: str | None = None
) -> list[str]:
    """What the run did otherwise than the paper's cell (nothing when the paper says nothing)."""
    out = []

    def value(path: str):
        return OmegaConf.select(config, path, default=None)

    for role in ("teacher", "student"):
        wanted = getattr(cell, role)
        if not wanted:
            continue
        run_model = value(f"{role}.model")
        if run_model is None:
            out.append(f"no {role} (paper: {wanted})")
        elif not same_model(role, wanted, run_model, choices):
            out.append(f"{role} {run_model} (paper: {option_model(role, wanted) or wanted})")
    if cell.loss and choices.get("loss", cell.loss) != cell.loss:
        out.append(f"loss {choices.get('loss')} (paper: {cell.loss})")
    alpha = value("alpha.value")
    if cell.alpha is not None and alpha is not None and abs(float(alpha) - cell.alpha) > 1e-9:
        out.append(f"α {alpha:g} (paper: {cell.alpha:g})")
    data = PAPER_TRAIN_DATA.get(cell.stage or "")
    if data and "data" in choices and choices["data"] != data:
        out.append(f"trained on {choices['data']} (paper: {data})")
    depth = value("evaluation.depth")
    if cell.top_k and depth and int(depth) != cell.top_k and cell.stage != FIRST_STAGE:
        out.append(f"top-{depth} reranked (paper: top-{cell.top_k})")
    if (
        benchmark_label
        and cell.benchmark in PAPER_AVERAGES
        and benchmark_label != PAPER_AVERAGES[cell.benchmark]
    ):
        out.append(f"averaged over {benchmark_label} (paper: {PAPER_AVERAGES[cell.benchmark]})")
    return out


def run_choices(run_dir: str | Path) -> dict:
    """The config options a saved run was composed from (``.hydra/hydra.yaml``: runtime.choices)."""
    path = Path(run_dir) / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return {}
    node = OmegaConf.load(path)
    choices = OmegaConf.select(node, "hydra.runtime.choices", default=None)
    return (
        {} if choices is None else {str(k): v for k, v in OmegaConf.to_container(choices).items()}
    )


# -- one run ---------------------------------------------------------------------------------------


def compare_run(
    metrics: dict[str, dict],
    benchmark: str,
    config: DictConfig,
    choices: dict,
    final_stage: str | None = None,
) -> list[Comparison]:
    """``metrics``: one benchmark's metrics.json ``{stage: {metric: value ×1}}`` → the comparisons."""
    stages = [s for s, values in metrics.items() if isinstance(values, dict)]
    final_stage = final_stage or (stages[-1] if stages else None)
    named = [paper.cell(c) for c in (OmegaConf.select(config, "paper.cells", default=None) or [])]
    out = []
    for stage in stages:
        for metric, value in metrics[stage].items():
            if not isinstance(value, (int, float)) or metric.startswith("sec_"):
                continue
            if stage == FIRST_STAGE:
                found = paper.bm25(benchmark, metric)
                cells = [found] if found else []
            elif stage == final_stage:
                cells = [c for c in named if c.benchmark == benchmark and c.metric == metric]
            else:
                cells = []
            for group in _by_value(cells):
                diffs = [] if stage == FIRST_STAGE else setup_differences(group[0], config, choices)
                out.append(Comparison(stage, benchmark, metric, 100 * float(value), group, diffs))
    return out


def _by_value(cells: list) -> list[list]:
    groups: dict[float, list] = {}
    for c in cells:
        groups.setdefault(c.value, []).append(c)
    return list(groups.values())


def signed(delta: float) -> str:
    """``+1.23`` / ``-0.41``; a Δ that rounds to zero is ``+0.00``, never ``-0.00``."""
    return f"{round(delta, 2) + 0.0:+.2f}"


def verdict(c: Comparison) -> str:
    if c.within is None:
        return f"{OTHER} other setup: " + "; ".join(c.differences)
    return f"{OK} within ±{c.tolerance:g}" if c.within else f"{FLAG} outside ±{c.tolerance:g}"


def markdown(comparisons: list[Comparison], benchmark: str) -> str:
    """The comparison table of one benchmark ('' when nothing measured has a published counterpart)."""
    if not comparisons:
        return ""
    sources = {c.cells[0].source for c in comparisons}
    cited = [f"the DeAR paper ({paper.PAPER.rstrip('.')})"] * ("paper" in sources)
    cited += ["Anserini's BM25 regressions (castorini/anserini, docs/regressions/)"] * (
        "anserini" in sources
    )
    lines = [
        f"### {benchmark} against the paper",
        "",
        f"Published in {' and '.join(cited)}. Δ = measured − published (×100); tolerance "
        f"±{TOLERANCE['first_stage']:g} for BM25, ±{TOLERANCE['model']:g} for models ({OTHER}: measured in "
        "another setup, not judged).",
        "",
        "| stage | metric | measured | published | Δ | where | |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for c in comparisons:
        lines.append(
            f"| {c.stage} | {c.metric} | {c.measured:.2f} | {c.published:.2f} | {signed(c.delta)} | {c.where} "
            f"| {verdict(c)} |"
        )
    flagged = [c for c in comparisons if c.within is False]
    if flagged:
        lines += [
            "",
            f"{FLAG} {len(flagged)} cell(s) outside the tolerance: compare the environment with the one "
            "that produced the figure (`python -m dear.report --diff RUN_A RUN_B`).",
        ]
    return "\n".join(lines) + "\n"


def write_against_paper(
    out_dir: str | Path,
    metrics: dict[str, dict],
    benchmark: str,
    config: DictConfig,
    choices: dict,
    final_stage: str | None = None,
) -> str:
    """Write ``paper.json``, append the table to ``results.md`` → the Markdown."""
    out_dir = Path(out_dir)
    comparisons = compare_run(metrics, benchmark, config, choices, final_stage)
    text = markdown(comparisons, benchmark)
    atomic_write_json(
        out_dir / "paper.json",
        {
            "paper": paper.PAPER,
            "tolerance": TOLERANCE,
            "comparisons": [c.to_json() for c in comparisons],
        },
    )
    results = out_dir / "results.md"
    if text and results.is_file():
        atomic_write_text(results, results.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + text)
    return text


LOG_HEADER = (
    "| date | cell | stage | measured | published | Δ | within | machine | commit | command |\n"
    "|---|---|---|---:|---:|---:|---|---|---|---|"
)


def log_lines(run_dir: str | Path) -> list[str]:
    """docs/reproduction.md rows for a finished run, one per compared cell in its ``paper.json`` files."""
    from dear.utils.io import read_json
    from dear.utils.repro import read_record

    run_dir = Path(run_dir)
    record = read_record(run_dir)
    hardware = record.get("hardware") or {}
    machine = (
        ", ".join(g.get("name", "?") for g in hardware.get("gpus") or [])
        or hardware.get("cpu")
        or "?"
    )
    git = record.get("git") or {}
    commit = (git.get("commit") or "?")[:10] + ("-dirty" if git.get("dirty") else "")
    date = str(record.get("finished") or "unfinished")[:10]
    out = []
    for path in sorted([run_dir / "paper.json", *run_dir.glob("benchmarks/*/paper.json")]):
        if not path.is_file():
            continue
        for c in read_json(path).get("comparisons", []):
            within = {True: "yes", False: "no", None: "other setup"}[c["within"]]
            out.append(
                f"| {date} | {c['cells'][0]} | {c['stage']} | {c['measured']:.2f} | {c['published']:.2f} "
                f"| {signed(c['delta'])} | {within} | {machine} | {commit} | `{record.get('command', '?')}` |"
            )
    return out
