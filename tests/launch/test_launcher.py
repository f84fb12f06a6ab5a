"""Launchers and multi-GPU strategies: the launcher group composes for train.py and evaluate.py,
the SLURM launcher renders the sbatch script it would submit (the real command, stopped at
sbatch), every strategy config builds its Lightning strategy, and DDP trains on two CPU
processes (slow)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dear.config import CONF_DIR, register_resolvers
from tests.helpers import ROOT
from tests.helpers.cli import tiny_distillation

register_resolvers()
LAUNCHERS = {
    "local": "BasicLauncher",
    "submitit_local": "submitit_launcher.LocalLauncher",
    "slurm": "submitit_launcher.SlurmLauncher",
}


def compose_with_hydra(primary: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(
            primary,
            overrides=["paths.output_dir=/tmp/dear-compose", *overrides],
            return_hydra_config=True,
        )


@pytest.mark.parametrize("primary", ["train", "evaluate"])
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_launcher_group_selects_the_hydra_launcher(primary, launcher):
    cfg = compose_with_hydra(primary, [f"launcher={launcher}"])
    assert cfg.hydra.launcher._target_.endswith(LAUNCHERS[launcher])


def test_slurm_resources_follow_the_trainer():
    """One task per GPU, as Lightning's SLURM environment needs; evaluate.py (no trainer): 1 GPU."""

    def params(cfg):
        return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)

    ddp = params(
        compose_with_hydra("train", ["launcher=slurm", "trainer=ddp", "trainer.num_nodes=2"])
    )
    assert (ddp["nodes"], ddp["gpus_per_node"], ddp["tasks_per_node"]) == (2, 4, 4)
    assert ddp["max_num_timeout"] == 3 and ddp["additional_parameters"] == {"requeue": True}
    single = params(compose_with_hydra("evaluate", ["launcher=slurm"]))
    assert (single["nodes"], single["gpus_per_node"], single["tasks_per_node"]) == (1, 1, 1)


def test_slurm_launcher_renders_the_sbatch_script(tmp_path):
    """Run the alpha sweep on SLURM for real, with an `sbatch` on PATH that keeps the script
    submitit hands it and refuses the job: what the cluster would have received."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit only checks that srun exists
    (bin_dir / "sbatch").write_text(
        f"#!/bin/sh\ncp \"$1\" {tmp_path}/submitted.sh\necho 'dry run: not submitted' >&2\nexit 1\n"
    )
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "--config-dir",
            "sweeps",
            "--config-name",
            "alpha",
            "launcher=slurm",
            "trainer=ddp",
            "hydra.launcher.partition=gpu-long",
            "hydra.launcher.account=dear-lab",
            "hydra.launcher.timeout_min=720",
            "hydra.launcher.array_parallelism=2",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "dry run: not submitted" in proc.stderr, proc.stderr[-3000:]
    script = (tmp_path / "submitted.sh").read_text()
    for line in [
        "#SBATCH --partition=gpu-long",
        "#SBATCH --account=dear-lab",
        "#SBATCH --array=0-4%2",
        "#SBATCH --nodes=1",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=128GB",
        "#SBATCH --time=720",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --requeue",
        "#SBATCH --job-name=train",
    ]:
        assert line in script.splitlines(), f"{line!r} not in\n{script}"
    assert f"srun --unbuffered --output {sweep_dir}/.submitit/%A_%a/%A_%a_%t_log.out" in script
    assert "-m submitit.core._submit" in script
    # The 5 jobs of the sweep (alpha 0.1 ... 0.5) were pickled for the array.
    assert len(list((sweep_dir / ".submitit").rglob("*.pkl"))) == 5


STRATEGIES = {
    "ddp": "DDPStrategy",
    "fsdp": "FSDPStrategy",
    "deepspeed_zero2": "DeepSpeedStrategy",
    "deepspeed_zero3": "DeepSpeedStrategy",
}


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_configs(name, tmp_path):
    cfg = compose_with_hydra("train", [f"trainer={name}"])
    assert (
        cfg.trainer.accelerator == "gpu"
        and cfg.trainer.devices == 4
        and cfg.trainer.precision == "bf16-mixed"
    )
    assert cfg.trainer.strategy._target_ == f"lightning.pytorch.strategies.{STRATEGIES[name]}"
    if name.startswith("deepspeed"):
        assert (
            cfg.trainer.strategy.stage == int(name[-1])
            and cfg.trainer.strategy.exclude_frozen_parameters
        )
        if importlib.util.find_spec("deepspeed") is None:
            return  # DeepSpeedStrategy refuses to build without deepspeed (a GPU-machine install)
    strategy = instantiate(cfg.trainer.strategy)
    assert type(strategy).__name__ == STRATEGIES[name]
    if name == "fsdp":  # Lightning builds FSDP Trainers on GPUs only
        assert strategy.kwargs["use_orig_params"] is True and strategy._state_dict_type == "full"
        return
    # The Trainer accepts it (built on CPU here; nothing is launched until fit).
    trainer = instantiate(
        cfg.trainer,
        accelerator="cpu",
        precision="32-true",
        devices=2,
        logger=False,
        default_root_dir=str(tmp_path),
    )
    assert trainer.world_size == 2 and type(trainer.strategy).__name__ == STRATEGIES[name]


@pytest.mark.slow
def test_ddp_config_trains_two_processes_on_cpu(tmp_path, flag_jsonl, toy_files, tiny_bert_cls):
    """trainer=ddp with 2 CPU processes (gloo): both train, rank 0 alone exports, evaluates and
    writes repro.json."""
    run_dir = tmp_path / "run"
    args = [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        *tiny_distillation(flag_jsonl, tiny_bert_cls),
        "trainer.max_epochs=10",
        "callbacks.checkpoint.monitor=null",
        "benchmark@evaluation.benchmark=files",
        f"evaluation.benchmark.candidates={toy_files['json']}",
        f"evaluation.benchmark.qrels={toy_files['qrels']}",
        "evaluation.depth=3",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stderr
    assert proc.stdout.count("## files") == 1  # evaluated once, by rank 0
    assert list(json.loads((run_dir / "metrics.json").read_text())) == [
        "first_stage",
        "teacher",
        "student_init",
        "student",
    ]
    assert (run_dir / "export" / "adapter_config.json").is_file() and (
        run_dir / "repro.json"
    ).is_file()
