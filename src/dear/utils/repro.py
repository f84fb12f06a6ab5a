"""The reproducibility record every run directory gets (``repro.json``), and secret scrubbing.

    {"command": "python train.py --config-dir sweeps --config-name toy alpha=a0.1 loss=pointce",
     "argv": [...], "cwd": "/work/main", "overrides": ["alpha=a0.1", "loss=pointce"], "seed": 0,
     "git": {"commit": "513975d...", "dirty": true, "changed": ["train.py"]},
     "python": "3.11.7", "packages": {"torch": "2.13.0+cpu", ...},
     "hardware": {"host": ..., "cpu": ..., "cpu_count": 2, "memory_gb": 7.7, "gpus": [], "cuda": null},
     "cluster": {"SLURM_JOB_ID": ...},
     "scoring": {"torch": "2.13.0+cpu", "transformers": ..., "vllm": null, ...},
     "loaded": {"model:meta-llama/Llama-3.1-8B": {"revision": "0e9e39f...", "dtype": "bfloat16",
                "device": "cuda:NVIDIA H200", ...}, "tokenizer:...": {"fingerprint": "3f1c..."}},
     "finished": "2026-12-03T14:00:00+00:00"}

``scoring``: versions of the score-deciding packages (None: not installed); ``loaded``: the models and tokenizers
loaded (``dear.models.provenance``), written at ``mark_finished``. ``command`` re-runs this one job alone (in a
multirun ``argv`` is the sweep's). ``python -m dear.report --diff A B`` compares two records.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from dear.errors import DataError
from dear.utils.io import atomic_write_json, read_json
from dear.utils.paths import ROOT
from dear.utils.ranks import rank_world

RECORD = "repro.json"
# Keys whose values are secrets; ``*_env`` keys name a variable. ``max_new_tokens``/``tokenizer`` are not secrets.
_SECRET_KEY = re.compile(
    r"(^|_)(api_?key|token|secret|password|passwd|credentials?|auth)(_|$)", re.IGNORECASE
)
SECRET_SHAPE = (
    r"(?:sk-|hf_|ghp_|xox[abp]-|wandb_)[A-Za-z0-9_-]{16,}"  # an API key or token, by its look
)
_SECRET_VALUE = re.compile(f"^{SECRET_SHAPE}$")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+):([^/\s@]+)@")  # group 2: the password
_CLUSTER_ENV = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_NODELIST",
    "SLURM_NTASKS",
    "SLURM_JOB_PARTITION",
    "SUBMITIT_EXECUTOR",
    "CUDA_VISIBLE_DEVICES",
)
REDACTED = "***"
# Packages whose versions change scores: kernels and numerics, tokenization, adapters, engines, metrics.
SCORING_PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "accelerate",
    "bitsandbytes",
    "vllm",
    "flash-attn",
    "numpy",
    "sentence-transformers",
    "bm25s",
    "ir-measures",
    "pytrec-eval-terrier",
    "ir-datasets",
    "gguf",
)
_LOADED: dict[
    str, dict
] = {}  # what this process loaded: "model:<name>" / "tokenizer:<name>" → facts


def scrub(obj, key: str = ""):
    """A copy with secrets replaced by ``***`` (by key name, token prefixes, URL passwords)."""
    if isinstance(obj, dict):
        return {k: scrub(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v, key) for v in obj]
    if isinstance(obj, str):
        if obj and _SECRET_KEY.search(key) and not key.lower().endswith("_env"):
            return REDACTED
        if _SECRET_VALUE.match(obj):
            return REDACTED
        return _URL_PASSWORD.sub(rf"\1:{REDACTED}@", obj)
    return obj


def scrub_override(text: str) -> str:
    """``key.path=value`` with the value scrubbed as ``scrub`` would under the last key segment."""
    key, sep, value = text.partition("=")
    return f"{key}{sep}{scrub(value, key.rsplit('.', 1)[-1].lstrip('+~'))}" if sep else scrub(text)


def git_state(root: Path = ROOT) -> dict:
    """Commit, whether the tree has uncommitted changes, and which paths; ``error`` when unknown."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout

    try:
        changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line.strip()]
        return {
            "commit": git("rev-parse", "HEAD").strip(),
            "dirty": bool(changed),
            "changed": changed,
        }
    except subprocess.CalledProcessError as e:  # e.g. "fatal: not a git repository"
        return {"commit": None, "error": (e.stderr or str(e)).strip()}
    except (OSError, subprocess.SubprocessError) as e:  # no git, or it hung
        return {"commit": None, "error": f"{type(e).__name__}: {e}"}


def package_versions() -> dict[str, str]:
    """Every installed distribution → version (what ``pip freeze`` would list), sorted by name."""
    versions = {
        d.metadata["Name"].lower(): d.version
        for d in metadata.distributions()
        if d.metadata["Name"]
    }
    return dict(sorted(versions.items()))


def hardware() -> dict:
    """Host, CPU model and count, memory, GPUs (name and memory) and the CUDA/cuDNN builds."""
    import torch

    gpus = (
        [
            {
                "name": torch.cuda.get_device_name(i),
                "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
            }
            for i in range(torch.cuda.device_count())
        ]
        if torch.cuda.is_available()
        else []
    )
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "gpus": gpus,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    }


def rerun_command(hydra_cfg, overrides: list[str]) -> str:
    """The command that runs this job alone: script, extra config dirs, config name, overrides."""
    parts = ["python", f"{hydra_cfg.job.name}.py"]
    for source in hydra_cfg.runtime.config_sources:
        if source.provider == "command-line" and source.schema == "file":  # --config-dir
            parts += ["--config-dir", os.path.relpath(source.path, hydra_cfg.runtime.cwd)]
    parts += ["--config-name", hydra_cfg.job.config_name, *overrides]
    return " ".join(shlex.quote(p) for p in parts)


def build_record(cfg, hydra_cfg) -> dict:
    """The record for the running Hydra job (``cfg``: its config, ``hydra_cfg``: HydraConfig.get())."""
    overrides = [scrub_override(o) for o in hydra_cfg.overrides.task]
    packages = package_versions()
    return {
        "command": rerun_command(hydra_cfg, overrides),
        "argv": [scrub_override(a) for a in sys.argv],
        "cwd": hydra_cfg.runtime.cwd,
        "overrides": overrides,
        "seed": cfg.get("seed"),
        "git": git_state(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "packages": packages,
        "hardware": hardware(),
        "cluster": {k: os.environ[k] for k in _CLUSTER_ENV if k in os.environ},
        "scoring": scoring_versions(packages),
    }


def scoring_versions(packages: dict[str, str] | None = None) -> dict[str, str | None]:
    """``SCORING_PACKAGES`` → version in ``packages`` (default: the installed ones; None: absent)."""
    versions = {
        normal_name(name): version for name, version in (packages or package_versions()).items()
    }
    return {name: versions.get(normal_name(name)) for name in SCORING_PACKAGES}


def read_record(run_dir: str | Path) -> dict:
    """A run directory's ``repro.json``, or a one-line DataError (missing, not JSON, not an object)."""
    path = Path(run_dir) / RECORD
    if not path.is_file():
        raise DataError(
            f"{path}: no reproducibility record (the run was not made by train.py or evaluate.py)"
        )
    record = read_json(path)
    if not isinstance(record, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(record).__name__}")
    return record


def normal_name(name: str) -> str:
    """A distribution name as PEP 503 compares them (``ir_measures`` = ``ir-measures``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def note_loaded(kind: str, name: str, facts: dict) -> None:
    """Remember that this process loaded a ``kind`` ("model", "tokenizer") ``name``, for ``repro.json``'s ``loaded``."""
    _LOADED[f"{kind}:{name}"] = facts


def loaded() -> dict[str, dict]:
    return dict(sorted(_LOADED.items()))


def write_record(run_dir: str | Path, cfg) -> Path:
    """Write ``<run_dir>/repro.json`` from the global-zero process (other ranks write nothing)."""
    from hydra.core.hydra_config import HydraConfig

    path = Path(run_dir) / RECORD
    if rank_world()[0] == 0:
        atomic_write_json(path, build_record(cfg, HydraConfig.get()))
    return path


FINISHED = "finished"  # the key of repro.json a run that ended well gets: its end time


def mark_finished(run_dir: str | Path) -> None:
    """Record in ``<run_dir>/repro.json`` that the run ended well (global zero only)."""
    path = Path(run_dir) / RECORD
    if rank_world()[0] == 0:
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        atomic_write_json(
            path,
            {
                **record,
                "loaded": {**record.get("loaded", {}), **loaded()},
                FINISHED: datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )


def refuse_finished(run_dir: str | Path) -> None:
    """A DataError if ``run_dir`` holds a finished run (``repro.json`` says so, or ``metrics.json`` exists): a new run
    never changes a finished one's files."""
    run_dir = Path(run_dir)
    found = None
    try:
        found = json.loads((run_dir / RECORD).read_text(encoding="utf-8")).get(FINISHED)
    except (OSError, ValueError, AttributeError):
        pass  # no record, or one a killed run left half-written: not finished
    if found:
        why = f"{RECORD} says it finished at {found}"
    elif (run_dir / "metrics.json").is_file():
        why = "it holds metrics.json"
    else:
        return
    raise DataError(
        f"{run_dir}: this run directory holds a finished run ({why}); a new run never changes it: "
        "choose another hydra.run.dir (or delete this one to redo the run)"
    )


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None
