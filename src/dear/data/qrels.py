"""Relevance judgments: a TREC qrels file or an ir_datasets id, behind one lookup."""

from __future__ import annotations

from dear.data import irds
from dear.data.texts import is_file_spec
from dear.data.trec import read_qrels
from dear.errors import DataError


def load_qrels(spec: str) -> dict[str, dict[str, int]]:
    """qid → {docid: grade} from a TREC qrels file or an ir_datasets id."""
    if is_file_spec(spec):
        return read_qrels(spec)
    qrels: dict[str, dict[str, int]] = {}
    for q in irds.load(spec).qrels_iter():
        qrels.setdefault(q.query_id, {})[q.doc_id] = int(q.relevance)
    if not qrels:
        raise DataError(f"ir_datasets {spec!r} has no qrels")
    return qrels
