"""Checkpoints that survive a kill or a full disk, load without running code, and resume exactly.

- ``AtomicCheckpointIO``: Lightning's checkpoint IO, writing a temp file in the destination
  directory and ``os.replace``-ing it (Lightning's own goes through an fsspec transaction whose
  temp file lives in /tmp: the final copy across filesystems is not atomic, and a full disk leaves
  a cut-short ``last.ckpt``). Loading is always ``weights_only=True``.
- ``LastCheckpoint``: a ``ModelCheckpoint`` that writes ``last.ckpt`` every N steps whatever the
  monitor, after the validation of that step when there is one.
- ``resume_checkpoint``: the newest checkpoint of a run that loads; the others are set aside, and
  the temporary files of writes a kill cut short are deleted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dear.utils.io import atomic_write
from dear.utils.progress import log


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint file's contents on CPU, unpickled with ``weights_only=True``: tensors,
    containers and primitives only, so a crafted file cannot run code."""
    return torch.load(path, map_location="cpu", weights_only=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temp file beside the target, fsync, then ``os.replace``: readers (and
    a resumed run) see the previous checkpoint or the new one, never a partial file."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        atomic_write(path, lambda f: torch.save(checkpoint, f), binary=True)
        _fsync_dir(path.parent)  # the rename itself survives a power cut

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        # Whatever the caller asks: a checkpoint path may come from a user or another checkpoint.
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LastCheckpoint(ModelCheckpoint):
    """Writes ``last.ckpt`` every ``every_n_train_steps`` and/or ``train_time_interval`` and after
    every validation, regardless of any monitored metric, overwriting it in place (no
    ``last-v1.ckpt`` beside a stale ``last.ckpt``).

    A step that validation follows is saved at the end of that validation instead: a checkpoint
    taken before it would resume past it (Lightning does not re-run it), and the resumed run would
    miss a validation — perhaps a best checkpoint — that the uninterrupted run had. Nothing is saved
    in the middle of a gradient accumulation (the accumulated gradients are in no checkpoint)."""

    def __init__(
        self, dirpath: str, every_n_train_steps: int | None = None, train_time_interval=None
    ):
        super().__init__(
            dirpath=dirpath,
            monitor=None,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval,
            save_on_train_epoch_end=False,
            enable_version_counter=False,
        )

    # Lightning has no public API for "will the loop validate after this batch" or "is this batch
    # inside a gradient accumulation" (its own rule counts batches across epochs and defers to
    # strategies that accumulate themselves): the loop's own private checks are called, and a
    # Lightning without them fails here by name rather than resuming inexactly (requirements.txt pins it).
    _PRIVATE = ("_should_accumulate", "_should_check_val_fx")

    def on_train_start(self, trainer, pl_module) -> None:
        missing = [name for name in self._PRIVATE if not hasattr(trainer.fit_loop.epoch_loop, name)]
        if missing or not hasattr(trainer.fit_loop, "_data_fetcher"):
            import lightning

            raise RuntimeError(
                f"Lightning {lightning.__version__}: the training loops lack "
                f"{missing or '_data_fetcher'}; dear.utils.checkpoints.LastCheckpoint needs updating"
            )
        super().on_train_start(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        epoch_loop = trainer.fit_loop.epoch_loop
        # Never between the batches of one optimizer step (gradient accumulation; a time interval or
        # a validation can fall there): the gradients accumulated so far are not in a checkpoint,
        # and the resumed run would step on the last batches' alone. The step's last batch saves.
        if epoch_loop._should_accumulate():
            return
        # The very check the epoch loop makes right after this hook (private API of Lightning 2.6);
        # with no validation batches the loop skips validation and its end hook: save now.
        if sum(trainer.num_val_batches) > 0 and epoch_loop._should_check_val_fx(
            trainer.fit_loop._data_fetcher
        ):
            self._defer_save_until_validation = True  # ModelCheckpoint.on_validation_end saves then
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def _global_step(path: Path) -> int:
    return int(load_checkpoint(path).get("global_step", -1))


def set_aside(path: Path, reason: BaseException) -> Path | None:
    """Rename an unloadable checkpoint out of the way (kept for inspection, never deleted)."""
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        path.rename(target)
    except FileNotFoundError:  # another rank of the same run set it aside first
        return None
    log(
        f"unreadable checkpoint set aside: {path} does not load ({type(reason).__name__}: {reason}); renamed {target}"
    )
    return target


def remove_cut_short_writes(directory: Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that never finished (the run was killed
    between ``AtomicCheckpointIO``'s temp file and its rename): never a checkpoint, each as large
    as one. Called when a run starts, before it writes any; → the files deleted."""
    removed = []
    for path in sorted(directory.glob(".*.ckpt.*.tmp")):
        if path.is_file():
            path.unlink(missing_ok=True)  # another rank of the same run may have removed it first
            log(f"removed a checkpoint write that was cut short: {path}")
            removed.append(path)
    return removed


def resume_checkpoint(directory: str | Path) -> str | None:
    """The checkpoint a restarted run continues from: of the ``*.ckpt`` files in ``directory``,
    the one with the highest global step that loads (``last.ckpt`` on a tie). Files that do not
    load are set aside; temporary files of writes that were cut short are deleted; a DeepSpeed
    checkpoint directory ``last.ckpt`` is taken as it is."""
    directory = Path(directory)
    remove_cut_short_writes(directory)
    if (directory / "last.ckpt").is_dir():
        return str(directory / "last.ckpt")
    best: tuple[int, bool, Path] | None = None
    for path in sorted(p for p in directory.glob("*.ckpt") if p.is_file()):
        try:
            step = _global_step(path)
        except Exception as err:  # truncated zip, bad pickle, disallowed global: all unusable
            set_aside(path, err)
            continue
        candidate = (step, path.name == "last.ckpt", path)
        best = candidate if best is None or candidate[:2] > best[:2] else best
    return str(best[2]) if best else None
