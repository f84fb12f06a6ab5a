"""Reference rows of a report table: the stages every swept row is read beside — BM25 (``first_stage``), the
``teacher``, the untrained start (``student_init``) — each measured in the row's *own* runs, and a paired test of
every row against its own runs' reference stage.

``sweep.report.references: {BM25: first_stage, start: student_init}`` (or ``--references 'BM25=first_stage,...'``)
adds one row per reference above the swept rows, and one marker per reference on the cells that differ from it
(‡ the first, § the second, ...). A row's reference comes from the same runs and seeds as the row, so a sweep whose
rows start from different models is tested against each row's own start. The printed reference row is the
baseline row's (else the first row's); where rows' references differ, a note says so and cells.json has each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dear.errors import DataError
from dear.eval.significance import adjust_holm, compare_to_baseline, note
from dear.report.paired import cell_per_query
from dear.report.runs import RunResult
from dear.report.table import Cell, Table, average_over

MARKERS = ("‡", "§", "¶", "#")
Row = tuple[str, ...]


@dataclass
class Reference:
    """One reference stage: its cell in every row's own runs, the printed row, the tests against it."""

    label: str
    stage: str
    marker: str
    key: Row  # the printed row's key: the label, then blanks for the other row fields
    cells: dict[tuple[Row, str], Cell] = field(default_factory=dict)  # (swept row, column) → cell
    shown: dict[str, Cell] = field(default_factory=dict)  # column → the printed cell
    shown_from: Row | None = None
    differs: list[str] = field(default_factory=list)  # columns whose rows' references differ
    tests: dict = field(default_factory=dict)  # (swept row, column) → PairedTest

    def to_json(self, table: Table) -> dict:
        return {
            "label": self.label,
            "stage": self.stage,
            "marker": self.marker,
            "shown_from": None
            if self.shown_from is None
            else dict(zip(table.spec.rows, self.shown_from)),
            "differs_across_rows": self.differs,
            "rows": [
                {
                    "row": dict(zip(table.spec.rows, row)),
                    "cells": {
                        c: self.cells[row, c].to_json()
                        for c in table.columns
                        if (row, c) in self.cells
                    },
                }
                for row in table.rows
                if any((row, c) in self.cells for c in table.columns)
            ],
        }


def parse_references(text: str) -> dict[str, str]:
    """``'BM25=first_stage,start=student_init'`` (or bare stage names) → {label: stage}; 'none' → {}."""
    if text.strip() == "none":
        return {}
    out = {}
    for item in (i.strip() for i in text.split(",") if i.strip()):
        label, eq, stage = (part.strip() for part in item.partition("="))
        if eq and not (label and stage):
            raise DataError(f"--references {text!r}: {item!r} must be LABEL=STAGE or STAGE")
        out[label] = stage if eq else label
    return out


def add_references(table: Table, runs: list[RunResult]) -> None:
    """Fill ``table.references`` from ``table.spec.references`` (nothing when it names none)."""
    if len(table.spec.references) > len(MARKERS):
        raise DataError(
            f"references: at most {len(MARKERS)} stages, got {list(table.spec.references)}"
        )
    by_name = {run.name: run for run in runs}
    metric = table.spec.metric
    for (label, stage), marker in zip(table.spec.references.items(), MARKERS):
        key = (label, *([""] * (len(table.spec.rows) - 1)))
        if key in table.rows:
            raise DataError(f"references: the label {label!r} is also a row of the table")
        ref = Reference(label, stage, marker, key)
        for (row, column), cell in table.cells.items():
            if cell.stage == stage:
                continue  # a row is not read beside itself
            values = {}
            for name, seed in zip(cell.runs, cell.values):
                value = by_name[name].metrics.get(column, {}).get(stage, {}).get(metric)
                if value is None:
                    break
                values[seed] = 100 * float(value)
            else:
                ref.cells[row, column] = Cell(values, list(cell.runs), stage)
        if not ref.cells:
            have = sorted({s for r in runs for stages in r.metrics.values() for s in stages})
            raise DataError(
                f"references: no run has stage {stage!r} ({label}) with {metric}; the runs have {have}"
            )
        _show(table, ref)
        _test(table, ref, by_name)
        table.references.append(ref)


def reference_notes(table: Table) -> list[str]:
    """The lines under the table that explain the reference rows and their markers."""
    tested = [ref for ref in table.references if ref.tests]
    out = []
    if tested:
        names = " / ".join(f"{ref.label} ({ref.stage})" for ref in tested)
        family = (
            "the rows of each column (per-query values averaged over seeds; the average untested)"
        )
        marker = "/".join(ref.marker for ref in tested)
        out.append(note(f"{names} in the row's own runs", family, marker))
    for ref in table.references:
        if ref.differs:
            shown = " / ".join(v for v in ref.shown_from if v)
            out.append(
                f"{ref.label}: the row printed is that of the runs of row {shown}; other rows' own {ref.stage} "
                f"differs on {', '.join(ref.differs)} (each row's in cells.json)."
            )
    return out


def reference_points(table: Table, ref: Reference, at: int) -> list[tuple[float, float]]:
    """(x, the reference's average in that row's runs) per swept row that has one, for the figure."""
    points = []
    for row in table.rows:
        values = average_over([ref.cells.get((row, c)) for c in table.spec.average])
        if values is not None:
            points.append((float(row[at]), sum(values) / len(values)))
    return sorted(set(points))


def _show(table: Table, ref: Reference) -> None:
    """The printed row: the baseline row's runs, else the first row with the reference."""
    base = next(iter(table.baselines.values()), None)
    order = [base, *table.rows] if base is not None else list(table.rows)
    ref.shown_from = next(r for r in order if any((r, c) in ref.cells for c in table.columns))
    for column in table.columns:
        cell = ref.cells.get((ref.shown_from, column))
        if cell is None:
            cell = next((ref.cells[r, column] for r in order if (r, column) in ref.cells), None)
        if cell is None:
            continue
        ref.shown[column] = cell
        if any(
            abs(ref.cells[r, column].value - cell.value) > 1e-9
            for r in table.rows
            if (r, column) in ref.cells
        ):
            ref.differs.append(column)


def _test(table: Table, ref: Reference, by_name: dict[str, RunResult]) -> None:
    """Each swept row against its own runs' reference stage, Holm over the rows of each column."""
    metric = table.spec.metric
    for column in table.columns:
        family = []
        for row in table.rows:
            if (row, column) not in ref.cells:
                continue
            what = f"{' / '.join(row)} × {column}"
            per_query = {
                what: cell_per_query(table.cells[row, column], column, metric, by_name, what),
                ref.label: cell_per_query(ref.cells[row, column], column, metric, by_name, what),
            }
            if None in per_query.values():
                continue
            ref.tests[row, column] = compare_to_baseline(per_query, ref.label)[what]
            family.append(ref.tests[row, column])
        adjust_holm(family)
