"""Generations cached on disk by content, so a killed listwise run resumes where it stopped.

One JSON file per window at ``<dir>/<key[:2]>/<key>.json``, written atomically once generated. The key is the sha256
of everything deciding the output: the back end's identity (model, adapter, decoding settings, seed) and the exact
prompt (messages, chat template or not).
"""

from __future__ import annotations

import hashlib
import json
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
        if (
            not isinstance(row, dict)
            or "text" not in row
            or set(row) - set(kinds)
            or any(type(v) is not kinds[k] for k, v in row.items())
        ):  # type(): True is no token count
            raise DataError(
                f"{path}: not a cached generation (expected {{text, finish, prompt_tokens, "
                f"completion_tokens}} as string, string, integer, integer); {again}"
            )
        return Generation(**row)

    def put(self, key: str, gen: Generation) -> None:
        atomic_write_json(self.path(key), asdict(gen))
