"""Train a model with Lightning, export it, and evaluate it with the harness.

    python train.py                                   # Stage 1 built-in default (SciFact, MiniLM, CPU)
    python train.py experiment=dearp_llama8b_bce      # a paper row (GPU)
    python train.py --config-name train_listwise      # Stage 2 listwise SFT

Flow: datamodule + module from config → the untrained module exported (export_init/, evaluated
as stage ``student_init``) → Trainer.fit (resumes from the newest checkpoint of
<run dir>/checkpoints that loads, normally last.ckpt)
→ best checkpoint exported with save_pretrained → evaluation.benchmark reranked by the configured
stages plus the exported model, metrics.json + table in the run directory (or, with a benchmark
set in evaluation.benchmarks, e.g. benchmark_set=paper, the same per benchmark in
benchmarks/<name>/). Every run directory also gets repro.json (dear.utils.repro); loggers get
the resolved config and W&B the final metrics (dear.utils.tracking).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dear.cli import entry_point, run
from dear.config import prepare_environment, register_resolvers
from dear.errors import positive_depth
from dear.eval.pipeline import check_depths
from dear.training import (
    build_datamodule,
    evaluate_export,
    export_initial,
    exportable,
    objective,
    resume_path,
)
from dear.utils import tracking
from dear.utils.io import atomic_write_json
from dear.utils.progress import Timings, log
from dear.utils.repro import write_record

register_resolvers()


def fit_export_evaluate(cfg: DictConfig, run_dir: Path, loggers: list) -> float | None:
    """Train, export the best checkpoint, evaluate it; → the sweep objective (global zero only).
    Both stages' modules export with ``export(dir)`` and run the export with ``export_reranker(dir)``;
    both data modules report ``timings`` and ``records()`` (files for the run directory)."""
    datamodule = build_datamodule(cfg)
    module = instantiate(cfg.module)
    # null: switched off
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(run_dir)
    )
    timings = Timings(run_dir / "timings.json")
    initial_dir = export_initial(cfg, module, run_dir) if trainer.is_global_zero else None
    with timings("fit"):  # includes the teacher precompute when its cache is missing
        trainer.fit(
            module, datamodule=datamodule, ckpt_path=resume_path(run_dir), weights_only=True
        )
    timings.update(datamodule.timings)
    if not trainer.is_global_zero:
        return None
    for name, record in datamodule.records().items():
        atomic_write_json(run_dir / name, record)
    with timings("export"):
        export_dir = exportable(cfg, module, trainer).export(run_dir / "export")
        OmegaConf.save(cfg, export_dir / "config.yaml", resolve=True)
    log(f"exported to {export_dir}")
    if not cfg.get("evaluation"):
        return None
    with timings("evaluation"):
        results = evaluate_export(cfg, module, export_dir, run_dir, initial_dir)
    tracking.log_final(loggers, results)
    print(timings.table())
    return objective(results, cfg.evaluation.get("objective", "nDCG@10"))


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
@entry_point(results=True)
def main(cfg: DictConfig) -> float | None:
    prepare_environment(cfg)
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    write_record(run_dir, cfg)
    if cfg.get("evaluation"):  # checked now, not after training
        check_depths(cfg.evaluation.get("stages") or {}, "evaluation.stages")
        if cfg.evaluation.get("exported"):
            positive_depth(cfg.evaluation.exported.depth, "evaluation.exported.depth")
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    tracking.start(loggers, cfg)
    try:
        return fit_export_evaluate(cfg, run_dir, loggers)
    finally:
        tracking.finish(loggers)


if __name__ == "__main__":
    run(main)
