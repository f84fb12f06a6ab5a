"""Atomic file writes and copies (readers never see a half-written file, and a crash loses
nothing old), the JSONL reader, and an inter-process lock for caches that concurrent jobs build once."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from dear.errors import DataError, at

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write, binary: bool = False) -> None:
    """``write(f)`` into a temporary sibling of ``path`` (same filesystem), fsync, rename: ``path``
    is the old file or the whole new one, never a part (a full disk, a kill)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would make results unreadable to co-workers
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
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
    """``shutil.copy2`` through ``atomic_write``: ``dst`` appears whole or not at all, so a job
    that finds it existing never reads a copy another job is still writing."""

    def copy(f):
        with open(src, "rb") as source:
            shutil.copyfileobj(source, f)

    atomic_write(dst, copy, binary=True)
    shutil.copystat(src, dst)


def atomic_dir(directory: str | Path, write, replace: bool = True) -> Path:
    """``write(tmp)`` fills a temporary sibling folder, which is then renamed to ``directory``: a
    crash never leaves a half-written folder. ``replace``: an existing ``directory`` is swapped
    out (set aside, then deleted); otherwise one that another process finished first is kept and
    this copy dropped."""
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
    """``(line number, value)`` for every non-blank line of a JSONL file (a BOM is skipped); a
    missing file or a line that is not JSON is a DataError naming ``file:line``."""
    for lineno, line in read_lines(path):
        yield lineno, json_line(line, path, lineno)


def read_lines(path: str | Path):
    """``(line number, line without its newline)`` for every non-blank line of a text file; a BOM
    is skipped (it would glue itself to the first id), a missing file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{at(path)}: file not found")
    with path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield lineno, line.rstrip("\r\n")


def json_line(line: str, path: str | Path, lineno: int):
    """One JSONL line parsed, or a DataError naming ``file:line``."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{at(path, lineno)}: invalid JSON ({e.msg})") from None


@contextmanager
def exclusive_lock(path: str | Path):
    """Hold an exclusive POSIX ``flock`` on ``path`` (created, with its folder) for the block:
    concurrent jobs building the same cache wait for the first instead of racing it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class JsonlAppender:
    """Append-only JSONL that survives being killed: one ``write`` + ``fsync`` per line, and on
    open a torn last line (a kill mid-write) is cut off, so every line read back is whole."""

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
        return [json_line(line, self.path, i) for i, line in enumerate(keep.decode("utf-8").splitlines(), start=1)
                if line.strip()]

    def append(self, row: dict) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows.append(row)

    def close(self) -> None:
        self._file.close()
