"""Significance markers of a report table: every row against its baseline row, per benchmark.

``--baseline 'α=0'`` (or ``sweep.report.baseline``) fixes row fields, named by label (``α``), config path
(``alpha.value``) or its first part (``alpha``); a row's baseline has those values and the row's own in the other
fields. Per query a cell's value is the mean over its seeds; tests are dear.eval.significance's, Holm–Bonferroni
corrected over one column's rows. Cells without per_query.json (W&B groups) are not tested.
"""

from __future__ import annotations

import statistics

from dear.errors import DataError
from dear.eval.significance import adjust_holm, compare_to_baseline, note
from dear.report.runs import RunResult
from dear.report.table import Cell, Table


def parse_baseline(text: str, rows: dict[str, str]) -> dict[int, str]:
    """``'α=0,Loss=ranknet'`` → {row field index: value}."""
    fixed = {}
    for item in (i for i in text.split(",") if i.strip()):
        key, eq, value = (part.strip() for part in item.partition("="))
        matches = [
            i
            for i, (label, path) in enumerate(rows.items())
            if key in (label, path, path.split(".")[0])
        ]
        if not eq or not value or len(matches) != 1:
            raise DataError(
                f"--baseline {text!r}: {item!r} must be FIELD=VALUE with FIELD one of the row fields "
                f"{list(rows)} (label or config path)"
            )
        fixed[matches[0]] = value
    return fixed


def same_value(shown: str, wanted: str) -> bool:
    """A row's displayed value equals the wanted one (as numbers when both are: 0 = 0.0)."""
    try:
        return float(shown) == float(wanted)
    except ValueError:
        return shown == wanted


def baseline_rows(table: Table, fixed: dict[int, str]) -> dict[tuple[str, ...], tuple[str, ...]]:
    """{row: its baseline row} for the rows that have one (the baseline rows map to themselves)."""
    out = {}
    for row in table.rows:
        for candidate in table.rows:
            if all(
                same_value(candidate[i], fixed[i]) if i in fixed else candidate[i] == row[i]
                for i in range(len(row))
            ):
                out[row] = candidate
                break
    return out


def add_significance(table: Table, runs: list[RunResult]) -> None:
    """Fill ``table.tests`` and ``table.baselines`` (nothing when the spec names no baseline)."""
    if not table.spec.baseline:
        return
    table.baselines = baseline_rows(table, parse_baseline(table.spec.baseline, table.spec.rows))
    if not any(base != row for row, base in table.baselines.items()):
        raise DataError(
            f"--baseline {table.spec.baseline!r}: no row to test against it; rows: {table.rows}"
        )
    by_name = {run.name: run for run in runs}
    for column in table.columns:
        family = []
        for row, base in table.baselines.items():
            values = {
                name: _per_query(table, r, column, by_name)
                for name, r in (("row", row), ("base", base))
            }
            if row == base or None in values.values():
                continue
            test = compare_to_baseline(values, "base")["row"]
            table.tests[row, column] = test
            family.append(test)
        adjust_holm(family)


def significance_note(table: Table) -> str | None:
    """The line under the table that explains †, or None without tests."""
    if not table.tests:
        return None
    return note(
        table.spec.baseline,
        "the rows of each column (per-query values averaged over seeds; "
        f"the {table.average_label} column is not tested)",
    )


def _per_query(
    table: Table, row: tuple[str, ...], column: str, by_name: dict[str, RunResult]
) -> dict | None:
    """{qid: mean over the cell's seeds} (None: a run lacks per-query values, or no cell)."""
    cell = table.cells.get((row, column))
    if cell is None:
        return None
    return cell_per_query(cell, column, table.spec.metric, by_name, " / ".join(row))


def cell_per_query(
    cell: Cell, column: str, metric: str, by_name: dict[str, RunResult], what: str
) -> dict | None:
    """{qid: the metric of ``cell.stage`` averaged over the cell's runs} (None: a run lacks per-query values)."""
    per_seed = [by_name[name].per_query(column, cell.stage, metric) for name in cell.runs]
    if None in per_seed:
        return None
    if any(p.keys() != per_seed[0].keys() for p in per_seed):
        raise DataError(
            f"{what} × {column}: the seeds' runs {cell.runs} evaluated different queries"
        )
    return {qid: statistics.mean(p[qid] for p in per_seed) for qid in per_seed[0]}
