"""``launcher=slurm`` on a real SLURM: the one-node cluster of ``scripts/slurm_local.sh start``
(CPU only, no accounting storage), as ``.ci/run`` starts it. Skipped when no controller answers.

- A sweep through sbatch: the toy α sweep on a tiny student (2 jobs of a job array, 1 CPU each,
  no GPU option) gives the report the same sweep gives with ``launcher=local`` — while each of its
  jobs is stopped once part way, the two ways a cluster stops a job: job 0 by ``scontrol
  requeue`` (what preemption does: SIGTERM, requeue), job 1 by SIGUSR2 (what SLURM sends
  ``signal_delay_s`` before the time limit; submitit's handler requeues the job and exits). Each
  requeued job resumes from ``<run dir>/checkpoints/last.ckpt`` and ends on the uninterrupted
  local run's metrics, logged values and weights, exactly.
- DDP on the scheduler: ``trainer=ddp trainer.devices=2`` (gloo on CPU) runs as one job of 2 tasks:
  the precompute splits the teacher cache over them and equals the local sweep's single-process
  cache; training (1 group per task) ends on the metrics of the local sweep's α = 0.5 run (one
  device, 2 groups a batch). The student has no dropout for this (a draw per rank would differ
  from one device's); exact resume with dropout is tests/cli/test_resume_real_command.py's.
- Job states without accounting: quiet, and a job that ends without its result is seen to end.

A requeued job waits 2 minutes (SLURM's begin time for requeued jobs); the test moves it to now.
Each python process here starts in about 9 s of imports, most of these tests' time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, shared
from tests.helpers.outcome import run_outcome, write_topic_jsonl


def controller() -> str | None:
    """Why no SLURM controller answers, or None when one does."""
    if shutil.which("sinfo") is None:
        return "no sinfo on PATH"
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError) as err:
        return f"sinfo failed: {err}"
    if proc.returncode != 0:
        return f"sinfo failed: {proc.stderr.strip() or proc.returncode}"
    if not any(
        s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in proc.stdout.split()
    ):
        return f"no node up (sinfo: {' '.join(proc.stdout.split()) or 'no nodes'})"
    return None


_WHY = controller()
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        _WHY is not None,
        reason=f"no SLURM controller answers ({_WHY}): "
        "`bash scripts/slurm_local.sh start` as root starts one",
    ),
]
# The cluster's default partition (slurm_local.sh's: debug); 1 CPU and 2 GB a task fit its node.
CPU_JOB = ["launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]


def environment() -> dict[str, str]:
    """The tests' environment (offline hubs, W&B off, caches), which sbatch hands the jobs; the
    repository on PYTHONPATH for the hooks; one thread (the exactness is compared across runs)."""
    return os.environ | {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "400",
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
    }


def start(args: list, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, *map(str, args)],
            cwd=ROOT,
            env=environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def finish(proc: subprocess.Popen, log: Path, timeout: float = 600) -> str:
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    return text


def scheduler(*args: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr}"
    return proc.stdout


def job_ids(sweep: Path) -> dict[int, str]:
    """{job number: SLURM id (ARRAY_TASK)} from submitit's folders of the sweep."""
    return {
        int(p.name.split("_")[1]): p.name for p in (sweep / ".submitit").glob("*_*") if p.is_dir()
    }


def release_requeued(ids) -> None:
    """A requeued job's begin time is 2 minutes away: make it now."""
    for job in ids:
        state = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True, timeout=60
        ).stdout.split()
        if state[:2] == ["PENDING", "BeginTime"]:
            scheduler("scontrol", "update", f"JobId={job}", "StartTime=now")


@pytest.fixture(scope="module")
def train_jsonl(tmp_path_factory) -> Path:
    return write_topic_jsonl(tmp_path_factory.mktemp("slurm-data") / "train.jsonl")


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    """A tiny random BERT classifier without dropout."""
    from dear.models.tiny import build_tiny

    path = Path(build_tiny(tmp_path_factory.mktemp("slurm-student") / "bert", "bert", "seqcls"))
    config = json.loads((path / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    (path / "config.json").write_text(json.dumps(config))
    return path


def toy_sweep(train_jsonl: Path, student: Path, cache: Path, batch: int = 2) -> list[str]:
    """The toy α sweep (sweeps/toy.yaml) on NovelEval alone, with a tiny student (LoRA, no
    dropout) distilling a tiny teacher on the rows above: 12 steps of ``batch`` groups of 4 (over
    an epoch boundary), validated on NovelEval at steps 6 and 12, last.ckpt every 4 steps; the
    weights of step 12 exported and evaluated."""
    shared("noveleval", "corpus.tsv")
    # the export: the last validation's weights, not the best
    return [
        "--config-dir",
        "sweeps",
        "--config-name",
        "toy",
        "~evaluation.benchmarks.scifact",
        "sweep.report.average=[noveleval]",
        "data=flagembedding",
        f"data.train.path={train_jsonl}",
        "data.group_size=4",
        f"data.batch_size={batch}",
        "+benchmark@data.val=noveleval",
        "~data.val.limit",
        "data.shard_size=4",
        f"data.cache_dir={cache}",
        "student=minilm_cross_encoder",
        f"student.model={student}",
        "student.lora.target_modules=[query,value]",
        "student.lora.lora_dropout=0",
        "teacher=rankllama_13b",
        "teacher.model=tiny:bert-seqcls",
        "teacher.pooling=auto",
        "module.lr=1e-3",
        "trainer.max_steps=12",
        "trainer.max_epochs=2",
        "trainer.val_check_interval=6",
        "trainer.log_every_n_steps=1",
        "callbacks.last.every_n_train_steps=4",
        "callbacks.checkpoint.monitor=null",
    ]


def metrics_of(run: Path) -> Path:
    return run / "benchmarks" / "noveleval"


def assert_same(got: tuple, want: tuple) -> None:
    metrics, exported, final, logged = got
    want_metrics, want_exported, want_final, want_logged = want
    diverged = sorted(
        (k for k in want_logged if logged.get(k) != want_logged[k]), key=lambda k: (k[1], k[0])
    )
    assert not diverged, f"the first logged values that differ (column, step): {diverged[:4]}"
    assert metrics == want_metrics  # every number of metrics.json but the timings
    for weights, expected in [(exported, want_exported), (final, want_final)]:
        assert weights.keys() == expected.keys()
        assert all(torch.equal(weights[k], expected[k]) for k in weights), "weights differ"


# --- a sweep through sbatch, each job stopped once --------------------------------------------------

STOPS = {0: "scontrol requeue", 1: "SIGUSR2"}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, train_jsonl, student):
    """The same 2-job toy sweep (α 0 and 0.5) with launcher=local and, at the same time,
    launcher=slurm, whose jobs are each held after step 5 (checkpoint at 4) in their first
    attempt and stopped there."""
    root = tmp_path_factory.mktemp("sweeps")
    hold = (
        f"+callbacks.hold={{_target_: tests.launch.hooks.HoldForPreemption, step: 5, "
        f"marker: '{root}/held-${{hydra:job.num}}'}}"
    )
    sweep = ["alpha=a0,a0.5", "seed=0", hold]
    started = time.monotonic()
    local = start(
        [
            "train.py",
            "-m",
            *toy_sweep(train_jsonl, student, root / "teacher-local"),
            *sweep,
            f"hydra.sweep.dir={root / 'local'}",
        ],
        root / "local.log",
    )
    slurm = start(
        [
            "train.py",
            "-m",
            *toy_sweep(train_jsonl, student, root / "teacher-slurm"),
            *sweep,
            *CPU_JOB,
            "hydra.launcher.timeout_min=10",  # USR2 then counts as the time limit's (submitit: < 12.5 min)
            f"hydra.sweep.dir={root / 'slurm'}",
        ],
        root / "slurm.log",
    )
    stopped: dict[int, str] = {}
    deadline = time.monotonic() + 600
    try:
        while slurm.poll() is None and time.monotonic() < deadline:
            ids = job_ids(root / "slurm")
            for num, how in STOPS.items():
                if num not in stopped and (root / f"held-{num}").exists():
                    if how == "scontrol requeue":
                        scheduler("scontrol", "requeue", ids[num])
                    else:  # as SLURM signals a job before its time limit (--signal=USR2@signal_delay_s)
                        scheduler("scancel", "--signal=USR2", ids[num])
                    stopped[num] = ids[num]
            release_requeued(stopped.values())
            time.sleep(0.2)
    finally:
        if slurm.poll() is None:
            slurm.kill()
            subprocess.run(["scancel", *job_ids(root / "slurm").values()], check=False)
    slurm_log = finish(slurm, root / "slurm.log", timeout=1)
    slurm_s = time.monotonic() - started
    finish(local, root / "local.log")
    print(
        f"\nslurm sweep (2 jobs, each stopped and requeued once): {slurm_s:.0f} s; "
        f"both sweeps: {time.monotonic() - started:.0f} s"
    )
    assert sorted(stopped) == [0, 1], f"jobs held and stopped: {stopped}\n{slurm_log[-3000:]}"
    return {
        "root": root,
        "local": root / "local",
        "slurm": root / "slurm",
        "ids": stopped,
        "log": slurm_log,
        "teacher": root / "teacher-local",
    }


def test_sweep_through_sbatch_gives_the_report_of_the_local_sweep(sweeps):
    for sweep in (sweeps["local"], sweeps["slurm"]):
        proc = subprocess.run(
            [sys.executable, "-m", "dear.report", str(sweep)],
            cwd=ROOT,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    local, slurm = sweeps["local"] / "report", sweeps["slurm"] / "report"
    table = (slurm / "table.md").read_text()
    assert table == (local / "table.md").read_text()
    assert (slurm / "table.tex").read_text() == (local / "table.tex").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| 0")]
    assert rows == ["0", "0.5"]
    values = [
        [
            row["cells"]["noveleval"]["values"]
            for row in json.loads((d / "cells.json").read_text())["rows"]
        ]
        for d in (local, slurm)
    ]
    # α changes the cell: the table tells runs apart
    assert values[0] == values[1] and values[0][0] != values[0][1]
    # What ran where: the jobs under SLURM (1 CPU, 1 task, no GPU option), the local ones not.
    script = next((sweeps["slurm"] / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --ntasks-per-node=1" in script and "#SBATCH --cpus-per-task=1" in script
    assert "gpus" not in script and "gres" not in script
    for num in (0, 1):
        cluster = json.loads((sweeps["slurm"] / str(num) / "repro.json").read_text())["cluster"]
        assert (
            cluster["SLURM_ARRAY_TASK_ID"] == str(num) and cluster["SUBMITIT_EXECUTOR"] == "slurm"
        )
        assert (
            "SLURM_JOB_ID"
            not in json.loads((sweeps["local"] / str(num) / "repro.json").read_text())["cluster"]
        )
    # No accounting storage here: one line says job states come from squeue, no warning per poll.
    assert sweeps["log"].count("job states from squeue: sacct cannot answer") == 1
    assert "Bypassing sacct error" not in sweeps["log"]


@pytest.mark.parametrize(
    "num", sorted(STOPS), ids=[STOPS[n].replace(" ", "_") for n in sorted(STOPS)]
)
def test_a_stopped_job_is_requeued_and_resumes_to_the_uninterrupted_run(sweeps, num):
    job = sweeps["ids"][num]
    run = sweeps["slurm"] / str(num)
    log = " ".join((sweeps["slurm"] / ".submitit" / job / f"{job}_0_log.err").read_text().split())
    out = " ".join((sweeps["slurm"] / ".submitit" / job / f"{job}_0_log.out").read_text().split())
    assert (sweeps["root"] / f"held-{num}").read_text().endswith("held at step 5\n")
    if (
        STOPS[num] == "SIGUSR2"
    ):  # submitit's handler: the time limit's signal, a checkpoint, a requeue
        assert "Caught signal SIGUSR2" in log + out and "this job is timed-out" in log + out
        assert f"Requeued job {job} (2 remaining timeouts)" in log + out
    else:
        assert "DUE TO JOB REQUEUE" in log
    # The second attempt resumed from the first's last.ckpt (step 4) and finished the run.
    assert f"Restoring states from the checkpoint path at {run}/checkpoints/last.ckpt" in log
    assert log.count("Restoring states from the checkpoint path") == 1
    assert json.loads((run / "repro.json").read_text()).get("finished")
    local = sweeps["local"] / str(num)
    assert_same(run_outcome(run, metrics_of(run)), run_outcome(local, metrics_of(local)))


# --- DDP: one task per device ----------------------------------------------------------------------


def _cache_rows(root: Path) -> list[dict]:
    import pyarrow.parquet as pq

    (cache,) = [p for p in root.iterdir() if p.is_dir()]
    assert (cache / "complete").is_file()
    return pq.read_table(sorted(cache.glob("shard-*.parquet"))).to_pylist()


def test_ddp_on_two_slurm_tasks_gives_the_cache_and_metrics_of_one_device(
    tmp_path, train_jsonl, student, sweeps
):
    """2 tasks x 1 group a batch against the local sweep's α = 0.5 run (1 device x 2 groups)."""
    # validation every 6 steps, as trainer=cpu's
    ddp = [
        *toy_sweep(train_jsonl, student, tmp_path / "teacher", batch=1),
        "alpha=a0.5",
        "seed=0",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "trainer.check_val_every_n_epoch=null",
        *CPU_JOB,
    ]
    started = time.monotonic()
    precompute = start(
        ["-m", "dear.distill.precompute", "-m", *ddp, f"hydra.sweep.dir={tmp_path}/pre"],
        tmp_path / "pre.log",
    )
    finish(precompute, tmp_path / "pre.log")
    precompute_s = time.monotonic() - started
    train = start(["train.py", "-m", *ddp, f"hydra.sweep.dir={tmp_path}/two"], tmp_path / "two.log")
    finish(train, tmp_path / "two.log")
    print(
        f"\nDDP on 2 SLURM tasks: precompute {precompute_s:.0f} s, both jobs {time.monotonic() - started:.0f} s"
    )

    def task_logs(sweep: Path) -> list[str]:
        """Each task's stderr, by rank (a one-job sweep: one job folder, no array)."""
        (folder,) = [p for p in (sweep / ".submitit").iterdir() if p.is_dir()]
        return [" ".join(p.read_text().split()) for p in sorted(folder.glob("*_log.err"))]

    for sweep in ("pre", "two"):
        script = next((tmp_path / sweep / ".submitit").glob("*/*_submission.sh")).read_text()
        assert (
            "#SBATCH --ntasks-per-node=2" in script
            and "gpus" not in script
            and "gres" not in script
        )
    # 16 queries of 6 pairs: 16 shards of 4 (shards never split a query)
    pre = task_logs(tmp_path / "pre")
    assert len(pre) == 2 and "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in pre[1]
    for rank in (0, 1):
        assert (
            f"rank {rank}/2: 8 of 16 shards" in pre[rank]
            and f"rank {rank}: scored 8 of its 8 shards" in pre[rank]
        )
    two = task_logs(tmp_path / "two")
    assert len(two) == 2 and "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in two[1]
    assert "teacher cache missing" not in " ".join(two)  # the precompute's, verified

    a, b = _cache_rows(tmp_path / "teacher"), _cache_rows(sweeps["teacher"])
    assert [(r["qid"], r["docid"]) for r in a] == [(r["qid"], r["docid"]) for r in b]
    assert [r["logit"] for r in a] == pytest.approx([r["logit"] for r in b], abs=1e-5)

    run, one = tmp_path / "two" / "0", sweeps["local"] / "1"
    assert {"alpha=a0.5", "seed=0"} <= set(
        json.loads((one / "repro.json").read_text())["overrides"]
    )
    metrics, exported, final, logged = run_outcome(run, metrics_of(run))
    want_metrics, want_exported, want_final, want_logged = run_outcome(one, metrics_of(one))
    assert metrics == want_metrics  # every number of metrics.json but the timings
    # Validation (the best checkpoint's choice) alike. The logged training loss is rank 0's groups'.
    validated = [key for key in logged if key[0] == "val/nDCG@10"]
    assert validated and all(logged[key] == want_logged[key] for key in validated)
    for weights, want in [(exported, want_exported), (final, want_final)]:
        assert weights.keys() == want.keys()
        # The score head's bias shifts every score of a group alike: the ranking and KD losses give
        # it no gradient but rounding noise, which AdamW turns into lr-sized steps either way.
        free = [
            k
            for k in weights
            if k.endswith("classifier.modules_to_save.default.bias")
            or k.endswith("classifier.bias")
        ]
        assert len(free) == 1 and abs(float(weights[free[0]])) < 1e-2
        differ = [
            k
            for k in weights
            if k not in free and not torch.allclose(weights[k], want[k], rtol=1e-4, atol=1e-7)
        ]
        assert not differ, f"weights differ: {differ[:3]}"


# --- job states without accounting -----------------------------------------------------------------


def test_a_job_that_ends_without_its_result_is_seen_to_end(tmp_path, monkeypatch, caplog):
    """sacct fails here (no accounting storage): a job cancelled while it runs, which writes no
    result, is seen to end (squeue: CANCELLED) instead of being waited for; one line, no warnings."""
    import submitit
    from submitit.slurm.slurm import SlurmJob

    from dear.utils import slurm

    monkeypatch.setattr(SlurmJob, "watcher", SlurmJob.watcher)  # restored after the test
    slurm.install_watcher(poll_s=2)
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    executor.update_parameters(slurm_partition="debug", cpus_per_task=1, mem_gb=1, timeout_min=5)
    with caplog.at_level("INFO"):
        job = executor.submit(time.sleep, 300)
        deadline = time.monotonic() + 120
        while job.get_info(mode="force").get("State") != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert job.state == "RUNNING"
        scheduler("scancel", job.job_id)
        while not job.done() and time.monotonic() < deadline:
            time.sleep(0.2)
    assert job.done() and job.state == "CANCELLED" and not job.paths.result_pickle.exists()
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "sacct" in m] == [
        "job states from squeue: sacct cannot answer (Slurm accounting storage is disabled)"
    ]
    assert not [r for r in caplog.records if r.levelname == "WARNING"], messages
