"""The runs a report reads: each run's config and its final metrics per benchmark and stage.

From run directories (what train.py and evaluate.py write):

    <run>/.hydra/config.yaml, <run>/.hydra/hydra.yaml   the config; hydra.job.num orders a sweep
    <run>/metrics.json                     one benchmark (evaluation.benchmark, or evaluate.py)
    <run>/benchmarks/<name>/metrics.json   a benchmark set (train.py evaluation.benchmarks)

or from a W&B group (runs logged by train.py with logger=wandb: config, and the summary values
``final/<benchmark>/<stage>/<metric>``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dear.errors import DataError

Metrics = dict[str, dict[str, dict[str, float]]]  # {benchmark: {stage: {metric: value}}}
FINAL = "final/"


@dataclass
class RunResult:
    """One run: where it came from, its config, its metrics (empty: it has none yet)."""

    name: str
    config: DictConfig
    metrics: Metrics = field(default_factory=dict)
    order: tuple = ()

    def select(self, path: str):
        """A config value by dotted path (``alpha.value``); ``a|b``: the first that is set."""
        return select(self.config, path)

    @property
    def final_stage(self) -> str | None:
        """The stage the run's config ends with: train.py's exported model, evaluate.py's last
        pipeline stage (None: the first stage alone). A run still in progress lacks it."""
        exported = self.select("evaluation.exported.name")
        stages = self.select("pipeline.stages")
        return exported or (list(stages)[-1] if stages else None)


def select(config: DictConfig, path: str):
    """``config`` value at a dotted ``path``; ``a|b``: the first that is set; None if none is."""
    for alternative in path.split("|"):
        value = OmegaConf.select(config, alternative.strip(), default=None, throw_on_resolution_failure=False)
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
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    num = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.job.num", default=None) if hydra_file.is_file() else None
    order = (num if isinstance(num, int) else -1, *_natural(run_dir.name))
    return RunResult(str(run_dir), config, _dir_metrics(run_dir, config), order)


def load_run_dirs(roots: list[str | Path]) -> list[RunResult]:
    """The runs under each root (a sweep or run directory), roots in the given order, each
    root's runs in sweep order."""
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
    return [RunResult(f"wandb:{'/'.join(run.path)}", OmegaConf.create(dict(run.config)),
                      summary_metrics(run.summary_metrics), (i,)) for i, run in enumerate(runs)]


def summary_metrics(summary: dict) -> Metrics:
    """W&B summary ``final/<benchmark>/<stage>/<metric>`` values → {benchmark: {stage: {metric: v}}}."""
    metrics: Metrics = {}
    for key, value in summary.items():
        parts = key[len(FINAL):].split("/", 2) if key.startswith(FINAL) else []
        if len(parts) == 3 and isinstance(value, (int, float)):
            bench, stage, metric = parts
            metrics.setdefault(bench, {}).setdefault(stage, {})[metric] = float(value)
    return metrics


def _dir_metrics(run_dir: Path, config: DictConfig) -> Metrics:
    per_benchmark = sorted((run_dir / "benchmarks").glob("*/metrics.json"))
    if per_benchmark:
        return {p.parent.name: _read_metrics(p) for p in per_benchmark}
    single = run_dir / "metrics.json"
    if not single.is_file():
        return {}
    name = select(config, "evaluation.benchmark.name|benchmark.name")
    if not name:
        raise DataError(f"{single}: the run's config names no benchmark (evaluation.benchmark.name or benchmark.name)")
    return {str(name): _read_metrics(single)}


def _read_metrics(path: Path) -> dict[str, dict[str, float]]:
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if isinstance(metrics, dict):
        metrics.pop("warnings", None)  # the input's warnings, not a stage (dear.eval.pipeline)
    if not isinstance(metrics, dict) or not all(isinstance(v, dict) for v in metrics.values()):
        raise DataError(f"{path}: expected {{stage: {{metric: value}}}}")
    return metrics


def _natural(name: str) -> tuple:
    """``"10"`` after ``"9"``: digits compare as numbers (and before letters)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t)
