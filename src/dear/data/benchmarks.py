"""Benchmarks (``conf/benchmark/``): ``load()`` yields the first-stage run (with texts) and its qrels or answers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from dear.data import irds
from dear.data.beir import read_beir_folder
from dear.data.bm25 import BM25Index, BM25Params, cached_index
from dear.data.candidates import (
    bm25_run,
    dataset_bm25_index,
    is_json,
    rankllm_json,
    scoreddocs_run,
    trec_run,
)
from dear.data.contract import Candidate, Query, Ranking, Run
from dear.data.qa import dpr_retrieval_json, read_qas
from dear.data.qrels import load_qrels
from dear.data.texts import DocStore, is_file_spec, load_queries, read_docs_tsv
from dear.errors import ConfigError, DataError, positive_depth, shown
from dear.utils.progress import log


@dataclass(frozen=True)
class Qrels:
    """Graded relevance judgments, scored with ``measures`` (ir_measures names)."""

    qrels: dict[str, dict[str, int]]
    measures: list[str]

    @property
    def qids(self) -> set[str]:
        return set(self.qrels)


@dataclass(frozen=True)
class Answers:
    """Open-domain QA answers, scored as top-``ks`` answer accuracy."""

    answers: dict[str, list[str]]
    ks: list[int]

    @property
    def qids(self) -> set[str]:
        return set(self.answers)


@dataclass
class Loaded:
    """The judged first-stage run and its judgments (scored by ``dear.eval.judges.build_judge``)."""

    run: Run
    judgments: Qrels | Answers


class Benchmark(ABC):
    def __init__(self, name: str, measures: list[str], depth: int = 100):
        if isinstance(measures, str) or not all(isinstance(m, str) for m in measures or []):
            raise ConfigError(
                f"metrics: expected a list of ir_measures names, found {measures!r} "
                f"(write metrics=[nDCG@10] for one)"
            )
        if not measures:
            raise ConfigError(
                "benchmark.measures (the metrics list): expected at least one metric, found none"
            )
        self.name, self.measures, self.depth = (
            name,
            list(measures),
            positive_depth(depth, "benchmark.depth"),
        )

    @abstractmethod
    def load(self) -> Loaded:
        """Read the sources and return the judged first-stage run."""

    def _judged(self, run: Run, judgments: Qrels | Answers, source: str) -> Loaded:
        """Keep judged queries; every judged query must have candidates."""
        missing = sorted(judgments.qids - set(run))
        if missing:
            raise DataError(
                f"{source}: {len(missing)} judged queries have no candidates, e.g. {missing[:5]}"
            )
        dropped = len(run) - len(judgments.qids & set(run))
        if dropped:
            log(f"{self.name}: {dropped} queries without judgments are not evaluated")
        return Loaded({q: r for q, r in run.items() if q in judgments.qids}, judgments)


class IrDatasetsBenchmark(Benchmark):
    """An ir_datasets id's queries and qrels; candidates from cached BM25, a TREC ``run``, or its ``scoreddocs``;
    ``limit``: the first N judged queries."""

    def __init__(
        self,
        name,
        dataset,
        measures,
        depth=100,
        run=None,
        query_field="text",
        cache_dir=".cache/bm25",
        bm25: dict | None = None,
        limit: int | None = None,
        scoreddocs: bool = False,
    ):
        super().__init__(name, measures, depth)
        self.dataset, self.run_path, self.query_field, self.limit = dataset, run, query_field, limit
        self.scoreddocs = scoreddocs
        self.cache_dir, self.bm25 = cache_dir, BM25Params(**(bm25 or {}))

    def load(self) -> Loaded:
        qrels = load_qrels(self.dataset)
        all_queries = load_queries(self.dataset, self.query_field)
        # limit: the first N, dataset order
        judged = [q for q in all_queries if q in qrels][: self.limit]
        qrels = {q: qrels[q] for q in judged}
        queries = {q: all_queries[q] for q in judged}
        docs = DocStore(self.dataset)
        if self.run_path:
            run = trec_run(self.run_path, all_queries, docs, self.depth)
            run = {q: r for q, r in run.items() if q in queries}
        elif self.scoreddocs:
            run = scoreddocs_run(self.dataset, queries, self.depth, docs)
        else:
            index = dataset_bm25_index(self.dataset, self.cache_dir, self.bm25)
            run = bm25_run(index, queries, self.depth, docs)
        return self._judged(run, Qrels(qrels, self.measures), self.dataset)


class FilesBenchmark(Benchmark):
    """``candidates``: a TREC run (texts from ``docs``/``queries``) or a rank_llm JSON; ``qrels``: a TREC file."""

    def __init__(self, name, candidates, qrels, measures, depth=100, docs=None, queries=None):
        super().__init__(name, measures, depth)
        if not candidates or not qrels:
            raise DataError(
                "benchmark=files needs benchmark.candidates=PATH and benchmark.qrels=PATH"
            )
        self.candidates, self.qrels, self.docs, self.queries = candidates, qrels, docs, queries

    def load(self) -> Loaded:
        if not Path(self.candidates).is_file():
            raise DataError(f"benchmark.candidates: file not found: {self.candidates}")
        if is_json(self.candidates):
            run = rankllm_json(self.candidates, self.depth)
        else:
            queries = load_queries(self.queries) if self.queries else None
            docs = DocStore(self.docs) if self.docs else None
            run = trec_run(self.candidates, queries, docs, self.depth)
        return self._judged(run, Qrels(load_qrels(self.qrels), self.measures), self.candidates)


class BeirFolderBenchmark(Benchmark):
    """A BEIR-format folder on disk (licensed sets: Signal-1M, TREC-NEWS, Robust04); cached BM25 over its corpus."""

    def __init__(
        self,
        name,
        folder,
        measures,
        depth=100,
        split="test",
        cache_dir=".cache/bm25",
        bm25: dict | None = None,
    ):
        super().__init__(name, measures, depth)
        self.folder, self.split, self.cache_dir, self.bm25 = (
            folder,
            split,
            cache_dir,
            BM25Params(**(bm25 or {})),
        )

    def load(self) -> Loaded:
        docs, queries, qrels = read_beir_folder(self.folder, self.split)
        corpus = Path(self.folder) / "corpus.jsonl"
        key = f"{Path(self.folder).resolve()}:{corpus.stat().st_size}:{corpus.stat().st_mtime_ns}"
        index = cached_index(
            self.cache_dir,
            key,
            self.bm25,
            lambda: ((d, f"{t} {x}".strip()) for d, (t, x) in docs.items()),
        )
        queries = {q: t for q, t in queries.items() if q in qrels}
        run = bm25_run(index, queries, self.depth, DocStore(self.folder, docs))
        return self._judged(run, Qrels(qrels, self.measures), self.folder)


class PooledBM25Benchmark(Benchmark):
    """A judged pool per query (NovelEval-2306: 20 passages), each ranked by BM25 over that pool alone."""

    def __init__(self, name, corpus, queries, qrels, measures, depth=100, bm25: dict | None = None):
        super().__init__(name, measures, depth)
        self.corpus, self.queries, self.qrels = corpus, queries, qrels
        self.bm25 = BM25Params(**(bm25 or {}))

    def load(self) -> Loaded:
        docs, queries, qrels = (
            read_docs_tsv(self.corpus),
            load_queries(self.queries),
            load_qrels(self.qrels),
        )
        run = {}
        for qid, pool in qrels.items():
            if qid not in queries:
                raise DataError(f"{self.qrels}: query {shown(qid)} is not in {self.queries}")
            missing = [d for d in pool if d not in docs]
            if missing:
                raise DataError(
                    f"{self.qrels}: query {shown(qid)} judges documents not in {self.corpus}: "
                    f"{shown(missing[:3])}"
                )
            ids = list(pool)
            hits = BM25Index.build(ids, [docs[d][1] for d in ids], self.bm25).search(
                [queries[qid]], k=len(ids)
            )[0]
            # unmatched keep pool order
            ranked = hits + [(d, 0.0) for d in ids if d not in {h for h, _ in hits}]
            run[qid] = Ranking(
                Query(qid, queries[qid]),
                [Candidate(d, docs[d][1], docs[d][0], s) for d, s in ranked[: self.depth]],
            )
        return self._judged(run, Qrels(qrels, self.measures), self.qrels)


class QABenchmark(Benchmark):
    """Open-domain QA (NQ / WebQ test), top-k answer accuracy: a DPR retrieval JSON, a TREC run with DPR ``qas`` and
    ``docs``, or an ir_datasets ``dataset`` whose queries carry answers (BM25 over its corpus)."""

    def __init__(
        self,
        name,
        ks,
        depth=100,
        candidates=None,
        qas=None,
        docs=None,
        dataset=None,
        cache_dir=".cache/bm25",
        bm25: dict | None = None,
    ):
        super().__init__(name, [f"Top-{k}" for k in ks], depth)
        self.ks, self.candidates, self.qas, self.docs, self.dataset = (
            list(ks),
            candidates,
            qas,
            docs,
            dataset,
        )
        self.cache_dir, self.bm25 = cache_dir, BM25Params(**(bm25 or {}))

    def load(self) -> Loaded:
        if self.candidates and is_file_spec(self.candidates) and is_json(self.candidates):
            run, answers = dpr_retrieval_json(self.candidates, self.depth)
        elif self.candidates:
            if not (self.qas and self.docs):
                raise DataError(
                    "benchmark.candidates is a TREC run: also set benchmark.qas and benchmark.docs"
                )
            queries, answers = read_qas(self.qas)
            run = trec_run(self.candidates, queries, DocStore(self.docs), self.depth)
        elif self.dataset:
            queries = {q.query_id: q.text for q in irds.load(self.dataset).queries_iter()}
            answers = {q.query_id: list(q.answers) for q in irds.load(self.dataset).queries_iter()}
            index = dataset_bm25_index(self.dataset, self.cache_dir, self.bm25)
            run = bm25_run(index, queries, self.depth, DocStore(self.dataset))
        else:
            raise DataError(
                f"benchmark {self.name}: set benchmark.candidates (file) "
                "or benchmark.dataset (ir_datasets id)"
            )
        return self._judged(run, Answers(answers, self.ks), self.candidates or self.dataset)
