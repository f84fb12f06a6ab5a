"""One error type for bad input, always naming where the problem is."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Malformed or missing input. The message names the file and line, or the config field."""


class ConfigError(DataError):
    """A config field holds a value that cannot work; the message names the field (``benchmark.depth``)."""


class EndpointError(DataError):
    """A model endpoint cannot be reached; the message names its URL (credentials masked)."""


def positive_depth(value, field: str) -> int:
    """``value`` as a depth ≥ 1, else a ConfigError naming ``field`` (``depth=0`` would rerank
    nothing and ``-1`` all but one: Python slicing accepts both silently)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{field}: expected an integer depth >= 1, found {value!r}")
    return value


def at(path: str | Path, line: int | None = None) -> str:
    """Human-readable location: ``file.txt:12`` (1-based line) or ``file.txt``."""
    return f"{path}:{line}" if line is not None else str(path)
