"""train.py as a user runs it, on fixtures with tiny models: precompute, train, export, evaluate,
resume; then evaluate.py reranks with the export by pointing at it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from dear.utils.repro import FINISHED
from tests.helpers import ROOT
from tests.helpers.cli import tiny_distillation


def train(run_dir, flag_jsonl, toy_files, tiny_bert_cls, *extra, check=True):
    files = [
        "benchmark@evaluation.benchmark=files",
        f"evaluation.benchmark.candidates={toy_files['run']}",
        f"evaluation.benchmark.qrels={toy_files['qrels']}",
        f"evaluation.benchmark.docs={toy_files['docs']}",
        f"evaluation.benchmark.queries={toy_files['queries']}",
    ]
    val = [
        f"data.val={{_target_: dear.data.benchmarks.FilesBenchmark, name: val, measures: [nDCG@10], "
        f"candidates: '{toy_files['run']}', qrels: '{toy_files['qrels']}', docs: '{toy_files['docs']}', "
        f"queries: '{toy_files['queries']}'}}"
    ]
    args = [
        *tiny_distillation(flag_jsonl, tiny_bert_cls),
        *val,
        "trainer.max_epochs=10",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=2",
        *files,
        "evaluation.depth=3",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


# The files benchmark labelled dl19 and named paper cells: the exported student is set beside the
# paper's 8B row, marked as another setup (its student, data and depth differ).
AS_DL19 = ("evaluation.benchmark.name=dl19", "paper.cells=[t1/dearp-llama31-8b-bce/dl19/ndcg@10]")


def test_train_precomputes_trains_exports_evaluates_and_resumes(
    tmp_path, flag_jsonl, toy_files, tiny_bert_cls
):
    run = tmp_path / "run"
    proc = train(run, flag_jsonl, toy_files, tiny_bert_cls, "alpha=a0.5", *AS_DL19)
    assert "teacher cache missing" in proc.stderr
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "export" / "adapter_config.json").is_file() and (
        run / "export" / "config.yaml"
    ).is_file()
    record = json.loads((run / "teacher_cache.json").read_text())
    assert record["fingerprint"]["teacher"]["model"].endswith("bert-cls")
    assert (Path(record["dir"]) / "manifest.json").is_file() and Path(record["dir"]).parent == Path(
        os.environ["DEAR_CACHE_DIR"]
    ) / "teacher"
    assert set(json.loads((run / "timings.json").read_text())) >= {
        "fit",
        "teacher_precompute",
        "export",
        "evaluation",
    }
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics) == ["first_stage", "teacher", "student_init", "student"]
    # student_init: the same export, of the module before its first step (its starting head and
    # adapters), scored on the same candidates with the same significance test.
    initial = run / "export_init"
    assert (initial / "adapter_config.json").is_file() and "significance" in metrics["student_init"]
    initial_weights = (initial / "adapter_model.safetensors").stat().st_mtime_ns
    assert "| student |" in proc.stdout
    against = [
        c
        for c in json.loads((run / "paper.json").read_text())["comparisons"]
        if c["metric"] == "nDCG@10"
    ]
    assert [(c["stage"], c["cells"]) for c in against] == [
        ("first_stage", ["t1/bm25/dl19/ndcg@10"]),
        ("student", ["t1/dearp-llama31-8b-bce/dl19/ndcg@10"]),
    ]
    assert (
        against[1]["within"] is None
        and f"student {tiny_bert_cls} (paper: meta-llama/Llama-3.1-8B)"
        in (against[1]["differences"])
    )
    assert "### dl19 against the paper" in proc.stdout and "| student | nDCG@10 |" in proc.stdout
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "train/kd", "val/nDCG@10"} <= set(header)

    # A finished run is never changed: the same command again is refused before anything is written.
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    refused = train(
        run,
        flag_jsonl,
        toy_files,
        tiny_bert_cls,
        "alpha=a0.5",
        *AS_DL19,
        "trainer.max_steps=6",
        check=False,
    )
    assert refused.returncode == 2 and "holds a finished run" in refused.stderr
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before

    # One that was killed after training (in its evaluation: no metrics.json, not marked finished)
    # resumes from last.ckpt, here with more steps to go.
    (run / "metrics.json").unlink()
    (run / "repro.json").write_text(
        json.dumps(
            {k: v for k, v in json.loads((run / "repro.json").read_text()).items() if k != FINISHED}
        )
    )
    again = train(
        run, flag_jsonl, toy_files, tiny_bert_cls, "alpha=a0.5", *AS_DL19, "trainer.max_steps=6"
    )
    assert "Restoring states from the checkpoint path" in again.stderr
    assert "teacher cache missing" not in again.stderr  # reused, not recomputed
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6
    assert (
        initial / "adapter_model.safetensors"
    ).stat().st_mtime_ns == initial_weights  # kept, not rebuilt

    out = tmp_path / "eval"
    ev = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            "benchmark=files",
            f"benchmark.candidates={toy_files['run']}",
            f"benchmark.qrels={toy_files['qrels']}",
            f"benchmark.docs={toy_files['docs']}",
            f"benchmark.queries={toy_files['queries']}",
            "pipeline=pointwise",
            "pointwise=export",
            f"pointwise.path={run}",
            f"hydra.run.dir={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["pointwise"]["nDCG@10"] >= 0


def test_wrong_teacher_cache_is_refused(tmp_path, flag_jsonl, toy_files, tiny_bert_cls):
    """Point the run at a cache computed with other settings: training stops and says what differs."""
    first = tmp_path / "a"
    train(
        first,
        flag_jsonl,
        toy_files,
        tiny_bert_cls,
        "alpha=a0.5",
        f"data.cache_dir={tmp_path}/cache",
    )
    cache_dir = next((tmp_path / "cache").iterdir())
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    manifest["fingerprint"]["teacher"]["revision"] = "other-revision"
    (cache_dir / "manifest.json").write_text(json.dumps(manifest))
    proc = train(
        tmp_path / "b",
        flag_jsonl,
        toy_files,
        tiny_bert_cls,
        "alpha=a0.5",
        f"data.cache_dir={tmp_path}/cache",
        check=False,
    )
    assert proc.returncode != 0
    assert "teacher.revision: cached 'other-revision' != requested None" in proc.stderr


def test_precompute_command_writes_the_cache_training_then_uses(
    tmp_path, flag_jsonl, toy_files, tiny_bert_cls
):
    cache = f"data.cache_dir={tmp_path}/cache"
    common = [
        "data=flagembedding",
        f"data.train.path={flag_jsonl}",
        "teacher=rankllama_13b",
        f"teacher.model={tiny_bert_cls}",
        "teacher.pooling=auto",
        cache,
    ]
    pre = subprocess.run(
        [sys.executable, "-m", "dear.distill.precompute", *common, f"hydra.run.dir={tmp_path}/pre"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pre.returncode == 0, pre.stderr[-3000:]
    assert "teacher cache complete" in pre.stderr
    proc = train(tmp_path / "run", flag_jsonl, toy_files, tiny_bert_cls, "alpha=a0.5", cache)
    assert "teacher cache missing" not in proc.stderr
