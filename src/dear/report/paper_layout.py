"""A sweep's table in the layout of the paper table it ablates, each cell "measured / published (Δ)".

    python -m dear.report multirun/toy/<time> --against paper                  # Figure 5 for an α sweep
    python -m dear.report multirun/pairing/<time> --against paper --paper-table 'Table 7'

The table is ``--paper-table``, else ``sweep.report.paper``, else the one varying the row field (α → Figure 5,
teacher/student → Table 7, loss → Table 1). Measured rows match paper rows by α / teacher / student / loss (models by
the model their option sets); a row measured in another setup is marked ‡ with what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dear.errors import DataError
from dear.eval.tables import markdown_grid
from dear.report import paper
from dear.report.against import (
    OTHER,
    PAPER_AVERAGES,
    option_model,
    run_choices,
    same_model,
    setup_differences,
    signed,
)
from dear.report.render import escape
from dear.report.runs import RunResult
from dear.report.table import BEIR8, MISSING, Table, column_label, display, row_key

# Row field config path → the paper cell's field it is matched with, and the table that varies it.
ROW_FIELDS = {
    "alpha.value": "alpha",
    "teacher.model": "teacher",
    "student.model": "student",
    "loss.rank": "loss",
}
VARIED_IN = {"alpha": "Figure 5", "teacher": "Table 7", "student": "Table 7", "loss": "Table 1"}
AVERAGE = "average"


@dataclass
class LayoutRow:
    label: tuple[str, ...]  # the row fields' values as shown
    measured: tuple[str, ...] | None  # the measured table's row (None: published only)
    published: dict[str, paper.PaperCell] = field(default_factory=dict)  # column → cell
    differences: list[str] = field(default_factory=list)


@dataclass
class Layout:
    table: Table
    paper_table: str
    columns: list[str]  # benchmark names, then AVERAGE
    rows: list[LayoutRow]

    def measured(self, row: LayoutRow, column: str) -> tuple[float | None, float | None]:
        if row.measured is None:
            return None, None
        if column == AVERAGE:
            return self.table.average(row.measured), self.table.average_sd(row.measured)
        return self.table.value(row.measured, column), self.table.sd(row.measured, column)

    def header(self) -> list[str]:
        return [
            *self.table.spec.rows,
            *(self.table.average_label if c == AVERAGE else column_label(c) for c in self.columns),
        ]


def choose_table(spec_rows: dict[str, str], asked: str | None) -> str:
    if asked:
        if asked not in paper.PAPER_TABLES:
            raise DataError(
                f"--paper-table {asked!r}: the paper's tables are {', '.join(paper.PAPER_TABLES)}"
            )
        return asked
    for path in spec_rows.values():
        if path in ROW_FIELDS:
            return VARIED_IN[ROW_FIELDS[path]]
    raise DataError(
        f"--against paper: no row field ({', '.join(spec_rows.values())}) is one the paper varies "
        f"({', '.join(ROW_FIELDS)}); name the table with --paper-table"
    )


def _matches(
    cell: paper.PaperCell, run: RunResult, spec_rows: dict[str, str], choices: dict
) -> bool:
    for path in spec_rows.values():
        attr = ROW_FIELDS.get(path)
        wanted, value = (getattr(cell, attr), run.select(path)) if attr else (None, None)
        if wanted is None:
            continue
        if attr == "alpha":
            if value is None or abs(float(value) - wanted) > 1e-9:
                return False
        elif attr in ("teacher", "student"):
            if not same_model(attr, wanted, value, choices):
                return False
        elif str(value) != str(wanted) and choices.get("loss") != wanted:
            return False
    return True


def build_layout(table: Table, runs: list[RunResult], paper_table: str | None = None) -> Layout:
    spec = table.spec
    name = choose_table(spec.rows, paper_table)
    cells = [c for c in paper.cells() if c.table == name and c.metric == spec.metric]
    if not cells:
        raise DataError(f"--against paper: {name} publishes no {spec.metric} cell")
    by_method: dict[str, list[paper.PaperCell]] = {}
    for c in cells:
        by_method.setdefault(c.method, []).append(c)
    column_of = {
        c.benchmark: (AVERAGE if c.benchmark in PAPER_AVERAGES else c.benchmark) for c in cells
    }
    measured_columns = [c for c in table.columns if any((r, c) in table.cells for r in table.rows)]
    columns = list(
        dict.fromkeys(
            [*(v for v in column_of.values() if v != AVERAGE), *measured_columns, AVERAGE]
        )
    )
    average_label = (
        "BEIR-8" if spec.average == BEIR8 else ", ".join(column_label(c) for c in spec.average)
    )

    rows, used = [], set()
    for row in table.rows:
        run = next(r for r in runs if row_key(r, spec) == row)
        choices = run_choices(run.name)
        method = next(
            (
                m
                for m, cs in by_method.items()
                if m not in used and _matches(cs[0], run, spec.rows, choices)
            ),
            None,
        )
        layout_row = LayoutRow(row, row)
        if method:
            used.add(method)
            layout_row.published = {column_of[c.benchmark]: c for c in by_method[method]}
            first = by_method[method][0]
            layout_row.differences = setup_differences(first, run.config, choices)
            if AVERAGE in layout_row.published and average_label != PAPER_AVERAGES.get(
                layout_row.published[AVERAGE].benchmark, average_label
            ):
                layout_row.differences.append(
                    f"averaged over {average_label} (paper: "
                    f"{PAPER_AVERAGES[layout_row.published[AVERAGE].benchmark]})"
                )
        rows.append(layout_row)
    for method, cs in by_method.items():  # the paper's rows nobody measured
        if method not in used:
            label = tuple(_paper_value(cs[0], p) for p in spec.rows.values())
            rows.append(LayoutRow(label, None, {column_of[c.benchmark]: c for c in cs}))
    rows.sort(key=lambda r: tuple(_sortable(v) for v in r.label))
    return Layout(table, name, columns, rows)


def _paper_value(cell: paper.PaperCell, path: str) -> str:
    attr = ROW_FIELDS.get(path)
    value = getattr(cell, attr) if attr else None
    if attr in ("teacher", "student") and value:
        value = option_model(attr, value) or value
    return display(value) if value is not None else cell.method


def _sortable(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _cell_text(layout: Layout, row: LayoutRow, column: str, sd_format: str, missing: str) -> str:
    value, sd = layout.measured(row, column)
    published = row.published.get(column)
    measured = (
        missing if value is None else f"{value:.2f}" + ("" if sd is None else sd_format.format(sd))
    )
    if published is None:
        return measured
    delta = "" if value is None else f" ({signed(value - published.value)})"
    return f"{measured} / {published.value:.2f}{delta}" + (
        OTHER if row.differences and value is not None else ""
    )


def notes(layout: Layout) -> list[str]:
    out = [
        f"Each cell: measured / published in {layout.paper_table} of {paper.PAPER} (Δ = measured − published); "
        f"{layout.table.spec.metric} ×100; published-only rows are the paper's rows this sweep did not run."
    ]
    by_setup: dict[tuple[str, ...], list[str]] = {}
    for r in layout.rows:
        if r.differences:
            by_setup.setdefault(tuple(r.differences), []).append(" / ".join(r.label))
    for differences, labels in by_setup.items():
        out.append(
            f"{OTHER} {', '.join(labels)}: another setup than the paper's — "
            + "; ".join(differences)
            + "."
        )
    if layout.table.seeds > 1:
        out.append(f"Measured: mean ± sample sd over up to {layout.table.seeds} seeds.")
    return out


def markdown(layout: Layout) -> str:
    header = layout.header()
    rows = [
        [*row.label, *(_cell_text(layout, row, c, " ± {:.2f}", MISSING) for c in layout.columns)]
        for row in layout.rows
    ]
    lines = [
        f"## {layout.table.spec.name} against the paper ({layout.paper_table})",
        "",
        *markdown_grid(header, rows, len(layout.table.spec.rows)),
    ]
    return "\n".join([*lines, "", *notes(layout)]) + "\n"


def latex(layout: Layout) -> str:
    header = layout.header()
    n = len(layout.table.spec.rows)
    body = [
        " & ".join(
            [
                *(escape(v) for v in row.label),
                *(escape(_cell_text(layout, row, c, " ± {:.2f}", MISSING)) for c in layout.columns),
            ]
        )
        + r" \\"
        for row in layout.rows
    ]
    label = "".join(c if c.isalnum() else "-" for c in layout.table.spec.name)
    return (
        "\n".join(
            [
                r"\begin{table*}[t]",
                r"\centering",
                r"\small",
                rf"\begin{{tabular}}{{{'l' * n + 'r' * (len(header) - n)}}}",
                r"\toprule",
                " & ".join(escape(h) for h in header) + r" \\",
                r"\midrule",
                *body,
                r"\bottomrule",
                r"\end{tabular}",
                rf"\caption{{{escape(' '.join(notes(layout)))}}}",
                rf"\label{{tab:{label}-paper}}",
                r"\end{table*}",
            ]
        )
        + "\n"
    )


def published_curve(layout: Layout) -> list[tuple[float, float]]:
    """(α, published average) of Figure 5's rows, for the figure (empty for other tables)."""
    return sorted(
        (c.alpha, c.value)
        for r in layout.rows
        for col, c in r.published.items()
        if col == AVERAGE and c.alpha is not None
    )
