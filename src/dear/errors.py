"""One error type for bad input, always naming where the problem is."""

from __future__ import annotations

import math
import re
from pathlib import Path


class DataError(ValueError):
    """Malformed or missing input. The message names the file and line, or the config field."""


class ConfigError(DataError):
    """A config field holds a value that cannot work; the message names the field (``benchmark.depth``)."""


class EndpointError(DataError):
    """A model endpoint cannot be reached; the message names its URL (credentials masked)."""


def positive_depth(value, field: str) -> int:
    """``value`` as a depth ≥ 1, else a ConfigError naming ``field`` (Python slicing would silently accept 0 and -1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{field}: expected an integer depth >= 1, found {value!r}")
    return value


def finite_number(value, where: str) -> float:
    """A JSON score as a finite float (ASCII-decimal strings count: DPR writes them), else a DataError."""
    number = math.nan
    if isinstance(value, str):
        number = _float(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any double
            pass
    if not math.isfinite(number):
        raise DataError(f"{where}: expected a finite number, found {shown(value)}")
    return number


# trec_eval's atof/atol read the longest numeric prefix ("2x" is 2); Python reads "1_0" as 10 and non-ASCII
# digits. Only a wholly ASCII-decimal field is read, where both agree.
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
INT64_MAX = 2**63 - 1


def _float(text: str) -> float:
    """``text`` as a float when it is wholly an ASCII decimal, else NaN."""
    return float(text) if _FLOAT.fullmatch(text) else math.nan


def trec_float(text: str, where: str, field: str = "score") -> float:
    """A TREC field as a finite float (wholly ASCII decimal), else a DataError naming ``where`` and ``field``."""
    number = _float(text)
    if not math.isfinite(number):
        raise DataError(f"{where}: {field} must be a finite number, found {shown(text)}")
    return number


def trec_int(text: str, where: str, field: str, limit: int = INT64_MAX) -> int:
    """A TREC field as an ASCII integer in ``[-limit, limit]``, else a DataError naming ``where`` and ``field``."""
    if not _INT.fullmatch(text):
        raise DataError(f"{where}: {field} must be an integer, got {shown(text)}")
    if len(text) > 4000 or abs(value := int(text)) > limit:  # int() refuses 4300 digits
        raise DataError(
            f"{where}: {field} must be an integer from {-limit} to {limit}, got {shown(text)}"
        )
    return value


_JSON_KINDS = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


def json_text(value, where: str, expected: str = "a string") -> str:
    """A JSON string field, else a DataError; a lone surrogate (``"\\ud800"``) is no text (not UTF-8 writable)."""
    if not isinstance(value, str):
        raise DataError(f"{where}: expected {expected}, found {_kind(value)}")
    surrogate = _SURROGATE.search(value)
    if surrogate:
        raise DataError(
            f"{where}: not valid Unicode (a lone surrogate U+{ord(surrogate.group()):04X})"
        )
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_id(value, where: str) -> str:
    """A JSON id: a string, or an integer (rank_llm's qids) as decimal text; anything else is a DataError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return json_text(value, where, "a string or integer id")


def json_list(value, where: str, of: str = "strings") -> list:
    """A JSON list (of ``of``), else a DataError naming ``where``."""
    if not isinstance(value, list):
        raise DataError(f"{where}: expected a list of {of}, found {_kind(value)}")
    return value


def json_texts(value, where: str) -> list[str]:
    """A JSON list of strings (a bare string would otherwise be read one character at a time)."""
    return [json_text(x, f"{where}[{i}]") for i, x in enumerate(json_list(value, where))]


def json_object(value, where: str, *required: str) -> dict:
    """A JSON object holding every ``required`` key, else a DataError naming ``where``."""
    if not isinstance(value, dict):
        keys = f" with {list(required)}" if required else ""
        raise DataError(f"{where}: expected an object{keys}, found {_kind(value)}")
    missing = [k for k in required if k not in value]
    if missing:
        raise DataError(f"{where} is missing field(s) {missing}")
    return value


def _kind(value) -> str:
    """``a list: ['x']``: the JSON kind of ``value`` and the value, cut short."""
    return f"{_JSON_KINDS.get(type(value), type(value).__name__)}: {shown(value)}"


ECHO = 80


def shown(value) -> str:
    """``repr(value)`` cut to ``ECHO`` characters plus ``… (N characters)``: errors never echo huge inputs."""
    if isinstance(value, str):
        return repr(value) if len(value) <= ECHO else f"{value[:ECHO]!r}… ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= ECHO else f"{text[:ECHO]}… ({len(text)} characters)"


def at(path: str | Path, line: int | None = None) -> str:
    """Human-readable location: ``file.txt:12`` (1-based line) or ``file.txt``."""
    return f"{path}:{line}" if line is not None else str(path)
