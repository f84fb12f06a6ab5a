"""The teacher precompute on N processes: split by shard, one cache equal to the single-process one,
and a killed distributed run completed by a re-run with another N."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dear.rerank.pointwise import CrossEncoderScorer
from tests.helpers import ROOT


class SlowCrossEncoder(CrossEncoderScorer):
    """The real engine, ``delay`` seconds slower per call: a distributed run can be killed part way."""

    def __init__(self, delay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def score(self, rankings, desc="scoring pairs"):
        time.sleep(self.delay)
        return super().score(rankings, desc)


def _rows(root: Path) -> list[dict]:
    (cache,) = [p for p in root.iterdir() if p.is_dir()]
    assert (cache / "complete").is_file()
    return pq.read_table(sorted(cache.glob("shard-*.parquet"))).to_pylist()


def _assert_same_cache(a: list[dict], b: list[dict]) -> None:
    assert [(r["qid"], r["docid"]) for r in a] == [(r["qid"], r["docid"]) for r in b]
    assert [r["logit"] for r in a] == pytest.approx([r["logit"] for r in b], abs=1e-5)


def test_ranks_splitting_the_shards_build_the_single_process_cache(tmp_path):
    """Two processes, each scoring the shards it owns (i mod 2) into one directory at the same time,
    then one finish: the cache equals one process's, and each pair was scored once."""
    script = tmp_path / "rank.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.helpers.teacher_cache import QUERIES, DOCS, FP, Recording
        from dear.distill.teacher_cache import TeacherCache

        rank, world = int(sys.argv[2]), int(sys.argv[3])
        cache = TeacherCache(sys.argv[1])
        plan = cache.start(FP, QUERIES, 20)
        scorer = Recording()
        cache.build_shards(plan, range(rank, len(plan.shards), world), lambda: scorer, DOCS)
        print(" ".join(d.split()[-1] for d in scorer.scored))
    """)
    )
    shared = tmp_path / "shared"
    ranks = [
        subprocess.Popen(
            [sys.executable, str(script), str(shared), str(r), "2"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    scored = [sorted(int(i) for i in rank.communicate(timeout=120)[0].split()) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0]
    from dear.distill.teacher_cache import pair_list, query_aligned_shards
    from tests.helpers.teacher_cache import QUERIES

    n = len(query_aligned_shards(pair_list(QUERIES), 20))
    assert scored == [list(range(0, n, 2)), list(range(1, n, 2))]

    from dear.distill.teacher_cache import TeacherCache, pair_list
    from tests.helpers.teacher_cache import DOCS, FP, QUERIES, FakeScorer

    TeacherCache(shared).finish(TeacherCache(shared).start(FP, QUERIES, 20))
    single = TeacherCache(tmp_path / "single")
    single.precompute(FakeScorer(), FP, QUERIES, DOCS, shard_size=20)
    assert TeacherCache(shared).load(FP, pair_list(QUERIES)) == single.load(FP, pair_list(QUERIES))


def _precompute_args(
    flag_jsonl, tiny_bert_cls, cache_root: Path, run_dir: Path, processes: int, delay: float
):
    args = [
        "data=flagembedding",
        f"data.train.path={flag_jsonl}",
        "data.shard_size=4",
        f"data.cache_dir={cache_root}",
        "teacher=rankllama_13b",
        f"teacher.model={tiny_bert_cls}",
        "teacher.pooling=auto",
        "teacher._target_=tests.distill.test_precompute.SlowCrossEncoder",
        f"+teacher.delay={delay}",
        f"hydra.run.dir={run_dir}",
    ]
    if processes > 1:
        args += ["trainer=ddp", f"trainer.devices={processes}", "trainer.accelerator=cpu"]
    return [sys.executable, "-m", "dear.distill.precompute", *args]


def _env() -> dict:
    # COLUMNS: rich wraps log lines at 80 columns when not on a terminal
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "COLUMNS": "400",
    }


def _run(cmd) -> str:
    """The command's output (our log is on stderr); it must succeed."""
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_two_gloo_processes_build_the_single_process_cache_and_a_killed_run_completes(
    tmp_path, flag_jsonl, tiny_bert_cls
):
    """`trainer=ddp trainer.devices=2 trainer.accelerator=cpu` (Lightning launches rank 1, gloo): 8 shards
    (one query of 6 pairs each: a shard never splits a query), equal to one process's. Then a
    2-process run killed part way (SIGKILL) leaves only whole shards, and a 1-process re-run scores
    exactly the missing ones."""
    delay = 0.4
    single, pair = tmp_path / "single", tmp_path / "pair"
    _run(_precompute_args(flag_jsonl, tiny_bert_cls, single, tmp_path / "r1", 1, delay))
    two = _run(_precompute_args(flag_jsonl, tiny_bert_cls, pair, tmp_path / "r2", 2, delay))
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in two
    assert "rank 1/2: 4 of 8 shards" in two and "rank 1: scored 4 of its 4 shards" in two
    _assert_same_cache(_rows(pair), _rows(single))

    killed = tmp_path / "killed"
    job = subprocess.Popen(
        _precompute_args(flag_jsonl, tiny_bert_cls, killed, tmp_path / "r3", 2, delay),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while (
        len(list(killed.glob("*/shard-*.parquet"))) < 3
        and time.time() < deadline
        and job.poll() is None
    ):
        time.sleep(0.05)
    os.kill(job.pid, signal.SIGKILL)  # rank 0 dies part way; then its orphaned rank 1
    job.wait()
    os.killpg(job.pid, signal.SIGKILL)
    time.sleep(0.5)
    (cache,) = [p for p in killed.iterdir() if p.is_dir()]
    done = len(list(cache.glob("shard-*.parquet")))
    assert 3 <= done < 8 and not (cache / "complete").exists()
    for shard in cache.glob("shard-*.parquet"):
        # only whole shards (one query of 6 pairs: shards never split a query)
        assert pq.read_table(shard).num_rows == 6

    rerun = _run(_precompute_args(flag_jsonl, tiny_bert_cls, killed, tmp_path / "r3", 1, delay))
    assert (
        "rank 0/1: 8 of 8 shards" in rerun and f"rank 0: scored {8 - done} of its 8 shards" in rerun
    )
    _assert_same_cache(_rows(killed), _rows(single))
