"""What ``train.py`` wires together: the data module (with its teacher), the checkpoint a
restarted run resumes from, the checkpoint to export and the module that holds its weights, the
untrained model's export, and the evaluation of the exports on the configured benchmarks."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from dear.config import hydra_choices
from dear.distill.teacher import Teacher
from dear.eval.pipeline import Stage, run_pipeline, stages_from_config
from dear.report.against import write_against_paper
from dear.utils.checkpoints import load_checkpoint, resume_checkpoint
from dear.utils.io import atomic_dir
from dear.utils.plain import to_plain
from dear.utils.progress import log


def resume_path(run_dir: Path) -> str | None:
    """The checkpoint a restarted run (e.g. requeued on SLURM) continues from: the newest of
    <run dir>/checkpoints that loads (those that do not are reported and set aside), or the
    directory DeepSpeed writes."""
    return resume_checkpoint(run_dir / "checkpoints")


def checkpoint_state(path: str) -> dict:
    """A checkpoint's ``state_dict``: a file, or a DeepSpeed checkpoint directory (its partitions
    gathered into one fp32 state dict with Lightning's converter)."""
    if Path(path).is_dir():
        from lightning.pytorch.utilities.deepspeed import (
            convert_zero_checkpoint_to_fp32_state_dict,
        )

        merged = Path(path).with_suffix(".fp32.pt")
        convert_zero_checkpoint_to_fp32_state_dict(path, str(merged))
        path = str(merged)
    return load_checkpoint(path)["state_dict"]


def export_checkpoint(trainer: L.Trainer) -> str:
    """The checkpoint to export: the monitored callback's best, else the latest "last"; "" if
    none. Looked up by file name in the callback's own directory: the recorded path comes from
    a checkpoint's state, and may point anywhere (a moved run directory, a crafted file)."""
    callbacks = sorted(trainer.checkpoint_callbacks, key=lambda c: c.monitor is None)  # monitored first
    for callback in callbacks:
        for recorded in (callback.best_model_path, callback.last_model_path):
            if recorded:
                path = Path(callback.dirpath) / Path(recorded).name
                if not path.exists():
                    raise FileNotFoundError(f"{path}: the checkpoint to export (recorded as {recorded}) is missing")
                return str(path)
    return ""


def exportable(cfg: DictConfig, module: L.LightningModule, trainer: L.Trainer) -> L.LightningModule:
    """The best checkpoint's weights in a whole module, ready to export on rank 0.

    Under DDP the in-memory module is whole; FSDP and DeepSpeed ZeRO-3 keep it sharded across
    ranks, so a fresh module is built and given the checkpoint's weights (checkpoints hold full,
    unsharded trainable weights: FSDP with ``state_dict_type: full``, DeepSpeed converted)."""
    from lightning.pytorch.strategies import FSDPStrategy

    sharded = isinstance(trainer.strategy, FSDPStrategy) or getattr(trainer.strategy, "zero_stage_3", False)
    path = export_checkpoint(trainer)
    if sharded and not path:
        raise RuntimeError("a sharded strategy needs a checkpoint to export from: keep callbacks.checkpoint")
    target = instantiate(cfg.module) if sharded else module
    if path:
        log(f"exporting the weights of {path}")
        missing = target.load_state_dict(checkpoint_state(path), strict=False).unexpected_keys
        if missing:
            raise RuntimeError(f"{path}: {len(missing)} weights match no parameter of the module, e.g. {missing[:3]}")
    return target


def benchmark_outputs(evaluation: DictConfig, run_dir: Path) -> dict[str, tuple[DictConfig, Path]]:
    """{name: (benchmark config, output dir)}: evaluation.benchmark writes into the run directory
    itself; a set (evaluation.benchmarks: {name: benchmark}, null: left out) into benchmarks/<name>/ each."""
    if evaluation.get("benchmarks"):
        return {name: (node, run_dir / "benchmarks" / name) for name, node in evaluation.benchmarks.items() if node}
    return {evaluation.benchmark.name: (evaluation.benchmark, run_dir)}


def export_initial(cfg: DictConfig, module: L.LightningModule, run_dir: Path) -> Path | None:
    """The model before its first optimizer step (the head and adapters the run starts from),
    exported to <run dir>/export_init once, for the ``evaluation.exported.initial`` stage; None
    when that stage is off. Built from the seeded config, so a resumed run finds the same one."""
    exported = (cfg.get("evaluation") or {}).get("exported")
    if not exported or not exported.get("initial"):
        return None
    target = run_dir / "export_init"
    if not target.is_dir():  # written whole (atomic_dir) or not at all
        atomic_dir(target, module.export, replace=False)
    return target


def evaluate_export(cfg: DictConfig, module, export_dir: Path, run_dir: Path,
                    initial_dir: Path | None = None) -> dict[str, dict]:
    """first_stage → configured stages → the model before training (``initial_dir``, when
    exported) → the exported model, on each benchmark. → {benchmark: {stage: {metric: value}}}"""
    ev = cfg.evaluation
    stages = stages_from_config(ev.get("stages") or {}, instantiate, "evaluation.stages")
    exported = ev.get("exported")
    if exported and initial_dir is not None:
        stages.append(Stage(exported.initial, module.export_reranker(initial_dir), exported.depth,
                            exported.get("source")))
    if exported:
        stages.append(Stage(exported.name, module.export_reranker(export_dir), exported.depth, exported.get("source")))
    results = {}
    for name, (node, out_dir) in benchmark_outputs(ev, run_dir).items():
        benchmark = instantiate(node)
        result = run_pipeline(benchmark, stages, out_dir)
        print(f"\n## {benchmark.name}\n\n{result['table']}")
        against = write_against_paper(out_dir, result["metrics"], benchmark.name, cfg, hydra_choices(),
                                      exported.name if exported else None)
        if against:
            print(against)
        results[name] = result["metrics"]
    return results


def objective(results: dict[str, dict], metric: str) -> float | None:
    """The sweep objective: the last stage's ``metric``, averaged over the benchmarks (None if
    any lacks it)."""
    values = [list(metrics.values())[-1].get(metric) for metrics in results.values()]
    return None if not values or None in values else sum(values) / len(values)


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The stage's data module. Stage 1 (a config with a teacher) hands it the teacher when the
    loss distils one (the loss owns α: ``DistillLoss.needs_teacher``); the teacher itself is built
    only if its cache must be computed. Stage 2 (no loss) gets the teacher whenever the config
    names one: its teacher-permutation data orders windows with the teacher's logits."""
    if not cfg.get("teacher"):
        return instantiate(cfg.data)
    teacher = Teacher(to_plain(cfg.teacher), partial(instantiate, cfg.teacher))
    loss = cfg.module.get("loss")  # Stage 2 has none: its data reads the teacher's orders
    return instantiate(cfg.data, teacher=teacher if loss is None or instantiate(loss).needs_teacher else None)
