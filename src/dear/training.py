"""What ``train.py`` wires together: the data module and teacher, the checkpoint to resume from and to export, the
untrained model's export, and the exports' evaluation."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from dear.config import hydra_choices
from dear.distill.teacher import Teacher
from dear.eval.pipeline import FIRST_STAGE, Stage, run_pipeline, stages_from_config
from dear.report.against import write_against_paper
from dear.utils.checkpoints import load_checkpoint, resume_checkpoint
from dear.utils.io import atomic_dir
from dear.utils.plain import to_plain
from dear.utils.progress import log


def resume_path(run_dir: Path) -> str | None:
    """The newest loadable checkpoint in <run dir>/checkpoints (others set aside), or DeepSpeed's directory."""
    return resume_checkpoint(run_dir / "checkpoints")


def checkpoint_state(path: str) -> dict:
    """A checkpoint's ``state_dict`` from a file, or a DeepSpeed directory gathered into fp32."""
    if Path(path).is_dir():
        from lightning.pytorch.utilities.deepspeed import (
            convert_zero_checkpoint_to_fp32_state_dict,
        )

        merged = Path(path).with_suffix(".fp32.pt")
        convert_zero_checkpoint_to_fp32_state_dict(path, str(merged))
        path = str(merged)
    return load_checkpoint(path)["state_dict"]


def export_checkpoint(trainer: L.Trainer) -> str:
    """The best (else latest "last") checkpoint, or ""; by file name in the callback's directory, as a recorded path
    may point anywhere (a moved run, a crafted file)."""
    # monitored first
    callbacks = sorted(trainer.checkpoint_callbacks, key=lambda c: c.monitor is None)
    for callback in callbacks:
        for recorded in (callback.best_model_path, callback.last_model_path):
            if recorded:
                path = Path(callback.dirpath) / Path(recorded).name
                if not path.exists():
                    raise FileNotFoundError(
                        f"{path}: the checkpoint to export (recorded as {recorded}) is missing"
                    )
                return str(path)
    return ""


def exportable(cfg: DictConfig, module: L.LightningModule, trainer: L.Trainer) -> L.LightningModule:
    """The best weights in a whole module on rank 0 (FSDP / ZeRO-3: a fresh module loaded with the full weights)."""
    from lightning.pytorch.strategies import FSDPStrategy

    sharded = isinstance(trainer.strategy, FSDPStrategy) or getattr(
        trainer.strategy, "zero_stage_3", False
    )
    path = export_checkpoint(trainer)
    if sharded and not path:
        raise RuntimeError(
            "a sharded strategy needs a checkpoint to export from: keep callbacks.checkpoint"
        )
    target = instantiate(cfg.module) if sharded else module
    if path:
        log(f"exporting the weights of {path}")
        missing = target.load_state_dict(checkpoint_state(path), strict=False).unexpected_keys
        if missing:
            raise RuntimeError(
                f"{path}: {len(missing)} weights match no parameter of the module, e.g. {missing[:3]}"
            )
    return target


def benchmark_outputs(evaluation: DictConfig, run_dir: Path) -> dict[str, tuple[DictConfig, Path]]:
    """{name: (benchmark config, output dir)}: the run dir, or benchmarks/<name>/ for each of a set."""
    if evaluation.get("benchmarks"):
        return {
            name: (node, run_dir / "benchmarks" / name)
            for name, node in evaluation.benchmarks.items()
            if node
        }
    return {evaluation.benchmark.name: (evaluation.benchmark, run_dir)}


def export_initial(cfg: DictConfig, module: L.LightningModule, run_dir: Path) -> Path | None:
    """The model before training, exported once to <run dir>/export_init (None when that stage is off); built from the
    seeded config, so a resumed run finds the same."""
    exported = (cfg.get("evaluation") or {}).get("exported")
    if not exported or not exported.get("initial"):
        return None
    target = run_dir / "export_init"
    if not target.is_dir():  # written whole (atomic_dir) or not at all
        atomic_dir(target, module.export, replace=False)
    return target


def exported_stages(
    exported, module, export_dir: Path, initial_dir: Path | None, before: list[Stage]
) -> list[Stage]:
    """The untrained start (when exported) and the trained export, reranking the **same** input: ``exported.source``,
    else the output of the last stage ``before`` them (the first stage when none), never one another's output."""
    if not exported:
        return []
    source = exported.get("source") or (before[-1].name if before else FIRST_STAGE)
    dirs = [(exported.initial, initial_dir)] if initial_dir is not None else []
    return [
        Stage(name, module.export_reranker(directory), exported.depth, source)
        for name, directory in [*dirs, (exported.name, export_dir)]
    ]


def evaluate_export(
    cfg: DictConfig, module, export_dir: Path, run_dir: Path, initial_dir: Path | None = None
) -> dict[str, dict]:
    """first_stage → stages → initial and exported model, per benchmark → {benchmark: {stage: metrics}}."""
    ev = cfg.evaluation
    stages = stages_from_config(ev.get("stages") or {}, instantiate, "evaluation.stages")
    exported = ev.get("exported")
    stages += exported_stages(exported, module, export_dir, initial_dir, stages)
    results = {}
    for name, (node, out_dir) in benchmark_outputs(ev, run_dir).items():
        benchmark = instantiate(node)
        result = run_pipeline(benchmark, stages, out_dir)
        print(f"\n## {benchmark.name}\n\n{result['table']}")
        against = write_against_paper(
            out_dir,
            result["metrics"],
            benchmark.name,
            cfg,
            hydra_choices(),
            exported.name if exported else None,
        )
        if against:
            print(against)
        results[name] = result["metrics"]
    return results


def objective(results: dict[str, dict], metric: str) -> float | None:
    """The sweep objective: the last stage's ``metric`` averaged over benchmarks (None if any lacks it)."""
    values = [list(metrics.values())[-1].get(metric) for metrics in results.values()]
    return None if not values or None in values else sum(values) / len(values)


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The stage's data module; Stage 1 gets the teacher when the loss distils (``DistillLoss.needs_teacher``; built
    only if its cache must be computed), Stage 2 whenever the config names one."""
    if not cfg.get("teacher"):
        return instantiate(cfg.data)
    teacher = Teacher(to_plain(cfg.teacher), partial(instantiate, cfg.teacher))
    loss = cfg.module.get("loss")  # Stage 2 has none: its data reads the teacher's orders
    return instantiate(
        cfg.data, teacher=teacher if loss is None or instantiate(loss).needs_teacher else None
    )
