"""ir_datasets access with errors that say which id was wrong, and an optional offline mirror."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from dear.errors import DataError
from dear.utils.io import atomic_copy, exclusive_lock


def use_home(home: str | None, mirror: str | None = None) -> None:
    """Point ir_datasets at ``home``, filled from a read-only ``mirror`` (atomic copies, existing files kept)."""
    if home:
        os.environ["IR_DATASETS_HOME"] = str(Path(home).expanduser())
    if mirror and Path(mirror).is_dir():
        target = Path(os.environ.get("IR_DATASETS_HOME", Path.home() / ".ir_datasets"))
        for src in Path(mirror).rglob("*"):
            dst = target / src.relative_to(mirror)
            if src.is_file() and not dst.exists():
                atomic_copy(src, dst)


@cache
def load(dataset_id: str):
    """``ir_datasets.load`` that fails with the id named instead of a bare KeyError."""
    import ir_datasets

    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        raise DataError(
            f"unknown ir_datasets id {dataset_id!r} (and no file at that path); "
            "see https://ir-datasets.com for the list of ids"
        ) from None


def doc_fields(doc) -> tuple[str, str]:
    """(title, text) of an ir_datasets doc; datasets without a title give ''."""
    title = getattr(doc, "title", "") or ""
    text = getattr(doc, "text", None)
    if text is None:  # e.g. msmarco-document has 'body'
        text = getattr(doc, "body", "") or ""
    return title, text


def query_text(query, field: str = "text") -> str:
    value = getattr(query, field, None)
    if value is None:
        raise DataError(
            f"ir_datasets query {query.query_id!r} has no field {field!r} (has {query._fields})"
        )
    return value


def docs_key(dataset_id: str) -> str:
    """Corpus identity for caches: splits of one collection (``beir/scifact/train``, ``/test``) share one BM25 index."""
    import ir_datasets

    load(dataset_id)  # unknown ids fail here, with the id named
    return ir_datasets.docs_parent_id(dataset_id) or dataset_id


def docs_store(dataset_id: str):
    """The docstore, built whole under a file lock first: ir_datasets counts a half-built store as built."""
    store = load(dataset_id).docs_store()
    path = getattr(store, "path", None)
    if (
        path and hasattr(store, "build") and hasattr(store, "built")
    ):  # lock first: a half-built store counts as built
        with exclusive_lock(f"{path}.lock"):
            store.build()
    return store


def docs_iter(dataset_id: str):
    """The dataset's documents in order, its docstore built first (as ``docs_store``): many corpora iterate it."""
    docs_store(dataset_id)
    return load(dataset_id).docs_iter()
