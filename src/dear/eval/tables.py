"""Markdown tables that paste into a paper: metrics ×100 with two decimals, seconds with three."""

from __future__ import annotations

from dear.eval.significance import MARKER


def markdown_grid(header: list[str], rows, text_columns: int = 1) -> list[str]:
    """A GitHub table's lines: the first ``text_columns`` left-aligned, the rest right-aligned numbers."""

    def line(cells) -> str:
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join(["---"] * text_columns + ["---:"] * (len(header) - text_columns)) + "|"
    return [line(header), rule, *map(line, rows)]


def markdown_table(
    metrics: dict[str, dict[str, float]],
    columns: list[str],
    marked: set[tuple[str, str]] = frozenset(),
    time_key: str = "sec_per_query",
) -> str:
    """Rows = stages; columns = metrics, the stages' own rates ("–" where absent), seconds per query; ``marked``:
    (stage, metric) cells with the significance marker."""
    extra = list(
        dict.fromkeys(
            k for row in metrics.values() for k in row if k not in columns and k != time_key
        )
    )
    columns = [*columns, *extra]
    header = ["stage", *columns, "s/query"]
    rows = []
    for stage, row in metrics.items():
        cells = [stage] + [
            _pct(row.get(c)) + (MARKER if (stage, c) in marked else "") for c in columns
        ]
        rows.append([*cells, _secs(row.get(time_key))])
    lines = markdown_grid(header, rows)
    return "\n".join(lines) + "\n"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _secs(value) -> str:
    return "–" if value is None else f"{value:.3f}"
