"""SLURM through hydra-submitit-launcher, as clusters are: CPU partitions and no accounting storage.

``conf/launcher/slurm.yaml`` installs ``SlurmLaunch`` as a Hydra callback. It runs in the process
that submits the sweep (``python train.py -m launcher=slurm …``), before Hydra builds the launcher:

- GPUs: ``hydra.launcher.gpus_per_node`` 0 requests none (no ``--gpus-per-node``, no ``--gres``:
  submitit would write ``--gpus-per-node=0``, which not every SLURM accepts on a node without
  GPUs); left at its default (``trainer.devices``) with a CPU trainer (``trainer.accelerator:
  cpu``), none either. Tasks per node (``trainer.devices``, 1 without a trainer), nodes and GPUs
  are checked: a value that cannot work is one line on stderr and exit status 2, before anything
  is submitted.
- Job states: submitit polls ``sacct``, which fails on a cluster without accounting storage
  (every poll logged "Bypassing sacct error … status may be inaccurate", and a job that died
  without writing its result was never seen to end). ``QueueWatcher`` asks ``squeue`` instead
  once ``sacct`` has failed, says so once, and counts a job the controller no longer lists as
  ended (its result file, or its absence, then tells how).

Preemption and time limits need nothing here: SLURM (``--signal=USR2@signal_delay_s``) or an
administrator (``scontrol requeue``) stops the job; submitit's USR2 handler requeues it
(``scontrol requeue``) and the requeued job resumes from ``<run dir>/checkpoints/last.ckpt``
(``dear.training.resume_path``), exactly (``dear.utils.resume``).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException
from submitit.slurm.slurm import SlurmInfoWatcher

log = logging.getLogger(__name__)

# conf/launcher/slurm.yaml's gpus_per_node, unresolved: the default, which follows the trainer.
DEFAULT_GPUS = "${oc.select:trainer.devices,1}"
EXIT_USER_ERROR = 2  # dear.cli's: our errors end the process with one line and this status
# Job states in which a job has not ended (squeue/sacct --states); anything else has ended.
ACTIVE = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESV_DEL_HOLD",
    "CONFIGURING",
    "COMPLETING",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
    "SUSPENDED",
    "PREEMPTED",
    "READY",
    "UNKNOWN",
}
ENDED = "ENDED"  # the state of a job squeue no longer lists


def gpu_request(launcher: dict, raw_gpus: Any, accelerator: str | None) -> int | None:
    """GPUs per node to ask for (None: no GPU option at all), from the resolved launcher params,
    the unresolved ``gpus_per_node`` and the trainer's accelerator (None without a trainer)."""
    for field in ("nodes", "tasks_per_node"):
        value = launcher.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            hint = " (one task per device: trainer.devices)" if field == "tasks_per_node" else ""
            raise ValueError(
                f"hydra.launcher.{field}: expected a whole number >= 1{hint}, found {value!r}"
            )
    gpus = launcher.get("gpus_per_node")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0):
        raise ValueError(
            f"hydra.launcher.gpus_per_node: expected a whole number >= 0, found {gpus!r}"
        )
    if gpus == 0 or (raw_gpus == DEFAULT_GPUS and accelerator == "cpu"):
        return None
    return gpus


class SlurmLaunch(Callback):
    """Hydra callback of ``launcher=slurm`` (see the module's docstring)."""

    def __init__(self, poll_s: int = 60):
        self.poll_s = poll_s

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.launcher
        if not str(launcher.get("_target_", "")).endswith("SlurmLauncher"):
            return
        raw = OmegaConf.to_container(launcher, resolve=False).get("gpus_per_node")
        try:
            params = OmegaConf.to_container(launcher, resolve=True)
            gpus = gpu_request(
                params, raw, OmegaConf.select(config, "trainer.accelerator", default=None)
            )
        except (
            ValueError,
            OmegaConfBaseException,
        ) as err:  # Hydra makes a callback's errors warnings: stop
            message = str(err).splitlines()[0]
            if isinstance(err, OmegaConfBaseException):
                message = f"{err.full_key}: {message}"
            print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_USER_ERROR) from None
        with read_write(config.hydra), open_dict(config.hydra):
            launcher.gpus_per_node = gpus
        install_watcher(self.poll_s)


def install_watcher(poll_s: int = 60) -> None:
    """Make submitit's SLURM jobs read their state through ``QueueWatcher`` (in this process)."""
    from submitit.slurm import slurm

    if not isinstance(slurm.SlurmJob.watcher, QueueWatcher):
        slurm.SlurmJob.watcher = QueueWatcher(delay_s=poll_s)


class QueueWatcher(SlurmInfoWatcher):
    """submitit's SLURM state watcher, asking ``squeue`` when ``sacct`` cannot answer (no
    accounting storage): one line says so, once; no warning per poll."""

    def __init__(self, delay_s: int = 60) -> None:
        super().__init__(delay_s=delay_s)
        self.accounting = True  # until sacct fails

    def is_done(self, job_id: str, mode: str = "standard") -> bool:
        return self.get_state(job_id, mode=mode).upper().split()[0] not in ACTIVE

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        info = self._from_sacct(command) if self.accounting else None
        if info is None:
            info = self._from_squeue(
                {job.split("_")[0] for job in self._registered - self._finished}
            )
        if info is not None:
            self._info_dict.update(info)
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def _from_sacct(self, command: list[str]) -> dict | None:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as err:
            reason = f"{type(err).__name__}: {err}"
        else:
            if done.returncode == 0:
                return self.read_info(done.stdout)
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        self.accounting = False
        log.info(f"job states from squeue: sacct cannot answer ({reason})")
        return None

    def _from_squeue(self, main_ids: set[str]) -> dict | None:
        """{job id: {"JobID", "State"}} of the registered jobs (array elements one by one); a job
        the controller no longer lists has ended. None when squeue itself failed."""
        command = [
            "squeue",
            "--noheader",
            "--array",
            "--states=all",
            "--format=%i|%T",
            f"--jobs={','.join(sorted(main_ids))}",
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as err:
            log.warning(f"squeue failed ({type(err).__name__}: {err}); job states unchanged")
            return None
        listed: dict[str, dict[str, str]] = {}
        if done.returncode != 0:
            if "Invalid job id" not in done.stderr:  # e.g. the controller does not answer
                log.warning(
                    f"squeue failed ({done.stderr.strip() or done.returncode}); job states unchanged"
                )
                return None
        else:
            listed = self.read_info("JobID|State\n" + done.stdout)
        info = {}
        for job_id in self._registered - self._finished:
            info[job_id] = listed.get(job_id) or {"JobID": job_id, "State": ENDED}
        return info
