"""One error type for bad input, always naming where the problem is."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Malformed or missing input. The message names the file and line, or the config field."""


def at(path: str | Path, line: int | None = None) -> str:
    """Human-readable location: ``file.txt:12`` (1-based line) or ``file.txt``."""
    return f"{path}:{line}" if line is not None else str(path)
