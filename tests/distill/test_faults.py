"""Faults a run must survive: killed mid-training, cut-short or crafted checkpoints, a fresh machine.

Fast tests drive Lightning in-process on the tiny fixture of test_distill_module; the slow ones
kill -9 a real train.py and truncate its last.ckpt."""

from __future__ import annotations

import csv
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from dear.distill.groups import GroupDataset, GroupSampler, ResumableLoader
from dear.distill.sources import TrainQuery
from dear.utils.checkpoints import (
    AtomicCheckpointIO,
    LastCheckpoint,
    load_checkpoint,
    resume_checkpoint,
)
from dear.utils.resume import AppendingCSVLogger, SeedEveryStep
from tests.helpers import ROOT
from tests.helpers.cli import tiny_distillation
from tests.helpers.distill import make


class Killed(Exception):
    """Stands in for kill -9 in-process: raised before a step, after the checkpoint."""


class BatchRecorder(L.Callback):
    """Records each training batch's token ids by global step; raises ``Killed`` at ``kill_at``."""

    def __init__(self, kill_at: int | None = None):
        self.batches: dict[int, torch.Tensor] = {}
        self.kill_at = kill_at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.kill_at:
            raise Killed
        self.batches[trainer.global_step] = batch["input_ids"].clone()


def fit(student, tmp_path, ckpt_dir, recorder, ckpt_path=None):
    """6 steps of 3 groups (2 batches an epoch: 3 epochs), last.ckpt every 3 steps (mid-epoch)."""
    dm, module = make(student, tmp_path, alpha=0.5)
    L.seed_everything(0)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=6,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            LastCheckpoint(str(ckpt_dir), every_n_train_steps=3),
            SeedEveryStep(0),
            recorder,
        ],
    )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_a_run_killed_mid_epoch_resumes_to_the_same_batches_and_weights(tiny_bert_cls, tmp_path):
    whole = BatchRecorder()
    expected = fit(tiny_bert_cls, tmp_path / "a", tmp_path / "a" / "ckpt", whole)

    first, ckpt_dir = BatchRecorder(kill_at=4), tmp_path / "b" / "ckpt"
    with pytest.raises(Killed):
        fit(tiny_bert_cls, tmp_path / "b", ckpt_dir, first)
    path = resume_checkpoint(ckpt_dir)
    assert Path(path).name == "last.ckpt" and load_checkpoint(path)["global_step"] == 3
    second = BatchRecorder()
    resumed = fit(tiny_bert_cls, tmp_path / "b", ckpt_dir, second, ckpt_path=path)

    assert sorted(second.batches) == [3, 4, 5]  # steps 1-3 are not redone
    for step in range(6):
        got = (first.batches | second.batches)[step]
        assert torch.equal(got, whole.batches[step]), f"step {step} trained on other groups"
    for name, tensor in expected.items():  # dropout included: bit for bit
        assert torch.equal(resumed[name], tensor), name


def test_the_loader_state_resumes_mid_epoch_and_forgets_a_finished_epoch():
    queries = [TrainQuery(f"q{i}", "x", ("p",), ("n1", "n2", "n3")) for i in range(7)]
    data = GroupDataset(queries, group_size=2, seed=3)

    def loader():
        return ResumableLoader(
            data,
            batch_size=2,
            sampler=GroupSampler(len(data), seed=3),
            drop_last=True,
            collate_fn=lambda groups: groups,
        )

    whole = loader()
    whole.sampler.set_epoch(1)
    expected = list(whole)
    partial = loader()
    partial.sampler.set_epoch(1)
    it = iter(partial)
    next(it)
    state = partial.state_dict()
    assert state == {"epoch": 1, "batches_done": 1}
    resumed = loader()
    resumed.load_state_dict(state)
    assert list(resumed) == expected[1:] and resumed.state_dict() == {"epoch": 1, "batches_done": 3}
    resumed.sampler.set_epoch(2)  # the next epoch is whole again
    assert len(list(resumed)) == 3 and resumed.state_dict()["batches_done"] == 3
    with pytest.raises(ValueError, match="drop_last"):
        ResumableLoader(data, batch_size=2, sampler=GroupSampler(len(data)))


def save(path: Path, step: int) -> None:
    AtomicCheckpointIO().save_checkpoint(
        {"global_step": step, "state_dict": {"w": torch.ones(64, 64)}}, path
    )


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save(path, 1)

    def full_disk(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        save(path, 2)
    assert load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind


def test_resume_sets_aside_what_does_not_load_and_takes_the_newest_of_the_rest(tmp_path, capsys):
    for name, step in [("last.ckpt", 8), ("last-v1.ckpt", 2), ("best.ckpt", 6)]:
        save(tmp_path / name, step)
    assert resume_checkpoint(tmp_path) == str(tmp_path / "last.ckpt")  # never the stale last-v1
    size = (tmp_path / "last.ckpt").stat().st_size
    os.truncate(tmp_path / "last.ckpt", size // 2)
    assert resume_checkpoint(tmp_path) == str(tmp_path / "best.ckpt")
    aside = list(tmp_path.glob("last.ckpt.corrupt-*"))
    assert len(aside) == 1 and aside[0].stat().st_size == size // 2  # renamed, not deleted
    assert "unreadable checkpoint set aside" in " ".join(capsys.readouterr().err.split())
    assert resume_checkpoint(tmp_path / "nothing") is None


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_a_crafted_checkpoint_does_not_run_code(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.ckpt", "wb") as f:
        pickle.dump({"state_dict": _Payload(marker)}, f)
    torch.save(
        {"state_dict": {"w": torch.zeros(1)}, "payload": _Payload(marker)}, tmp_path / "zip.ckpt"
    )
    for name in ("evil.ckpt", "zip.ckpt"):
        with pytest.raises(pickle.UnpicklingError):
            load_checkpoint(tmp_path / name)
        with pytest.raises(pickle.UnpicklingError):
            # the caller cannot opt out
            AtomicCheckpointIO().load_checkpoint(tmp_path / name, weights_only=False)
    assert not marker.exists()


def test_export_reads_the_recorded_checkpoint_from_the_run_only(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from dear.training import export_checkpoint

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    save(elsewhere / "best.ckpt", 1)
    callback = SimpleNamespace(
        monitor="val/nDCG@10",
        dirpath=str(tmp_path / "run"),
        best_model_path=str(elsewhere / "best.ckpt"),
        last_model_path="",
    )
    trainer = SimpleNamespace(checkpoint_callbacks=[callback])
    with pytest.raises(FileNotFoundError, match="run/best.ckpt"):
        export_checkpoint(trainer)
    save(tmp_path / "run" / "best.ckpt", 2)
    assert export_checkpoint(trainer) == str(tmp_path / "run" / "best.ckpt")


def test_csv_metrics_are_appended_on_resume(tmp_path):
    for step in (0, 1):
        logger = AppendingCSVLogger(save_dir=str(tmp_path), name="csv", version="")
        logger.log_metrics(
            {"train/loss": 1.0 + step} | ({"val/nDCG@10": 0.5} if step else {}), step=step
        )
        logger.save()
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    assert [(r["step"], r["train/loss"], r["val/nDCG@10"]) for r in rows] == [
        ("0", "1.0", ""),
        ("1", "2.0", "0.5"),
    ]


def test_building_a_tiny_model_leaves_the_global_rng_alone(tmp_path):
    from dear.models.tiny import build_tiny

    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = build_tiny(tmp_path / "a", "bert", "seqcls")
    assert torch.equal(torch.get_rng_state(), state)
    build_tiny(tmp_path / "a", "bert", "seqcls")  # already there: nothing built
    assert torch.equal(torch.get_rng_state(), state)
    second = build_tiny(tmp_path / "b", "bert", "seqcls")
    a, b = (
        load_file(Path(first) / "model.safetensors"),
        load_file(Path(second) / "model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- train.py for real: kill -9, truncated checkpoint ---------------------------------------------


class HangAtStep(L.Callback):
    """Test hook: at ``step`` writes ``marker`` and waits to be killed."""

    def __init__(self, step: int, marker: str):
        self.step, self.marker = step, marker

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            Path(self.marker).write_text("waiting for kill -9")
            time.sleep(600)


def train_cli(run_dir, toy_files, flag_jsonl, tiny_bert_cls, *extra, wait=True):
    """train.py on the fixtures of test_train_cli: 8 steps of 2 groups (4 batches an epoch),
    validation every 2 steps, last.ckpt every 3 (and after each validation)."""
    files = {
        "candidates": toy_files["run"],
        "qrels": toy_files["qrels"],
        "docs": toy_files["docs"],
        "queries": toy_files["queries"],
    }
    val = ", ".join(f"{k}: '{v}'" for k, v in files.items())
    args = [
        *tiny_distillation(flag_jsonl, tiny_bert_cls, steps=8),
        f"data.val={{_target_: dear.data.benchmarks.FilesBenchmark, name: val, measures: [nDCG@10], {val}}}",
        "alpha=a0.5",
        "trainer.max_epochs=10",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=2",
        "callbacks.last.every_n_train_steps=3",
        "benchmark@evaluation.benchmark=files",
        *(f"evaluation.benchmark.{k}={v}" for k, v in files.items()),
        "evaluation.depth=3",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    # for tests.distill.test_faults.HangAtStep
    env = os.environ | {"PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    cmd = [sys.executable, "train.py", *args]
    if not wait:  # output to a file: a full pipe would stall the run before it reaches the step
        with open(f"{run_dir}.log", "w") as log:
            return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def outcome(run: Path) -> tuple[dict, dict]:
    """({stage: {metric: value}} without timings, exported adapter weights)."""
    metrics = {
        stage: {k: v for k, v in values.items() if not k.startswith("sec_")}
        for stage, values in json.loads((run / "metrics.json").read_text()).items()
    }
    return metrics, load_file(run / "export" / "adapter_model.safetensors")


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run_and_a_truncated_checkpoint_never_blocks(
    tmp_path, flag_jsonl, toy_files, tiny_bert_cls
):
    train_cli(tmp_path / "whole", toy_files, flag_jsonl, tiny_bert_cls)
    metrics, weights = outcome(tmp_path / "whole")

    for kill_at, truncate in [(5, False), (7, True)]:
        run, marker = tmp_path / f"killed{kill_at}", tmp_path / f"hang{kill_at}"
        hang = (
            f"+callbacks.hang={{_target_: tests.distill.test_faults.HangAtStep, step: {kill_at}, "
            f"marker: '{marker}'}}"
        )
        proc = train_cli(run, toy_files, flag_jsonl, tiny_bert_cls, hang, wait=False)
        deadline = time.monotonic() + 300
        try:
            while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert marker.exists(), Path(f"{run}.log").read_text()[-3000:]
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # mid-step, after the checkpoint of the step before
            proc.wait()
        if truncate:  # as a full disk left it: the resume point is cut short
            last = run / "checkpoints" / "last.ckpt"
            os.truncate(last, last.stat().st_size // 2)
        again = train_cli(run, toy_files, flag_jsonl, tiny_bert_cls)
        assert "Restoring states from the checkpoint path" in again.stderr
        assert ("unreadable checkpoint set aside" in " ".join(again.stderr.split())) == truncate
        assert len(list((run / "checkpoints").glob("last.ckpt.corrupt-*"))) == truncate
        assert "not resumable" not in again.stderr
        got_metrics, got_weights = outcome(run)
        assert got_metrics == metrics
        assert got_weights.keys() == weights.keys() and all(
            torch.equal(got_weights[k], weights[k]) for k in weights
        )
        steps = [
            int(r["step"])
            for r in csv.DictReader(open(run / "csv" / "metrics.csv"))
            if r.get("train/loss")
        ]
        # the killed attempt's rows kept, the resumed ones appended
        assert steps[0] == 0 and steps[-1] == 7
