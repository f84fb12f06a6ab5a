"""Tables in the layout of the paper (Tables 1, 4, 7): one row per value of the sweep's row fields, columns DL19,
DL20, the BEIR-8 sets in Table 1 order, other benchmarks the runs have, then the average.

A cell is one stage's metric on one benchmark, ×100: the mean (and sample sd) over the row's runs differing only by
``seed``. Nothing is filled in: a cell no run has is missing ("–"), and so is an average unless every averaged
benchmark is present for the same seeds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from dear.errors import DataError
from dear.eval.significance import MARKER, PairedTest
from dear.report.runs import RunResult, run_differences
from dear.utils.paths import ROOT

PAPER_COLUMNS = {
    "dl19": "DL19",
    "dl20": "DL20",
    "trec_covid": "Covid",
    "nfcorpus": "NFCorpus",
    "touche": "Touche",
    "dbpedia": "DBPedia",
    "scifact": "SciFact",
    "signal": "Signal",
    "news": "News",
    "robust04": "Robust04",
}
# Other sets the harness has (shown after the paper's columns when runs have them).
OTHER_LABELS = {"noveleval": "NovelEval", "dl21": "DL21", "nq": "NQ", "webq": "WebQ"}


def _benchmark_set(name: str) -> list[str]:
    """The benchmarks of ``conf/benchmark_set/<name>.yaml``, in its order."""
    from omegaconf import OmegaConf

    defaults = OmegaConf.to_container(
        OmegaConf.load(ROOT / "conf" / "benchmark_set" / f"{name}.yaml")
    )["defaults"]
    return [option for entry in defaults for option in entry.values()]


BEIR8 = _benchmark_set("beir")  # the paper's BEIR-8, the columns Figure 5 and Table 4/7 average
MISSING = "–"


@dataclass
class Spec:
    """``rows``: header label → config path (``a|b``: first set); ``stage`` None: each run's final stage."""

    rows: dict[str, str]
    metric: str = "nDCG@10"
    stage: str | None = None
    average: list[str] = field(default_factory=lambda: list(BEIR8))
    figure: str | None = None
    name: str = "sweep"
    baseline: str | None = None  # the row the others are tested against, e.g. "α=0" (paired.py)
    # label → stage read beside every row in the row's own runs, e.g. {"BM25": "first_stage"} (references.py)
    references: dict[str, str] = field(default_factory=dict)


@dataclass
class Cell:
    """One row × benchmark: a value (×100) per seed, in the order the runs came."""

    values: dict  # {seed: value}; seed None when the runs set none
    runs: list[str]
    stage: str

    @property
    def value(self) -> float:
        return statistics.mean(self.values.values())

    @property
    def sd(self) -> float | None:
        """Sample sd over the seeds (None with one)."""
        return mean_sd(list(self.values.values()))[1]

    def to_json(self) -> dict:
        """Its value, sd over seeds, the seeds' values and their runs (cells.json)."""
        return {
            "value": self.value,
            "sd": self.sd,
            "seeds": list(self.values),
            "values": list(self.values.values()),
            "runs": self.runs,
            "stage": self.stage,
        }


def average_over(cells: list[Cell | None]) -> list[float] | None:
    """Per seed, the mean over ``cells`` (one per averaged benchmark); None if any is missing or seeds differ."""
    if not cells or None in cells or any(c.values.keys() != cells[0].values.keys() for c in cells):
        return None
    return [statistics.mean(c.values[seed] for c in cells) for seed in cells[0].values]


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n − 1; None for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


@dataclass
class Table:
    spec: Spec
    rows: list[tuple[str, ...]]  # row keys: display values of the row fields
    columns: list[str]  # benchmark names
    cells: dict[tuple[tuple[str, ...], str], Cell]
    incomplete: list[str]  # runs without metrics
    # against baselines
    tests: dict[tuple[tuple[str, ...], str], PairedTest] = field(default_factory=dict)
    # row → its baseline row
    baselines: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)
    # the reference stages (BM25, the untrained start, ...) read beside the rows (references.py)
    references: list = field(default_factory=list)

    def cell(self, row: tuple[str, ...], column: str) -> Cell | None:
        """A row's cell, or a reference row's shown cell."""
        cell = self.cells.get((row, column))
        if cell is None:
            ref = next((r for r in self.references if r.key == row), None)
            cell = ref and ref.shown.get(column)
        return cell

    def value(self, row: tuple[str, ...], column: str) -> float | None:
        cell = self.cell(row, column)
        return None if cell is None else cell.value

    def sd(self, row: tuple[str, ...], column: str) -> float | None:
        cell = self.cell(row, column)
        return None if cell is None else cell.sd

    def average_values(self, row: tuple[str, ...]) -> list[float] | None:
        """Per seed, the mean over ``spec.average``; None if any is missing or seeds differ."""
        return average_over([self.cell(row, c) for c in self.spec.average])

    def average(self, row: tuple[str, ...]) -> float | None:
        values = self.average_values(row)
        return None if values is None else statistics.mean(values)

    def average_sd(self, row: tuple[str, ...]) -> float | None:
        values = self.average_values(row)
        return None if values is None else mean_sd(values)[1]

    @property
    def seeds(self) -> int:
        """The most seeds any cell has (1: no cell averages several runs)."""
        return max((len(c.values) for c in self.cells.values()), default=1)

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

    def sds(self, row: tuple[str, ...]) -> list[float | None]:
        """Their sds over seeds, in the same order."""
        return [*(self.sd(row, c) for c in self.columns), self.average_sd(row)]

    @property
    def shown_rows(self) -> list[tuple[str, ...]]:
        """The rows as printed: the reference rows first (as a paper puts its baselines), then the swept rows."""
        return [*(r.key for r in self.references), *self.rows]

    def markers(self, row: tuple[str, ...]) -> list[str]:
        """Per number, the markers of the tests it passes: † against its baseline row, then one per reference
        stage it differs from (never on the average)."""
        out = []
        for c in self.columns:
            marks = MARKER if (row, c) in self.tests and self.tests[row, c].significant else ""
            for ref in self.references:
                test = ref.tests.get((row, c))
                marks += ref.marker if test is not None and test.significant else ""
            out.append(marks)
        return [*out, ""]

    def best(self) -> list[float | None]:
        """Per numeric column, the highest value present, reference rows included; None unless two rows have
        one."""
        columns = list(zip(*(self.numbers(r) for r in self.shown_rows)))
        present = [[v for v in col if v is not None] for col in columns]
        return [max(vals) if len(vals) > 1 else None for vals in present]


def column_label(name: str) -> str:
    return PAPER_COLUMNS.get(name) or OTHER_LABELS.get(name, name)


def display(value) -> str:
    """A row-field value as shown: numbers plainly (0.1), ``org/model`` → ``model``, unset → "–"."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    org, slash, name = text.partition("/")
    if slash and org and name and "/" not in name and not text.startswith((".", "~")):
        return name
    return text


def row_key(run: RunResult, spec: Spec) -> tuple[str, ...]:
    """The table row a run belongs to: its row fields' values as shown."""
    return tuple(display(run.row_value(path)) for path in spec.rows.values())


def build_table(runs: list[RunResult], spec: Spec) -> Table:
    """Cells from runs (in the given order: it is the row order)."""
    if not spec.rows:
        raise DataError(
            "no row fields: pass --rows LABEL=CONFIG.PATH,... or report a sweep from sweeps/"
        )
    rows: dict[tuple[str, ...], None] = {}
    cells: dict[tuple[tuple[str, ...], str], Cell] = {}
    extra: dict[str, None] = {}
    incomplete = []
    by_name = {run.name: run for run in runs}
    for run in runs:
        row = row_key(run, spec)
        rows.setdefault(row)
        if not run.metrics:
            incomplete.append(run.name)
        for bench, stages in run.metrics.items():
            if bench not in PAPER_COLUMNS:
                extra.setdefault(bench)
            _add_cell(cells, row, bench, stages, run, by_name, spec)
    # Paper columns, then other benchmarks the runs have and averaged ones they lack (shown "–").
    columns = [
        *PAPER_COLUMNS,
        *(b for b in dict.fromkeys([*extra, *spec.average]) if b not in PAPER_COLUMNS),
    ]
    return Table(spec, list(rows), columns, cells, incomplete)


def _add_cell(
    cells,
    row: tuple[str, ...],
    bench: str,
    stages: dict,
    run: RunResult,
    by_name: dict[str, RunResult],
    spec: Spec,
) -> None:
    if not stages:
        return
    stage = spec.stage or run.final_stage or list(stages)[-1]
    value = stages.get(stage, {}).get(spec.metric)
    if value is None:
        return
    cell = cells.get((row, bench))
    if cell is None:
        cells[row, bench] = Cell({run.seed: 100 * float(value)}, [run.name], stage)
        return
    first = by_name[cell.runs[0]]
    differences = run_differences(first, run)
    if run.seed in cell.values or differences:
        why = (
            f"they differ in {', '.join(differences[:5])}"
            if differences
            else f"both have seed {run.seed}"
        )
        raise DataError(
            f"two runs give the cell {' / '.join(row)} × {bench}: {first.name} and {run.name} ({why}; "
            "runs that differ only by seed are averaged: report them separately, or add the field that "
            "tells them apart to --rows)"
        )
    cell.values[run.seed] = 100 * float(value)
    cell.runs.append(run.name)
