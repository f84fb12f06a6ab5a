"""One error type for bad input, always naming where the problem is."""

from __future__ import annotations

import math
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


def finite_number(value, where: str) -> float:
    """A JSON score as a float, else a DataError naming ``where`` (``file: entry [3].hits[7].score``).

    Numeric strings are numbers (DPR writes its scores as strings); booleans are not, and
    neither are NaN and infinities (json's literals, or strings).
    """
    number = None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None or not math.isfinite(number):
        raise DataError(f"{where}: expected a finite number, found {value!r}")
    return number


def at(path: str | Path, line: int | None = None) -> str:
    """Human-readable location: ``file.txt:12`` (1-based line) or ``file.txt``."""
    return f"{path}:{line}" if line is not None else str(path)
