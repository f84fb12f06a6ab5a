"""A listwise SFT export run as it was trained and evaluated (``listwise=export listwise.path=RUN``).

``dear_listwise.json`` beside the adapter records the prompt, sliding window (and ``constrained`` decoding and
``scoring`` when the module's reranker sets them) and generation settings;
``reranker_from_export`` rebuilds that reranker, with anything given explicitly (cache directory, ``top_k``, back-end
options) winning.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dear.errors import DataError, json_object
from dear.listwise.prompts import ListwisePrompt
from dear.utils.io import read_json

EXPORT_META = "dear_listwise.json"


def export_settings(reranker, generation: dict) -> dict | None:
    """The meta file from the module's ``ListwiseReranker`` partial and generation options (None: prompt unknown)."""
    keywords = dict(getattr(reranker, "keywords", {}))
    prompt = keywords.pop("prompt", None)
    if isinstance(prompt, ListwisePrompt):
        prompt = dataclasses.asdict(prompt)
    if not isinstance(prompt, dict):
        return None
    prompt = {k: v for k, v in prompt.items() if k != "_target_"}
    window = {
        k: keywords[k] for k in ("window_size", "step", "constrained", "scoring") if k in keywords
    }
    return {"format": 1, "prompt": prompt, **window, "generation": dict(generation)}


def export_dir(path: str | Path) -> Path:
    """``path`` or its ``export/`` — whichever holds ``dear_listwise.json``."""
    path = Path(path)
    for candidate in (path, path / "export"):
        if (candidate / EXPORT_META).is_file():
            return candidate
    raise DataError(
        f"{path}: not a listwise SFT run or export (no {EXPORT_META} in it or in its export/); "
        "train one with `python train.py --config-name train_listwise`"
    )


def reranker_from_export(
    path: str,
    cache_dir: str | None = None,
    top_k: int | None = None,
    window_size: int | None = None,
    step: int | None = None,
    prompt: dict | None = None,
    backend: dict | None = None,
    constrained: bool | None = None,
    scoring: str | None = None,
):
    """The export's ``ListwiseReranker``, ``prompt``/``window_size``/``step``/``backend``/``constrained``/``scoring``
    overriding its settings."""
    from dear.listwise.backends.hf import TransformersBackend
    from dear.listwise.reranker import ListwiseReranker

    directory = export_dir(path)
    meta_path = directory / EXPORT_META
    meta = json_object(read_json(meta_path), str(meta_path))
    for key, kind in (("prompt", dict), ("generation", dict)):
        if not isinstance(meta.get(key), kind):
            raise DataError(f"{meta_path}: field {key!r} must be a JSON object")
    settings = {
        **meta["prompt"],
        **{k: v for k, v in (prompt or {}).items() if k != "_target_" and v is not None},
    }
    generation = {
        **meta["generation"],
        **{k: v for k, v in (backend or {}).items() if v is not None},
    }
    return ListwiseReranker(
        backend=TransformersBackend(str(directory), **generation),
        prompt=ListwisePrompt(**settings),
        window_size=window_size or meta.get("window_size", 20),
        step=step or meta.get("step", 10),
        top_k=top_k,
        cache_dir=cache_dir,
        constrained=meta.get("constrained", False) if constrained is None else constrained,
        scoring=meta.get("scoring", "generate") if scoring is None else scoring,
    )
