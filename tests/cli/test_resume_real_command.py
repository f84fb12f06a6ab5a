"""The real ``train.py``, killed with SIGKILL and re-run with the same command and run directory,
ends exactly where an uninterrupted run ends: the same metrics.json numbers, the same weights.

A tiny LoRA cross-encoder student (random BERT, lora and hidden dropout on: the RNG matters) distils
a tiny teacher (KD at alpha 0.5, its logits cached by the first attempt) on 16 FlagEmbedding
queries (8 batches an epoch, 2 epochs: the run goes over an epoch boundary, so Lightning's
``estimated_stepping_batches`` loads the train loader before the checkpoint is restored — the
path that lost the loader's position), validates on NovelEval every 6 steps and is evaluated on
NovelEval. ``last.ckpt`` every 4 steps and after each validation. Killed:

- ``mid_epoch``: as soon as the first ``last.ckpt`` exists (step 4, mid-epoch);
- ``validation``: inside the validation of step 12 (resumes from step 8: the epoch's end);
- ``checkpoint_write``: while step 8's ``last.ckpt`` is being written: its temporary file exists,
  the rename has not happened (resumes from step 6's, written after a validation).

Each re-run resumes from the newest checkpoint that loads (``resume_checkpoint``), deletes the
cut-short temporary file, and must log the very values the uninterrupted run logged.

The real command takes about 20 s a process here (most of it imports), so this one is slow (7
processes). The default suite checks the causes in-process: the train loader's position lost
when Lightning builds the loader before it restores the checkpoint, a checkpoint taken between
the batches of one accumulated step; and the removal of cut-short checkpoint writes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from dear.utils.checkpoints import load_checkpoint
from tests.helpers import ROOT, shared
from tests.helpers.outcome import run_outcome, write_topic_jsonl

# --- test hooks, loaded by the train.py subprocess (+callbacks.hang=...) --------------------------


def _hang(marker: str, what: str) -> None:
    Path(marker).write_text(what)
    time.sleep(600)  # until kill -9


class HangInValidation(L.Callback):
    """Test hook: inside the validation of global step ``step`` (at its second batch), writes
    ``marker`` and waits to be killed; does nothing once ``marker`` exists (the re-run)."""

    def __init__(self, step: int, marker: str):
        self.step, self.marker = step, marker

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if trainer.global_step == self.step and batch_idx == 1 and not Path(self.marker).exists():
            _hang(self.marker, "in validation")


class _HangWhenPickled:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        _hang(self.marker, "in torch.save")


class HangInCheckpointWrite(L.Callback):
    """Test hook: the checkpoint of global step ``step`` carries an object whose pickling (inside
    ``torch.save``, into the checkpoint IO's temporary file) writes ``marker`` and waits to be
    killed; does nothing once ``marker`` exists (the re-run)."""

    def __init__(self, step: int, marker: str):
        self.step, self.marker = step, marker

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if trainer.global_step == self.step and not Path(self.marker).exists():
            checkpoint["hang"] = _HangWhenPickled(self.marker)


# --- running train.py ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_jsonl(tmp_path_factory) -> Path:
    return write_topic_jsonl(tmp_path_factory.mktemp("resume") / "train.jsonl")


def command(run: Path, train_jsonl: Path, *extra: str) -> list[str]:
    noveleval = shared("noveleval")
    files = ", ".join(
        f"{k}: '{noveleval / f}'"
        for k, f in [("corpus", "corpus.tsv"), ("queries", "queries.tsv"), ("qrels", "qrels.txt")]
    )
    return [
        sys.executable,
        "train.py",
        "data=flagembedding",
        f"data.train.path={train_jsonl}",
        "data.group_size=4",
        "data.batch_size=2",
        f"data.val={{_target_: dear.data.benchmarks.PooledBM25Benchmark, name: noveleval, measures: [nDCG@10], "
        f"{files}}}",
        f"data.cache_dir={run}.teacher",  # this run's own teacher cache: its first attempt computes it
        "student=minilm_cross_encoder",
        "student.model=tiny:bert-seqcls",
        "student.lora.target_modules=[query,value]",
        "teacher=rankllama_13b",
        "teacher.model=tiny:bert-seqcls",
        "teacher.pooling=auto",
        "alpha=a0.5",
        "trainer.max_steps=12",
        "trainer.max_epochs=2",
        "trainer.val_check_interval=6",
        "trainer.log_every_n_steps=1",
        "callbacks.last.every_n_train_steps=4",
        "~callbacks.progress",
        "benchmark@evaluation.benchmark=noveleval",
        "~evaluation.stages.teacher",
        f"hydra.run.dir={run}",
        *extra,
    ]


def environment() -> dict[str, str]:
    # tiny matrices; immune to a busy second core
    return os.environ | {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),  # the hooks
        "OMP_NUM_THREADS": "1",
    }


def train(cmd: list[str], log: Path) -> None:
    with open(log, "w") as out:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=environment(), stdout=out, stderr=subprocess.STDOUT, timeout=600
        )
    assert proc.returncode == 0, log.read_text()[-4000:]


def kill_when(cmd: list[str], log: Path, ready, timeout: float = 300) -> None:
    """Start ``cmd``; SIGKILL it as soon as ``ready()`` holds (it must not end first)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=environment(), stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + timeout
    try:
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready(), f"not killed: exit status {proc.poll()}\n" + log.read_text()[-3000:]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def assert_same(run: Path, reference: tuple[dict, dict, dict, dict]) -> None:
    metrics, exported, final, logged = run_outcome(run)
    want_metrics, want_exported, want_final, want_logged = reference
    diverged = sorted(
        (k for k in want_logged if logged.get(k) != want_logged[k]), key=lambda k: (k[1], k[0])
    )
    assert not diverged, f"the first logged values that differ (column, step): {diverged[:4]}"
    assert metrics == want_metrics  # exact: every number of metrics.json but the timings
    for weights, want in [(exported, want_exported), (final, want_final)]:
        assert weights.keys() == want.keys()
        assert all(torch.equal(weights[k], want[k]) for k in weights), "weights differ"


def killed_and_resumed(
    tmp_path: Path, train_jsonl: Path, point: str, *extra: str
) -> tuple[Path, int]:
    """A run killed at ``point``, then re-run with the same command; → (run dir, step resumed from)."""
    run, marker = tmp_path / point, tmp_path / f"{point}.marker"
    ckpts = run / "checkpoints"
    here = "tests.cli.test_resume_real_command"
    hooks = {
        "validation": f"+callbacks.hang={{_target_: {here}.HangInValidation, step: 12, marker: '{marker}'}}",
        "checkpoint_write": f"+callbacks.hang={{_target_: {here}.HangInCheckpointWrite, step: 8, "
        f"marker: '{marker}'}}",
    }
    cmd = command(run, train_jsonl, *extra, *([hooks[point]] if point in hooks else []))
    ready = (lambda: (ckpts / "last.ckpt").exists()) if point == "mid_epoch" else marker.exists
    kill_when(cmd, Path(f"{run}.killed.log"), ready)
    if point == "checkpoint_write":  # killed between the temp file's creation and its rename
        assert list(ckpts.glob(".last.ckpt.*.tmp")), sorted(p.name for p in ckpts.iterdir())
    # what it resumes from
    step = max(int(load_checkpoint(p)["global_step"]) for p in ckpts.glob("*.ckpt"))
    train(cmd, Path(f"{run}.log"))
    log = " ".join(Path(f"{run}.log").read_text().split())
    assert "Restoring states from the checkpoint path" in log
    assert ("removed a checkpoint write that was cut short" in log) == (point == "checkpoint_write")
    assert not list(ckpts.glob(".*.tmp")), "a cut-short temporary checkpoint was left behind"
    return run, step


@pytest.fixture(scope="module")
def reference(tmp_path_factory, train_jsonl):
    run = tmp_path_factory.mktemp("reference") / "whole"
    train(command(run, train_jsonl), Path(f"{run}.log"))
    return run_outcome(run)


@pytest.mark.slow
@pytest.mark.parametrize(
    "point, resumed_from", [("mid_epoch", 4), ("validation", 8), ("checkpoint_write", 6)]
)
def test_killed_train_py_resumes_to_the_metrics_of_an_uninterrupted_run(
    tmp_path, train_jsonl, reference, point, resumed_from
):
    run, step = killed_and_resumed(tmp_path, train_jsonl, point)
    assert step == resumed_from
    assert_same(run, reference)


# --- fast: the causes, in-process -----------------------------------------------------------------


class Killed(Exception):
    """Stands in for kill -9 in-process: raised before a batch, after the checkpoints before it."""


class Batches(L.Callback):
    """Records each training batch's token ids by its index in the run (Lightning's
    ``total_batch_idx``, restored on resume); raises ``Killed`` at batch ``kill_at``."""

    def __init__(self, kill_at: int | None = None):
        self.seen: dict[int, torch.Tensor] = {}
        self.kill_at = kill_at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        index = trainer.fit_loop.epoch_loop.total_batch_idx
        if index == self.kill_at:
            raise Killed
        self.seen[index] = batch["input_ids"].clone()


class ValBenchmark:
    """One judged query outside the training fixture's."""

    def load(self):
        from dear.data.benchmarks import Loaded, Qrels
        from dear.data.contract import Candidate, Query, Ranking

        run = {
            "v1": Ranking(
                Query("v1", "tell me about llama"),
                [
                    Candidate("x2", "a passage about coffee"),
                    Candidate("x1", "a passage about llama"),
                ],
            )
        }
        return Loaded(run, Qrels({"v1": {"x1": 1}}, ["nDCG@10"]))


def fit_bounded(
    student_dir: str,
    tmp_path: Path,
    batches: Batches,
    ckpt_path: str | None = None,
    accumulate: int = 1,
    val_every: int | None = None,
    every: int = 3,
) -> dict:
    """train.py's setting in-process: a LoRA student with dropout, a scheduler sized by
    ``estimated_stepping_batches`` and ``max_epochs`` set (so Lightning builds the train loader
    before it restores a checkpoint); 6 steps, 2 batches an epoch, last.ckpt every ``every``
    steps (and after each validation, every ``val_every`` batches)."""
    from dear.distill.data import DistillDataModule
    from dear.distill.losses import DistillLoss
    from dear.distill.module import DistillModule
    from dear.utils.checkpoints import AtomicCheckpointIO, LastCheckpoint
    from dear.utils.resume import SeedEveryStep
    from tests.helpers.distill import FixtureSource

    student = {
        "model": student_dir,
        "pooling": "auto",
        "dtype": "float32",
        "lora": {
            "r": 4,
            "lora_alpha": 8,
            "lora_dropout": 0.1,
            "target_modules": ["query", "value"],
        },
        "template": {"query_max_len": 16, "doc_max_len": 24},
    }
    L.seed_everything(0)
    dm = DistillDataModule(
        FixtureSource(),
        student,
        None,
        val=ValBenchmark() if val_every else None,
        group_size=4,
        batch_size=3,
        seed=0,
    )
    module = DistillModule(student, DistillLoss("pointce", alpha=0.0), lr=1e-2, warmup_ratio=0.3)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=6,
        max_epochs=3 * accumulate,
        accumulate_grad_batches=accumulate,
        val_check_interval=val_every,
        check_val_every_n_epoch=None if val_every else 1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            LastCheckpoint(str(tmp_path / "ckpt"), every_n_train_steps=every),
            SeedEveryStep(0),
            batches,
        ],
    )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    "settings, kill_at, resumed_at",
    [
        # Lightning drops a stateful loader's checkpointed position when configure_optimizers asks for
        # estimated_stepping_batches (Lightning #20550): the resumed run restarted the epoch's batches.
        ({}, 4, 3),
        # A validation between the two batches of a step: its checkpoint would hold half an accumulation.
        ({"accumulate": 2, "val_every": 3, "every": 2}, 3, None),
    ],
)
def test_a_resumed_run_trains_on_the_batches_and_ends_on_the_weights_of_an_uninterrupted_one(
    tiny_bert_cls, tmp_path, settings, kill_at, resumed_at
):
    whole = Batches()
    expected = fit_bounded(tiny_bert_cls, tmp_path / "a", whole, **settings)
    first = Batches(kill_at=kill_at)
    with pytest.raises(Killed):
        fit_bounded(tiny_bert_cls, tmp_path / "b", first, **settings)
    path = tmp_path / "b" / "ckpt" / "last.ckpt"
    state = load_checkpoint(path) if path.exists() else None
    progress = (
        state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["ready"] if state else None
    )
    assert progress == resumed_at  # batches done when the checkpoint was taken
    second = Batches()
    resumed = fit_bounded(
        tiny_bert_cls, tmp_path / "b", second, str(path) if state else None, **settings
    )
    # nothing redone, nothing skipped
    assert sorted(second.seen) == list(range(resumed_at or 0, len(whole.seen)))
    for index, ids in whole.seen.items():
        assert torch.equal((first.seen | second.seen)[index], ids), f"batch {index}: other groups"
    for name, tensor in expected.items():  # LoRA and hidden dropout included: bit for bit
        assert torch.equal(resumed[name], tensor), name


def test_resume_deletes_the_temporary_files_of_cut_short_checkpoint_writes(tmp_path):
    from dear.utils.checkpoints import AtomicCheckpointIO, resume_checkpoint

    AtomicCheckpointIO().save_checkpoint(
        {"global_step": 3, "state_dict": {}}, tmp_path / "last.ckpt"
    )
    (tmp_path / ".last.ckpt.x1y2z3.tmp").write_bytes(b"PK\x03\x04 cut short")
    (tmp_path / ".other.tmp").write_text("not a checkpoint's: kept")
    assert resume_checkpoint(tmp_path) == str(tmp_path / "last.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp", "last.ckpt"]
