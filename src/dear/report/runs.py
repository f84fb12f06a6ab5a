"""The runs a report reads: each run's config and its final metrics per benchmark and stage.

From run directories (what train.py and evaluate.py write):

    <run>/.hydra/config.yaml, <run>/.hydra/hydra.yaml   the config; hydra.job.num orders a sweep
    <run>/metrics.json                     one benchmark (evaluation.benchmark, or evaluate.py)
    <run>/benchmarks/<name>/metrics.json   a benchmark set (train.py evaluation.benchmarks)
    per_query.json beside each metrics.json  per-query values, for the paired tests

or from a W&B group (train.py with logger=wandb: config and summary ``final/<benchmark>/<stage>/<metric>``).

A run whose config sets ``sweep.report.trained_run`` (e.g. ``pointwise.path``) evaluates a training run's export
after the fact (more benchmarks for a finished sweep): its row fields and seed are read from that training run's
``.hydra/config.yaml`` first, so its cells join the training sweep's rows (sweeps/smollm2_alpha_dl21.yaml).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dear.errors import DataError

Metrics = dict[str, dict[str, dict[str, float]]]  # {benchmark: {stage: {metric: value}}}
FINAL = "final/"
SEED = "seed"  # the config key whose values are the repetitions of one cell


@dataclass
class RunResult:
    """One run: where it came from, its config, its metrics (empty: it has none yet)."""

    name: str
    config: DictConfig
    metrics: Metrics = field(default_factory=dict)
    order: tuple = ()
    per_query_files: dict[str, Path] = field(default_factory=dict)  # {benchmark: per_query.json}
    # An evaluation of a trained run's export (``sweep.report.trained_run``): that run's config, and the key
    # naming it here (e.g. pointwise.path)
    trained: DictConfig | None = None
    trained_key: str | None = None

    @property
    def seed(self):
        """The repetition this run is: the trained run's seed for an evaluation of its export."""
        return self.row_value(SEED)

    def row_value(self, path: str):
        """A row field (or the seed): from the trained run's config first when this run evaluates one, so an
        export evaluated later sits in the row (α, student, ...) it was trained in; else this run's own."""
        value = select(self.trained, path) if self.trained is not None else None
        return self.select(path) if value is None else value

    def per_query(self, benchmark: str, stage: str, metric: str) -> dict[str, float] | None:
        """``{qid: value}`` of one stage and metric (None: the run has no per-query file for it)."""
        path = self.per_query_files.get(benchmark)
        if path is None:
            return None
        try:
            rows = json.loads(path.read_text()).get(stage)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from e
        if rows is None:
            return None
        try:
            return {qid: float(row[metric]) for qid, row in rows.items()}
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"{path}: stage {stage!r} lacks a number for {metric!r} on some query ({e})"
            ) from e

    def select(self, path: str):
        """A config value by dotted path (``alpha.value``); ``a|b``: the first that is set."""
        return select(self.config, path)

    @property
    def final_stage(self) -> str | None:
        """The stage the run's config ends with (None: first stage alone; a running run lacks it)."""
        exported = self.select("evaluation.exported.name")
        stages = self.select("pipeline.stages")
        return exported or (list(stages)[-1] if stages else None)


def select(config: DictConfig, path: str):
    """``config`` value at a dotted ``path``; ``a|b``: the first that is set; None if none is."""
    for alternative in path.split("|"):
        value = OmegaConf.select(
            config, alternative.strip(), default=None, throw_on_resolution_failure=False
        )
        if value is not None:
            return value
    return None


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every directory at or under ``root`` holding ``.hydra/config.yaml`` (a Hydra run)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such run or sweep directory")
    found = sorted(p.parent.parent for p in root.glob("**/.hydra/config.yaml"))
    if not found:
        raise DataError(f"{root}: no run directories (with .hydra/config.yaml) at or under it")
    return found


def load_run_dir(run_dir: Path) -> RunResult:
    """A run directory → its config, metrics and its place in the sweep (hydra.job.num)."""
    config = _load_yaml(run_dir / ".hydra" / "config.yaml")
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    num = (
        OmegaConf.select(_load_yaml(hydra_file), "hydra.job.num", default=None)
        if hydra_file.is_file()
        else None
    )
    order = (num if isinstance(num, int) else -1, *_natural(run_dir.name))
    metrics = _dir_metrics(run_dir, config)
    per_query = {
        bench: _metrics_file(run_dir, bench).with_name("per_query.json") for bench in metrics
    }
    key = OmegaConf.select(config, "sweep.report.trained_run", default=None)
    trained = None
    if key:
        target = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
        trained = _trained_config(run_dir, key, target)
    return RunResult(
        str(run_dir),
        config,
        metrics,
        order,
        {b: p for b, p in per_query.items() if p.is_file()},
        trained,
        key,
    )


def _trained_config(run_dir: Path, key: str, target) -> DictConfig:
    """The config of the training run ``target`` names (its directory, or its export/ inside it)."""
    if not target:
        raise DataError(
            f"{run_dir}: sweep.report.trained_run is {key!r}, which this run leaves unset"
        )
    target = Path(str(target))
    for candidate in (target, target.parent):
        if (candidate / ".hydra" / "config.yaml").is_file():
            return _load_yaml(candidate / ".hydra" / "config.yaml")
    raise DataError(
        f"{run_dir}: {key} = {str(target)!r} is not a training run's directory (nor its export/): "
        "no .hydra/config.yaml there or above it"
    )


def load_run_dirs(roots: list[str | Path]) -> list[RunResult]:
    """The runs under each root (sweep or run directory): roots in the given order, each in sweep order."""
    runs = []
    for root in roots:
        runs += sorted((load_run_dir(d) for d in find_run_dirs(root)), key=lambda r: r.order)
    return runs


def load_wandb_group(spec: str, api=None) -> list[RunResult]:
    """``entity/project/group`` → its runs (oldest first) through the W&B public API."""
    project, _, group = spec.rpartition("/")
    if project.count("/") != 1 or not group:
        raise DataError(f"--wandb {spec!r}: expected ENTITY/PROJECT/GROUP")
    if api is None:
        import wandb

        api = wandb.Api()
    runs = api.runs(project, filters={"group": group})
    return [
        RunResult(
            f"wandb:{'/'.join(run.path)}",
            OmegaConf.create(dict(run.config)),
            summary_metrics(run.summary_metrics),
            (i,),
        )
        for i, run in enumerate(runs)
    ]


def summary_metrics(summary: dict) -> Metrics:
    """W&B summary ``final/<benchmark>/<stage>/<metric>`` values → {benchmark: {stage: {metric: v}}}."""
    metrics: Metrics = {}
    for key, value in summary.items():
        parts = key[len(FINAL) :].split("/", 2) if key.startswith(FINAL) else []
        if len(parts) == 3 and isinstance(value, (int, float)):
            bench, stage, metric = parts
            metrics.setdefault(bench, {}).setdefault(stage, {})[metric] = float(value)
    return metrics


def run_differences(a: RunResult, b: RunResult) -> list[str]:
    """What sets two runs of one cell apart besides the seed: their configs', and their trained runs' when they
    evaluate one (the key naming the trained run differs by design)."""
    keys = tuple(k for k in (a.trained_key, b.trained_key) if k)
    differences = config_differences(a.config, b.config, (SEED, "sweep.report", *keys))
    if a.trained is not None and b.trained is not None:
        differences += [f"trained run's {k}" for k in config_differences(a.trained, b.trained)]
    return differences


def config_differences(
    a: DictConfig, b: DictConfig, ignore: tuple[str, ...] = (SEED, "sweep.report")
) -> list[str]:
    """Dotted config keys whose values differ between two runs (unresolved), keys under ``ignore`` left out
    (the seed; how the sweep is reported, which changes no run)."""
    flat_a, flat_b = flatten(OmegaConf.to_container(a)), flatten(OmegaConf.to_container(b))
    return sorted(
        k
        for k in flat_a.keys() | flat_b.keys()
        if flat_a.get(k) != flat_b.get(k)
        and not any(k == p or k.startswith(p + ".") for p in ignore)
    )


def flatten(node, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (an empty mapping stays a value)."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    out = {}
    for key, child in node.items():
        out.update(flatten(child, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _metrics_file(run_dir: Path, benchmark: str) -> Path:
    per_benchmark = run_dir / "benchmarks" / benchmark / "metrics.json"
    return per_benchmark if per_benchmark.is_file() else run_dir / "metrics.json"


def _dir_metrics(run_dir: Path, config: DictConfig) -> Metrics:
    per_benchmark = sorted((run_dir / "benchmarks").glob("*/metrics.json"))
    if per_benchmark:
        return {p.parent.name: _read_metrics(p) for p in per_benchmark}
    single = run_dir / "metrics.json"
    if not single.is_file():
        return {}
    name = select(config, "evaluation.benchmark.name|benchmark.name")
    if not name:
        raise DataError(
            f"{single}: the run's config names no benchmark (evaluation.benchmark.name or benchmark.name)"
        )
    return {str(name): _read_metrics(single)}


def _load_yaml(path: Path) -> DictConfig:
    """A run's Hydra YAML file, or a DataError naming it (and the line YAML stopped at)."""
    import yaml

    try:
        config = OmegaConf.load(path)
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise DataError(
            f"{where}: not a readable YAML config "
            f"({' '.join(str(getattr(e, 'problem', e)).split())})"
        ) from None
    if not isinstance(config, DictConfig):
        raise DataError(f"{path}: expected a YAML mapping, found a {type(config).__name__}")
    return config


def _read_metrics(path: Path) -> dict[str, dict[str, float]]:
    """``{stage: {metric: number, "significance": {...}}}``, else a DataError naming the file and field."""
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if isinstance(metrics, dict):
        metrics.pop("warnings", None)  # the input's warnings, not a stage (dear.eval.pipeline)
    if not isinstance(metrics, dict) or not all(isinstance(v, dict) for v in metrics.values()):
        raise DataError(f"{path}: expected {{stage: {{metric: value}}}}")
    for stage, row in metrics.items():
        for metric, value in row.items():
            number = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
            if not number and not isinstance(value, dict):  # dicts: the stage's significance tests
                raise DataError(
                    f"{path}: {stage}.{metric}: expected a finite number, found {value!r:.80}"
                )
    return metrics


def _natural(name: str) -> tuple:
    """``"10"`` after ``"9"``: digits compare as numbers (and before letters)."""
    return tuple(
        (0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t
    )
