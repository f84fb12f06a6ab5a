"""TREC run and qrels files: read with line-precise errors, write atomically."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from dear.data.contract import Run
from dear.errors import DataError, at, shown, trec_float, trec_int
from dear.utils.io import ASCII_SPACE, atomic_write_text, read_lines


def read_run(path: str | Path) -> dict[str, list[tuple[str, float]]]:
    """``qid Q0 docid rank score tag`` lines → ``{qid: [(docid, score), ...]}``, by score then rank column."""
    rows: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    seen: dict[str, set[str]] = defaultdict(set)
    for lineno, line in read_lines(path):
        qid, _, docid, rank, score, _tag = _fields(
            path, lineno, line, "a TREC run", "qid Q0 docid rank score tag"
        )
        where = at(path, lineno)
        rank_i, score_f = trec_int(rank, where, "rank"), trec_float(score, where, "score")
        if docid in seen[qid]:
            raise DataError(
                f"{at(path, lineno)}: document {shown(docid)} appears twice for query {shown(qid)}"
            )
        seen[qid].add(docid)
        rows[qid].append((-score_f, rank_i, docid))
    if not rows:
        raise DataError(f"{at(path)}: the run file is empty")
    return {qid: [(d, -s) for s, _, d in sorted(r)] for qid, r in rows.items()}


# trec_eval and pytrec_eval take time quadratic in the largest grade, and pytrec_eval crashes beyond 2^31.
MAX_GRADE = 2**15 - 1


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """``qid iter docid grade`` lines → ``{qid: {docid: grade}}``; a pair judged twice with two grades raises."""
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    first_line: dict[tuple[str, str], int] = {}
    for lineno, line in read_lines(path):
        qid, _, docid, grade = _fields(path, lineno, line, "a qrels", "qid iter docid grade")
        grade_i = trec_int(grade, at(path, lineno), "relevance grade", MAX_GRADE)
        if qrels[qid].get(docid, grade_i) != grade_i:
            raise DataError(
                f"{at(path, lineno)}: query {shown(qid)} document {shown(docid)} is graded {grade_i} here "
                f"and {qrels[qid][docid]} at line {first_line[qid, docid]}"
            )
        first_line.setdefault((qid, docid), lineno)
        qrels[qid][docid] = grade_i
    if not qrels:
        raise DataError(f"{at(path)}: the qrels file is empty")
    return dict(qrels)


def _fields(path, lineno: int, line: str, kind: str, columns: str) -> list[str]:
    """``line`` split at ASCII whitespace (as trec_eval; not U+00A0), as many fields as ``columns``, or a DataError."""
    parts, n = _FIELD.findall(line), len(columns.split())
    if len(parts) != n:
        if line.lstrip(ASCII_SPACE)[:1] in ("{", "["):
            raise DataError(
                f"{at(path, lineno)}: expected {kind} file ({columns} per line), found JSON"
            )
        raise DataError(
            f"{at(path, lineno)}: {kind} line needs {n} fields '{columns}', found {len(parts)}: "
            f"{shown(line)}"
        )
    return parts


_FIELD = re.compile(f"[^{ASCII_SPACE}]+")


def format_run(run: Run, tag: str) -> str:
    """TREC run text with each stage's scores, order-reproducing via ``Ranking.eval_scores``."""
    out = []
    for qid, ranking in run.items():
        for rank, (docid, score) in enumerate(ranking.eval_scores().items(), start=1):
            out.append(f"{qid} Q0 {docid} {rank} {score_text(score)} {tag}\n")
    return "".join(out)


def score_text(score: float) -> str:
    """The shortest text reading back (as trec_eval does) to this float32 score: fixed decimals would make ties."""
    short = str(np.float32(score))
    return short if np.float32(float(short)) == np.float32(score) else repr(float(score))


def write_run(path: str | Path, run: Run, tag: str) -> None:
    atomic_write_text(path, format_run(run, tag))
