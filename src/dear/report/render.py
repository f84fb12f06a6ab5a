"""Markdown, LaTeX (booktabs) and JSON renderings of a report table; numbers ×100 with two
decimals, the best value of each column in bold, missing cells as "–" (LaTeX "--")."""

from __future__ import annotations

from dear.report.table import MISSING, Table

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "α": r"$\alpha$",
                  "τ": r"$\tau$", "–": "--", "→": r"$\rightarrow$", "×": r"$\times$"}


def caption(table: Table) -> str:
    stages = table.spec.stage or ", ".join(dict.fromkeys(c.stage for c in table.cells.values())) or "none"
    return f"{table.spec.name}: {table.spec.metric} (×100) of stage {stages}"


def markdown(table: Table) -> str:
    """A GitHub table with a heading; runs without metrics are listed below it."""
    header = table.header()
    n_fields = len(table.spec.rows)
    lines = [f"## {caption(table)}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * n_fields + ["---:"] * (len(header) - n_fields)) + "|"]
    best = table.best()
    for row in table.rows:
        cells = [_number(v, v is not None and v == b, "**{}**") for v, b in zip(table.numbers(row), best)]
        lines.append("| " + " | ".join([*row, *cells]) + " |")
    if table.incomplete:
        lines += ["", "Runs without metrics (cells missing): " + ", ".join(table.incomplete)]
    return "\n".join(lines) + "\n"


def latex(table: Table) -> str:
    """A ``table*`` with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
    header = table.header()
    n_fields = len(table.spec.rows)
    spec = "l" * n_fields + "r" * (len(header) - n_fields)
    best = table.best()
    body = [" & ".join([*(escape(v) for v in row),
                        *(_number(v, v is not None and v == b, r"\textbf{{{}}}", "--") for v, b in
                          zip(table.numbers(row), best))]) + r" \\" for row in table.rows]
    label = "".join(c if c.isalnum() else "-" for c in table.spec.name)
    return "\n".join([r"\begin{table*}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
                      " & ".join(escape(h) for h in header) + r" \\", r"\midrule", *body, r"\bottomrule",
                      r"\end{tabular}", rf"\caption{{{escape(caption(table))}}}", rf"\label{{tab:{label}}}",
                      r"\end{table*}"]) + "\n"


def cells_json(table: Table) -> dict:
    """Every number with the run and stage it came from (missing cells are absent)."""
    return {"name": table.spec.name, "metric": table.spec.metric, "row_fields": table.spec.rows,
            "columns": table.columns, "average": table.spec.average,
            "rows": [{"row": dict(zip(table.spec.rows, row)), "average": table.average(row),
                      "cells": {c: vars(table.cells[row, c]) for c in table.columns if (row, c) in table.cells}}
                     for row in table.rows],
            "incomplete": table.incomplete}


def escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def _number(value: float | None, bold: bool, bold_fmt: str, missing: str = MISSING) -> str:
    if value is None:
        return missing
    text = f"{value:.2f}"
    return bold_fmt.format(text) if bold else text
