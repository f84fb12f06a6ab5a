"""BM25 with bm25s configured like Pyserini's (Lucene) defaults, index cached on disk: k1=0.9, b=0.4,
``method="lucene"``, Lucene's 33 English stopwords (``stopwords="en"``), PyStemmer's Porter stemmer."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from dear.utils.io import atomic_dir, exclusive_lock

INDEX_FORMAT = 1


@dataclass(frozen=True)
class BM25Params:
    k1: float = 0.9
    b: float = 0.4
    method: str = "lucene"
    stemmer: str | None = "porter"
    stopwords: str | None = "en"


class BM25Index:
    """An in-memory bm25s index plus the docids it covers, in index order."""

    def __init__(self, retriever, docids: list[str], params: BM25Params):
        self.retriever, self.docids, self.params = retriever, docids, params

    @classmethod
    def build(
        cls, docids: list[str], texts: list[str], params: BM25Params = BM25Params(), progress=False
    ):
        import bm25s

        tokens = bm25s.tokenize(
            texts, stopwords=params.stopwords, stemmer=_stemmer(params), show_progress=progress
        )
        retriever = bm25s.BM25(k1=params.k1, b=params.b, method=params.method)
        retriever.index(tokens, show_progress=progress)
        return cls(retriever, list(docids), params)

    def search(self, queries: list[str], k: int, progress=False) -> list[list[tuple[str, float]]]:
        """Top-k (docid, score) per query, best first; queries with no indexed term get []."""
        k = min(k, len(self.docids))
        idx, scores = self.retriever.retrieve(
            self.query_tokens(queries), k=k, show_progress=progress
        )
        out = []
        for row_idx, row_scores in zip(idx, scores):
            hits = [(self.docids[i], float(s)) for i, s in zip(row_idx, row_scores) if s > 0]
            out.append(hits)
        return out

    def query_tokens(self, queries: list[str]) -> list[list[str]]:
        """Queries analysed as the corpus was (stopwords, stemmer): a list of terms each."""
        import bm25s

        return bm25s.tokenize(
            queries,
            stopwords=self.params.stopwords,
            stemmer=_stemmer(self.params),
            return_ids=False,
            show_progress=False,
        )

    def save(self, directory: Path) -> None:
        """Write into a temporary sibling, then rename: a crash never leaves a half index."""

        def write(tmp: Path) -> None:
            self.retriever.save(str(tmp / "bm25s"))
            (tmp / "docids.json").write_text(json.dumps(self.docids))
            (tmp / "params.json").write_text(
                json.dumps({**asdict(self.params), "format": INDEX_FORMAT})
            )

        atomic_dir(directory, write)

    @classmethod
    def load(cls, directory: Path, params: BM25Params) -> BM25Index:
        import bm25s

        retriever = bm25s.BM25.load(str(Path(directory) / "bm25s"))
        docids = json.loads((Path(directory) / "docids.json").read_text())
        return cls(retriever, docids, params)


def cached_index(cache_dir: str | Path, key: str, params: BM25Params, corpus_fn) -> BM25Index:
    """Load the index for ``key`` and ``params``, else build it from ``corpus_fn()`` under a file lock and save it."""
    from dear.utils.progress import log

    digest = hashlib.sha1(json.dumps([key, asdict(params), INDEX_FORMAT]).encode()).hexdigest()[:12]
    slug = "".join(ch if ch.isalnum() else "-" for ch in key)[-60:]
    directory = Path(cache_dir) / f"{slug}-{digest}"
    if not _is_saved(directory):
        with exclusive_lock(directory.with_name(f".{directory.name}.lock")):
            if not _is_saved(directory):  # not built by the job we waited for
                log(f"BM25: indexing {key} (cached afterwards in {directory})")
                index = BM25Index.build(*_columns(corpus_fn()), params, progress=True)
                index.save(directory)
                return index
    log(f"BM25: loading cached index {directory}")
    return BM25Index.load(directory, params)


def _is_saved(directory: Path) -> bool:
    """``save`` renames a whole index into place, so its docids file means every file is there."""
    return (directory / "docids.json").is_file()


def _columns(pairs) -> tuple[list[str], list[str]]:
    docids, texts = [], []
    for docid, text in pairs:
        docids.append(docid)
        texts.append(text)
    return docids, texts


def _stemmer(params: BM25Params):
    if not params.stemmer:
        return None
    import Stemmer

    return Stemmer.Stemmer(params.stemmer).stemWords
