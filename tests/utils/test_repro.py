"""The reproducibility record (repro.json) and secret scrubbing."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from omegaconf import OmegaConf

from dear.utils.repro import (
    REDACTED,
    git_state,
    package_versions,
    rerun_command,
    scrub,
    scrub_override,
)
from tests.helpers import ROOT


def test_scrub_removes_secrets_and_keeps_everything_else():
    config = {
        "endpoint": {
            "api_key": "abc123",
            "api_key_env": "OPENAI_API_KEY",
            "max_new_tokens": 512,
            "base_url": "https://user:hunter2@example.org/v1",
        },
        "hf_token": "hf_" + "x" * 30,
        "tokenizer": "tiny",
        "nested": [{"password": "p"}, {"note": "sk-" + "a" * 40}],
        "empty_token": "",
        "seed": 0,
    }
    assert scrub(config) == {
        "endpoint": {
            "api_key": REDACTED,
            "api_key_env": "OPENAI_API_KEY",
            "max_new_tokens": 512,
            "base_url": f"https://user:{REDACTED}@example.org/v1",
        },
        "hf_token": REDACTED,
        "tokenizer": "tiny",
        "nested": [{"password": REDACTED}, {"note": REDACTED}],
        "empty_token": "",
        "seed": 0,
    }
    assert scrub_override("+endpoint.api_key=abc") == f"+endpoint.api_key={REDACTED}"
    assert (
        scrub_override("alpha=a0.1") == "alpha=a0.1"
        and scrub_override("--multirun") == "--multirun"
    )


def test_git_state_names_the_commit_or_why_not(tmp_path):
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    state = git_state(ROOT)
    assert (
        state["commit"] == head
        and isinstance(state["dirty"], bool)
        and state["dirty"] == bool(state["changed"])
    )
    outside = git_state(tmp_path)
    assert outside["commit"] is None and "not a git repository" in outside["error"]


def test_package_versions_are_the_installed_ones():
    versions = package_versions()
    assert (
        versions["torch"] == torch.__version__ and "hydra-core" in versions and "dear" in versions
    )


def test_rerun_command_reproduces_one_job_of_a_sweep():
    hydra_cfg = OmegaConf.create(
        {
            "job": {"name": "train", "config_name": "toy"},
            "runtime": {
                "cwd": "/repo",
                "config_sources": [
                    {"path": "hydra.conf", "schema": "pkg", "provider": "hydra"},
                    {"path": "/repo/conf", "schema": "file", "provider": "main"},
                    {"path": "/repo/sweeps", "schema": "file", "provider": "command-line"},
                ],
            },
        }
    )
    command = rerun_command(hydra_cfg, ["alpha=a0.1", "loss=pointce", "logger.wandb.tags=[a b]"])
    assert command == (
        "python train.py --config-dir sweeps --config-name toy alpha=a0.1 loss=pointce "
        "'logger.wandb.tags=[a b]'"
    )


def test_evaluate_writes_the_record(toy_files, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            "benchmark=files",
            f"benchmark.candidates={toy_files['json']}",
            f"benchmark.qrels={toy_files['qrels']}",
            "+seed=7",
            "+endpoint.api_key=s3cret",
            f"hydra.run.dir={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "repro.json").read_text())
    assert record["command"].startswith(
        "python evaluate.py --config-name evaluate benchmark=files "
    )
    # quoted for the shell
    assert record["command"].endswith(f"+seed=7 '+endpoint.api_key={REDACTED}'")
    assert "s3cret" not in (out / "repro.json").read_text()
    assert record["seed"] == 7 and record["git"]["commit"] and record["packages"]["hydra-core"]
    assert record["hardware"]["cpu_count"] >= 1 and record["python"] == ".".join(
        map(str, sys.version_info[:3])
    )
    assert record["argv"][0] == "evaluate.py" and record["cwd"] == str(ROOT)
    # None when absent
    assert record["scoring"]["torch"] == torch.__version__ and "vllm" in record["scoring"]
    assert record["loaded"] == {} and record["finished"]  # BM25 alone loads no model


def test_evaluate_records_the_models_it_loaded(toy_files, tmp_path, tiny_bert_cls):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            "benchmark=files",
            f"benchmark.candidates={toy_files['json']}",
            f"benchmark.qrels={toy_files['qrels']}",
            "pipeline=pointwise",
            "pointwise=minilm_cross_encoder",
            f"pointwise.model={tiny_bert_cls}",
            "pointwise.dtype=float32",
            f"hydra.run.dir={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads((out / "repro.json").read_text())["loaded"]
    model, tokenizer = loaded[f"model:{tiny_bert_cls}"], loaded[f"tokenizer:{tiny_bert_cls}"]
    assert model["dtype"] == "float32" and model["device"] == "cpu" and len(model["files"]) == 16
    assert len(tokenizer["fingerprint"]) == 16
