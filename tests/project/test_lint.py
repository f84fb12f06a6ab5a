"""``ruff check .`` and ``ruff format --check .`` pass (pyproject.toml [tool.ruff]), so lint errors and
unformatted code fail the suite."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.parametrize(
    "command", [["check", "."], ["format", "--check", "."]], ids=["check", "format"]
)
def test_ruff_passes(command):
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"ruff {' '.join(command)} failed:\n{proc.stdout}{proc.stderr}"
