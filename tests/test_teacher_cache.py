"""The teacher-logit cache: fingerprints, refusal of mismatches, and resume after a kill."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pyarrow.parquet as pq
import pytest

from dear.data.texts import DocStore
from dear.distill.sources import TrainQuery
from dear.distill.teacher_cache import TeacherCache, fingerprint, pair_list
from dear.errors import DataError

QUERIES = [TrainQuery(f"q{i}", f"query {i}", (f"d{i}",), tuple(f"d{(i + k) % 30}" for k in range(1, 9))) for i in range(30)]
DOCS = DocStore("mem", {f"d{i}": ("", f"document {i}") for i in range(30)})
FP = fingerprint({"model": "fake", "template": {"query_max_len": 32}}, {"dataset": "toy"})


class FakeScorer:
    """Deterministic scores from the texts; optionally slow, to be killed mid-way."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def score(self, rankings, desc=""):
        time.sleep(self.delay)
        return [[len(r.query.text) * 0.1 + int(c.text.split()[-1]) for c in r.candidates] for r in rankings]


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
    with pytest.raises(DataError, match=r"other settings: teacher\.template\.query_max_len: cached 32 != requested 64"):
        cache.load(other, [])
    with pytest.raises(DataError, match=r"lacks 9 needed \(qid, docid\) pairs, e\.g\. \[\('q5', 'd5'\)"):
        cache.load(FP, pair_list(QUERIES[:6]))
    with pytest.raises(DataError, match="started for other settings or another pair list"):
        cache.precompute(FakeScorer(), FP, QUERIES, DOCS, shard_size=50)
    with pytest.raises(DataError, match="incomplete"):
        TeacherCache(tmp_path / "empty").load(FP, [])


def test_killed_precompute_resumes_to_an_identical_cache(tmp_path):
    """Kill a precompute part way (SIGKILL, no cleanup), resume it, compare with an uninterrupted run."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r}); sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
        from test_teacher_cache import QUERIES, DOCS, FP, FakeScorer
        from dear.distill.teacher_cache import TeacherCache
        TeacherCache(sys.argv[1]).precompute(FakeScorer(delay=float(sys.argv[2])), FP, QUERIES, DOCS, shard_size=20)
    """))
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
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
        from test_teacher_cache import QUERIES, DOCS, FP, FakeScorer
        from dear.distill.teacher_cache import TeacherCache

        class Counting(FakeScorer):
            def score(self, rankings, desc=""):
                with open(sys.argv[2], "a") as f:
                    f.write(f"{{sum(len(r.candidates) for r in rankings)}}\\n")
                return super().score(rankings, desc)

        TeacherCache(sys.argv[1]).precompute(Counting(delay=0.05), FP, QUERIES, DOCS, shard_size=20)
    """))
    cache, counts = tmp_path / "shared", tmp_path / "counts.txt"
    jobs = [subprocess.Popen([sys.executable, str(script), str(cache), str(counts)]) for _ in range(2)]
    assert [j.wait(timeout=120) for j in jobs] == [0, 0]
    assert sum(int(x) for x in counts.read_text().split()) == len(pair_list(QUERIES))
    assert TeacherCache(cache).load(FP, pair_list(QUERIES))
