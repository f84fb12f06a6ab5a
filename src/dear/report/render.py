"""Markdown, LaTeX (booktabs) and JSON renderings of a report table: numbers ×100, two decimals (mean ± sd over
seeds), each column's best mean in bold, † for a significant difference from the baseline row, missing cells "–"
(LaTeX "--"); the notes on ± and † go under the table (LaTeX: the caption)."""

from __future__ import annotations

from dear.eval.significance import MARKER
from dear.eval.tables import markdown_grid
from dear.report.paired import significance_note
from dear.report.references import reference_notes
from dear.report.table import MISSING, Table

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
    "α": r"$\alpha$",
    "τ": r"$\tau$",
    "–": "--",
    "→": r"$\rightarrow$",
    "×": r"$\times$",
    "±": r"$\pm$",
    MARKER: r"\dag{}",
    "<": r"$<$",
    ">": r"$>$",
    "‡": r"\ddag{}",
    "§": r"\S{}",
    "¶": r"\P{}",
    "Δ": r"$\Delta$",
    "—": "---",
}
MARKDOWN = {"bold": "**{}**", "sd": " ± {:.2f}", "marker": "{}", "missing": MISSING}
LATEX = {
    "bold": r"\textbf{{{}}}",
    "sd": r" $\pm$ {:.2f}",
    "marker": r"\textsuperscript{{{}}}",
    "escape": lambda marks: escape(marks),
    "missing": "--",
}


def caption(table: Table) -> str:
    stages = (
        table.spec.stage
        or ", ".join(dict.fromkeys(c.stage for c in table.cells.values()))
        or "none"
    )
    return f"{table.spec.name}: {table.spec.metric} (×100) of stage {stages}"


def notes(table: Table) -> list[str]:
    """What the numbers are beyond the caption: seeds (±) and significance (†)."""
    out = []
    if table.seeds > 1:
        out.append(
            f"Mean ± sample sd over the seeds of each cell (up to {table.seeds}); "
            f"{table.average_label}: over each seed's average."
        )
    return out + ([significance_note(table)] if table.tests else []) + reference_notes(table)


def markdown(table: Table) -> str:
    """A GitHub table with a heading and its notes; runs without metrics are listed below it."""
    header = table.header()
    rows = [[*row, *numbers(table, row, MARKDOWN)] for row in table.shown_rows]
    lines = [f"## {caption(table)}", "", *markdown_grid(header, rows, len(table.spec.rows))]
    if notes(table):
        lines += ["", *notes(table)]
    if table.incomplete:
        lines += ["", "Runs without metrics (cells missing): " + ", ".join(table.incomplete)]
    return "\n".join(lines) + "\n"


def latex(table: Table) -> str:
    """A ``table*`` with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); notes in the caption."""
    header = table.header()
    n_fields = len(table.spec.rows)
    spec = "l" * n_fields + "r" * (len(header) - n_fields)
    body = [
        " & ".join([*(escape(v) for v in row), *numbers(table, row, LATEX)]) + r" \\"
        for row in table.shown_rows
    ]
    label = "".join(c if c.isalnum() else "-" for c in table.spec.name)
    text = escape(" ".join([caption(table) + ".", *notes(table)]))
    return (
        "\n".join(
            [
                r"\begin{table*}[t]",
                r"\centering",
                r"\small",
                rf"\begin{{tabular}}{{{spec}}}",
                r"\toprule",
                " & ".join(escape(h) for h in header) + r" \\",
                r"\midrule",
                *body,
                r"\bottomrule",
                r"\end{tabular}",
                rf"\caption{{{text}}}",
                rf"\label{{tab:{label}}}",
                r"\end{table*}",
            ]
        )
        + "\n"
    )


def cells_json(table: Table) -> dict:
    """Every number with its runs, seeds' values and paired tests (differences ×1, not ×100)."""
    return {
        "name": table.spec.name,
        "metric": table.spec.metric,
        "row_fields": table.spec.rows,
        "columns": table.columns,
        "average": table.spec.average,
        "baseline": table.spec.baseline,
        "notes": notes(table),
        "rows": [
            {
                "row": dict(zip(table.spec.rows, row)),
                "average": table.average(row),
                "average_sd": table.average_sd(row),
                "cells": {
                    c: _cell_json(table, row, c) for c in table.columns if (row, c) in table.cells
                },
            }
            for row in table.rows
        ],
        "references": [ref.to_json(table) for ref in table.references],
        "incomplete": table.incomplete,
    }


def numbers(table: Table, row: tuple[str, ...], style: dict[str, str]) -> list[str]:
    """The row's cells and average as text: mean (bold if the column's best) ± sd, marker."""
    out = []
    for value, sd, best, marks in zip(
        table.numbers(row), table.sds(row), table.best(), table.markers(row)
    ):
        if value is None:
            out.append(style["missing"])
            continue
        text = f"{value:.2f}"
        text = style["bold"].format(text) if value == best else text
        out.append(
            text
            + ("" if sd is None else style["sd"].format(sd))
            + (style["marker"].format(style.get("escape", str)(marks)) if marks else "")
        )
    return out


def escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def _cell_json(table: Table, row: tuple[str, ...], column: str) -> dict:
    out = table.cells[row, column].to_json()
    against = {
        ref.label: ref.tests[row, column].to_json()
        for ref in table.references
        if (row, column) in ref.tests
    }
    if against:
        out["against_references"] = against
    test = table.tests.get((row, column))
    if test is not None:
        out["significance"] = {
            "baseline": dict(zip(table.spec.rows, table.baselines[row])),
            **test.to_json(),
        }
    return out
