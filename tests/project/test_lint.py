"""``ruff check .`` passes (the rules in pyproject.toml [tool.ruff]), so lint errors fail the suite."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_ruff_check_passes():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"ruff check . failed:\n{proc.stdout}{proc.stderr}"
