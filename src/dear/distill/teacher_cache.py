"""Frozen-teacher logits, computed once per (teacher, template, data) and reused by training.

Layout of a cache directory::

    manifest.json         fingerprint + the pair list's digest, shard size, pair count
    shard-00000.parquet   columns qid, docid, logit — one per `shard_size` pairs, in pair order
    complete              written last: every shard is there

Each shard is written to a temporary file and renamed, so a killed precompute leaves only
whole shards; re-running scores the missing shards only. Because the pair order is a pure
function of the data, a resumed cache is identical to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dear.data.contract import Candidate, Query, Ranking
from dear.data.texts import DocStore
from dear.distill.sources import TrainQuery
from dear.errors import DataError
from dear.utils.io import atomic_write_json, atomic_write_text, exclusive_lock
from dear.utils.progress import log, progress_bar

FORMAT = 1


def fingerprint(teacher: dict, source: dict) -> dict:
    """Everything the logits depend on: teacher id/revision, template, lengths and scorer settings
    (the teacher config), dataset id and candidate source (the source's description)."""
    return {"format": FORMAT, "teacher": teacher, "source": source}


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def pair_list(queries: list[TrainQuery]) -> list[tuple[str, str]]:
    """Every (qid, docid) a training group can draw, in a deterministic order."""
    return [(q.qid, d) for q in queries for d in q.docids]


class TeacherCache:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    @classmethod
    def for_fingerprint(cls, root: str | Path, fp: dict) -> "TeacherCache":
        name = str(fp["teacher"].get("model", "teacher")).rstrip("/").split("/")[-1]
        return cls(Path(root) / f"{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}-{digest(fp)[:12]}")

    @property
    def complete(self) -> bool:
        return (self.dir / "complete").is_file()

    def precompute(self, scorer, fp: dict, queries: list[TrainQuery], docs: DocStore, shard_size: int = 4096) -> None:
        """Score every pair with ``scorer`` (a pointwise engine), resuming from existing shards.

        An exclusive lock on the directory makes concurrent jobs (a multirun sharing one cache)
        wait for the first instead of scoring the same pairs again."""
        pairs = pair_list(queries)
        manifest = {"fingerprint": fp, "pairs_sha256": digest(pairs), "n_pairs": len(pairs), "shard_size": shard_size}
        with exclusive_lock(self.dir / ".lock"):
            self._check_or_write_manifest(manifest)
            if not self.complete:
                self._score_missing_shards(scorer, pairs, queries, docs, shard_size)

    def _score_missing_shards(self, scorer, pairs, queries, docs, shard_size) -> None:
        texts = {q.qid: q.text for q in queries}
        shards = [pairs[i : i + shard_size] for i in range(0, len(pairs), shard_size)]
        todo = [i for i in range(len(shards)) if not self._shard(i).is_file()]
        if len(todo) < len(shards):
            log(f"teacher cache {self.dir}: resuming, {len(shards) - len(todo)}/{len(shards)} shards already done")
        with progress_bar("teacher logits", sum(len(shards[i]) for i in todo)) as advance:
            for i in todo:
                rankings = _rankings(shards[i], texts, docs)
                logits = [float(x) for scores in scorer.score(rankings, desc=f"shard {i}") for x in scores]
                table = pa.table({"qid": [q for q, _ in shards[i]], "docid": [d for _, d in shards[i]], "logit": logits})
                _atomic_parquet(table, self._shard(i))
                advance(len(shards[i]))
        atomic_write_text(self.dir / "complete", f"{len(pairs)} pairs\n")

    def load(self, fp: dict, needed: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """{(qid, docid): logit}; refuses a cache made for other settings or missing a needed pair."""
        if not self.complete:
            raise DataError(f"teacher cache {self.dir} is incomplete: run the precompute (it resumes)")
        stored = json.loads((self.dir / "manifest.json").read_text())["fingerprint"]
        if stored != fp:
            raise DataError(f"teacher cache {self.dir} was computed for other settings: {_diff(stored, fp)}")
        table = pq.read_table(sorted(self.dir.glob("shard-*.parquet")))
        logits = dict(zip(zip(table["qid"].to_pylist(), table["docid"].to_pylist()), table["logit"].to_pylist()))
        missing = [p for p in needed if p not in logits]
        if missing:
            raise DataError(f"teacher cache {self.dir} lacks {len(missing)} needed (qid, docid) pairs, e.g. {missing[:3]}")
        return logits

    def _shard(self, i: int) -> Path:
        return self.dir / f"shard-{i:05d}.parquet"

    def _check_or_write_manifest(self, manifest: dict) -> None:
        path = self.dir / "manifest.json"
        if path.is_file():
            old = json.loads(path.read_text())
            if old != manifest:
                raise DataError(f"{path}: this cache was started for other settings or another pair list "
                                f"({_diff(old, manifest)}); delete the directory or use another cache_dir")
            return
        atomic_write_json(path, manifest)


def _rankings(pairs: list[tuple[str, str]], texts: dict[str, str], docs: DocStore) -> list[Ranking]:
    """Group consecutive pairs of one query into a Ranking (the engine batches across them)."""
    found = docs.get_many({d for _, d in pairs})
    rankings: list[Ranking] = []
    for qid, docid in pairs:
        if not rankings or rankings[-1].qid != qid:
            rankings.append(Ranking(Query(qid, texts[qid]), []))
        title, text = found[docid]
        rankings[-1].candidates.append(Candidate(docid, text, title))
    return rankings


def _atomic_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def _diff(old: dict, new: dict, prefix: str = "") -> str:
    """The first differing fields of two nested dicts, as 'a.b: x != y'."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _diff(a, b, f"{prefix}{key}.")
            if inner:
                out.append(inner)
        elif a != b:
            out.append(f"{prefix}{key}: cached {a!r} != requested {b!r}")
    return "; ".join(out[:3])
