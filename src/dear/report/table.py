"""Tables in the layout of the paper (Tables 1, 4, 7): one row per value of the sweep's row
fields (teacher–student pair, α, loss...), columns DL19, DL20, the BEIR-8 sets in Table 1 order,
any other benchmark the runs have, then the average.

A cell is one stage's metric on one benchmark in one run, ×100. A cell no run has is missing
("–"), and so is an average unless every averaged benchmark is present: nothing is filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dear.errors import DataError
from dear.report.runs import RunResult

PAPER_COLUMNS = {"dl19": "DL19", "dl20": "DL20", "trec_covid": "Covid", "nfcorpus": "NFCorpus", "touche": "Touche",
                 "dbpedia": "DBPedia", "scifact": "SciFact", "signal": "Signal", "news": "News",
                 "robust04": "Robust04"}
# Other sets the harness has (shown after the paper's columns when runs have them).
OTHER_LABELS = {"noveleval": "NovelEval", "dl21": "DL21", "nq": "NQ", "webq": "WebQ"}
BEIR8 = ["trec_covid", "nfcorpus", "touche", "dbpedia", "scifact", "signal", "news", "robust04"]
MISSING = "–"


@dataclass
class Spec:
    """What to tabulate. ``rows``: header label → config path (``a|b``: the first set);
    ``stage``: None = the stage each run's config ends with (RunResult.final_stage); ``figure``: the row
    field plotted on the x axis."""

    rows: dict[str, str]
    metric: str = "nDCG@10"
    stage: str | None = None
    average: list[str] = field(default_factory=lambda: list(BEIR8))
    figure: str | None = None
    name: str = "sweep"


@dataclass
class Cell:
    value: float  # ×100
    run: str
    stage: str


@dataclass
class Table:
    spec: Spec
    rows: list[tuple[str, ...]]  # row keys: display values of the row fields
    columns: list[str]  # benchmark names
    cells: dict[tuple[tuple[str, ...], str], Cell]
    incomplete: list[str]  # runs without metrics

    def value(self, row: tuple[str, ...], column: str) -> float | None:
        cell = self.cells.get((row, column))
        return None if cell is None else cell.value

    def average(self, row: tuple[str, ...]) -> float | None:
        """Mean over ``spec.average``; None if any of them is missing."""
        values = [self.value(row, c) for c in self.spec.average]
        return None if not values or None in values else sum(values) / len(values)

    @property
    def average_label(self) -> str:
        if self.spec.average == BEIR8:
            return "BEIR avg"
        return "Avg (" + ", ".join(column_label(c) for c in self.spec.average) + ")"

    def header(self) -> list[str]:
        return [*self.spec.rows, *(column_label(c) for c in self.columns), self.average_label]

    def numbers(self, row: tuple[str, ...]) -> list[float | None]:
        """The row's cells then its average, in header order."""
        return [*(self.value(row, c) for c in self.columns), self.average(row)]

    def best(self) -> list[float | None]:
        """Per numeric column, the highest value present; None unless two rows have one."""
        columns = list(zip(*(self.numbers(r) for r in self.rows)))
        present = [[v for v in col if v is not None] for col in columns]
        return [max(vals) if len(vals) > 1 else None for vals in present]


def column_label(name: str) -> str:
    return PAPER_COLUMNS.get(name) or OTHER_LABELS.get(name, name)


def display(value) -> str:
    """A row-field value as shown: numbers plainly (0.1), hub ids by name (``org/model`` →
    ``model``), anything else as is; unset → "–"."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    org, slash, name = text.partition("/")
    if slash and org and name and "/" not in name and not text.startswith((".", "~")):
        return name
    return text


def build_table(runs: list[RunResult], spec: Spec) -> Table:
    """Cells from runs (in the given order: it is the row order)."""
    if not spec.rows:
        raise DataError("no row fields: pass --rows LABEL=CONFIG.PATH,... or report a sweep from sweeps/")
    rows: dict[tuple[str, ...], None] = {}
    cells: dict[tuple[tuple[str, ...], str], Cell] = {}
    extra: dict[str, None] = {}
    incomplete = []
    for run in runs:
        row = tuple(display(run.select(path)) for path in spec.rows.values())
        rows.setdefault(row)
        if not run.metrics:
            incomplete.append(run.name)
        for bench, stages in run.metrics.items():
            if bench not in PAPER_COLUMNS:
                extra.setdefault(bench)
            _add_cell(cells, row, bench, stages, run.name, run.final_stage, spec)
    # Paper columns, then other benchmarks the runs have and averaged ones they lack (shown "–").
    columns = [*PAPER_COLUMNS, *(b for b in dict.fromkeys([*extra, *spec.average]) if b not in PAPER_COLUMNS)]
    return Table(spec, list(rows), columns, cells, incomplete)


def _add_cell(cells, row: tuple[str, ...], bench: str, stages: dict, run: str, final_stage: str | None,
              spec: Spec) -> None:
    if not stages:
        return
    stage = spec.stage or final_stage or list(stages)[-1]
    value = stages.get(stage, {}).get(spec.metric)
    if value is None:
        return
    if (row, bench) in cells:
        raise DataError(f"two runs give the cell {' / '.join(row)} × {bench}: {cells[row, bench].run} and {run} "
                        "(report them separately, or add the field that tells them apart to --rows)")
    cells[row, bench] = Cell(100 * float(value), run, stage)
