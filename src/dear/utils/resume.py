"""What a resumed run needs besides its checkpoint to continue as if never stopped.

- ``SeedEveryStep``: Lightning checkpoints do not hold RNG states (and restoring them would not
  be enough: a resumed run draws from the global RNG in places an uninterrupted one does not,
  e.g. a new DataLoader iterator's base seed). Seeding before every training batch from
  (seed, rank, epoch, batch index) makes dropout a function of the step alone.
- ``AppendingCSVLogger``: Lightning's CSV writer deletes an existing ``metrics.csv`` when it
  starts; this one keeps the rows already there and appends (a resumed run loses no history).
- ``restore_loader_states``: the checkpoint's training-loader position, applied even when
  ``configure_optimizers`` asked for ``trainer.estimated_stepping_batches`` (Lightning then builds
  the loader before it restores the checkpoint, and drops the position: the resumed run would
  restart the epoch's batches).
"""

from __future__ import annotations

import csv

import lightning as L
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


def restore_loader_states(trainer) -> bool:
    """Give the training loaders the positions of the checkpoint being resumed, if Lightning left
    them pending, and restart the fetcher's iterator; → whether it did. Call from ``on_train_start``.

    ``trainer.estimated_stepping_batches`` (in ``configure_optimizers``, for the LR schedule) makes
    Lightning build the train loader — and prefetch its first batch — during ``strategy.setup``,
    before ``restore_training_state`` reads the checkpoint; the fit loop then never calls
    ``setup_data`` again, so the loaders' ``load_state_dict`` is never called and a run resumed
    mid-epoch trains on the epoch's first batches again (Lightning issue #20550; private API of
    Lightning 2.6: ``_FitLoop._combined_loader_states_to_load``). This does what ``setup_data``
    does after a restore: load the states, then ``iter`` the fetcher (dropping the batch it
    prefetched from the stale iterator). A no-op on a fresh run and where Lightning loaded them."""
    fit_loop = trainer.fit_loop
    if not hasattr(fit_loop, "_combined_loader_states_to_load"):  # another Lightning version
        if trainer.ckpt_path:  # resuming: its batches may not be the uninterrupted run's; say so
            raise RuntimeError(
                f"Lightning {L.__version__} keeps no pending loader states in its fit loop: "
                "dear.utils.resume.restore_loader_states needs updating (requirements.txt pins it)"
            )
        return False
    if not fit_loop._combined_loader_states_to_load or fit_loop._combined_loader is None:
        return False
    fit_loop._load_combined_loader_states()
    if (
        fit_loop._combined_loader_states_to_load
    ):  # not restarting: Lightning would not load them either
        return False
    iter(fit_loop._data_fetcher)
    return True


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
