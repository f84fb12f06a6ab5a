"""Generations cached on disk by content, so a killed listwise run resumes where it stopped.

One JSON file per window at ``<dir>/<key[:2]>/<key>.json``, written atomically once generated. The key is the sha256
of everything deciding the output: the back end's identity (model, adapter, decoding settings, seed) and the exact
prompt (messages, chat template or not). A scored window (``listwise.scoring=first_id``) keeps its ids'
log-probabilities beside the ranking they give.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path

from dear.errors import DataError
from dear.listwise.backends.base import Generation
from dear.utils.io import atomic_write_json, read_json


class GenerationCache:
    def __init__(self, directory: str | Path, identity: dict):
        self.dir = Path(directory)
        self.identity = json.dumps(identity, sort_keys=True)

    def key(self, messages: list[dict[str, str]], chat: bool) -> str:
        text = json.dumps(
            {"backend": self.identity, "chat": chat, "messages": messages}, sort_keys=True
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> Generation | None:
        path = self.path(key)
        if not path.exists():
            return None
        again = "delete the file to generate the window again"
        try:
            row = read_json(path)
        except DataError as e:
            raise DataError(f"{e}; {again}") from None
        kinds = {"text": str, "finish": str, "prompt_tokens": int, "completion_tokens": int}
        scores = row.pop("scores", None) if isinstance(row, dict) else None
        if (
            not isinstance(row, dict)
            or "text" not in row
            or set(row) - set(kinds)
            or any(type(v) is not kinds[k] for k, v in row.items())
            or not (scores is None or _numbers(scores))
        ):  # type(): True is no token count
            raise DataError(
                f"{path}: not a cached generation (expected {{text, finish, prompt_tokens, "
                f"completion_tokens[, scores]}} as string, string, integer, integer[, list of "
                f"numbers]); {again}"
            )
        return Generation(**row, scores=None if scores is None else tuple(map(float, scores)))

    def put(self, key: str, gen: Generation) -> None:
        row = asdict(gen)
        if row["scores"] is None:  # a generated window: the file as it always was
            del row["scores"]
        atomic_write_json(self.path(key), row)


def _numbers(value) -> bool:
    return isinstance(value, list) and all(
        type(x) in (int, float) and math.isfinite(x) for x in value
    )
