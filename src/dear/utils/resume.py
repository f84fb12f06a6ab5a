"""What a resumed run needs besides its checkpoint to continue as if never stopped.

- ``SeedEveryStep``: Lightning checkpoints do not hold RNG states (and restoring them would not
  be enough: a resumed run draws from the global RNG in places an uninterrupted one does not,
  e.g. a new DataLoader iterator's base seed). Seeding before every training batch from
  (seed, rank, epoch, batch index) makes dropout a function of the step alone.
- ``AppendingCSVLogger``: Lightning's CSV writer deletes an existing ``metrics.csv`` when it
  starts; this one keeps the rows already there and appends (a resumed run loses no history).
"""

from __future__ import annotations

import csv

import numpy as np
import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch import Callback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class SeedEveryStep(Callback):
    """Seeds torch's RNGs (CPU and every GPU) before each training batch."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def step_seed(self, rank: int, epoch: int, batch_idx: int) -> int:
        return int(np.random.SeedSequence((self.seed, rank, epoch, batch_idx)).generate_state(1)[0])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        torch.manual_seed(self.step_seed(trainer.global_rank, trainer.current_epoch, batch_idx))


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Keep an existing metrics file; know its columns, so new rows extend its header."""
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class AppendingCSVLogger(CSVLogger):
    """``CSVLogger`` that appends to ``<save_dir>/<name>/<version>/metrics.csv``."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
