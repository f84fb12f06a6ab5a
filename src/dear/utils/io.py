"""Atomic file writes and copies (readers never see a half-written file; a crash loses nothing old), readers of text,
JSON and JSONL with one-line ``DataError``s, and an inter-process lock for caches built once."""

from __future__ import annotations

import codecs
import csv
import fcntl
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from dear.errors import DataError, at

csv.field_size_limit(sys.maxsize)  # a passage may be long
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write, binary: bool = False) -> None:
    """``write(f)`` into a temporary sibling, fsync, rename: ``path`` is old or whole new, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would make results unreadable to co-workers
    try:
        with os.fdopen(
            fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})
        ) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """``shutil.copy2`` through ``atomic_write``: ``dst`` appears whole or not at all."""

    def copy(f):
        with open(src, "rb") as source:
            shutil.copyfileobj(source, f)

    atomic_write(dst, copy, binary=True)
    shutil.copystat(src, dst)


def atomic_dir(directory: str | Path, write, replace: bool = True) -> Path:
    """Fill a temporary sibling folder and rename it (a crash never leaves a half folder); ``replace``: swap out an
    existing one, else keep one another process finished first."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp's 0700 would hide the folder from co-workers
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = directory.with_name(f".{directory.name}.old") if replace and directory.exists() else None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
    try:
        tmp.rename(directory)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if replace:
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return directory


def read_jsonl(path: str | Path):
    """``(line number, value)`` per non-blank JSONL line (BOM skipped); a DataError names ``file:line``."""
    for lineno, line in read_lines(path):
        yield lineno, json_line(line, path, lineno)


def read_lines(path: str | Path):
    """``(line number, line)`` for every line of a text file (as ``text_lines``) with non-whitespace content."""
    for lineno, line in text_lines(path):
        if line.strip(ASCII_SPACE):
            yield lineno, line


ASCII_SPACE = (
    " \t\n\r\f\v"  # C's isspace(), what trec_eval splits on (str.split() also splits on U+00A0 …)
)


def text_lines(path: str | Path):
    """``(line number, line)`` of a UTF-8 file, split at newlines only (as trec_eval), BOM skipped; a missing file or
    non-UTF-8 line is a one-line DataError."""
    with open_input(path) as f:
        for lineno, raw in enumerate(f, start=1):
            yield (
                lineno,
                decoded(
                    raw[3:] if lineno == 1 and raw.startswith(codecs.BOM_UTF8) else raw,
                    path,
                    lineno,
                ).rstrip("\r\n"),
            )


def tsv_rows(lines, path: str | Path):
    """Tab-separated CSV rows (quoted fields) → ``(line of the row's end, row)``, else a DataError."""
    last = [0]

    def feed():
        for last[0], line in lines:
            yield line + "\n"

    reader = csv.reader(feed(), delimiter="\t")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(
                f"{at(path, last[0])}: malformed tab-separated line ({str(e).split(' - ')[0]})"
            ) from None
        yield last[0], row


def decoded(raw: bytes, path: str | Path, lineno: int = 1) -> str:
    """``raw`` (starting at line ``lineno``) as UTF-8 text, or a DataError naming ``file:line``."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = lineno + raw.count(b"\n", 0, e.start)
        raise DataError(f"{at(path, line)}: not UTF-8 text (byte {raw[e.start]:#04x})") from None


def open_input(path: str | Path):
    """``path`` opened for binary reading, or a one-line DataError naming it."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{at(path)}: file not found") from None
    except OSError as e:
        raise DataError(
            f"{at(path)}: cannot read the file ({e.strerror or type(e).__name__})"
        ) from None


def read_text(path: str | Path) -> str:
    """A whole UTF-8 file as text (a BOM skipped), with one-line DataErrors as ``text_lines``."""
    with open_input(path) as f:
        data = f.read()
    return decoded(data[3:] if data.startswith(codecs.BOM_UTF8) else data, path)


def read_json(path: str | Path):
    """A JSON file's value, or a one-line DataError naming the file (and line)."""
    return json_line(read_text(path), path)


def first_char(path: str | Path) -> str:
    """A file's first non-BOM, non-whitespace character ('' for none): '[' or '{' tell JSON from a line format."""
    with open_input(path) as f:
        head = f.read(4096)
    head = head[3:] if head.startswith(codecs.BOM_UTF8) else head
    return chr(head.lstrip()[0]) if head.strip() else ""


def json_line(line: str, path: str | Path, lineno: int | None = None):
    """JSON text parsed (a JSONL line at ``lineno``, or a whole file), or a DataError naming ``file:line``."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{at(path, lineno or e.lineno)}: invalid JSON ({e.msg})") from None
    except RecursionError:
        raise DataError(f"{at(path, lineno)}: JSON nested too deeply") from None
    except ValueError as e:  # an integer of more digits than Python converts (4300)
        raise DataError(f"{at(path, lineno)}: invalid JSON ({str(e).split(':')[0]})") from None


@contextmanager
def exclusive_lock(path: str | Path):
    """Hold an exclusive POSIX ``flock`` on ``path`` (created with its folder) for the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class JsonlAppender:
    """Append-only JSONL surviving a kill: ``fsync`` per line, a torn last line cut on open."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = self._recover()
        self._file = self.path.open("a", encoding="utf-8")

    def _recover(self) -> list[dict]:
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        keep = data[: data.rfind(b"\n") + 1]  # everything up to the last complete line
        if len(keep) < len(data):
            with self.path.open("r+b") as f:
                f.truncate(len(keep))
        lines = decoded(keep, self.path).split("\n")
        return [
            json_line(line, self.path, i) for i, line in enumerate(lines, start=1) if line.strip()
        ]

    def append(self, row: dict) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows.append(row)

    def close(self) -> None:
        self._file.close()
