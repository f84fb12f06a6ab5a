"""Training queries for Stage 1: positives and a pool of hard negatives per query, with a ``DocStore`` for texts.

- ``IrDatasetsTrainSource``: qrels positives (grade > 0); negatives from the harness's BM25 top-k (judged positives
  excluded), a TREC run, or docpairs / scoreddocs.
- ``TevatronSource``: Tevatron JSONL (``query``, ``positive_passages``, ``negative_passages``).
- ``FlagEmbeddingSource``: FlagEmbedding JSONL (``query``, ``pos``, ``neg``).

Inline passages get a content-hash docid, so teacher cache keys (qid, docid) stay stable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from dear.data import irds
from dear.data.bm25 import BM25Params
from dear.data.candidates import dataset_bm25_index
from dear.data.qrels import load_qrels
from dear.data.texts import DocStore, load_queries
from dear.data.trec import read_run
from dear.errors import DataError, at, json_id, json_list, json_object, json_text, json_texts
from dear.utils.io import read_jsonl


@dataclass(frozen=True)
class TrainQuery:
    qid: str
    text: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    # The first stage's candidate list in its own order, judged positives where it ranked them
    # (empty when the source has no ranking, e.g. JSONL positives and negatives).
    ranked: tuple[str, ...] = ()

    @property
    def docids(self) -> tuple[str, ...]:
        """Every document a group for this query can draw (what the teacher must score)."""
        return self.positives + tuple(d for d in self.negatives if d not in self.positives)


class IrDatasetsTrainSource:
    def __init__(
        self,
        dataset: str,
        negatives: str = "bm25",
        depth: int = 100,
        run: str | None = None,
        max_queries: int | None = None,
        cache_dir: str = ".cache/bm25",
        bm25: dict | None = None,
    ):
        if negatives not in ("bm25", "run", "docpairs", "scoreddocs"):
            raise DataError(
                f"data.train.negatives must be bm25, run, docpairs or scoreddocs, got {negatives!r}"
            )
        if negatives == "run" and not run:
            raise DataError("data.train.negatives=run needs data.train.run=PATH (a TREC run)")
        self.dataset, self.negatives, self.depth, self.run = dataset, negatives, depth, run
        self.max_queries, self.cache_dir, self.bm25 = (
            max_queries,
            cache_dir,
            BM25Params(**(bm25 or {})),
        )

    def describe(self) -> dict:
        """What the candidate pools depend on (part of the teacher-cache fingerprint)."""
        desc = {
            "dataset": self.dataset,
            "negatives": self.negatives,
            "depth": self.depth,
            "max_queries": self.max_queries,
        }
        if self.negatives == "bm25":
            desc["bm25"] = vars(self.bm25)
        if self.run:
            desc["run"] = {"path": str(Path(self.run).resolve()), "sha1": _file_sha1(self.run)}
        return desc

    def load(self) -> tuple[list[TrainQuery], DocStore]:
        qrels = load_qrels(self.dataset)
        positives = {q: tuple(d for d, g in rel.items() if g > 0) for q, rel in qrels.items()}
        positives = {q: p for q, p in positives.items() if p}
        texts = load_queries(self.dataset)
        qids = [q for q in texts if q in positives][: self.max_queries]
        pools = self._pools(qids, {q: texts[q] for q in qids})
        queries = [
            TrainQuery(
                q,
                texts[q],
                positives[q],
                tuple(d for d in pools.get(q, ()) if d not in positives[q]),
                tuple(pools.get(q, ())),
            )
            for q in qids
        ]
        return [tq for tq in queries if tq.negatives], DocStore(self.dataset)

    def _pools(self, qids, texts) -> dict[str, list[str]]:
        """qid → candidate docids, from the ``negatives`` source."""
        if self.negatives == "bm25":
            return self._bm25(qids, texts)
        if self.negatives == "run":
            return self._run(qids)
        if self.negatives == "docpairs":
            return self._docpairs(qids)
        return self._scoreddocs(qids, texts)

    def _bm25(self, qids, texts):
        # the harness's own index
        index = dataset_bm25_index(self.dataset, self.cache_dir, self.bm25)
        hits = index.search([texts[q] for q in qids], k=self.depth, progress=True)
        return {q: [d for d, _ in h] for q, h in zip(qids, hits)}

    def _run(self, qids):
        run = read_run(self.run)
        return {q: [d for d, _ in run.get(q, [])[: self.depth]] for q in qids}

    def _docpairs(self, qids):
        wanted, pools = set(qids), {}
        for pair in irds.load(self.dataset).docpairs_iter():
            if pair.query_id in wanted:
                pools.setdefault(pair.query_id, []).append(pair.doc_id_b)
        return {q: list(dict.fromkeys(p))[: self.depth] for q, p in pools.items()}

    def _scoreddocs(self, qids, texts):
        from dear.data.candidates import scoreddocs_run

        run = scoreddocs_run(self.dataset, texts, self.depth)
        return {q: [c.docid for c in r.candidates] for q, r in run.items()}


class _JsonlSource:
    """Shared reader for JSONL training files with inline passages."""

    def __init__(self, path: str, max_queries: int | None = None):
        self.path, self.max_queries = path, max_queries

    def describe(self) -> dict:
        return {
            "jsonl": str(Path(self.path).resolve()),
            "sha1": _file_sha1(self.path),
            "max_queries": self.max_queries,
        }

    def load(self) -> tuple[list[TrainQuery], DocStore]:
        docs: dict[str, tuple[str, str]] = {}
        queries = []
        for lineno, row in read_jsonl(self.path):
            qid, text, pos, neg = self.parse(row, at(self.path, lineno))
            ids = []
            for passages in (pos, neg):
                ids.append(tuple(_docid(t, x) for t, x in passages))
                docs.update({_docid(t, x): (t, x) for t, x in passages})
            if ids[0] and ids[1]:
                queries.append(TrainQuery(qid, text, ids[0], ids[1]))
            if self.max_queries and len(queries) >= self.max_queries:
                break
        if not queries:
            raise DataError(
                f"{at(self.path)}: no query with both a positive and a negative passage"
            )
        return queries, DocStore(self.path, docs)


class TevatronSource(_JsonlSource):
    """``{"query_id"?, "query", "positive_passages": [{"docid"?, "title"?, "text"}], "negative_passages": [...]}``; no
    ``query_id``: a hash of the query."""

    def parse(self, row, where: str):
        json_object(row, where, "query", "positive_passages", "negative_passages")
        query = json_text(row["query"], f"{where}: query")
        qid = (
            _hash(query)
            if row.get("query_id") is None
            else json_id(row["query_id"], f"{where}: query_id")
        )
        return (
            qid,
            query,
            *(
                self._passages(row[key], f"{where}: {key}")
                for key in ("positive_passages", "negative_passages")
            ),
        )

    @staticmethod
    def _passages(value, where: str) -> list[tuple[str, str]]:
        passages = []
        for i, p in enumerate(json_list(value, where, "passages")):
            each = f"{where}[{i}]"
            json_object(p, each, "text")
            if "docid" in p:  # checked, unused: the docid is the content hash
                json_id(p["docid"], f"{each}.docid")
            passages.append(
                (
                    json_text(p.get("title", ""), f"{each}.title"),
                    json_text(p["text"], f"{each}.text"),
                )
            )
        return passages


class FlagEmbeddingSource(_JsonlSource):
    """``{"query", "pos": [text], "neg": [text], ...}`` (scores unused: the teacher cache scores every pair)."""

    def parse(self, row, where: str):
        json_object(row, where, "query", "pos", "neg")
        query = json_text(row["query"], f"{where}: query")
        pos, neg = (
            [("", t) for t in json_texts(row[key], f"{where}: {key}")] for key in ("pos", "neg")
        )
        return _hash(query), query, pos, neg


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _docid(title: str, text: str) -> str:
    return "h" + _hash(f"{title}\t{text}")


def _file_sha1(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()
