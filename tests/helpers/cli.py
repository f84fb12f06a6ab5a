"""Run the entry points as a user does (a subprocess in the repository root) and read their errors."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def files_benchmark(toy_files, out, *extra: str) -> list[str]:
    return [
        "evaluate.py",
        "benchmark=files",
        f"benchmark.candidates={toy_files['run']}",
        f"benchmark.qrels={toy_files['qrels']}",
        f"hydra.run.dir={out}",
        *extra,
    ]


def tiny_distillation(flag_jsonl, tiny_bert_cls, steps: int = 4) -> list[str]:
    """``train.py`` overrides: a tiny cross-encoder student and teacher on the FlagEmbedding toy data,
    ``steps`` optimizer steps of 2 groups of 4, no progress bar."""
    return [
        "data=flagembedding",
        f"data.train.path={flag_jsonl}",
        "student=minilm_cross_encoder",
        f"student.model={tiny_bert_cls}",
        "student.lora.target_modules=[query,value]",
        "teacher=rankllama_13b",
        f"teacher.model={tiny_bert_cls}",
        "teacher.pooling=auto",
        "data.group_size=4",
        "data.batch_size=2",
        f"trainer.max_steps={steps}",
        "~callbacks.progress",
    ]


def assert_one_line_error(proc: subprocess.CompletedProcess, expected: str) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr[-2000:]
    assert expected in errors[0], errors[0]
    return errors[0]
