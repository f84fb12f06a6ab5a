"""Train a model with Lightning, export it, and evaluate it with the harness.

    python train.py                                   # Stage 1 built-in default (SciFact, MiniLM, CPU)
    python train.py experiment=dearp_llama8b_bce      # a paper row (GPU)
    python train.py --config-name train_listwise      # Stage 2 listwise SFT

Flow: datamodule + module from config → Trainer.fit (resumes from <run dir>/checkpoints/last.ckpt)
→ best checkpoint exported with save_pretrained → evaluation.benchmark reranked by the configured
stages plus the exported model, metrics.json + table in the run directory.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dear.config import prepare_environment, register_resolvers
from dear.eval.pipeline import Stage, run_pipeline, stages_from_config
from dear.utils.io import atomic_write_json
from dear.utils.progress import Timings, log

register_resolvers()


def resume_path(run_dir: Path) -> str | None:
    last = run_dir / "checkpoints" / "last.ckpt"
    return str(last) if last.is_file() else None


def load_best(module: L.LightningModule, trainer: L.Trainer) -> None:
    """Load the best checkpoint's weights (by the monitored metric) before export."""
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if best and Path(best).is_file():
        log(f"exporting the best checkpoint {best}")
        module.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["state_dict"], strict=False)


def evaluate_export(cfg: DictConfig, module, export_dir: Path, run_dir: Path) -> dict:
    """first_stage → configured stages → the exported model, on cfg.evaluation.benchmark."""
    ev = cfg.evaluation
    stages = stages_from_config(ev.get("stages") or {})
    exported = ev.get("exported")
    if exported:
        stages.append(Stage(exported.name, module.export_reranker(export_dir), exported.depth, exported.get("source")))
    benchmark = instantiate(ev.benchmark)
    result = run_pipeline(benchmark, stages, run_dir)
    print(f"\n## {benchmark.name}\n\n{result['table']}")
    return result


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    prepare_environment(cfg)
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.module)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(run_dir))
    timings = Timings(run_dir / "timings.json")
    with timings("fit"):  # includes the teacher precompute when its cache is missing
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_path(run_dir))
    timings.update(getattr(datamodule, "timings", {}))
    if not trainer.is_global_zero:
        return None
    if getattr(datamodule, "cache_record", None) and datamodule.cache_record():
        atomic_write_json(run_dir / "teacher_cache.json", datamodule.cache_record())
    with timings("export"):
        load_best(module, trainer)
        export_dir = module.export(run_dir / "export")
        OmegaConf.save(cfg, export_dir / "config.yaml", resolve=True)
    log(f"exported to {export_dir}")
    if not cfg.get("evaluation"):
        return None
    with timings("evaluation"):
        metrics = evaluate_export(cfg, module, export_dir, run_dir)["metrics"]
    print(timings.table())
    return list(metrics.values())[-1].get(cfg.evaluation.get("objective", "nDCG@10"))  # the sweep objective


if __name__ == "__main__":
    main()
