"""BEIR-format folders: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` read together."""

from __future__ import annotations

from pathlib import Path

from dear.errors import DataError, at
from dear.utils.io import read_jsonl, read_lines


def read_beir_folder(folder: str | Path, split: str = "test"):
    """A BEIR-format folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

    → (docs {docid: (title, text)}, queries {qid: text}, qrels {qid: {docid: grade}}).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: BEIR folder not found (needs corpus.jsonl, queries.jsonl, qrels/{split}.tsv)")

    def jsonl(name):
        path = folder / name
        for lineno, row in read_jsonl(path):
            if not isinstance(row, dict) or "_id" not in row:
                raise DataError(f"{at(path, lineno)}: expected a JSON object with '_id'")
            yield row["_id"], row

    docs = {d: (row.get("title", ""), row.get("text", "")) for d, row in jsonl("corpus.jsonl")}
    queries = {q: row["text"] for q, row in jsonl("queries.jsonl")}
    qrels_path = folder / "qrels" / f"{split}.tsv"
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in read_lines(qrels_path):
        parts = line.split("\t")
        if lineno == 1 and parts[0] == "query-id":
            continue
        if len(parts) != 3:
            raise DataError(f"{at(qrels_path, lineno)}: expected 'query-id<TAB>corpus-id<TAB>score'")
        try:
            grade = int(parts[2])
        except ValueError:
            raise DataError(f"{at(qrels_path, lineno)}: score must be an integer, got {parts[2]!r}") from None
        judged = qrels.setdefault(parts[0], {})
        if judged.get(parts[1], grade) != grade:
            raise DataError(f"{at(qrels_path, lineno)}: query {parts[0]!r} document {parts[1]!r} is graded {grade} "
                            f"here and {judged[parts[1]]} on an earlier line")
        judged[parts[1]] = grade
    return docs, queries, qrels

