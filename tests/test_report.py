"""python -m dear.report on fixture run directories laid out as train.py / evaluate.py write them:
paper-layout Markdown and LaTeX, the α figure, missing cells shown as missing, W&B groups."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT
from omegaconf import OmegaConf

from dear.errors import DataError
from dear.report.figure import figure_points
from dear.report.runs import load_run_dirs, load_wandb_group
from dear.report.table import BEIR8, Spec, build_table

PAPER = ["dl19", "dl20", *BEIR8]
EXPORTED = {"evaluation": {"exported": {"name": "student"}}}  # train.py's last stage
ALPHA_REPORT = {"name": "alpha", "report": {"rows": {"α": "alpha.value"}, "figure": "alpha.value"}}


def write_run(run_dir: Path, num: int, config: dict, metrics: dict, single: str | None = None) -> Path:
    """A run directory: .hydra/{config,hydra}.yaml and metrics.json (``single``: one benchmark at
    the top, as evaluate.py; otherwise benchmarks/<name>/metrics.json, as a train.py set)."""
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(config), run_dir / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"job": {"num": num}}}), run_dir / ".hydra" / "hydra.yaml")
    if single:
        (run_dir / "metrics.json").write_text(json.dumps(metrics[single]))
    for bench, stages in ({} if single else metrics).items():
        (run_dir / "benchmarks" / bench).mkdir(parents=True)
        (run_dir / "benchmarks" / bench / "metrics.json").write_text(json.dumps(stages))
    return run_dir


def train_metrics(student: float, first: float = 0.4) -> dict:
    return {"first_stage": {"nDCG@10": first, "sec_per_query": 0.01},
            "student": {"nDCG@10": student, "sec_per_query": 0.2}}


def report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dear.report", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def alpha_sweep(tmp_path) -> tuple[Path, dict]:
    """α 0.1 and 0.3 have every set but DL20; α 0.5 lacks News. Values: 0.4 + α/2 + i/100 for set i."""
    sweep = tmp_path / "multirun" / "alpha" / "2026-01-01_00-00-00"
    values = {}
    for num, alpha in enumerate([0.1, 0.3, 0.5]):
        benches = [b for b in PAPER if b != "dl20" and not (alpha == 0.5 and b == "news")]
        values[alpha] = {b: 0.4 + alpha / 2 + PAPER.index(b) / 100 for b in benches}
        write_run(sweep / str(num), num, {"alpha": {"value": alpha}, "sweep": ALPHA_REPORT, **EXPORTED},
                  {b: train_metrics(v) for b, v in values[alpha].items()})
    return sweep, values


def test_alpha_sweep_tables_and_figure(alpha_sweep):
    sweep, values = alpha_sweep
    proc = report(str(sweep))
    assert proc.returncode == 0, proc.stderr
    md = (sweep / "report" / "table.md").read_text()
    lines = md.splitlines()
    assert lines[2] == ("| α | DL19 | DL20 | Covid | NFCorpus | Touche | DBPedia | SciFact | Signal | News | Robust04 "
                        "| BEIR avg |")
    rows = {line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ") for line in lines[4:7]}
    assert list(rows) == ["0.1", "0.3", "0.5"]
    beir_avg_01 = sum(100 * values[0.1][b] for b in BEIR8) / 8  # computed here, independently
    assert rows["0.1"][-1] == f"{beir_avg_01:.2f}"
    assert rows["0.1"][1] == f"{100 * values[0.1]['dl19']:.2f}" and rows["0.1"][2] == "–"  # DL20: no run has it
    assert rows["0.5"][9] == "–" and rows["0.5"][-1] == "–"  # News missing → no BEIR average
    assert rows["0.3"][-1] == f"**{sum(100 * values[0.3][b] for b in BEIR8) / 8:.2f}**"  # best average in bold
    assert lines[0] == "## alpha: nDCG@10 (×100) of stage student" and md in proc.stdout

    tex = (sweep / "report" / "table.tex").read_text()
    assert r"\begin{tabular}{lrrrrrrrrrrr}" in tex and r"\toprule" in tex and r"\bottomrule" in tex
    assert r"$\alpha$ & DL19 & DL20 & Covid" in tex
    assert tex.count(r" \\") == 4  # header + 3 rows
    assert "0.5 & " in tex and " & -- & " in tex

    png = (sweep / "report" / "figure.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    cells = json.loads((sweep / "report" / "cells.json").read_text())
    assert cells["rows"][0]["cells"]["scifact"] == {"value": pytest.approx(100 * values[0.1]["scifact"]),
                                                    "run": str(sweep / "0"), "stage": "student"}
    assert "news" not in cells["rows"][2]["cells"] and cells["rows"][2]["average"] is None


def test_figure_plots_only_rows_with_every_averaged_set(alpha_sweep):
    sweep, values = alpha_sweep
    table = build_table(load_run_dirs([sweep]), Spec(rows={"α": "alpha.value"}, figure="alpha.value", name="alpha"))
    points = figure_points(table)
    assert list(points) == ["alpha"]  # one row field: one line, named after the sweep
    assert [x for x, _ in points["alpha"]] == [0.1, 0.3]  # α 0.5 lacks News: left out, not interpolated
    assert points["alpha"][0][1] == pytest.approx(sum(100 * values[0.1][b] for b in BEIR8) / 8)
    by_loss = Spec(rows={"Loss": "loss.rank", "α": "alpha.value"}, figure="alpha.value", name="alpha")
    assert list(figure_points(build_table(load_run_dirs([sweep]), by_loss))) == ["Loss –"]  # no loss in these runs


def test_single_benchmark_runs_fallback_rows_and_stage(tmp_path):
    """evaluate.py runs (one benchmark each, named by benchmark.name): the listwise sweep layout."""
    sweep = tmp_path / "listwise"
    stages = lambda p, l: {"first_stage": {"nDCG@10": 0.5}, "pointwise": {"nDCG@10": p}, "listwise": {"nDCG@10": l}}
    runs = [({"model": "abdoelsayed/dear-8b-reranker-ce-v1"}, "dl19", 0.70, 0.75),
            ({"model": "abdoelsayed/dear-8b-reranker-ce-v1"}, "scifact", 0.72, 0.74),
            ({"path": "multirun/loss/t/1"}, "dl19", 0.60, 0.65)]
    for num, (pointwise, bench, p, l) in enumerate(runs):
        config = {"benchmark": {"name": bench}, "pointwise": pointwise,
                  "pipeline": {"stages": {"pointwise": {}, "listwise": {}}}}
        write_run(sweep / str(num), num, config, {bench: stages(p, l)}, single=bench)
    rows = "--rows=Pointwise=pointwise.path|pointwise.model"
    proc = report(str(sweep), rows, "--figure=none")
    assert proc.returncode == 0, proc.stderr
    md = (sweep / "report" / "table.md").read_text().splitlines()
    assert md[4].startswith("| dear-8b-reranker-ce-v1 | **75.00** | – | ") and "| 74.00 |" in md[4]
    assert md[5].startswith("| multirun/loss/t/1 | 65.00 | – |")
    assert not (sweep / "report" / "figure.png").exists()

    proc = report(str(sweep), rows, "--stage=pointwise", "--out", str(tmp_path / "p"))
    assert proc.returncode == 0, proc.stderr
    assert "| dear-8b-reranker-ce-v1 | **70.00** |" in (tmp_path / "p" / "table.md").read_text()


def test_a_run_still_in_progress_has_no_cell(tmp_path):
    """metrics.json grows stage by stage: a run whose config ends with listwise but whose file
    stops at pointwise is missing, not reported with its pointwise figure."""
    config = {"benchmark": {"name": "dl19"}, "pipeline": {"stages": {"pointwise": {}, "listwise": {}}}, "k": 20}
    metrics = {"dl19": {"first_stage": {"nDCG@10": 0.5}, "pointwise": {"nDCG@10": 0.7}}}
    write_run(tmp_path / "0", 0, config, metrics, single="dl19")
    runs = load_run_dirs([tmp_path])
    assert runs[0].final_stage == "listwise"
    assert build_table(runs, Spec(rows={"k": "k"})).value(("20",), "dl19") is None
    assert build_table(runs, Spec(rows={"k": "k"}, stage="pointwise")).value(("20",), "dl19") == pytest.approx(70.0)


def test_two_runs_for_one_cell_is_an_error_naming_both(tmp_path):
    for num in (0, 1):
        write_run(tmp_path / str(num), num, {"alpha": {"value": 0.1}, "sweep": ALPHA_REPORT},
                  {"scifact": train_metrics(0.5 + num)})
    proc = report(str(tmp_path))
    assert proc.returncode == 2
    assert f"two runs give the cell 0.1 × scifact: {tmp_path / '0'} and {tmp_path / '1'}" in proc.stderr


def test_run_without_metrics_is_listed_and_its_cells_missing(tmp_path):
    write_run(tmp_path / "0", 0, {"alpha": {"value": 0.1}}, {"scifact": train_metrics(0.5)})
    write_run(tmp_path / "1", 1, {"alpha": {"value": 0.2}}, {})
    table = build_table(load_run_dirs([tmp_path]), Spec(rows={"α": "alpha.value"}, average=["scifact"]))
    assert table.rows == [("0.1",), ("0.2",)]
    assert table.numbers(("0.2",)) == [None] * 11 and table.numbers(("0.1",))[6] == pytest.approx(50.0)
    assert table.incomplete == [str(tmp_path / "1")]
    assert table.average_label == "Avg (SciFact)"


def test_rows_are_required(tmp_path):
    write_run(tmp_path / "0", 0, {"alpha": {"value": 0.1}}, {"scifact": train_metrics(0.5)})
    proc = report(str(tmp_path))
    assert proc.returncode == 2 and "no row fields" in proc.stderr


def test_wandb_group_gives_the_same_table_as_run_directories(alpha_sweep):
    sweep, _ = alpha_sweep
    runs = load_run_dirs([sweep])

    class FakeApi:  # the part of wandb.Api the report uses
        def runs(self, path, filters):
            assert path == "team/dear" and filters == {"group": "alpha"}
            return [SimpleNamespace(path=["team", "dear", f"id{i}"], config=OmegaConf.to_container(r.config),
                                    summary_metrics={f"final/{b}/{s}/{m}": v for b, st in r.metrics.items()
                                                     for s, row in st.items() for m, v in row.items()}
                                    | {"trainer/global_step": 8})
                    for i, r in enumerate(runs)]

    spec = Spec(rows={"α": "alpha.value"}, figure="alpha.value")
    from_wandb = build_table(load_wandb_group("team/dear/alpha", api=FakeApi()), spec)
    from_dirs = build_table(runs, spec)
    assert from_wandb.rows == from_dirs.rows
    assert [from_wandb.numbers(r) for r in from_wandb.rows] == [from_dirs.numbers(r) for r in from_dirs.rows]
    assert from_wandb.cells[("0.1",), "scifact"].run == "wandb:team/dear/id0"
    with pytest.raises(DataError, match="expected ENTITY/PROJECT/GROUP"):
        load_wandb_group("dear/alpha", api=FakeApi())
