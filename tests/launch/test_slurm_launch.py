"""What ``launcher=slurm`` asks SLURM for, decided before anything is submitted (no cluster
needed): GPUs follow the trainer (none on CPU, none for ``gpus_per_node=0``, never a GPU option
then), one task per device and never 0, bad values as one line; and job states read from squeue
when sacct cannot answer (squeue faked here; the real one: tests/launch/test_slurm_cluster.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from dear.config import CONF_DIR, register_resolvers
from dear.utils import slurm
from tests.helpers import ROOT

register_resolvers()


def launched(primary: str, *overrides: str) -> dict:
    """The launcher params after the slurm launcher's callback ran (as in ``-m launcher=slurm``)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            primary,
            overrides=["paths.output_dir=/tmp/dear-compose", "launcher=slurm", *overrides],
            return_hydra_config=True,
        )
    callback = OmegaConf.to_container(cfg.hydra.callbacks.slurm)
    assert callback["_target_"] == "dear.utils.slurm.SlurmLaunch"
    slurm.SlurmLaunch().on_multirun_start(cfg)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


@pytest.fixture(autouse=True)
def submitit_watcher(monkeypatch):
    """The callback replaces submitit's job-state watcher in this process: put it back after."""
    from submitit.slurm.slurm import SlurmJob

    monkeypatch.setattr(SlurmJob, "watcher", SlurmJob.watcher)


@pytest.mark.parametrize(
    "primary, overrides, gpus, tasks",
    [
        ("train", [], None, 1),  # the built-in default trains on CPU: no GPU asked for
        ("train", ["trainer=gpu"], 1, 1),
        ("train", ["trainer=ddp"], 4, 4),
        ("train", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"], None, 2),
        ("train", ["hydra.launcher.gpus_per_node=1"], 1, 1),  # asked for explicitly: kept
        ("train", ["trainer=ddp", "hydra.launcher.gpus_per_node=0"], None, 4),
        ("evaluate", [], 1, 1),  # no trainer: one GPU, one task
        ("evaluate", ["hydra.launcher.gpus_per_node=0"], None, 1),  # a CPU partition: one override
    ],
)
def test_gpus_follow_the_trainer_and_tasks_are_one_per_device(primary, overrides, gpus, tasks):
    params = launched(primary, *overrides)
    assert (params["gpus_per_node"], params["tasks_per_node"]) == (gpus, tasks)


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "hydra.launcher.tasks_per_node=0",
            "hydra.launcher.tasks_per_node: expected a whole number >= 1 (one task per "
            "device: trainer.devices), found 0",
        ),
        (
            "trainer.devices=auto",
            "hydra.launcher.gpus_per_node: While dereferencing interpolation "
            "'${oc.select:trainer.devices,1}': Value 'auto' of type 'str' could not be converted to "
            "Integer",
        ),
        ("hydra.launcher.nodes=0", "hydra.launcher.nodes: expected a whole number >= 1, found 0"),
        (
            "hydra.launcher.gpus_per_node=-1",
            "hydra.launcher.gpus_per_node: expected a whole number >= 0, found -1",
        ),
    ],
)
def test_values_that_cannot_work_are_one_line_before_anything_is_submitted(
    override, message, capsys
):
    with pytest.raises(SystemExit) as exit_:
        launched("train", override)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_the_command_line_error_is_one_line_too(tmp_path):
    """The real command: a sweep asking for 0 tasks stops before sbatch (none on PATH here: a
    submission would fail otherwise)."""
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "launcher=slurm",
            "hydra.launcher.tasks_per_node=0",
            f"hydra.sweep.dir={tmp_path}/sweep",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"PATH": os.path.dirname(sys.executable)},
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: hydra.launcher.tasks_per_node: expected a whole number "
        ">= 1 (one task per device: trainer.devices), found 0"
    )
    assert not (tmp_path / "sweep" / ".submitit").exists()


def fake_tools(tmp_path, sacct: str, squeue: str) -> None:
    """``sacct`` and ``squeue`` scripts first on PATH (each: a shell body)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (("sacct", sacct), ("squeue", squeue)):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


@pytest.fixture
def path_restored():
    path = os.environ["PATH"]
    yield
    os.environ["PATH"] = path


def test_without_accounting_states_come_from_squeue_said_once(tmp_path, caplog, path_restored):
    fake_tools(
        tmp_path,
        "echo 'sacct: error: Slurm accounting storage is disabled' >&2; exit 1",
        # an array: element 0 running, 1 requeued and waiting; job 13 finished; job 14 gone
        "echo '12_0|RUNNING'; echo '12_1|PENDING'; echo '13|COMPLETED'",
    )
    watcher = slurm.QueueWatcher(delay_s=0)
    for job in ("12_0", "12_1", "13", "14"):
        watcher.register_job(job)
    with caplog.at_level("INFO", logger="dear.utils.slurm"):
        watcher.update()
        watcher.update()
    states = {job: watcher.get_state(job, mode="cache") for job in ("12_0", "12_1", "13", "14")}
    assert states == {"12_0": "RUNNING", "12_1": "PENDING", "13": "COMPLETED", "14": slurm.ENDED}
    assert [watcher.is_done(j, mode="cache") for j in states] == [False, False, True, True]
    assert [r.getMessage() for r in caplog.records] == [
        "job states from squeue: sacct cannot answer (sacct: error: Slurm accounting storage is disabled)"
    ]


def test_squeue_that_cannot_answer_changes_no_state(tmp_path, caplog, path_restored):
    """A job is never taken for ended because the controller did not answer; an id the controller
    no longer knows at all (squeue: "Invalid job id") has ended."""
    fake_tools(
        tmp_path, "exit 1", "echo 'squeue: error: Unable to contact slurm controller' >&2; exit 1"
    )
    watcher = slurm.QueueWatcher(delay_s=0)
    watcher.register_job("21")
    watcher.update()
    assert watcher.get_state("21", mode="cache") == "UNKNOWN" and not watcher.is_done(
        "21", mode="cache"
    )
    fake_tools(
        tmp_path, "exit 1", "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1"
    )
    watcher.update()
    assert watcher.get_state("21", mode="cache") == slurm.ENDED and watcher.is_done(
        "21", mode="cache"
    )


def test_with_accounting_sacct_answers(tmp_path, caplog, path_restored):
    fake_tools(
        tmp_path,
        "echo 'JobID|State|NodeList'; echo '31_0|REQUEUED|n1'; echo '31_0|RUNNING|n1'",
        "exit 1",
    )
    watcher = slurm.QueueWatcher(delay_s=0)
    watcher.register_job("31_0")
    with caplog.at_level("INFO", logger="dear.utils.slurm"):
        watcher.update()
    assert watcher.get_state("31_0", mode="cache") == "RUNNING" and watcher.accounting
    assert caplog.records == []
