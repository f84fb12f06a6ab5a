"""Document and query texts behind one lookup. A *spec* is an existing TSV file path (docs ``docid<TAB>text`` or DPR's
``psgs_w100.tsv``; queries ``qid<TAB>text``), else an ir_datasets id."""

from __future__ import annotations

import itertools
from pathlib import Path

from dear.data import irds
from dear.errors import DataError, at, shown
from dear.utils.io import read_lines, text_lines, tsv_rows


def is_file_spec(spec: str) -> bool:
    return Path(spec).is_file()


class DocStore:
    """docid → (title, text): an ir_datasets docstore (lazy), or a TSV file / mapping held in memory."""

    def __init__(self, spec: str, docs: dict[str, tuple[str, str]] | None = None):
        self.spec = spec
        if docs is not None:
            self._local, self._store = docs, None
        elif is_file_spec(spec):
            self._local = read_docs_tsv(spec)
            self._store = None
        else:
            self._local = None
            self._store = irds.docs_store(spec)

    def get_many(self, docids) -> dict[str, tuple[str, str]]:
        docids = list(docids)
        if self._local is not None:
            found = {d: self._local[d] for d in docids if d in self._local}
        else:
            found = {d: irds.doc_fields(doc) for d, doc in self._store.get_many(docids).items()}
        missing = [d for d in docids if d not in found]
        if missing:
            raise DataError(
                f"{self.spec}: {len(missing)} document(s) not found, e.g. {missing[:3]}"
            )
        return found


def read_docs_tsv(path: str | Path) -> dict[str, tuple[str, str]]:
    """``docid<TAB>text`` lines (text may hold tabs) or DPR's CSV-quoted ``psgs_w100.tsv``; repeated docids raise."""
    lines = text_lines(path)
    head = next(lines, None)
    if head is not None and head[1].split("\t") == ["id", "text", "title"]:
        rows = _dpr_rows(lines, path)
    else:
        rows = _plain_rows(itertools.chain([head] if head else [], lines), path)
    docs = unique_ids(rows, path, "document")
    if not docs:
        raise DataError(f"{at(path)}: no documents")
    return docs


def unique_ids(rows, path, kind: str) -> dict:
    """``(line, id, value)`` rows → ``{id: value}``; an id listed twice is a DataError naming both lines."""
    found, lines = {}, {}
    for lineno, key, value in rows:
        if key in found:
            raise DataError(
                f"{at(path, lineno)}: {kind} {shown(key)} is listed twice (first at line {lines[key]})"
            )
        found[key], lines[key] = value, lineno
    return found


def _plain_rows(lines, path):
    """→ (line, docid, (title, text)) for ``docid<TAB>text`` lines."""
    for lineno, line in lines:
        if not line:
            continue
        docid, tab, text = line.partition("\t")
        if not tab:
            raise DataError(
                f"{at(path, lineno)}: a document line needs 'docid<TAB>text', found no tab"
            )
        yield lineno, docid, ("", text)


def _dpr_rows(lines, path):
    """→ (line, docid, (title, text)) for DPR's CSV-quoted ``id<TAB>text<TAB>title`` rows."""
    for lineno, row in tsv_rows(lines, path):
        if len(row) != 3:
            raise DataError(
                f"{at(path, lineno)}: DPR passages need 'id<TAB>text<TAB>title', found {len(row)} fields"
            )
        yield lineno, row[0], (row[2], row[1])


def load_queries(spec: str, field: str = "text") -> dict[str, str]:
    """qid → text from a ``qid<TAB>text`` TSV (a repeated qid is an error) or an ir_datasets id."""
    if is_file_spec(spec):
        queries = unique_ids(_query_rows(spec), spec, "query")
        if not queries:
            raise DataError(f"{at(spec)}: no queries")
        return queries
    return {q.query_id: irds.query_text(q, field) for q in irds.load(spec).queries_iter()}


def _query_rows(path):
    """→ (line, qid, text) for ``qid<TAB>text`` lines (quotes are text)."""
    for lineno, line in read_lines(path):
        row = line.split("\t")
        if len(row) != 2:
            raise DataError(
                f"{at(path, lineno)}: a query line needs 'qid<TAB>text', found {len(row)} field(s)"
            )
        yield lineno, row[0], row[1]
