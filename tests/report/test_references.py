"""Reference rows of a report (dear.report.references): BM25 and the untrained start read beside every swept row
from the row's own runs, with paired tests, markers, notes, cells.json and the figure's grey lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dear.errors import DataError
from dear.eval.significance import holm, paired_test
from dear.report.references import add_references, parse_references, reference_points
from dear.report.runs import load_run_dirs
from dear.report.table import Spec, build_table
from tests.report.test_report import EXPORTED, report, write_run

REPORT = {
    "name": "refs",
    "report": {
        "rows": {"α": "alpha.value"},
        "figure": "alpha.value",
        "average": ["noveleval"],
        "baseline": "alpha=0",
        "references": {"BM25": "first_stage", "untrained start": "student_init"},
    },
}
STAGES = ("first_stage", "student_init", "student")


def write(run_dir: Path, num: int, alpha: float, seed: int, per_query: dict[str, dict]) -> None:
    """A train.py run on NovelEval: metrics.json and per_query.json of the three stages."""
    metrics = {s: {"nDCG@10": float(np.mean(list(per_query[s].values())))} for s in STAGES}
    write_run(
        run_dir,
        num,
        {"alpha": {"value": alpha}, "seed": seed, "sweep": REPORT, **EXPORTED},
        {"noveleval": metrics},
    )
    rows = {s: {q: {"nDCG@10": v} for q, v in per_query[s].items()} for s in STAGES}
    (run_dir / "benchmarks" / "noveleval" / "per_query.json").write_text(json.dumps(rows))


@pytest.fixture
def sweep(tmp_path) -> tuple[Path, dict]:
    """α 0 and 0.5 × seeds 0, 1 on 30 queries: BM25 the same everywhere; the start depends on the seed only
    (as a seeded head does); α 0 ends near its start, α 0.5 clearly above it and above BM25."""
    rng = np.random.default_rng(3)
    qids = [f"q{i}" for i in range(30)]
    bm25 = dict(zip(qids, rng.uniform(0.2, 0.6, 30)))
    starts = {s: dict(zip(qids, rng.uniform(0.0, 0.4, 30))) for s in (0, 1)}
    out = tmp_path / "multirun" / "refs" / "t"
    values = {}
    for num, (alpha, seed) in enumerate([(0, 0), (0, 1), (0.5, 0), (0.5, 1)]):
        noise = rng.normal(0, 0.02, 30)
        lift = 0.0 if alpha == 0 else 0.35
        student = {q: starts[seed][q] + lift + n for q, n in zip(qids, noise)}
        values[alpha, seed] = {
            "first_stage": bm25,
            "student_init": starts[seed],
            "student": student,
        }
        write(out / str(num), num, alpha, seed, values[alpha, seed])
    return out, values


def seed_mean(values: dict, alpha: float, stage: str) -> list[float]:
    """Per query (in sorted qid order, as a paired test pairs them), the stage's value averaged over the two seeds,
    computed here."""
    return [
        np.mean([values[alpha, s][stage][q] for s in (0, 1)])
        for q in sorted(values[0, 0]["student"])
    ]


def test_reference_rows_markers_and_tests_against_the_rows_own_runs(sweep):
    out, values = sweep
    proc = report(str(out))
    assert proc.returncode == 0, proc.stderr
    lines = (out / "report" / "table.md").read_text().splitlines()
    rows = [line.strip("| ").split(" | ") for line in lines[4:8]]
    assert [r[0] for r in rows] == ["BM25", "untrained start", "0", "0.5"]
    novel = {r[0]: r[-2] for r in rows}  # the NovelEval column
    bm25 = 100 * np.mean(seed_mean(values, 0, "first_stage"))
    assert novel["BM25"] == f"{bm25:.2f} ± 0.00"  # the same in every seed's runs
    starts = [100 * np.mean(list(values[0, s]["student_init"].values())) for s in (0, 1)]
    assert novel["untrained start"] == f"{np.mean(starts):.2f} ± {np.std(starts, ddof=1):.2f}"
    # α 0.5: clearly above its start and BM25 (‡ §) and above α 0 (†); α 0 differs from its start by
    # noise only (no §)
    assert novel["0.5"].endswith("†‡§") and novel["0.5"].startswith("**")
    assert not novel["0"].endswith("§")

    cells = json.loads((out / "report" / "cells.json").read_text())
    against = {r["row"]["α"]: r["cells"]["noveleval"]["against_references"] for r in cells["rows"]}
    tests = {
        a: paired_test(seed_mean(values, a, "student"), seed_mean(values, a, "student_init"))
        for a in (0, 0.5)
    }
    for alpha, test in tests.items():
        got = against[str(alpha)]["untrained start"]
        assert got["n"] == 30
        assert got["mean_diff"] == pytest.approx(test.mean_diff)
        assert got["randomisation_p"] == pytest.approx(test.randomisation_p)
    # Holm over the column's two rows, by hand
    adjusted = holm([tests[0].randomisation_p, tests[0.5].randomisation_p])
    assert [against[a]["untrained start"]["randomisation_p_holm"] for a in ("0", "0.5")] == (
        pytest.approx(adjusted)
    )
    refs = {r["label"]: r for r in cells["references"]}
    assert refs["untrained start"]["stage"] == "student_init" and refs["BM25"]["marker"] == "‡"
    assert refs["untrained start"]["differs_across_rows"] == []
    assert [r["row"]["α"] for r in refs["untrained start"]["rows"]] == ["0", "0.5"]
    notes = "\n".join(lines[8:])
    assert (
        "‡/§: differs from BM25 (first_stage) / untrained start (student_init) in the row's own runs"
        in notes
    )
    tex = (out / "report" / "table.tex").read_text()
    assert r"\textsuperscript{\dag{}\ddag{}\S{}}" in tex and "\nuntrained start & " in tex


def test_figure_draws_each_reference_from_the_drawn_rows_runs(sweep):
    out, values = sweep
    runs = load_run_dirs([out])
    table = build_table(
        runs,
        Spec(
            rows={"α": "alpha.value"},
            figure="alpha.value",
            average=["noveleval"],
            references={"start": "student_init"},
        ),
    )
    add_references(table, runs)
    start = 100 * np.mean(seed_mean(values, 0, "student_init"))
    assert reference_points(table, table.references[0], 0) == [
        (0.0, pytest.approx(start)),
        (0.5, pytest.approx(start)),
    ]
    assert report(str(out)).returncode == 0
    assert (out / "report" / "figure.png").read_bytes()[:4] == b"\x89PNG"


def test_rows_with_their_own_reference_say_which_row_is_printed(tmp_path):
    """Two students with different starts and no per-query files: the printed start is the first row's, a note
    says the other row's differs, and nothing is tested."""
    for num, (student, start) in enumerate([("a", 0.30), ("b", 0.50)]):
        write_run(
            tmp_path / str(num),
            num,
            {"student": {"model": student}, **EXPORTED},
            {"scifact": {"student_init": {"nDCG@10": start}, "student": {"nDCG@10": 0.6}}},
        )
    proc = report(
        str(tmp_path), "--rows", "Student=student.model", "--references", "start=student_init"
    )
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "report" / "table.md").read_text()
    assert "| start | – | – | – | – | – | – | 30.00 |" in text
    assert (
        "start: the row printed is that of the runs of row a; other rows' own student_init differs on "
        "scifact" in text
    )
    assert "‡" not in text
    refs = json.loads((tmp_path / "report" / "cells.json").read_text())["references"][0]
    assert [r["cells"]["scifact"]["value"] for r in refs["rows"]] == [30.0, 50.0]


def test_a_stage_no_run_has_is_one_line_naming_the_stages_there(sweep, tmp_path):
    out, _ = sweep
    proc = report(str(out), "--references", "BM25=bm25", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert (
        "references: no run has stage 'bm25' (BM25) with nDCG@10; the runs have "
        "['first_stage', 'student', 'student_init']" in proc.stderr
    )
    assert report(str(out), "--references=none", "--out", str(tmp_path / "n")).returncode == 0
    assert "untrained start" not in (tmp_path / "n" / "table.md").read_text()


def test_parse_references():
    assert parse_references("BM25=first_stage, start=student_init") == {
        "BM25": "first_stage",
        "start": "student_init",
    }
    assert parse_references("teacher") == {"teacher": "teacher"}
    assert parse_references("none") == {}
    with pytest.raises(DataError, match="must be LABEL=STAGE or STAGE"):
        parse_references("BM25=")


def test_seeds_whose_report_config_differs_still_form_one_cell(tmp_path):
    """sweep.report changes no run: a sweep's seeds reported before and after editing it are one cell."""
    for num, refs in enumerate([{}, {"BM25": "first_stage"}]):
        sweep_config = {"name": "s", "report": {"rows": {"α": "alpha.value"}, "references": refs}}
        write_run(
            tmp_path / str(num),
            num,
            {"alpha": {"value": 0}, "seed": num, "sweep": sweep_config, **EXPORTED},
            {"scifact": {"first_stage": {"nDCG@10": 0.4}, "student": {"nDCG@10": 0.5 + num / 10}}},
        )
    table = build_table(load_run_dirs([tmp_path]), Spec(rows={"α": "alpha.value"}))
    assert table.cells[("0",), "scifact"].values == {0: 50.0, 1: pytest.approx(60.0)}
