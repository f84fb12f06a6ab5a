"""Open-domain QA inputs (DPR formats) and DPR's answer matching.

``has_answer`` follows DPR's ``string`` match: Unicode NFD normalisation, DPR's SimpleTokenizer
(runs of letters/digits/marks, or single other non-space characters), lower-cased; a passage
has the answer when the answer's token sequence occurs contiguously in the passage's tokens.
"""

from __future__ import annotations

import ast
import csv
import json
import sys
import unicodedata
from pathlib import Path

import regex

from dear.data.contract import Candidate, Query, Ranking, Run
from dear.errors import DataError, at, finite_number

csv.field_size_limit(sys.maxsize)
_TOKEN = regex.compile(r"[\p{L}\p{N}\p{M}]+|[^\p{Z}\p{C}]", flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)


def tokens(text: str) -> list[str]:
    return [m.group().lower() for m in _TOKEN.finditer(unicodedata.normalize("NFD", text))]


def has_answer(answers: list[str], passage: str) -> bool:
    words = tokens(passage)
    for answer in answers:
        target = tokens(answer)
        n = len(target)
        if n and any(words[i : i + n] == target for i in range(len(words) - n + 1)):
            return True
    return False


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
