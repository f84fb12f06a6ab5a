"""Frozen-teacher logits, computed once per (teacher, template, data) and reused by training (docs/stage1.md).

Layout of a cache directory::

    manifest.json         fingerprint, pair-list digest, shard size, pair count; when complete also
                          ``shards``: {file: {rows, sha256}}
    shard-00000.parquet   qid, docid, logit: about `shard_size` pairs in pair order, never splitting a query
    complete              written last

Shards are scored under their own lock and written atomically, so any number of processes can fill one directory and a
kill leaves only whole shards. A precompute re-verifies every shard and rescores bad or missing ones; training checks
manifest checksums. The pair order is a pure function of the data, so a resumed cache equals an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dear.data.contract import Candidate, Query, Ranking
from dear.data.texts import DocStore
from dear.distill.sources import TrainQuery
from dear.errors import DataError
from dear.utils.io import atomic_write, atomic_write_json, atomic_write_text, exclusive_lock
from dear.utils.progress import log

FORMAT = 1
SCHEMA = pa.schema([("qid", pa.string()), ("docid", pa.string()), ("logit", pa.float64())])
_PLAN_KEYS = ("fingerprint", "pairs_sha256", "n_pairs", "shard_size")
_REBUILD = "re-run `python -m dear.distill.precompute` with the same overrides: it rebuilds bad shards only"


def fingerprint(teacher: dict, source: dict) -> dict:
    """Everything the logits depend on: the teacher config and the source's description."""
    return {"format": FORMAT, "teacher": teacher, "source": source}


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def pair_list(queries: list[TrainQuery]) -> list[tuple[str, str]]:
    """Every (qid, docid) a training group can draw, in a deterministic order."""
    return [(q.qid, d) for q in queries for d in q.docids]


@dataclass
class CachePlan:
    """What a precompute must produce: ``shards[i]`` are the pairs of shard file i, in order."""

    manifest: dict
    shards: list[list[tuple[str, str]]]
    query_texts: dict[str, str]


class TeacherCache:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    @classmethod
    def for_fingerprint(cls, root: str | Path, fp: dict) -> TeacherCache:
        name = str(fp["teacher"].get("model", "teacher")).rstrip("/").split("/")[-1]
        return cls(Path(root) / f"{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}-{digest(fp)[:12]}")

    @property
    def complete(self) -> bool:
        return (self.dir / "complete").is_file()

    @property
    def recorded(self) -> bool:
        """Complete, with every shard's checksum in the manifest (what training reads)."""
        manifest = self.dir / "manifest.json"
        return self.complete and manifest.is_file() and "shards" in json.loads(manifest.read_text())

    # --- building ---------------------------------------------------------------------------------
    def precompute(
        self, scorer, fp: dict, queries: list[TrainQuery], docs: DocStore, shard_size: int = 4096
    ) -> None:
        """Verify, score bad or missing shards with ``scorer`` (or a builder), record checksums, mark complete."""
        plan = self.start(fp, queries, shard_size)
        get_scorer = (lambda: scorer) if hasattr(scorer, "score") else scorer
        scored = self.build_shards(plan, range(len(plan.shards)), get_scorer, docs)
        log(
            f"teacher cache {self.dir}: scored {scored} of {len(plan.shards)} shards (the others were valid)"
        )
        self.finish(plan)

    def start(self, fp: dict, queries: list[TrainQuery], shard_size: int) -> CachePlan:
        """The plan for these settings; writes the manifest, or refuses one made for other settings."""
        pairs = pair_list(queries)
        manifest = {
            "fingerprint": fp,
            "pairs_sha256": digest(pairs),
            "n_pairs": len(pairs),
            "shard_size": shard_size,
        }
        with exclusive_lock(self.dir / ".lock"):
            self._check_or_write_manifest(manifest)
        shards = query_aligned_shards(pairs, shard_size)
        return CachePlan(manifest, shards, {q.qid: q.text for q in queries})

    def build_shards(
        self,
        plan: CachePlan,
        indices: Iterable[int],
        get_scorer: Callable[[], object],
        docs: DocStore,
    ) -> int:
        """Rescore missing or bad shards of ``indices``, calling ``get_scorer`` at most once → shards scored."""
        scorer, scored = None, 0
        for i in indices:
            with exclusive_lock(
                self.dir / ".locks" / self._shard(i).name
            ):  # another job may be scoring it
                problem = self._shard_problem(i, plan.shards[i])
                if problem is None:
                    continue
                if problem != "missing":
                    log(f"teacher cache: {self._shard(i)} {problem}: rescoring it")
                (self.dir / "complete").unlink(missing_ok=True)
                scorer = scorer or get_scorer()
                self._score_shard(i, plan, scorer, docs)
                scored += 1
        return scored

    def finish(self, plan: CachePlan) -> None:
        """Record every shard's rows and checksum, then write ``complete``; a missing shard is an error."""
        with exclusive_lock(self.dir / ".lock"):
            records = {}
            for i, pairs in enumerate(plan.shards):
                path = self._shard(i)
                if not path.is_file():
                    raise DataError(
                        f"teacher cache {self.dir}: {path.name} is missing after the precompute; "
                        f"{_REBUILD}"
                    )
                records[path.name] = {"rows": len(pairs), "sha256": _file_sha256(path)}
            atomic_write_json(self.dir / "manifest.json", {**plan.manifest, "shards": records})
            atomic_write_text(self.dir / "complete", f"{plan.manifest['n_pairs']} pairs\n")

    def _score_shard(self, i: int, plan: CachePlan, scorer, docs: DocStore) -> None:
        pairs = plan.shards[i]
        logits = [
            float(x)
            for scores in scorer.score(_rankings(pairs, plan.query_texts, docs), desc=f"shard {i}")
            for x in scores
        ]
        bad = next((k for k, x in enumerate(logits) if not math.isfinite(x)), None)
        if bad is not None:
            raise DataError(
                f"teacher {getattr(scorer, 'name', scorer)!r} gave a non-finite logit ({logits[bad]}) "
                f"for pair {pairs[bad]} of {self._shard(i).name}: nothing written for that shard"
            )
        table = pa.table(
            {"qid": [q for q, _ in pairs], "docid": [d for _, d in pairs], "logit": logits},
            schema=SCHEMA,
        )
        atomic_write(self._shard(i), lambda f: pq.write_table(table, f), binary=True)

    def _shard_problem(self, i: int, pairs: list[tuple[str, str]]) -> str | None:
        """None when shard i holds exactly ``pairs``, in order, with finite logits; else what is wrong."""
        path = self._shard(i)
        if not path.is_file():
            return "missing"
        try:
            table = _read_shard(path, len(pairs))
        except DataError as e:
            return str(e).removeprefix(f"{path}: ")
        found = list(zip(table["qid"].to_pylist(), table["docid"].to_pylist()))
        if found != pairs:
            k = next(k for k, (a, b) in enumerate(zip(found, pairs)) if a != b)
            return f"holds other pairs than the plan (row {k}: {found[k]} != {pairs[k]})"
        return None

    # --- reading ----------------------------------------------------------------------------------
    def load(self, fp: dict, needed: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """{(qid, docid): logit}; refuses other settings, a missing pair, a bad shard or a non-finite logit."""
        if not self.complete:
            raise DataError(
                f"teacher cache {self.dir} is incomplete: run the precompute (it resumes)"
            )
        manifest = json.loads((self.dir / "manifest.json").read_text())
        if manifest["fingerprint"] != fp:
            raise DataError(
                f"teacher cache {self.dir} was computed for other settings: "
                f"{_diff(manifest['fingerprint'], fp)}"
            )
        if "shards" not in manifest:
            raise DataError(
                f"{self.dir / 'manifest.json'} has no shard checksums (an older cache); {_REBUILD}"
            )
        tables = [self._verified_shard(name, record) for name, record in manifest["shards"].items()]
        table = pa.concat_tables(tables)
        logits = dict(
            zip(
                zip(table["qid"].to_pylist(), table["docid"].to_pylist()),
                table["logit"].to_pylist(),
            )
        )
        missing = [p for p in needed if p not in logits]
        if missing:
            raise DataError(
                f"teacher cache {self.dir} lacks {len(missing)} needed (qid, docid) pairs, "
                f"e.g. {missing[:3]}"
            )
        return logits

    def _verified_shard(self, name: str, record: dict) -> pa.Table:
        path = self.dir / name
        if not path.is_file():
            raise DataError(f"{path}: shard missing (the manifest lists it); {_REBUILD}")
        if _file_sha256(path) != record["sha256"]:
            raise DataError(
                f"{path}: checksum differs from the manifest (changed or cut short since the "
                f"precompute); {_REBUILD}"
            )
        try:
            return _read_shard(path, record["rows"])
        except DataError as e:
            raise DataError(f"{e}; {_REBUILD}") from None

    def _shard(self, i: int) -> Path:
        return self.dir / f"shard-{i:05d}.parquet"

    def _check_or_write_manifest(self, manifest: dict) -> None:
        path = self.dir / "manifest.json"
        if path.is_file():
            old = {k: v for k, v in json.loads(path.read_text()).items() if k in _PLAN_KEYS}
            if old != manifest:
                raise DataError(
                    f"{path}: this cache was started for other settings or another pair list "
                    f"({_diff(old, manifest)}); delete the directory or use another cache_dir"
                )
            return
        atomic_write_json(path, manifest)


def _read_shard(path: Path, rows: int) -> pa.Table:
    """The shard's table, checked: readable, columns qid/docid/logit, ``rows`` rows, finite logits."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: unreadable Parquet ({e})") from None
    if table.schema.names != SCHEMA.names or not all(
        table.schema.field(f.name).type == f.type for f in SCHEMA
    ):
        raise DataError(f"{path}: columns {table.schema} != expected {SCHEMA}")
    if table.num_rows != rows:
        raise DataError(f"{path}: {table.num_rows} rows, the manifest says {rows}")
    finite = pc.fill_null(pc.is_finite(table["logit"]), False)
    if not pc.all(finite).as_py():
        bad = pc.index(finite, False).as_py()
        pair = (table["qid"][bad].as_py(), table["docid"][bad].as_py())
        raise DataError(
            f"{path}: non-finite teacher logit {table['logit'][bad].as_py()} for pair {pair} (row {bad})"
        )
    return table


def query_aligned_shards(
    pairs: list[tuple[str, str]], shard_size: int
) -> list[list[tuple[str, str]]]:
    """Consecutive pairs in shards of at least ``shard_size`` (the last may be smaller), ending at query bounds."""
    shards: list[list[tuple[str, str]]] = [[]]
    for i, pair in enumerate(pairs):
        shards[-1].append(pair)
        if len(shards[-1]) >= shard_size and (i + 1 == len(pairs) or pairs[i + 1][0] != pair[0]):
            shards.append([])
    return [s for s in shards if s]


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


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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
