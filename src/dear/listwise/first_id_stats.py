"""Does a listwise model's first choice depend on the passages? Read from a ``listwise.scoring=first_id`` run.

    python -m dear.listwise.first_id_stats outputs/f/noveleval-sft outputs/f/noveleval-zs ...
    python -m dear.listwise.first_id_stats RUN/benchmarks/noveleval --stage listwise_init listwise

Each run directory's ``<stage>.details.jsonl`` (``--stage``, default ``listwise``; a training run's benchmark
directories also hold its untrained start's, ``listwise_init``) holds, per window, ``first_id_probs``: each id's
probability of being written first. Per run and stage, over its windows of the most common size (a short tail window
is left out): how often each position is the first choice, the mean probability of the first choice, the mean
Spearman correlation between the probabilities and the input order (1: the first passages are preferred, whatever
they say), and the spread: each position's standard deviation across windows, averaged over positions (0: one fixed
distribution for every query).
A model that reads the passages has a first choice that moves with them: low correlation, large spread.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import stats

from dear.errors import DataError
from dear.eval.tables import markdown_grid
from dear.utils.io import read_jsonl

STAGE = "listwise"


def window_probs(run_dir: str | Path, stage: str = STAGE) -> np.ndarray:
    """(windows, size) first-id probabilities of the run's ``stage``'s windows of its most common size."""
    path = Path(run_dir) / f"{stage}.details.jsonl"
    rows = []
    for lineno, record in read_jsonl(path):
        windows = record.get("windows") if isinstance(record, dict) else None
        if not isinstance(windows, list):
            raise DataError(f"{path}:{lineno}: no 'windows' list (not a listwise details file)")
        for window in windows:
            probs = window.get("first_id_probs") if isinstance(window, dict) else None
            if probs is None:
                raise DataError(
                    f"{path}:{lineno}: a window without 'first_id_probs'; "
                    "evaluate with listwise.scoring=first_id"
                )
            rows.append(probs)
    if not rows:
        raise DataError(f"{path}: no windows")
    size = Counter(map(len, rows)).most_common(1)[0][0]
    return np.array([r for r in rows if len(r) == size], dtype=float)


def summary(probs: np.ndarray) -> dict:
    """The statistics of the module docstring for (windows, size) first-id probabilities."""
    first = probs.argmax(axis=1)
    positions = np.arange(probs.shape[1])
    rhos = [
        stats.spearmanr(-p, positions).statistic if np.ptp(p) > 0 else float("nan") for p in probs
    ]
    counts = Counter(int(i) for i in first)
    return {
        "windows": len(probs),
        "size": probs.shape[1],
        "first_choice": {f"[{i + 1}]": n for i, n in counts.most_common()},
        "p_first_choice": float(probs.max(axis=1).mean()),
        "spearman_vs_input": float(np.nanmean(rhos)) if not np.isnan(rhos).all() else None,
        "spread": float(probs.std(axis=0).mean()),
    }


def table(runs: dict[str, dict]) -> str:
    rows = []
    for name, s in runs.items():
        top = ", ".join(
            f"{pos} {n}/{s['windows']}" for pos, n in list(s["first_choice"].items())[:2]
        )
        rho = s["spearman_vs_input"]
        rows.append(
            [
                name,
                f"{s['windows']} × {s['size']}",
                top,
                f"{s['p_first_choice']:.2f}",
                "–" if rho is None else f"{rho:.2f}",
                f"{s['spread']:.4f}",
            ]
        )
    header = ["run", "windows", "first choice", "P(first choice)", "Spearman vs input", "spread"]
    return "\n".join(markdown_grid(header, rows, text_columns=3)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dear.listwise.first_id_stats", description=__doc__.split("\n")[0]
    )
    parser.add_argument("runs", nargs="+", help="evaluate.py run directories (scoring=first_id)")
    parser.add_argument(
        "--stage",
        nargs="+",
        default=[STAGE],
        help=f"the stages to read, each from <run>/<stage>.details.jsonl (default: {STAGE})",
    )
    args = parser.parse_args(argv)

    def name(run: str, stage: str) -> str:
        return run if args.stage == [STAGE] else f"{run} ({stage})"

    try:
        runs = {
            name(str(run), stage): summary(window_probs(run, stage))
            for run in args.runs
            for stage in args.stage
        }
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(runs), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
