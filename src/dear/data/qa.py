"""Open-domain QA inputs (DPR formats); answer matching is evaluation's (``dear.eval.answers``)."""

from __future__ import annotations

import ast
import csv
import json
import sys
from pathlib import Path

from dear.data.contract import Candidate, Query, Ranking, Run
from dear.errors import DataError, at, finite_number

csv.field_size_limit(sys.maxsize)


def read_qas(path: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """DPR ``*.qa.csv``: ``question<TAB>["answer", ...]`` per line; the qid is the 0-based line index."""
    queries, answers = {}, {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        for i, row in enumerate(csv.reader(f, delimiter="\t")):
            if len(row) != 2:
                raise DataError(f"{at(path, i + 1)}: a QA line needs 'question<TAB>[answers]', found {len(row)} fields")
            try:
                parsed = ast.literal_eval(row[1])
            except (ValueError, SyntaxError):
                raise DataError(f"{at(path, i + 1)}: answers must be a list literal, got {row[1][:60]!r}") from None
            queries[str(i)], answers[str(i)] = row[0], [str(a) for a in parsed]
    return queries, answers


def dpr_retrieval_json(path: str, depth: int) -> tuple[Run, dict[str, list[str]]]:
    """DPR retriever output ``[{question, answers, ctxs: [{id, title, text, score}]}]``; qid = index."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataError(f"{at(path, e.lineno)}: invalid JSON ({e.msg})") from None
    run, answers = {}, {}
    for i, entry in enumerate(entries):
        for key in ("question", "answers", "ctxs"):
            if key not in entry:
                raise DataError(f"{at(path)}: entry [{i}] is missing field {key!r}")
        if not entry["ctxs"]:
            raise DataError(f"{at(path)}: entry [{i}].ctxs: the question has no candidates")
        qid = str(i)
        cands = [Candidate(str(c["id"]), c.get("text", ""), c.get("title", ""),
                           finite_number(c.get("score", 0.0), f"{at(path)}: entry [{i}].ctxs[{j}].score"))
                 for j, c in enumerate(entry["ctxs"][:depth])]
        run[qid] = Ranking(Query(qid, entry["question"]), cands)
        answers[qid] = [str(a) for a in entry["answers"]]
    return run, answers
