"""Open-domain QA inputs (DPR formats); answer matching is evaluation's (``dear.eval.answers``)."""

from __future__ import annotations

import ast

from dear.data.contract import Candidate, Query, Ranking, Run
from dear.errors import (
    DataError,
    at,
    finite_number,
    json_id,
    json_object,
    json_text,
    json_texts,
    shown,
)
from dear.utils.io import read_json, text_lines, tsv_rows


def read_qas(path: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """DPR ``*.qa.csv``: ``question<TAB>["answer", ...]`` (a Python list literal) per line; qid = 0-based line index."""
    queries, answers = {}, {}
    for i, (lineno, row) in enumerate(tsv_rows(text_lines(path), path)):
        if len(row) != 2:
            raise DataError(
                f"{at(path, lineno)}: a QA line needs 'question<TAB>[answers]', found {len(row)} fields"
            )
        where = f"{at(path, lineno)}: answers"
        queries[str(i)], answers[str(i)] = row[0], json_texts(_literal(row[1], where), where)
    return queries, answers


def _literal(text: str, where: str):
    """A Python literal (DPR writes ``['a', 'b']``), or a DataError naming ``where``."""
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise DataError(f"{where}: expected a list literal, got {shown(text)}") from None


def dpr_retrieval_json(path: str, depth: int) -> tuple[Run, dict[str, list[str]]]:
    """DPR retriever output ``[{question, answers, ctxs: [{id, title, text, score}]}]``; qid = index."""
    entries = read_json(path)
    if not isinstance(entries, list):
        raise DataError(f"{at(path)}: expected a JSON list of questions")
    run, answers = {}, {}
    for i, entry in enumerate(entries):
        where = f"{at(path)}: entry [{i}]"
        json_object(entry, where, "question", "answers", "ctxs")
        if not isinstance(entry["ctxs"], list) or not entry["ctxs"]:
            raise DataError(f"{where}.ctxs: the question has no candidates")
        qid = str(i)
        # all checked, top depth kept
        cands = [_ctx(c, f"{where}.ctxs[{j}]") for j, c in enumerate(entry["ctxs"])]
        run[qid] = Ranking(
            Query(qid, json_text(entry["question"], f"{where}.question")), cands[:depth]
        )
        answers[qid] = json_texts(entry["answers"], f"{where}.answers")
    return run, answers


def _ctx(ctx, where: str) -> Candidate:
    """One DPR context ``{id, title?, text?, score?}`` → a candidate."""
    json_object(ctx, where, "id")
    text, title = (json_text(ctx.get(k, ""), f"{where}.{k}") for k in ("text", "title"))
    score = finite_number(ctx.get("score", 0.0), f"{where}.score")
    return Candidate(json_id(ctx["id"], f"{where}.id"), text, title, score)
