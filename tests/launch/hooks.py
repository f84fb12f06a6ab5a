"""Test hooks the SLURM jobs of tests/launch/test_slurm_cluster.py load (``+callbacks.hold=...``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L


class HoldForPreemption(L.Callback):
    """In a SLURM job's first attempt only (``SLURM_JOB_ID`` set, ``SLURM_RESTART_COUNT`` not),
    at the start of the batch after global step ``step``, writes ``marker`` and waits for the
    cluster to stop the job: SIGTERM (``scontrol requeue``; Lightning then stops at the next
    batch, as it does in any step) or SIGUSR2 (submitit requeues the job and exits). Anywhere
    else — a local run, the requeued attempt — it does nothing, so runs with and without it train
    alike. A run ``step`` steps in has checkpoints behind it and steps still to do."""

    def __init__(self, step: int, marker: str, limit_s: float = 300):
        self.step, self.marker, self.limit_s = step, marker, limit_s

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if (
            trainer.global_step != self.step
            or not os.environ.get("SLURM_JOB_ID")
            or os.environ.get("SLURM_RESTART_COUNT")
        ):
            return
        Path(self.marker).write_text(f"{os.environ['SLURM_JOB_ID']} held at step {self.step}\n")
        deadline = time.monotonic() + self.limit_s
        while not trainer.received_sigterm:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"held {self.limit_s} s at step {self.step} and the cluster did not stop the job"
                )
            time.sleep(0.05)
