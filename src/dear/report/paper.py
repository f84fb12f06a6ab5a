"""The DeAR paper's published figures, one cell per row of ``paper_dear.csv`` (shipped with the package).

``paper_dear.csv`` is plain CSV (UTF-8, comma-separated, ``"``-quoted where needed, one row a line, no comments) with
the header

    cell,table,method,teacher,student,loss,alpha,top_k,stage,benchmark,metric,value,source

- ``cell``: stable lowercase id ``<where>/<row>/<benchmark>/<metric>`` (``/`` in a metric becomes ``-``), e.g.
  ``t1/dearp-llama31-8b-bce/dl19/ndcg@10``; ``<where>``: ``t1`` … ``t7``, ``f5`` (Figure 5), ``readme`` / ``card``
  (README, DeAR-L-8B model card; ``<row>`` is ``<section>.<row>``).
- ``table``: ``Table 1`` … ``Table 7``, ``Figure 5``, ``README: <section>``, ``Model card: <section>``.
- ``method``: the row as printed, e.g. ``DeAR-P Qwen3-14B -> Qwen3-1.7B`` (teacher -> student), ``DeAR-L GPT-4 on
  DeAR-P Llama3.1-8B (RL)`` (listwise model on the pointwise run it reranks).
- ``teacher``, ``student``, ``loss``: ``conf/`` option names of the DeAR-P run (for ``listwise`` rows, the one
  reranked; empty where unsaid). Paper "Llama3.1-3B" is ``llama32_3b``, "Qwen1.5-1.5B/3B" are ``qwen25_1_5b`` /
  ``qwen25_3b``, LLaMA2-13B ``rankllama_13b``; RL is ``ranknet``, BC / BCE ``softmax_ce`` (the released ``-ce-``
  students' loss; eq. 4 is ``pointce``; docs/paper_rows.md).
- ``alpha``: the KD weight α (0.1 for every DeAR-P row). ``top_k``: candidates reranked (Top-K column, caption, else
  text); empty for BM25 and where not given.
- ``stage``: ``first_stage`` (BM25), ``pointwise``, ``listwise`` (``metrics.json`` stage names), or empty.
- ``benchmark``: a ``BENCHMARKS`` name or an ``AVERAGES`` key; ``noveleval-avg`` / ``dl19-avg`` average nDCG@1/5/10
  (metric ``nDCG@1/5/10``).
- ``metric``: the ``metrics.json`` key (``nDCG@k``; DPR answer accuracy ``Top-k``). ``value``: as printed, in percent.
- ``source``: ``paper``, ``repo-readme``, ``model-card``, or ``anserini`` (Anserini's BM25 regression for a set the
  paper does not run, e.g. DL21; table ``Anserini: <page>``).

A published ``-`` is no cell; Figure 5's cells are the two α values its text states. Disagreeing figures are recorded
as printed (Table 1's "Llama3.1-3B (BC)" NFCorpus/Touche are Table 7's touche/nfc; Figure 5's α 0.1 is not Table 4/7's
BEIR average of the same pair).
"""

from __future__ import annotations

import csv
import difflib
import functools
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dear.errors import ConfigError, DataError, at, shown, trec_float
from dear.report import table
from dear.utils.io import read_lines

PAPER_TITLE = "DeAR: Dual-Stage Document Reranking with Reasoning Agents via LLM Distillation"
PAPER_AUTHORS = "Abdelrahman Abdallah, Jamshid Mozafari, Bhawna Piryani, Adam Jatowt"
# The paper names no arXiv id; id and venue are those the README and model card cite.
PAPER_ARXIV = "2508.16998"
PAPER = f"{PAPER_AUTHORS}. {PAPER_TITLE}. Findings of EMNLP 2025. arXiv:{PAPER_ARXIV}."
CSV_NAME = "paper_dear.csv"

COLUMNS = (
    "cell",
    "table",
    "method",
    "teacher",
    "student",
    "loss",
    "alpha",
    "top_k",
    "stage",
    "benchmark",
    "metric",
    "value",
    "source",
)
PAPER_TABLES = (
    "Table 1",
    "Table 2",
    "Table 3",
    "Table 4",
    "Table 5",
    "Table 6",
    "Table 7",
    "Figure 5",
)
# source → its tables' prefix. "anserini": castorini/anserini's BM25 regressions, for sets the paper does not run.
SOURCES = {
    "paper": "",
    "repo-readme": "README: ",
    "model-card": "Model card: ",
    "anserini": "Anserini: ",
}
STAGES = ("first_stage", "pointwise", "listwise")
BENCHMARKS = (
    "dl19",
    "dl20",
    "trec_covid",
    "nfcorpus",
    "touche",
    "dbpedia",
    "scifact",
    "signal",
    "news",
    "robust04",
    "noveleval",
    "nq",
    "webq",
    "dl21",
)
BEIR8 = tuple(table.BEIR8)  # conf/benchmark_set/beir.yaml
NDCG_1_5_10 = ("nDCG@1", "nDCG@5", "nDCG@10")
# average → (the benchmarks averaged, the metrics averaged; None: the cell's own metric)
AVERAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "beir8-avg": (BEIR8, None),
    "beir6-avg": (("trec_covid", "touche", "news", "nfcorpus", "robust04", "dbpedia"), None),
    "dl19-dl20-avg": (("dl19", "dl20"), None),
    "noveleval-avg": (("noveleval",), NDCG_1_5_10),
    "dl19-avg": (("dl19",), NDCG_1_5_10),
}
METRICS = (*NDCG_1_5_10, "nDCG@1/5/10", "Top-1", "Top-10", "Top-50")

_ID_PART = r"[a-z0-9][a-z0-9._@+-]*"
_CELL = re.compile(rf"{_ID_PART}(?:/{_ID_PART}){{3}}")
_OPTION = re.compile(r"[a-z0-9][a-z0-9_]*")


@dataclass(frozen=True)
class PaperCell:
    """One published figure (see the module docstring for the fields)."""

    cell: str
    table: str
    method: str
    teacher: str | None
    student: str | None
    loss: str | None
    alpha: float | None
    top_k: int | None
    stage: str | None
    benchmark: str
    metric: str
    value: float
    source: str


def metric_slug(metric: str) -> str:
    """A metric as it appears in cell ids: ``nDCG@1/5/10`` → ``ndcg@1-5-10``."""
    return metric.lower().replace("/", "-")


def parse(path: str | Path) -> tuple[PaperCell, ...]:
    """Every row of a file in this format, strictly: a bad row is a one-line DataError naming file, line and field."""
    out, seen = [], {}
    header = False
    for lineno, line in read_lines(path):
        where = at(path, lineno)
        try:
            fields = list(csv.reader([line], strict=True))
        except csv.Error as e:
            raise DataError(f"{where}: malformed CSV line ({e})") from None
        if len(fields) != 1:
            raise DataError(f"{where}: malformed CSV line (a quoted field runs past the line end)")
        fields = fields[0]
        if not header:
            if tuple(fields) != COLUMNS:
                raise DataError(
                    f"{where}: expected the header {','.join(COLUMNS)}, found {shown(line)}"
                )
            header = True
            continue
        if len(fields) != len(COLUMNS):
            raise DataError(
                f"{where}: expected {len(COLUMNS)} comma-separated fields ({','.join(COLUMNS)}), "
                f"found {len(fields)}"
            )
        row = _row(dict(zip(COLUMNS, fields)), where)
        if row.cell in seen:
            raise DataError(
                f"{where}: field 'cell': {row.cell!r} is already on line {seen[row.cell]}"
            )
        seen[row.cell] = lineno
        out.append(row)
    if not header:
        raise DataError(f"{at(path)}: empty file (expected the header {','.join(COLUMNS)})")
    return tuple(out)


def _row(f: dict[str, str], where: str) -> PaperCell:
    def bad(field: str, expected: str):
        return DataError(f"{where}: field {field!r}: expected {expected}, found {shown(f[field])}")

    for field in COLUMNS:
        if f[field] != f[field].strip():
            raise bad(field, "no leading or trailing spaces")
    source = f["source"]
    if source not in SOURCES:
        raise bad("source", f"one of {', '.join(SOURCES)}")
    table = f["table"]
    if source == "paper" and table not in PAPER_TABLES:
        raise bad("table", f"one of {', '.join(PAPER_TABLES)} (source paper)")
    if source != "paper" and not (
        table.startswith(SOURCES[source]) and len(table) > len(SOURCES[source])
    ):
        raise bad("table", f"'{SOURCES[source]}<section>' (source {source})")
    if not f["method"]:
        raise bad("method", "the method's name")
    options = {}
    for field in ("teacher", "student", "loss"):
        if f[field] and not _OPTION.fullmatch(f[field]):
            raise bad(
                field, f"a conf/{field}/ option name (lowercase letters, digits, '_') or nothing"
            )
        options[field] = f[field] or None
    alpha = None
    if f["alpha"]:
        alpha = trec_float(f["alpha"], where, "field 'alpha'")
        if not 0 <= alpha <= 1:
            raise bad("alpha", "a number from 0 to 1 or nothing")
    top_k = None
    if f["top_k"]:
        if not f["top_k"].isascii() or not f["top_k"].isdigit() or int(f["top_k"]) < 1:
            raise bad("top_k", "an integer >= 1 or nothing")
        top_k = int(f["top_k"])
    if f["stage"] and f["stage"] not in STAGES:
        raise bad("stage", f"one of {', '.join(STAGES)} or nothing")
    benchmark, metric = f["benchmark"], f["metric"]
    if benchmark not in BENCHMARKS and benchmark not in AVERAGES:
        raise bad(
            "benchmark",
            f"a benchmark ({', '.join(BENCHMARKS)}) or an average ({', '.join(AVERAGES)})",
        )
    if metric not in METRICS:
        raise bad("metric", f"one of {', '.join(METRICS)}")
    averaged = AVERAGES.get(benchmark, (None, None))[1]
    if (metric == "nDCG@1/5/10") != (averaged is not None):
        raise bad("metric", f"'nDCG@1/5/10' exactly for the averages over metrics ({benchmark})")
    value = trec_float(f["value"], where, "field 'value'")
    if not 0 <= value <= 100:
        raise bad("value", "a number from 0 to 100 (percent)")
    cell = f["cell"]
    if not _CELL.fullmatch(cell):
        raise bad("cell", "a lowercase id <where>/<row>/<benchmark>/<metric> of [a-z0-9._@+-]")
    parts = cell.split("/")
    if parts[2] != benchmark or parts[3] != metric_slug(metric):
        raise bad(
            "cell", f"an id ending /{benchmark}/{metric_slug(metric)} (its benchmark and metric)"
        )
    return PaperCell(
        cell,
        table,
        f["method"],
        options["teacher"],
        options["student"],
        options["loss"],
        alpha,
        top_k,
        f["stage"] or None,
        benchmark,
        metric,
        value,
        source,
    )


@functools.cache
def cells() -> tuple[PaperCell, ...]:
    """Every published cell, in the file's order (tables in order, rows as printed), parsed once."""
    with resources.as_file(resources.files("dear.report").joinpath(CSV_NAME)) as path:
        return parse(path)


@functools.cache
def _by_id() -> dict[str, PaperCell]:
    return {c.cell: c for c in cells()}


def cell(cell_id: str) -> PaperCell:
    """The cell with this id, else a one-line ConfigError listing the closest ids."""
    found = _by_id().get(cell_id)
    if found is None:
        close = difflib.get_close_matches(str(cell_id), list(_by_id()), n=5, cutoff=0.6)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ConfigError(f"paper cell {shown(cell_id)} is not in {CSV_NAME}{hint}")
    return found


def find(
    *,
    benchmark: str,
    metric: str,
    stage: str | None = None,
    teacher: str | None = None,
    student: str | None = None,
    loss: str | None = None,
    alpha: float | None = None,
    top_k: int | None = None,
    method: str | None = None,
    source: str | None = "paper",
) -> list[PaperCell]:
    """The cells matching every field given (None: any); ``source=None`` includes README and model card."""
    wanted = {
        "benchmark": benchmark,
        "metric": metric,
        "stage": stage,
        "teacher": teacher,
        "student": student,
        "loss": loss,
        "top_k": top_k,
        "method": method,
        "source": source,
    }
    wanted = {k: v for k, v in wanted.items() if v is not None}
    return [
        c
        for c in cells()
        if all(getattr(c, k) == v for k, v in wanted.items())
        and (alpha is None or (c.alpha is not None and math.isclose(c.alpha, alpha)))
    ]


def first_bm25(rows, benchmark: str, metric: str) -> PaperCell | None:
    """The BM25 cell of ``rows`` for ``benchmark`` × ``metric``: the paper's first by table order, else Anserini's."""
    found = [
        c
        for c in rows
        if c.stage == "first_stage"
        and c.source in ("paper", "anserini")
        and c.benchmark == benchmark
        and c.metric == metric
    ]
    found.sort(
        key=lambda c: (
            c.source != "paper",
            PAPER_TABLES.index(c.table) if c.table in PAPER_TABLES else 0,
        )
    )
    return found[0] if found else None


def bm25(benchmark: str, metric: str) -> PaperCell | None:
    """The paper's BM25 baseline for a benchmark and metric, or None; where tables repeat it, the first's."""
    return first_bm25(cells(), benchmark, metric)
