"""Tables (Markdown, LaTeX) and the figure (PNG) of a sweep, in the layout of the paper.

    python -m dear.report multirun/toy/2026-01-01_00-00-00            # a sweep directory
    python -m dear.report multirun/alpha/A multirun/alpha/B --out reports/alpha
    python -m dear.report --wandb my-team/dear/alpha --out reports/alpha    # online: a W&B group
    python -m dear.report RUNS --rows 'Teacher=teacher.model,Student=student.model' --stage student
    python -m dear.report multirun/toy/T --baseline 'α=0'      # † against the α = 0 row
    python -m dear.report multirun/toy/T --references 'BM25=first_stage,start=student_init'  # rows ‡ §
    python -m dear.report multirun/toy/T --against paper       # beside the paper's Figure 5 (paper_layout.py)
    python -m dear.report --diff RUN_A RUN_B                   # environments, configs, metrics with p-values

Defaults come from the runs' ``sweep.report`` config; runs differing only by ``seed`` form one cell (mean ± sd).
Writes table.md, table.tex, cells.json, figure.png (and against_paper.md/.tex) into ``--out``, default <sweep
dir>/report/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from dear.cli import user_errors
from dear.report.against import LOG_HEADER, log_lines
from dear.report.diff import diff_runs
from dear.report.diff import markdown as diff_markdown
from dear.report.diff import to_json as diff_json
from dear.report.figure import write_figure
from dear.report.paired import add_significance
from dear.report.paper_layout import build_layout, published_curve
from dear.report.paper_layout import latex as paper_latex
from dear.report.paper_layout import markdown as paper_markdown
from dear.report.references import add_references, parse_references
from dear.report.render import cells_json, latex, markdown
from dear.report.runs import RunResult, load_run_dirs, load_wandb_group
from dear.report.table import BEIR8, Spec, build_table
from dear.utils.io import atomic_write_json, atomic_write_text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dear.report", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", help="sweep or run directories")
    p.add_argument(
        "--wandb", metavar="ENTITY/PROJECT/GROUP", help="read a W&B group instead (online)"
    )
    p.add_argument("--rows", help="row fields: 'Label=config.path,...' ('a|b': the first set)")
    p.add_argument(
        "--figure", help="the row field's config path on the figure's x axis ('none': no figure)"
    )
    p.add_argument(
        "--average", help="benchmarks the average column covers (default: the BEIR-8 sets)"
    )
    p.add_argument("--metric", help="metric name in metrics.json (default nDCG@10)")
    p.add_argument("--stage", help="stage to report (default: the last stage of each run's config)")
    p.add_argument("--name", help="table name (default: sweep.name)")
    p.add_argument(
        "--baseline",
        help="row to test the others against: 'FIELD=VALUE,...' (e.g. 'α=0'; 'none': no tests)",
    )
    p.add_argument(
        "--references",
        help="stages read beside every row in its own runs, with paired tests: 'BM25=first_stage,"
        "start=student_init' (default: sweep.report.references; 'none': no reference rows)",
    )
    p.add_argument(
        "--out", type=Path, help="output directory (default: <the one sweep dir>/report)"
    )
    p.add_argument(
        "--against",
        choices=["paper"],
        help="also render the table beside the paper's published cells",
    )
    p.add_argument(
        "--paper-table",
        help="the paper table to lay out against (default: sweep.report.paper, else "
        "the one varying the row field: Figure 5 for α, Table 7 for pairs)",
    )
    p.add_argument(
        "--diff",
        nargs=2,
        metavar=("RUN_A", "RUN_B"),
        type=Path,
        help="what differs between two runs: environment, config, metrics with paired tests",
    )
    p.add_argument(
        "--log",
        nargs="+",
        metavar="RUN",
        type=Path,
        help="print docs/reproduction.md rows (one per published cell) for finished runs",
    )
    p.add_argument("--verbose", action="store_true", help="show the traceback of input errors too")
    args = p.parse_args(argv)
    if args.log:
        if args.runs or args.wandb or args.diff:
            p.error("--log takes run directories and nothing else")
        return args
    if args.diff:
        if args.runs or args.wandb:
            p.error("--diff takes exactly two run directories and nothing else")
        return args
    if bool(args.runs) == bool(args.wandb):
        p.error("give run/sweep directories or --wandb ENTITY/PROJECT/GROUP (one of the two)")
    if args.out is None and len(args.runs) != 1:
        p.error("--out is needed unless exactly one sweep directory is given")
    return args


def make_spec(args: argparse.Namespace, runs: list[RunResult]) -> Spec:
    """Command-line options, else the runs' ``sweep`` config, else defaults."""
    sweep = next(
        (
            OmegaConf.to_container(r.config.sweep, resolve=False)
            for r in runs
            if "sweep" in r.config
        ),
        {},
    )
    report = sweep.get("report") or {}
    rows = dict(_pairs(args.rows)) if args.rows else dict(report.get("rows") or {})
    figure = args.figure if args.figure is not None else report.get("figure")
    average = args.average.split(",") if args.average else list(report.get("average") or BEIR8)
    baseline = args.baseline if args.baseline is not None else report.get("baseline")
    if isinstance(baseline, dict):  # sweep.report.baseline: {α: 0}
        baseline = ",".join(f"{k}={v}" for k, v in baseline.items())
    if args.references is not None:
        references = parse_references(args.references)
    else:
        references = {str(k): str(v) for k, v in (report.get("references") or {}).items()}
    return Spec(
        rows=rows,
        metric=args.metric or report.get("metric", "nDCG@10"),
        stage=args.stage or report.get("stage"),
        average=average,
        figure=None if figure == "none" else figure,
        baseline=None if baseline in (None, "none") else str(baseline),
        references=references,
        name=args.name
        or sweep.get("name")
        or (Path(args.runs[0]).name if args.runs else args.wandb),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.diff:
        return run_diff(args)
    if args.log:
        with user_errors(args.verbose):
            lines = [line for run in args.log for line in log_lines(run)]
        print("\n".join([LOG_HEADER, *lines]))
        return 0
    with user_errors(args.verbose):
        runs = load_wandb_group(args.wandb) if args.wandb else load_run_dirs(args.runs)
        table = build_table(runs, spec := make_spec(args, runs))
        add_significance(table, runs)
        add_references(table, runs)
        out = args.out or Path(args.runs[0]) / "report"
        atomic_write_text(out / "table.md", markdown(table))
        atomic_write_text(out / "table.tex", latex(table))
        atomic_write_json(out / "cells.json", cells_json(table))
        layout = None
        if args.against:
            asked = args.paper_table or next(
                (r.select("sweep.report.paper") for r in runs if r.select("sweep.report.paper")),
                None,
            )
            layout = build_layout(table, runs, asked)
            atomic_write_text(out / "against_paper.md", paper_markdown(layout))
            atomic_write_text(out / "against_paper.tex", paper_latex(layout))
        curve = published_curve(layout) if layout else []
        source = layout and layout.paper_table + (
            "; ‡ another setup: against_paper.md" if any(r.differences for r in layout.rows) else ""
        )
        figure = spec.figure and write_figure(table, out / "figure.png", curve, source)
        if not figure:
            (out / "figure.png").unlink(missing_ok=True)  # an earlier report's figure would mislead
    print(markdown(table))
    if layout:
        print(paper_markdown(layout))
    written = (
        ["table.md", "table.tex", "cells.json"]
        + (["against_paper.md", "against_paper.tex"] if layout else [])
        + (["figure.png"] if figure else [])
    )
    print(f"{len(runs)} runs → {out}/{{{','.join(written)}}}", file=sys.stderr)
    if spec.figure and not figure:
        print(
            f"no figure: no row has every averaged set ({', '.join(spec.average)})", file=sys.stderr
        )
    return 0


def run_diff(args: argparse.Namespace) -> int:
    with user_errors(args.verbose):
        result = diff_runs(*args.diff)
        if args.out:
            atomic_write_text(args.out / "diff.md", diff_markdown(result))
            atomic_write_json(args.out / "diff.json", diff_json(result))
    print(diff_markdown(result))
    return 0


def _pairs(text: str) -> list[tuple[str, str]]:
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise SystemExit(f"--rows {text!r}: expected 'Label=config.path,...'")
    return [(label.strip(), path.strip()) for label, path in pairs]


if __name__ == "__main__":
    sys.exit(main())
