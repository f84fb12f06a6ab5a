"""python -m dear.report on fixture run directories laid out as train.py / evaluate.py write them:
paper-layout Markdown and LaTeX, the α figure, missing cells shown as missing, W&B groups."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from dear.errors import DataError
from dear.report.figure import figure_points
from dear.report.runs import load_run_dirs, load_wandb_group
from dear.report.table import BEIR8, Spec, build_table
from tests.helpers import ROOT

PAPER = ["dl19", "dl20", *BEIR8]
EXPORTED = {"evaluation": {"exported": {"name": "student"}}}  # train.py's last stage
ALPHA_REPORT = {"name": "alpha", "report": {"rows": {"α": "alpha.value"}, "figure": "alpha.value"}}


def write_run(
    run_dir: Path, num: int, config: dict, metrics: dict, single: str | None = None
) -> Path:
    """A run directory: .hydra/{config,hydra}.yaml and metrics.json (``single``: one benchmark at
    the top, as evaluate.py; otherwise benchmarks/<name>/metrics.json, as a train.py set)."""
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(config), run_dir / ".hydra" / "config.yaml")
    OmegaConf.save(
        OmegaConf.create({"hydra": {"job": {"num": num}}}), run_dir / ".hydra" / "hydra.yaml"
    )
    if single:
        (run_dir / "metrics.json").write_text(json.dumps(metrics[single]))
    for bench, stages in ({} if single else metrics).items():
        (run_dir / "benchmarks" / bench).mkdir(parents=True)
        (run_dir / "benchmarks" / bench / "metrics.json").write_text(json.dumps(stages))
    return run_dir


def train_metrics(student: float, first: float = 0.4) -> dict:
    return {
        "first_stage": {"nDCG@10": first, "sec_per_query": 0.01},
        "student": {"nDCG@10": student, "sec_per_query": 0.2},
    }


def report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dear.report", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def alpha_sweep(tmp_path) -> tuple[Path, dict]:
    """α 0.1 and 0.3 have every set but DL20; α 0.5 lacks News. Values: 0.4 + α/2 + i/100 for set i."""
    sweep = tmp_path / "multirun" / "alpha" / "2026-01-01_00-00-00"
    values = {}
    for num, alpha in enumerate([0.1, 0.3, 0.5]):
        benches = [b for b in PAPER if b != "dl20" and not (alpha == 0.5 and b == "news")]
        values[alpha] = {b: 0.4 + alpha / 2 + PAPER.index(b) / 100 for b in benches}
        write_run(
            sweep / str(num),
            num,
            {"alpha": {"value": alpha}, "sweep": ALPHA_REPORT, **EXPORTED},
            {b: train_metrics(v) for b, v in values[alpha].items()},
        )
    return sweep, values


def test_alpha_sweep_tables_and_figure(alpha_sweep):
    sweep, values = alpha_sweep
    proc = report(str(sweep))
    assert proc.returncode == 0, proc.stderr
    md = (sweep / "report" / "table.md").read_text()
    lines = md.splitlines()
    assert lines[2] == (
        "| α | DL19 | DL20 | Covid | NFCorpus | Touche | DBPedia | SciFact | Signal | News | Robust04 "
        "| BEIR avg |"
    )
    rows = {line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ") for line in lines[4:7]}
    assert list(rows) == ["0.1", "0.3", "0.5"]
    beir_avg_01 = sum(100 * values[0.1][b] for b in BEIR8) / 8  # computed here, independently
    assert rows["0.1"][-1] == f"{beir_avg_01:.2f}"
    # DL20: no run has it
    assert rows["0.1"][1] == f"{100 * values[0.1]['dl19']:.2f}" and rows["0.1"][2] == "–"
    assert rows["0.5"][9] == "–" and rows["0.5"][-1] == "–"  # News missing → no BEIR average
    # best average in bold
    assert rows["0.3"][-1] == f"**{sum(100 * values[0.3][b] for b in BEIR8) / 8:.2f}**"
    assert lines[0] == "## alpha: nDCG@10 (×100) of stage student" and md in proc.stdout

    tex = (sweep / "report" / "table.tex").read_text()
    assert r"\begin{tabular}{lrrrrrrrrrrr}" in tex and r"\toprule" in tex and r"\bottomrule" in tex
    assert r"$\alpha$ & DL19 & DL20 & Covid" in tex
    assert tex.count(r" \\") == 4  # header + 3 rows
    assert "0.5 & " in tex and " & -- & " in tex

    png = (sweep / "report" / "figure.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    cells = json.loads((sweep / "report" / "cells.json").read_text())
    assert cells["rows"][0]["cells"]["scifact"] == {
        "value": pytest.approx(100 * values[0.1]["scifact"]),
        "sd": None,
        "seeds": [None],
        "values": [pytest.approx(100 * values[0.1]["scifact"])],
        "runs": [str(sweep / "0")],
        "stage": "student",
    }
    assert "news" not in cells["rows"][2]["cells"] and cells["rows"][2]["average"] is None


def test_figure_plots_only_rows_with_every_averaged_set(alpha_sweep):
    sweep, values = alpha_sweep
    table = build_table(
        load_run_dirs([sweep]), Spec(rows={"α": "alpha.value"}, figure="alpha.value", name="alpha")
    )
    points = figure_points(table)
    assert list(points) == ["alpha"]  # one row field: one line, named after the sweep
    # α 0.5 lacks News: left out, not interpolated
    assert [x for x, *_ in points["alpha"]] == [
        0.1,
        0.3,
    ]
    assert points["alpha"][0][1] == pytest.approx(sum(100 * values[0.1][b] for b in BEIR8) / 8)
    by_loss = Spec(
        rows={"Loss": "loss.rank", "α": "alpha.value"}, figure="alpha.value", name="alpha"
    )
    # no loss in these runs
    assert list(figure_points(build_table(load_run_dirs([sweep]), by_loss))) == ["Loss –"]


def test_single_benchmark_runs_fallback_rows_and_stage(tmp_path):
    """evaluate.py runs (one benchmark each, named by benchmark.name): the listwise sweep layout."""
    sweep = tmp_path / "listwise"

    def stages(pointwise_ndcg, listwise_ndcg):
        return {
            "first_stage": {"nDCG@10": 0.5},
            "pointwise": {"nDCG@10": pointwise_ndcg},
            "listwise": {"nDCG@10": listwise_ndcg},
        }

    runs = [
        ({"model": "abdoelsayed/dear-8b-reranker-ce-v1"}, "dl19", 0.70, 0.75),
        ({"model": "abdoelsayed/dear-8b-reranker-ce-v1"}, "scifact", 0.72, 0.74),
        ({"path": "multirun/loss/t/1"}, "dl19", 0.60, 0.65),
    ]
    for num, (pointwise, bench, pointwise_ndcg, listwise_ndcg) in enumerate(runs):
        config = {
            "benchmark": {"name": bench},
            "pointwise": pointwise,
            "pipeline": {"stages": {"pointwise": {}, "listwise": {}}},
        }
        write_run(
            sweep / str(num),
            num,
            config,
            {bench: stages(pointwise_ndcg, listwise_ndcg)},
            single=bench,
        )
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
    config = {
        "benchmark": {"name": "dl19"},
        "pipeline": {"stages": {"pointwise": {}, "listwise": {}}},
        "k": 20,
    }
    metrics = {"dl19": {"first_stage": {"nDCG@10": 0.5}, "pointwise": {"nDCG@10": 0.7}}}
    write_run(tmp_path / "0", 0, config, metrics, single="dl19")
    runs = load_run_dirs([tmp_path])
    assert runs[0].final_stage == "listwise"
    assert build_table(runs, Spec(rows={"k": "k"})).value(("20",), "dl19") is None
    assert build_table(runs, Spec(rows={"k": "k"}, stage="pointwise")).value(
        ("20",), "dl19"
    ) == pytest.approx(70.0)


def test_two_runs_for_one_cell_is_an_error_naming_both(tmp_path):
    for num in (0, 1):
        write_run(
            tmp_path / str(num),
            num,
            {"alpha": {"value": 0.1}, "sweep": ALPHA_REPORT},
            {"scifact": train_metrics(0.5 + num)},
        )
    proc = report(str(tmp_path))
    assert proc.returncode == 2
    assert (
        f"two runs give the cell 0.1 × scifact: {tmp_path / '0'} and {tmp_path / '1'}"
        in proc.stderr
    )


def test_run_without_metrics_is_listed_and_its_cells_missing(tmp_path):
    write_run(tmp_path / "0", 0, {"alpha": {"value": 0.1}}, {"scifact": train_metrics(0.5)})
    write_run(tmp_path / "1", 1, {"alpha": {"value": 0.2}}, {})
    table = build_table(
        load_run_dirs([tmp_path]), Spec(rows={"α": "alpha.value"}, average=["scifact"])
    )
    assert table.rows == [("0.1",), ("0.2",)]
    assert table.numbers(("0.2",)) == [None] * 11 and table.numbers(("0.1",))[6] == pytest.approx(
        50.0
    )
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
            return [
                SimpleNamespace(
                    path=["team", "dear", f"id{i}"],
                    config=OmegaConf.to_container(r.config),
                    summary_metrics={
                        f"final/{b}/{s}/{m}": v
                        for b, st in r.metrics.items()
                        for s, row in st.items()
                        for m, v in row.items()
                    }
                    | {"trainer/global_step": 8},
                )
                for i, r in enumerate(runs)
            ]

    spec = Spec(rows={"α": "alpha.value"}, figure="alpha.value")
    from_wandb = build_table(load_wandb_group("team/dear/alpha", api=FakeApi()), spec)
    from_dirs = build_table(runs, spec)
    assert from_wandb.rows == from_dirs.rows
    assert [from_wandb.numbers(r) for r in from_wandb.rows] == [
        from_dirs.numbers(r) for r in from_dirs.rows
    ]
    assert from_wandb.cells[("0.1",), "scifact"].runs == ["wandb:team/dear/id0"]
    with pytest.raises(DataError, match="expected ENTITY/PROJECT/GROUP"):
        load_wandb_group("dear/alpha", api=FakeApi())


SEEDS_REPORT = {
    "name": "seeds",
    "report": {
        "rows": {"α": "alpha.value"},
        "figure": "alpha.value",
        "average": ["scifact", "noveleval"],
        "baseline": "alpha=0",
    },
}


def write_seed_run(
    run_dir: Path, num: int, alpha: float, seed: int, per_query: dict[str, dict[str, float]]
) -> None:
    """A train.py run with a benchmark set: metrics.json and per_query.json per benchmark."""
    metrics = {b: train_metrics(sum(v.values()) / len(v)) for b, v in per_query.items()}
    write_run(
        run_dir,
        num,
        {"alpha": {"value": alpha}, "seed": seed, "sweep": SEEDS_REPORT, **EXPORTED},
        metrics,
    )
    for bench, values in per_query.items():
        rows = {
            "first_stage": {q: {"nDCG@10": 0.4} for q in values},
            "student": {q: {"nDCG@10": v} for q, v in values.items()},
        }
        (run_dir / "benchmarks" / bench / "per_query.json").write_text(json.dumps(rows))


@pytest.fixture
def seed_sweep(tmp_path) -> tuple[Path, dict]:
    """α 0 (the baseline), 0.1 (every query +0.15: clearly better), 0.3 (the baseline's values
    exactly: no difference) × seeds 1, 2 × SciFact (40 queries), NovelEval (20)."""
    import numpy as np

    rng = np.random.default_rng(0)
    sweep = tmp_path / "multirun" / "seeds" / "t"
    base = {
        (b, s): {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0.1, 0.7, n))}
        for b, n in [("scifact", 40), ("noveleval", 20)]
        for s in (1, 2)
    }
    shift = {0: 0.0, 0.1: 0.15, 0.3: 0.0}
    values = {}
    for num, (alpha, seed) in enumerate((a, s) for a in (0, 0.1, 0.3) for s in (1, 2)):
        values[alpha, seed] = {
            b: {
                q: v + shift[alpha] + (0.01 * seed if alpha == 0.1 else 0)
                for q, v in base[b, seed].items()
            }
            for b in ("scifact", "noveleval")
        }
        write_seed_run(sweep / str(num), num, alpha, seed, values[alpha, seed])
    return sweep, values


def test_seeds_form_one_cell_with_mean_sd_and_markers_against_the_baseline(seed_sweep):
    from statistics import mean, stdev

    sweep, values = seed_sweep
    proc = report(str(sweep))
    assert proc.returncode == 0, proc.stderr
    lines = (sweep / "report" / "table.md").read_text().splitlines()
    rows = {line.strip("| ").split(" | ")[0]: line.strip("| ").split(" | ") for line in lines[4:7]}
    assert list(rows) == ["0", "0.1", "0.3"]

    def cell(a, b):  # per seed, computed here
        return [100 * mean(values[a, s][b].values()) for s in (1, 2)]

    scifact = cell(0.1, "scifact")
    # SciFact column, best, significant
    assert rows["0.1"][7] == f"**{mean(scifact):.2f}** ± {stdev(scifact):.2f}†"
    # no †
    assert rows["0.3"][7] == f"{mean(cell(0.3, 'scifact')):.2f} ± {stdev(cell(0.3, 'scifact')):.2f}"
    # baseline, average: untested
    assert "†" not in " ".join(rows["0"]) and not rows["0.1"][-1].endswith("†")
    averages = [mean([cell(0.1, "scifact")[i], cell(0.1, "noveleval")[i]]) for i in (0, 1)]
    assert rows["0.1"][-1] == f"**{mean(averages):.2f}** ± {stdev(averages):.2f}"
    notes = "\n".join(lines[7:])
    assert "Mean ± sample sd over the seeds of each cell (up to 2)" in notes
    assert (
        "†: differs from alpha=0 (better or worse) at p < 0.05, two-sided paired randomisation test"
        in notes
        and "Holm–Bonferroni" in notes
    )

    cells = json.loads((sweep / "report" / "cells.json").read_text())
    by_alpha = {r["row"]["α"]: r for r in cells["rows"]}
    assert "significance" not in by_alpha["0"]["cells"]["scifact"]
    better, same = (by_alpha[a]["cells"]["scifact"]["significance"] for a in ("0.1", "0.3"))
    assert better["baseline"] == {"α": "0"} and better["n"] == 40
    assert same["randomisation_p"] == 1.0 and same["t_test_p"] == 1.0
    assert better["randomisation_p"] < 0.001 and better["mean_diff"] == pytest.approx(0.15 + 0.015)
    # Holm over the two rows tested in the column, by hand: the smaller p × 2, the larger × 1 (monotone, ≤ 1)
    assert better["randomisation_p_holm"] == pytest.approx(min(1, 2 * better["randomisation_p"]))
    assert same["randomisation_p_holm"] == 1.0
    assert by_alpha["0.1"]["cells"]["scifact"]["seeds"] == [1, 2]

    points = figure_points(
        build_table(
            load_run_dirs([sweep]),
            Spec(rows={"α": "alpha.value"}, figure="alpha.value", average=["scifact", "noveleval"]),
        )
    )
    assert points["sweep"][1] == (
        0.1,
        pytest.approx(mean(averages)),
        pytest.approx(stdev(averages)),
    )
    assert (sweep / "report" / "figure.png").read_bytes()[:4] == b"\x89PNG"
    tex = (sweep / "report" / "table.tex").read_text()
    assert (
        rf"\textbf{{{mean(scifact):.2f}}} $\pm$ {stdev(scifact):.2f}\textsuperscript{{\dag{{}}}}"
        in tex
    )


def test_baseline_none_reports_without_tests(seed_sweep, tmp_path):
    sweep, _ = seed_sweep
    proc = report(str(sweep), "--baseline=none", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert "†" not in (tmp_path / "r" / "table.md").read_text()
    assert "significance" not in json.dumps(
        json.loads((tmp_path / "r" / "cells.json").read_text())["rows"]
    )


def test_unknown_baseline_field_is_an_error(seed_sweep, tmp_path):
    sweep, _ = seed_sweep
    proc = report(str(sweep), "--baseline=lr=0", "--out", str(tmp_path / "r"))
    assert (
        proc.returncode == 2
        and "'lr=0' must be FIELD=VALUE with FIELD one of the row fields ['α']" in proc.stderr
    )


def test_runs_of_one_cell_must_differ_only_by_seed(tmp_path):
    for num, extra in enumerate(
        [{"seed": 1, "module": {"lr": 1}}, {"seed": 2, "module": {"lr": 2}}]
    ):
        write_run(
            tmp_path / "a" / str(num),
            num,
            {"alpha": {"value": 0.1}, **extra},
            {"scifact": train_metrics(0.5)},
        )
    for num in (0, 1):
        write_run(
            tmp_path / "b" / str(num),
            num,
            {"alpha": {"value": 0.1}, "seed": 3},
            {"scifact": train_metrics(0.5)},
        )
    spec = Spec(rows={"α": "alpha.value"}, average=["scifact"])
    with pytest.raises(
        DataError,
        match=r"two runs give the cell 0.1 × scifact: .*a/0 and .*a/1 \(they differ in module.lr;",
    ):
        build_table(load_run_dirs([tmp_path / "a"]), spec)
    with pytest.raises(DataError, match=r"\(both have seed 3;"):
        build_table(load_run_dirs([tmp_path / "b"]), spec)


def test_average_needs_the_same_seeds_in_every_averaged_column(tmp_path):
    write_run(
        tmp_path / "0",
        0,
        {"alpha": {"value": 0.1}, "seed": 1},
        {"scifact": train_metrics(0.5), "noveleval": train_metrics(0.7)},
    )
    write_run(
        tmp_path / "1", 1, {"alpha": {"value": 0.1}, "seed": 2}, {"scifact": train_metrics(0.6)}
    )
    table = build_table(
        load_run_dirs([tmp_path]), Spec(rows={"α": "alpha.value"}, average=["scifact", "noveleval"])
    )
    row = ("0.1",)
    assert table.value(row, "scifact") == pytest.approx(55.0) and table.sd(
        row, "scifact"
    ) == pytest.approx(0.1 * 100 / 2**0.5)
    assert (
        table.value(row, "noveleval") == pytest.approx(70.0) and table.sd(row, "noveleval") is None
    )
    assert table.average(row) is None  # seed 2 lacks NovelEval: no average is made up


@pytest.mark.parametrize(
    "file, text, expected",
    [
        (
            ".hydra/config.yaml",
            "benchmark: {name: [unclosed\n",
            r"config\.yaml:\d+: not a readable YAML config",
        ),
        (".hydra/config.yaml", "- a list\n", r"config\.yaml: expected a YAML mapping"),
        (
            ".hydra/hydra.yaml",
            "hydra: {job: {num: 0}\n  x",
            r"hydra\.yaml:\d+: not a readable YAML config",
        ),
        (
            "metrics.json",
            '{"first_stage": {"nDCG@10": "0.5"}}',
            r"metrics\.json: first_stage\.nDCG@10: expected a finite number, found '0\.5'",
        ),
        (
            "metrics.json",
            '{"first_stage": {"nDCG@10": true}}',
            r"metrics\.json: first_stage\.nDCG@10: expected a finite number, found True",
        ),
        (
            "metrics.json",
            '{"first_stage": {"nDCG@10": NaN}}',
            r"metrics\.json: first_stage\.nDCG@10: expected a finite number, found nan",
        ),
    ],
)
def test_a_broken_run_file_is_one_line_naming_it(tmp_path, file, text, expected):
    run_dir = write_run(
        tmp_path / "0",
        0,
        {"benchmark": {"name": "dl19"}},
        {"dl19": {"first_stage": {"nDCG@10": 0.5}}},
        single="dl19",
    )
    (run_dir / file).write_text(text)
    with pytest.raises(DataError, match=expected) as err:
        load_run_dirs([tmp_path])
    assert "\n" not in str(err.value)


def test_the_beir8_list_is_the_benchmark_sets_and_the_listwise_sweeps():
    """conf/benchmark_set/beir.yaml lists the BEIR-8 once; the report reads it, and
    sweeps/listwise.yaml (a sweeper string that cannot read it) must agree."""
    sweep = OmegaConf.load(ROOT / "sweeps" / "listwise.yaml")
    assert BEIR8 == [
        "trec_covid",
        "nfcorpus",
        "touche",
        "dbpedia",
        "scifact",
        "signal",
        "news",
        "robust04",
    ]
    assert str(sweep.hydra.sweeper.params.benchmark).split(",") == ["dl19", "dl20", *BEIR8]
