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


def assert_one_line_error(proc: subprocess.CompletedProcess, expected: str) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr[-2000:]
    assert expected in errors[0], errors[0]
    return errors[0]
