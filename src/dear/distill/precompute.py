"""Precompute the frozen teacher's logits for a training config, once (resumable, on N processes).

    python -m dear.distill.precompute                       # the built-in default's teacher
    python -m dear.distill.precompute teacher=rankllama_13b data=msmarco
    # 8 GPUs of one node (Lightning DDP launches the processes; 2 CPU processes: accelerator=cpu)
    python -m dear.distill.precompute teacher=rankllama_13b data=msmarco trainer=ddp trainer.devices=8
    # or started by torchrun / SLURM (Lightning reads their environment and launches nothing)
    torchrun --nproc_per_node=2 -m dear.distill.precompute trainer=ddp trainer.devices=2 trainer.accelerator=cpu
    python -m dear.distill.precompute -m launcher=slurm trainer=ddp trainer.num_nodes=2 hydra.launcher.partition=gpu

Takes ``train.py``'s config, so it writes exactly the cache training reads. Shard i belongs to rank i mod world size;
after a barrier rank 0 records checksums and writes ``complete``. A re-run with any process count scores only what is
missing.
"""

from __future__ import annotations

from functools import partial

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from dear.cli import entry_point, run
from dear.config import CONF_DIR, prepare_environment, register_resolvers
from dear.distill.teacher import Teacher
from dear.utils.plain import to_plain
from dear.utils.progress import log

register_resolvers()


class TeacherScoring(L.LightningModule):
    """This rank's cache shards in one predict step (one batch of shard indices: Lightning refuses an empty loader);
    the teacher is built on the rank's device only if a shard needs scoring."""

    def __init__(self, datamodule):
        super().__init__()
        self.data, self.plan, self.teacher = datamodule, None, None

    def predict_dataloader(self) -> DataLoader:
        self.data.load_sources()
        logits = self.data.teacher
        self.plan = logits.cache.start(logits.fingerprint, self.data.all_queries, logits.shard_size)
        owned = list(range(self.global_rank, len(self.plan.shards), self.trainer.world_size))
        log(
            f"rank {self.global_rank}/{self.trainer.world_size}: {len(owned)} of {len(self.plan.shards)} shards"
        )
        return DataLoader([owned], batch_size=None)

    def predict_step(self, shards: list[int], batch_idx: int) -> None:
        # The teacher's own dtype, as single-process: trainer.precision is not in the cache fingerprint.
        with torch.autocast(self.device.type, enabled=False):
            scored = self.data.teacher.cache.build_shards(
                self.plan, [int(i) for i in shards], self._teacher, self.data.docs
            )
        log(
            f"rank {self.global_rank}: scored {scored} of its {len(shards)} shards (the rest were valid)"
        )

    def _teacher(self):
        if self.teacher is None:
            self.teacher = self.data.teacher.teacher.build(device=str(self.device))
        return self.teacher


def precompute(cfg: DictConfig) -> None:
    prepare_environment(cfg)
    # wanted whatever alpha is
    teacher = Teacher(to_plain(cfg.teacher), partial(instantiate, cfg.teacher))
    datamodule = instantiate(cfg.data, teacher=teacher)
    trainer = instantiate(
        cfg.trainer,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=HydraConfig.get().runtime.output_dir,
    )
    module = TeacherScoring(datamodule)
    trainer.predict(module, return_predictions=False)
    trainer.strategy.barrier("teacher-cache-shards")  # every rank's shards are on disk
    if trainer.is_global_zero:
        datamodule.teacher.cache.finish(module.plan)
        log(f"teacher cache complete: {datamodule.teacher.cache.dir}")


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
@entry_point
def main(cfg: DictConfig) -> None:
    precompute(cfg)


if __name__ == "__main__":
    run(main)
