"""The PNG of the average column against one row field (paper Figure 5: BEIR-8 average vs α), one line per value of
the other row fields, error bars ± sd over seeds; rows without an average are left out and counted. The reference
stages (BM25, the untrained start: references.py) are grey lines, each point from the drawn row's own runs."""

from __future__ import annotations

import io
from pathlib import Path

from dear.errors import DataError
from dear.report.references import reference_points
from dear.report.table import Table
from dear.utils.io import atomic_write


def figure_points(table: Table) -> dict[str, list[tuple[float, float, float | None]]]:
    """{series label: [(x, average, sd over seeds or None), ...] sorted by x} for rows with an average."""
    fields = list(table.spec.rows.values())
    if table.spec.figure not in fields:
        raise DataError(f"figure: {table.spec.figure!r} is not one of the row fields {fields}")
    at = fields.index(table.spec.figure)
    series: dict[str, list[tuple[float, float]]] = {}
    for row in table.rows:
        average = table.average(row)
        if average is None:
            continue
        try:
            x = float(row[at])
        except ValueError as e:
            raise DataError(f"figure: {table.spec.figure} = {row[at]!r} is not a number") from e
        label = ", ".join(
            f"{name} {v}" for i, (name, v) in enumerate(zip(table.spec.rows, row)) if i != at
        )
        label = label or table.spec.name
        series.setdefault(label, []).append((x, average, table.average_sd(row)))
    return {label: sorted(points, key=lambda p: p[0]) for label, points in series.items()}


def write_figure(
    table: Table,
    path: str | Path,
    published: list[tuple[float, float]] = (),
    published_from: str | None = None,
) -> bool:
    """Plot into ``path`` (PNG), ``published`` points dashed; False, writing nothing, when no row has an average."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = figure_points(table)
    if not series:
        return False
    x_label = next(label for label, p in table.spec.rows.items() if p == table.spec.figure)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=150)
    for label, points in series.items():
        xs, ys, sds = zip(*points)
        ax.errorbar(xs, ys, yerr=[sd or 0.0 for sd in sds], marker="o", capsize=3, label=label)
        for x, y, _ in points:
            ax.annotate(
                f"{y:.2f}", (x, y), textcoords="offset points", xytext=(5, 4), ha="left", fontsize=7
            )
    at = list(table.spec.rows.values()).index(table.spec.figure)
    for ref, style in zip(table.references, ("--", ":", "-.", (0, (1, 4)))):
        # the reference in each drawn row's own runs: a flat line when the rows share it
        points = reference_points(table, ref, at)
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, color="grey", linestyle=style, linewidth=1.2, label=ref.label)
            ax.annotate(
                f"{ys[-1]:.2f}",
                (xs[-1], ys[-1]),
                textcoords="offset points",
                xytext=(0, 3),
                ha="right",
                fontsize=7,
                color="grey",
            )
    if published:
        xs, ys = zip(*published)
        ax.plot(xs, ys, "k--", marker="s", markersize=4, label=f"published ({published_from})")
    plotted = sum(len(p) for p in series.values())
    ticks = sorted(_numbers([row[at] for row in table.rows] + [str(x) for x, _ in published]))
    pad = 0.08 * ((ticks[-1] - ticks[0]) or 1)
    ax.set_xticks(ticks)  # every row's x, drawn or not
    ax.set_xlim(ticks[0] - pad, ticks[-1] + pad)
    ax.margins(y=0.15)
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"{table.average_label} {table.spec.metric} (×100)")
    missing = len(table.rows) - plotted
    note = (
        f" (not drawn: {missing} of {len(table.rows)} rows without every averaged set)"
        if missing
        else ""
    )
    seeds = f"; mean ± sd over {table.seeds} seeds" if table.seeds > 1 else ""
    ax.set_title(table.spec.name + seeds + note, fontsize=8)
    if len(series) > 1 or published or table.references:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    atomic_write(path, lambda f: f.write(png.getvalue()), binary=True)
    return True


def _numbers(values) -> set[float]:
    """The values that are numbers."""
    out = set()
    for value in values:
        try:
            out.add(float(value))
        except ValueError:
            continue
    return out
