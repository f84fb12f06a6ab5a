"""train.py as a sweep runs it: a two-job multirun (basic launcher, one process) with W&B offline
and a benchmark set. Each job: its own W&B run (group = sweep name, tags, scrubbed config,
final metrics), metrics per benchmark in benchmarks/<name>/, the CSV log and repro.json."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.helpers.cli import tiny_distillation


def wandb_records(run_file: Path) -> list:
    """The records of an offline W&B run file (LevelDB log blocks after a 7-byte W&B header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, records, pos, pending = run_file.read_bytes(), [], 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer too small for a header: padding
            pos += 32768 - pos % 32768
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        pending, pos = pending + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL or LAST fragment
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def run_summary(records) -> tuple[object, dict, dict]:
    """(the run record, config {key: value}, summary {key: value}) of an offline run."""
    run = [r.run for r in records if r.WhichOneof("record_type") == "run"][-1]
    updates = [
        *run.config.update,
        *(
            item
            for r in records
            if r.WhichOneof("record_type") == "config"
            for item in r.config.update
        ),
    ]
    config = {item.key: json.loads(item.value_json) for item in updates if item.key}
    summary = {
        item.key: json.loads(item.value_json)
        for r in records
        if r.WhichOneof("record_type") == "summary"
        for item in r.summary.update
        if item.key
    }
    return run, config, summary


def test_multirun_with_wandb_offline_and_a_benchmark_set(
    tmp_path, flag_jsonl, toy_files, tiny_bert_cls
):
    sweep = tmp_path / "sweep"
    bench = "evaluation.benchmarks"
    args = [
        "-m",
        *tiny_distillation(flag_jsonl, tiny_bert_cls, steps=2),
        "trainer.log_every_n_steps=1",
        "callbacks.checkpoint.monitor=null",
        "evaluation.depth=3",
        "evaluation.stages=null",
        f"+benchmark@{bench}.trec=files",
        f"{bench}.trec.candidates={toy_files['run']}",
        f"{bench}.trec.qrels={toy_files['qrels']}",
        f"{bench}.trec.docs={toy_files['docs']}",
        f"{bench}.trec.queries={toy_files['queries']}",
        f"+benchmark@{bench}.json=files",
        f"{bench}.json.candidates={toy_files['json']}",
        f"{bench}.json.qrels={toy_files['qrels']}",
        "logger=wandb",
        "+sweep.name=wb-test",
        "+secrets.api_key=s3cret",
        "alpha=a0.1,a0.5",
        f"hydra.sweep.dir={sweep}",
        f"paths.cache_dir={tmp_path}/cache",
    ]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for job, alpha in [(0, 0.1), (1, 0.5)]:
        run_dir = sweep / str(job)
        metrics = {
            name: json.loads((run_dir / "benchmarks" / name / "metrics.json").read_text())
            for name in ("trec", "json")
        }
        assert all(list(m) == ["first_stage", "student_init", "student"] for m in metrics.values())
        # the toy run ranks every relevant doc last
        assert metrics["trec"]["first_stage"]["nDCG@1"] == 0.0
        assert not (run_dir / "metrics.json").exists()  # a set: no single-benchmark file to misread
        assert (run_dir / "csv" / "metrics.csv").is_file()  # the CSV logger runs beside W&B

        record = json.loads((run_dir / "repro.json").read_text())
        assert f"alpha=a{alpha}" in record["overrides"] and record["seed"] == 0
        assert record["command"].startswith(
            "python train.py --config-name train data=flagembedding "
        )

        runs = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(runs) == 1, runs  # one W&B run per job: the previous job's run was closed
        run, config, summary = run_summary(wandb_records(runs[0]))
        assert run.run_group == "wb-test"
        assert {
            f"alpha:{alpha}",
            "loss:ranknet_eq5",
            "student:bert-cls",
            "teacher:bert-cls",
        } <= set(run.tags)
        assert config["alpha"] == {"value": alpha} and config["secrets"] == {"api_key": "***"}
        assert summary["final/trec/student/nDCG@10"] == pytest.approx(
            metrics["trec"]["student"]["nDCG@10"]
        )
        assert summary["final/json/first_stage/nDCG@10"] == pytest.approx(
            metrics["json"]["first_stage"]["nDCG@10"]
        )
        tables = list(runs[0].parent.glob("files/media/table/final/metrics_*.table.json"))
        table = json.loads(tables[0].read_text())
        # 2 sets x 3 stages
        assert table["columns"][:2] == ["benchmark", "stage"] and len(table["data"]) == 6
        assert b"s3cret" not in runs[0].read_bytes()  # config and recorded command line scrubbed
        assert b"s3cret" not in (run_dir / "csv" / "hparams.yaml").read_bytes()
