"""DeAR-COT records: loading JSONL / JSON / Parquet / hub ids, validation errors, crash-safe appends."""

from __future__ import annotations

import json

import pytest

from dear.data.cot import RELEASED, CotExample, load_cot
from dear.errors import DataError
from dear.utils.io import JsonlAppender

ROW = {
    "system": "You are RankLLM.",
    "instruction": "Search Query: q. Rank.",
    "input": "",
    "output": "### Final Reranking: [2] > [1]",
    "history": [["I will provide 2 passages.", "Okay."], ["[1] a", "Received passage [1]."]],
    "think": "Step 1. needs b.",
}


def test_record_round_trip_and_chat():
    example = CotExample.from_record(ROW, "x")
    assert example.record() == ROW
    assert [m["role"] for m in example.messages()] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert example.messages()[-1]["content"] == "Search Query: q. Rank."
    assert (
        example.response()
        == "<think>\nStep 1. needs b.\n</think>\n\n### Final Reranking: [2] > [1]"
    )
    assert CotExample.from_messages(example.messages(), example.output, example.think) == example


def test_input_is_appended_to_the_instruction_and_empty_think_is_omitted():
    example = CotExample.from_record({**ROW, "input": "[1] a\n[2] b", "think": ""}, "x")
    assert example.messages()[-1]["content"] == "Search Query: q. Rank.\n[1] a\n[2] b"
    assert example.response() == ROW["output"]


def test_jsonl_json_and_parquet_load_the_same_examples(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [ROW, {**ROW, "instruction": "second"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    (tmp_path / "a.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    loaded = [load_cot(str(tmp_path / name)) for name in ("a.jsonl", "a.json", "a.parquet")]
    assert loaded[0] == loaded[1] == loaded[2]
    assert [e.instruction for e in loaded[0]] == ["Search Query: q. Rank.", "second"]
    assert len(load_cot(str(tmp_path / "a.jsonl"), limit=1)) == 1


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"instruction": "x"}', "a.jsonl:2: field 'output' must be a non-empty string"),
        (
            '{"instruction": "x", "output": "y", "history": [["only one"]]}',
            "a.jsonl:2: field 'history' must be a list",
        ),
        ('{"instruction": "x", "output": ', "a.jsonl:2: invalid JSON"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, line, message):
    (tmp_path / "a.jsonl").write_text(json.dumps(ROW) + "\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        load_cot(str(tmp_path / "a.jsonl"))


def test_hub_id_failure_names_the_source():
    """Offline here (HF_HUB_OFFLINE=1): the released set cannot be fetched, and the error says which."""
    with pytest.raises(DataError, match=f"{RELEASED}: not a local file"):
        load_cot(RELEASED)


def test_appender_cuts_a_torn_last_line_and_keeps_whole_ones(tmp_path):
    path = tmp_path / "log.jsonl"
    log = JsonlAppender(path)
    log.append({"qid": "q1"})
    log.append({"qid": "q2"})
    log.close()
    with path.open("a") as f:
        f.write('{"qid": "q3", "trunc')
    reopened = JsonlAppender(path)
    assert reopened.rows == [{"qid": "q1"}, {"qid": "q2"}]
    reopened.append({"qid": "q3"})
    reopened.close()
    assert [json.loads(x)["qid"] for x in path.read_text().splitlines()] == ["q1", "q2", "q3"]
