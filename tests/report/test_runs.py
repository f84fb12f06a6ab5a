"""Runs a report reads (dear.report.runs): an evaluation of a finished training run's export
(``sweep.report.trained_run``) takes its row fields and seed from that training run, so its cells join the training
sweep's rows (sweeps/smollm2_alpha_dl21.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dear.errors import DataError
from dear.report.runs import load_run_dirs
from dear.report.table import Spec, build_table
from tests.report.test_report import EXPORTED, report, write_run

STAGES = {"first_stage": 0.40, "student_init": 0.30}
EVAL_REPORT = {
    "name": "more",
    "report": {
        "trained_run": "pointwise.path",
        "rows": {"α": "alpha.value"},
        "average": ["noveleval", "dl21"],
        "references": {"BM25": "first_stage", "start": "student_init"},
    },
}


def write_training(root: Path) -> dict[tuple[float, int], Path]:
    """α 0, 0.5 × seeds 0, 1 trained and evaluated on NovelEval (student 0.5 + α/10 + seed/100)."""
    runs = {}
    for num, (alpha, seed) in enumerate([(0, 0), (0.5, 0), (0, 1), (0.5, 1)]):
        student = 0.5 + alpha / 10 + seed / 100
        runs[alpha, seed] = write_run(
            root / str(num),
            num,
            {"alpha": {"value": alpha}, "seed": seed, **EXPORTED},
            {"noveleval": {**_metrics(STAGES), "student": {"nDCG@10": student}}},
        )
        (runs[alpha, seed] / "export").mkdir()
    return runs


def write_evaluations(root: Path, trained: dict[tuple[float, int], Path], key_value=None) -> None:
    """evaluate.py runs on DL21 of each training run's export (student 0.6 + α/10 + seed/100)."""
    for num, ((alpha, seed), run_dir) in enumerate(trained.items()):
        path = str(run_dir / "export") if key_value is None else key_value
        write_run(
            root / str(num),
            num,
            {
                "benchmark": {"name": "dl21"},
                "pointwise": {"path": path},
                "pipeline": {"stages": {"student_init": {}, "student": {}}},
                "sweep": EVAL_REPORT,
            },
            {
                "dl21": {
                    **_metrics(STAGES),
                    "student": {"nDCG@10": 0.6 + alpha / 10 + seed / 100},
                }
            },
            single="dl21",
        )


def _metrics(stages: dict[str, float]) -> dict:
    return {stage: {"nDCG@10": value} for stage, value in stages.items()}


def test_an_export_evaluated_later_joins_its_training_row_and_seed(tmp_path):
    trained = write_training(tmp_path / "train")
    write_evaluations(tmp_path / "dl21", trained)
    runs = load_run_dirs([tmp_path / "dl21", tmp_path / "train"])
    assert [r.seed for r in runs[:4]] == [0, 0, 1, 1]  # the training runs' seeds, not evaluate's
    table = build_table(runs, Spec(rows={"α": "alpha.value"}, average=["noveleval", "dl21"]))
    assert table.rows == [("0",), ("0.5",)]
    dl21, novel = table.cells[("0.5",), "dl21"], table.cells[("0.5",), "noveleval"]
    assert dl21.values == {0: pytest.approx(65.0), 1: pytest.approx(66.0)}
    assert novel.values == {0: pytest.approx(55.0), 1: pytest.approx(56.0)}
    assert table.average(("0.5",)) == pytest.approx((65.5 + 55.5) / 2)

    proc = report(str(tmp_path / "dl21"), str(tmp_path / "train"), "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "r" / "table.md").read_text()
    assert "| BM25 |" in text and "| start |" in text  # the evaluation sweep's references
    cells = json.loads((tmp_path / "r" / "cells.json").read_text())
    row = next(r for r in cells["rows"] if r["row"]["α"] == "0.5")
    assert row["cells"]["dl21"]["seeds"] == [0, 1]


def test_two_evaluations_of_one_cell_must_come_from_runs_differing_only_by_seed(tmp_path):
    trained = write_training(tmp_path / "train")
    other = (
        tmp_path / "train" / "1" / ".hydra" / "config.yaml"
    )  # α 0.5 seed 0 trained at another lr
    config = OmegaConf.load(other)
    config.lr = 0.1
    OmegaConf.save(config, other)
    write_evaluations(tmp_path / "dl21", trained)
    with pytest.raises(
        DataError, match=r"two runs give the cell 0.5 × dl21: .*\(they differ in trained run's lr;"
    ):
        build_table(load_run_dirs([tmp_path / "dl21"]), Spec(rows={"α": "alpha.value"}))


def test_a_trained_run_that_is_not_there_is_one_line_naming_the_run_and_key(tmp_path):
    write_evaluations(tmp_path / "dl21", {(0, 0): tmp_path}, key_value=str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as err:
        load_run_dirs([tmp_path / "dl21"])
    assert "pointwise.path = " in str(err.value) and "nowhere" in str(err.value)
    assert "is not a training run's directory (nor its export/)" in str(err.value)
    assert "\n" not in str(err.value)
