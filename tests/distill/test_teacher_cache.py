"""The teacher-logit cache: fingerprints, refusal of mismatches, and resume after a kill."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dear.distill.teacher_cache import TeacherCache, fingerprint, pair_list
from dear.errors import DataError
from tests.helpers import ROOT
from tests.helpers.teacher_cache import DOCS, FP, QUERIES, FakeScorer, Recording


def test_precompute_and_load(tmp_path):
    cache = TeacherCache(tmp_path / "c")
    cache.precompute(FakeScorer(), FP, QUERIES, DOCS, shard_size=50)
    logits = cache.load(FP, pair_list(QUERIES))
    assert len(logits) == len(pair_list(QUERIES)) == 270
    assert logits[("q3", "d5")] == pytest.approx(0.7 + 5)


def test_refuses_other_settings_and_missing_pairs(tmp_path):
    cache = TeacherCache(tmp_path / "c")
    cache.precompute(FakeScorer(), FP, QUERIES[:5], DOCS, shard_size=50)
    other = fingerprint({"model": "fake", "template": {"query_max_len": 64}}, {"dataset": "toy"})
    with pytest.raises(
        DataError,
        match=r"other settings: teacher\.template\.query_max_len: cached 32 != requested 64",
    ):
        cache.load(other, [])
    with pytest.raises(
        DataError, match=r"lacks 9 needed \(qid, docid\) pairs, e\.g\. \[\('q5', 'd5'\)"
    ):
        cache.load(FP, pair_list(QUERIES[:6]))
    with pytest.raises(DataError, match="started for other settings or another pair list"):
        cache.precompute(FakeScorer(), FP, QUERIES, DOCS, shard_size=50)
    with pytest.raises(DataError, match="incomplete"):
        TeacherCache(tmp_path / "empty").load(FP, [])


def test_killed_precompute_resumes_to_an_identical_cache(tmp_path):
    """Kill a precompute part way (SIGKILL, no cleanup), resume it, compare with an uninterrupted run."""
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r}); sys.path.insert(0, {str(ROOT)!r})
        from tests.helpers.teacher_cache import QUERIES, DOCS, FP, FakeScorer
        from dear.distill.teacher_cache import TeacherCache
        TeacherCache(sys.argv[1]).precompute(FakeScorer(delay=float(sys.argv[2])), FP, QUERIES, DOCS, shard_size=20)
    """)
    )
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "0.3"])
    deadline = time.time() + 120
    while len(list(killed.glob("shard-*.parquet"))) < 3 and time.time() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    done_at_kill = len(list(killed.glob("shard-*.parquet")))
    assert 3 <= done_at_kill < 14 and not (killed / "complete").exists()  # really part way

    subprocess.run([sys.executable, str(script), str(killed), "0"], check=True)
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, str(script), str(fresh), "0"], check=True)
    a = pq.read_table(sorted(killed.glob("shard-*.parquet"))).to_pylist()
    b = pq.read_table(sorted(fresh.glob("shard-*.parquet"))).to_pylist()
    assert a == b and len(a) == len(pair_list(QUERIES))
    assert len({(r["qid"], r["docid"]) for r in a}) == len(a)  # no duplicate rows
    assert not list(killed.glob(".*.tmp"))


def test_concurrent_precomputes_score_each_pair_once(tmp_path):
    """Two jobs of a multirun sharing one cache: the second waits for the first, scores nothing."""
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.helpers.teacher_cache import QUERIES, DOCS, FP, FakeScorer
        from dear.distill.teacher_cache import TeacherCache

        class Counting(FakeScorer):
            def score(self, rankings, desc=""):
                with open(sys.argv[2], "a") as f:
                    f.write(f"{{sum(len(r.candidates) for r in rankings)}}\\n")
                return super().score(rankings, desc)

        TeacherCache(sys.argv[1]).precompute(Counting(delay=0.05), FP, QUERIES, DOCS, shard_size=20)
    """)
    )
    cache, counts = tmp_path / "shared", tmp_path / "counts.txt"
    jobs = [
        subprocess.Popen([sys.executable, str(script), str(cache), str(counts)]) for _ in range(2)
    ]
    assert [j.wait(timeout=120) for j in jobs] == [0, 0]
    assert sum(int(x) for x in counts.read_text().split()) == len(pair_list(QUERIES))
    assert TeacherCache(cache).load(FP, pair_list(QUERIES))


def _rows(directory):
    return pq.read_table(sorted(directory.glob("shard-*.parquet"))).to_pylist()


def test_nan_teacher_logit_is_an_error_naming_shard_and_pair(tmp_path):
    cache = TeacherCache(tmp_path / "c")
    with pytest.raises(
        DataError, match=r"non-finite logit \(nan\) for pair \('q3', 'd5'\) of shard-00000\.parquet"
    ):
        cache.precompute(Recording(nan_at=("q3", "d5")), FP, QUERIES, DOCS, shard_size=50)
    assert not (cache.dir / "shard-00000.parquet").exists() and not cache.complete


def test_manifest_records_rows_and_checksum_of_every_shard(tmp_path):
    cache = TeacherCache(tmp_path / "c")
    cache.precompute(FakeScorer(), FP, QUERIES, DOCS, shard_size=50)
    shards = json.loads((cache.dir / "manifest.json").read_text())["shards"]
    assert list(shards) == [f"shard-{i:05d}.parquet" for i in range(5)]
    assert [s["rows"] for s in shards.values()] == [
        54
    ] * 5  # 9 pairs a query: shards end with a query
    assert (
        shards["shard-00002.parquet"]["sha256"]
        == hashlib.sha256((cache.dir / "shard-00002.parquet").read_bytes()).hexdigest()
    )


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def _empty(path):
    path.write_bytes(b"")


def _nan_with_fresh_checksum(path):
    """NaN written into a shard and the manifest's checksum updated: the finite check must catch it."""
    table = pq.read_table(path)
    logits = table["logit"].to_pylist()
    logits[7] = float("nan")
    pq.write_table(table.set_column(2, "logit", pa.array(logits)), path)
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["shards"][path.name]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "damage, message",
    [
        (_truncate, "checksum differs from the manifest"),
        (_empty, "checksum differs from the manifest"),
        (lambda p: p.unlink(), "shard missing"),
        (
            _nan_with_fresh_checksum,
            r"non-finite teacher logit nan for pair \('q\d+', 'd\d+'\) \(row 7\)",
        ),
    ],
)
def test_damaged_shard_is_refused_on_read_and_rebuilt_alone(tmp_path, damage, message):
    cache = TeacherCache(tmp_path / "c")
    cache.precompute(FakeScorer(), FP, QUERIES, DOCS, shard_size=50)
    before = _rows(cache.dir)
    damage(cache.dir / "shard-00003.parquet")
    with pytest.raises(
        DataError,
        match=rf"shard-00003\.parquet: {message}.*re-run `python -m dear\.distill\.precompute`",
    ):
        cache.load(FP, pair_list(QUERIES))

    again = Recording()
    cache.precompute(again, FP, QUERIES, DOCS, shard_size=50)  # despite the `complete` marker
    assert again.scored == ["shard 3"]  # nothing valid is recomputed
    assert _rows(cache.dir) == before
    assert len(cache.load(FP, pair_list(QUERIES))) == 270


def test_shard_with_other_pairs_is_rescored(tmp_path):
    """A shard whose rows are whole and finite but not the plan's pairs (e.g. copied from another cache)."""
    cache = TeacherCache(tmp_path / "c")
    cache.precompute(FakeScorer(), FP, QUERIES, DOCS, shard_size=50)
    (cache.dir / "shard-00001.parquet").write_bytes(
        (cache.dir / "shard-00000.parquet").read_bytes()
    )
    again = Recording()
    cache.precompute(again, FP, QUERIES, DOCS, shard_size=50)
    assert again.scored == ["shard 1"]


def test_valid_cache_is_verified_without_building_the_teacher(tmp_path):
    cache = TeacherCache(tmp_path / "c")
    cache.precompute(FakeScorer(), FP, QUERIES, DOCS, shard_size=50)
    plan = cache.start(FP, QUERIES, 50)
    assert (
        cache.build_shards(
            plan, range(len(plan.shards)), lambda: pytest.fail("teacher built"), DOCS
        )
        == 0
    )


def test_shards_never_split_a_query():
    from dear.distill.teacher_cache import query_aligned_shards

    pairs = [
        (q, f"{q}-d{j}") for q, n in [("a", 3), ("b", 4), ("c", 1), ("d", 5)] for j in range(n)
    ]
    shards = query_aligned_shards(pairs, 4)
    assert [p for s in shards for p in s] == pairs  # every pair once, in order
    assert [[q for q, _ in s] for s in shards] == [["a"] * 3 + ["b"] * 4, ["c"] + ["d"] * 5]
    assert query_aligned_shards(pairs, 100) == [pairs] and query_aligned_shards([], 4) == []
