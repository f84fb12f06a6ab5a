"""Candidate sources: build a run (``dict[qid, Ranking]``) from BM25, a TREC run, or JSON files."""

from __future__ import annotations

from dear.data import irds
from dear.data.bm25 import BM25Index, BM25Params, cached_index
from dear.data.contract import Candidate, Query, Ranking, Run
from dear.data.texts import DocStore
from dear.data.trec import read_run
from dear.errors import DataError, at, finite_number, json_id, json_object, json_text, shown
from dear.utils.io import first_char, read_json
from dear.utils.progress import log


def bm25_run(index: BM25Index, queries: dict[str, str], depth: int, docs: DocStore) -> Run:
    """Top-``depth`` BM25 candidates per query, texts filled from ``docs``."""
    qids = list(queries)
    hits = index.search([queries[q] for q in qids], k=depth, progress=True)
    empty = [q for q, h in zip(qids, hits) if not h]
    if empty:
        log(
            f"BM25: {len(empty)} queries match no indexed term and get no candidates, e.g. {empty[:3]}"
        )
    return attach_texts(
        {
            q: Ranking(Query(q, queries[q]), [Candidate(d, score=s) for d, s in h])
            for q, h in zip(qids, hits)
        },
        docs,
    )


def dataset_bm25_index(dataset: str, cache_dir: str, params: BM25Params) -> BM25Index:
    """The BM25 index over an ir_datasets corpus (``title text`` per doc), built once and cached."""

    def corpus():
        for doc in irds.docs_iter(dataset):
            yield doc.doc_id, " ".join(irds.doc_fields(doc)).strip()

    return cached_index(cache_dir, irds.docs_key(dataset), params, corpus)


def scoreddocs_run(
    dataset: str, queries: dict[str, str], depth: int, docs: DocStore | None = None
) -> Run:
    """The dataset's own first-stage run (``scoreddocs``), top ``depth`` per query; texts when ``docs`` is given."""
    hits: dict[str, list[tuple[float, str]]] = {q: [] for q in queries}
    for sd in irds.load(dataset).scoreddocs_iter():
        if sd.query_id in hits:
            hits[sd.query_id].append((-sd.score, sd.doc_id))
    run = {
        q: Ranking(Query(q, queries[q]), [Candidate(d, score=-s) for s, d in sorted(h)[:depth]])
        for q, h in hits.items()
    }
    return attach_texts(run, docs) if docs is not None else run


def trec_run(path: str, queries: dict[str, str] | None, docs: DocStore | None, depth: int) -> Run:
    """Candidates from a TREC run file; texts come from ``docs`` and ``queries`` when given."""
    run: Run = {}
    for qid, hits in read_run(path).items():
        text = ""
        if queries is not None:
            if qid not in queries:
                raise DataError(
                    f"{at(path)}: query {shown(qid)} of the run is not in the queries source"
                )
            text = queries[qid]
        run[qid] = Ranking(Query(qid, text), [Candidate(d, score=s) for d, s in hits[:depth]])
    return attach_texts(run, docs) if docs is not None else run


def rankllm_json(path: str, depth: int) -> Run:
    """rank_llm ``retrieve_results`` JSON ``[{query, hits: [{content, qid, docid, rank, score}]}]``, hits in file
    order; ids strings or integers (rank_llm writes numbers)."""
    entries = _load_json_list(path)
    run: Run = {}
    for i, entry in enumerate(entries):
        where = f"{at(path)}: entry [{i}]"
        hits = json_object(entry, where, "query", "hits")["hits"]
        if not isinstance(hits, list) or not hits:
            raise DataError(f"{where}.hits: the query has no candidates")
        query = json_text(entry["query"], f"{where}.query")
        # all checked
        qids, cands = zip(*(_hit(hit, f"{where}.hits[{j}]") for j, hit in enumerate(hits)))
        other = next((j for j, q in enumerate(qids) if q != qids[0]), None)
        if other is not None:
            raise DataError(
                f"{where}.hits[{other}].qid: {shown(qids[other])} differs from hits[0]'s {shown(qids[0])}"
            )
        repeated = _first_repeat([c.docid for c in cands])
        if repeated is not None:
            raise DataError(
                f"{where}.hits[{repeated[1]}]: document {shown(repeated[0])} appears twice for the query "
                f"(first at hits[{repeated[2]}])"
            )
        if qids[0] in run:
            raise DataError(f"{where}: query id {shown(qids[0])} appears twice")
        run[qids[0]] = Ranking(Query(qids[0], query), list(cands[:depth]))
    return run


def _hit(hit, where: str) -> tuple[str, Candidate]:
    """One rank_llm hit → (its qid, a candidate); ``where`` names it (``file: entry [i].hits[j]``)."""
    json_object(hit, where, "qid", "docid", "content")
    score = finite_number(hit.get("score", 0.0), f"{where}.score")
    return json_id(hit["qid"], f"{where}.qid"), Candidate(
        json_id(hit["docid"], f"{where}.docid"),
        text=json_text(hit["content"], f"{where}.content"),
        score=score,
    )


def _first_repeat(docids: list[str]) -> tuple[str, int, int] | None:
    """→ (docid, its second index, its first index) of the first repeated docid, or None."""
    first: dict[str, int] = {}
    for j, docid in enumerate(docids):
        if docid in first:
            return docid, j, first[docid]
        first[docid] = j
    return None


def attach_texts(run: Run, docs: DocStore) -> Run:
    """Fill candidate titles/texts from a doc store (one batched lookup)."""
    docids = {c.docid for r in run.values() for c in r.candidates}
    texts = docs.get_many(docids)
    return {
        qid: Ranking(
            r.query,
            [
                Candidate(c.docid, texts[c.docid][1], texts[c.docid][0], c.score)
                for c in r.candidates
            ],
            r.meta,
        )
        for qid, r in run.items()
    }


def is_json(path: str) -> bool:
    """JSON candidate files start with '[' (rank_llm) — TREC runs start with a query id."""
    return first_char(path) == "["


def _load_json_list(path: str) -> list:
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{at(path)}: expected a JSON list of queries")
    return data
