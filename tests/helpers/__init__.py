"""Shared test helpers (not tests): paths, and modules per area that several test files use."""

from __future__ import annotations

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
