"""BEIR-format folders: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` read together."""

from __future__ import annotations

from pathlib import Path

from dear.data.texts import unique_ids
from dear.data.trec import MAX_GRADE
from dear.errors import DataError, at, json_id, json_object, json_text, shown, trec_int
from dear.utils.io import read_jsonl, read_lines


def read_beir_folder(folder: str | Path, split: str = "test"):
    """A BEIR-format folder → (docs {docid: (title, text)}, queries {qid: text}, qrels {qid: {docid: grade}})."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"{folder}: BEIR folder not found (needs corpus.jsonl, queries.jsonl, qrels/{split}.tsv)"
        )

    def jsonl(name):
        """→ (line, id, (title, text)) per line of ``name``."""
        path = folder / name
        for lineno, row in read_jsonl(path):
            where = at(path, lineno)
            json_object(row, where, "_id", "text")
            yield (
                lineno,
                json_id(row["_id"], f"{where}: _id"),
                (
                    json_text(row.get("title", ""), f"{where}: title"),
                    json_text(row["text"], f"{where}: text"),
                ),
            )

    docs = unique_ids(jsonl("corpus.jsonl"), folder / "corpus.jsonl", "document")
    queries = unique_ids(jsonl("queries.jsonl"), folder / "queries.jsonl", "query")
    queries = {q: text for q, (_, text) in queries.items()}
    qrels_path = folder / "qrels" / f"{split}.tsv"
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in read_lines(qrels_path):
        parts = line.split("\t")
        if lineno == 1 and parts[0] == "query-id":
            continue
        if len(parts) != 3:
            raise DataError(
                f"{at(qrels_path, lineno)}: expected 'query-id<TAB>corpus-id<TAB>score'"
            )
        grade = trec_int(parts[2], at(qrels_path, lineno), "score", MAX_GRADE)
        judged = qrels.setdefault(parts[0], {})
        if judged.get(parts[1], grade) != grade:
            raise DataError(
                f"{at(qrels_path, lineno)}: query {shown(parts[0])} document {shown(parts[1])} is graded "
                f"{grade} here and {judged[parts[1]]} on an earlier line"
            )
        judged[parts[1]] = grade
    return docs, queries, qrels
