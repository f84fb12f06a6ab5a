"""Reading DeAR-COT sets (the released one or ours) and appending to ours crash-safely.

Sources: a local ``.jsonl``/``.json`` or ``.parquet`` file, a local dataset folder, or a Hugging
Face dataset id (``abdoelsayed/DeAR-COT``, through ``datasets``; cached, offline once cached).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dear.errors import DataError, at
from dear.listwise.examples import CotExample

RELEASED = "abdoelsayed/DeAR-COT"


def load_cot(source: str, split: str = "train", limit: int | None = None) -> list[CotExample]:
    """Examples from ``source`` (see module doc), validated, at most ``limit``."""
    path = Path(source)
    if path.is_file() and path.suffix in (".jsonl", ".json"):
        rows = _jsonl_rows(path)
    elif path.is_file() and path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = ((f"{at(path)}: row {i}", r) for i, r in enumerate(pq.read_table(path).to_pylist()))
    elif path.is_file():
        raise DataError(f"{at(path)}: a DeAR-COT file must be .jsonl, .json or .parquet")
    else:
        rows = _hub_rows(source, split)
    examples = []
    for where, row in rows:
        examples.append(CotExample.from_record(row, where))
        if limit is not None and len(examples) >= limit:
            break
    if not examples:
        raise DataError(f"{source}: no DeAR-COT examples")
    return examples


def _jsonl_rows(path: Path):
    with path.open(encoding="utf-8") as f:
        head = f.read(1)
        f.seek(0)
        if head == "[":  # one JSON list instead of lines
            try:
                yield from ((f"{at(path)}: entry [{i}]", r) for i, r in enumerate(json.load(f)))
            except json.JSONDecodeError as e:
                raise DataError(f"{at(path, e.lineno)}: invalid JSON ({e.msg})") from None
            return
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield at(path, lineno), _json_line(line, path, lineno)


def _json_line(line: str, path: Path, lineno: int) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{at(path, lineno)}: invalid JSON ({e.msg})") from None


def _hub_rows(source: str, split: str):
    import datasets

    try:
        ds = datasets.load_dataset(source, split=split)
    except Exception as e:  # noqa: BLE001 - re-raised with the source and what was tried
        raise DataError(f"{source}: not a local file, and loading it as a Hugging Face dataset (split {split!r}) "
                        f"failed: {type(e).__name__}: {e}") from e
    return ((f"{source}[{split}] row {i}", row) for i, row in enumerate(ds))


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
        return [_json_line(line, self.path, i) for i, line in enumerate(keep.decode("utf-8").splitlines(), start=1)
                if line.strip()]

    def append(self, row: dict) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.rows.append(row)

    def close(self) -> None:
        self._file.close()
