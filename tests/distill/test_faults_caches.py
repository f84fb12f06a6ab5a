"""Faults in on-disk caches, done for real (issue 13 items 4-6): shards damaged after a precompute
are refused by training and rebuilt by re-running the precompute command; concurrent jobs build
the harness's BM25 index on a fresh cache without crashing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dear.distill.teacher_cache import TeacherCache
from dear.errors import DataError
from tests.helpers import ROOT, shared


def _precompute(tmp_path, flag_jsonl, tiny_bert_cls) -> str:
    args = [
        "data=flagembedding",
        f"data.train.path={flag_jsonl}",
        "data.shard_size=4",
        f"data.cache_dir={tmp_path}/cache",
        "teacher=rankllama_13b",
        f"teacher.model={tiny_bert_cls}",
        "teacher.pooling=auto",
        f"hydra.run.dir={tmp_path}/pre",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "dear.distill.precompute", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


def _poison(path: Path, manifest: Path) -> None:
    """A NaN logit, with the manifest's checksum made to match (only the finite check can catch it)."""
    table = pq.read_table(path)
    logits = table["logit"].to_pylist()
    logits[2] = float("nan")
    pq.write_table(table.set_column(2, "logit", pa.array(logits)), path)
    record = json.loads(manifest.read_text())
    record["shards"][path.name]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(record))


@pytest.mark.slow  # two precompute commands: about 50 s here
def test_damaged_shards_are_refused_then_rebuilt_by_rerunning_precompute(
    tmp_path, flag_jsonl, tiny_bert_cls
):
    _precompute(tmp_path, flag_jsonl, tiny_bert_cls)
    (cache_dir,) = (tmp_path / "cache").iterdir()
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    before = {
        p.name: pq.read_table(p).to_pylist() for p in sorted(cache_dir.glob("shard-*.parquet"))
    }
    assert len(before) == 8  # 48 pairs in shards of 4 that never split a query's pairs

    shard = lambda i: cache_dir / f"shard-{i:05d}.parquet"  # noqa: E731
    shard(1).write_bytes(shard(1).read_bytes()[:200])  # truncated (a full disk)
    shard(4).write_bytes(b"")  # emptied
    shard(6).unlink()  # deleted
    _poison(shard(7), cache_dir / "manifest.json")
    cache = TeacherCache(cache_dir)
    with pytest.raises(
        DataError, match=r"shard-00001\.parquet: checksum differs.*re-run `python -m dear\.distill"
    ):
        cache.load(manifest["fingerprint"], [])  # what training's setup calls: no pyarrow traceback

    # the `complete` marker is not trusted
    log = " ".join(_precompute(tmp_path, flag_jsonl, tiny_bert_cls).split())
    for i in (1, 4, 7):
        assert f"shard-{i:05d}.parquet" in log and "rescoring it" in log
    assert "rank 0: scored 4 of its 8 shards" in log  # 1, 4, 6 and 7; the 4 valid ones are kept
    after = {
        p.name: pq.read_table(p).to_pylist() for p in sorted(cache_dir.glob("shard-*.parquet"))
    }
    assert after.keys() == before.keys()
    for name in before:
        assert [r["logit"] for r in after[name]] == pytest.approx(
            [r["logit"] for r in before[name]], abs=1e-6
        )
    assert len(cache.load(manifest["fingerprint"], [])) == 48


@pytest.mark.slow
def test_concurrent_harness_bm25_builds_on_a_fresh_cache(tmp_path):
    """Four processes index SciFact through the harness (docstore + BM25, both locked) on an empty
    BM25 cache at once, as four `evaluate.py benchmark=scifact` jobs do: all succeed, one index."""
    shared("ir_datasets", "beir", "scifact")
    script = tmp_path / "index.py"
    script.write_text(
        textwrap.dedent("""
        import json, sys, time
        from dear.data.bm25 import BM25Params
        from dear.data.candidates import dataset_bm25_index

        while time.time() < float(sys.argv[1]):
            time.sleep(0.01)
        index = dataset_bm25_index("beir/scifact/test", sys.argv[2], BM25Params())
        print(json.dumps(index.search(["microglia activation in the brain"], 5)))
    """)
    )
    start = time.time() + 10
    jobs = [
        subprocess.Popen(
            [sys.executable, str(script), str(start), str(tmp_path / "bm25")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [job.communicate(timeout=600) for job in jobs]
    assert [job.returncode for job in jobs] == [0] * 4, [err[-2000:] for _, err in results]
    hits = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert all(h == hits[0] for h in hits) and len(hits[0][0]) == 5
    assert sum("BM25: indexing" in err for _, err in results) == 1
    assert len([p for p in (tmp_path / "bm25").iterdir() if p.is_dir()]) == 1
