"""Readers never read bad input as something else (issue 21): numbers as trec_eval reads them,
types checked in every JSON field, repeated query ids, and one-line errors for unreadable,
non-UTF-8, too deep or huge input. Each test here failed before the readers were made strict."""

from __future__ import annotations

import json

import pytest

from dear.data.beir import read_beir_folder
from dear.data.candidates import rankllm_json, trec_run
from dear.data.cot import load_cot
from dear.data.qa import dpr_retrieval_json, read_qas
from dear.data.texts import load_queries, read_docs_tsv
from dear.data.trec import read_qrels, read_run
from dear.distill.sources import FlagEmbeddingSource, TevatronSource
from dear.errors import DataError, finite_number
from dear.listwise.backends import Generation
from dear.listwise.cache import GenerationCache


def one_line_error(call, *parts: str) -> str:
    """``call()`` raises a DataError whose message is one line holding every one of ``parts``."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(p in message for p in parts), message
    return message


# 1. Numbers: only whole ASCII decimals (trec_eval's atof/atol read "1_0" as 1, int() as 10)


@pytest.mark.parametrize("grade", ["1_0", "\u0661", "\uff11", "99999999999999999999", "40000"])
def test_a_qrels_grade_that_is_not_an_ascii_integer_in_range_is_an_error(tmp_path, grade):
    path = tmp_path / "qrels.txt"
    path.write_text(f"q1 0 a 1\nq1 0 b {grade}\n", encoding="utf-8")
    one_line_error(
        lambda: read_qrels(path), "qrels.txt:2: relevance grade must be an integer", repr(grade)
    )


@pytest.mark.parametrize(
    "line, field",
    [
        ("q1 Q0 b 2 2_0 t", "score"),
        ("q1 Q0 b 2 \u0662 t", "score"),
        ("q1 Q0 b 1_0 1.0 t", "rank"),
        ("q1 Q0 b \uff12 1.0 t", "rank"),
    ],
)
def test_a_run_score_or_rank_that_is_not_an_ascii_number_is_an_error(tmp_path, line, field):
    path = tmp_path / "run.trec"
    path.write_text(f"q1 Q0 a 1 1.5 t\n{line}\n", encoding="utf-8")
    one_line_error(lambda: read_run(path), f"run.trec:2: {field} must be")


def test_a_beir_qrels_score_is_read_as_strictly(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "y"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ta\t1_0\n")
    one_line_error(
        lambda: read_beir_folder(tmp_path), "test.tsv:2: score must be an integer, got '1_0'"
    )


@pytest.mark.parametrize("score", ["1_0", " 5", "\u0665", 10**400])
def test_a_json_score_is_read_as_strictly(score):
    one_line_error(
        lambda: finite_number(score, "c.json: entry [0].hits[0].score"),
        "hits[0].score: expected a finite",
    )


# 2. Types in every JSON field


def _rankllm(tmp_path, **hit) -> str:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            [
                {
                    "query": "q",
                    "hits": [
                        {"qid": "q1", "docid": "a", "content": "x"},
                        {"qid": "q1", "docid": "b", "content": "y", **hit},
                    ],
                }
            ]
        )
    )
    return str(path)


@pytest.mark.parametrize(
    "field, value",
    [
        ("docid", ["x"]),
        ("docid", None),
        ("docid", True),
        ("docid", 1.5),
        ("qid", {"id": 1}),
        ("content", 5),
        ("content", None),
    ],
)
def test_rankllm_hit_fields_must_have_their_type(tmp_path, field, value):
    path = _rankllm(tmp_path, **{field: value})
    one_line_error(
        lambda: rankllm_json(path, 10), f"c.json: entry [0].hits[1].{field}: expected a string"
    )


def test_rankllm_integer_ids_are_their_decimal_text_and_a_query_must_be_a_string(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"query": "q", "hits": [{"qid": 7, "docid": 12, "content": "x"}]}]))
    assert rankllm_json(str(path), 10)["7"].candidates[0].docid == "12"
    path.write_text(json.dumps([{"query": 5, "hits": [{"qid": 7, "docid": 12, "content": "x"}]}]))
    one_line_error(
        lambda: rankllm_json(str(path), 10),
        "c.json: entry [0].query: expected a string, found a number",
    )


def test_rankllm_hits_of_one_entry_must_share_the_qid(tmp_path):
    path = _rankllm(tmp_path, qid="q2")
    one_line_error(
        lambda: rankllm_json(path, 10), "entry [0].hits[1].qid: 'q2' differs from hits[0]'s 'q1'"
    )


@pytest.mark.parametrize(
    "change, field",
    [
        ({"answers": "Edison"}, "entry [0].answers: expected a list of strings"),
        ({"answers": [1]}, "entry [0].answers[0]: expected a string"),
        ({"question": 3}, "entry [0].question: expected a string"),
        ({"ctxs": [{"id": [7], "text": "x"}]}, "entry [0].ctxs[0].id: expected a"),
        ({"ctxs": [{"id": "7", "text": 2}]}, "entry [0].ctxs[0].text: expected a"),
        ({"ctxs": ["7"]}, "entry [0].ctxs[0]: expected an object"),
    ],
)
def test_dpr_json_fields_must_have_their_type(tmp_path, change, field):
    path = tmp_path / "dpr.json"
    path.write_text(
        json.dumps(
            [{"question": "q", "answers": ["x"], "ctxs": [{"id": "7", "text": "x"}], **change}]
        )
    )
    one_line_error(lambda: dpr_retrieval_json(str(path), 10), f"dpr.json: {field}")


@pytest.mark.parametrize("answers", ["'Edison'", "5", "{'Edison'}", "[['Edison']]"])
def test_qa_csv_answers_must_be_a_list_of_strings(tmp_path, answers):
    path = tmp_path / "qa.csv"
    path.write_text(f"who made bulbs\t{answers}\n")
    one_line_error(lambda: read_qas(str(path)), "qa.csv:1: answers")


@pytest.mark.parametrize(
    "row, field",
    [
        ({"query": "q", "pos": "text", "neg": ["n"]}, "pos: expected a list"),
        ({"query": "q", "pos": ["p"], "neg": [["n"]]}, "neg[0]: expected a string"),
        ({"query": 5, "pos": ["p"], "neg": ["n"]}, "query: expected a string"),
        (["q", ["p"], ["n"]], "expected an object"),
    ],
)
def test_flagembedding_fields_must_have_their_type(tmp_path, row, field):
    path = tmp_path / "train.jsonl"
    path.write_text(
        json.dumps({"query": "ok", "pos": ["p"], "neg": ["n"]}) + "\n" + json.dumps(row) + "\n"
    )
    one_line_error(lambda: FlagEmbeddingSource(str(path)).load(), "train.jsonl:2", field)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"positive_passages": {"text": "p"}}, "positive_passages: expected a list"),
        ({"positive_passages": ["p"]}, "positive_passages[0]: expected an object"),
        ({"negative_passages": [{"text": 3}]}, "negative_passages[0].text"),
        ({"negative_passages": [{"text": "n", "title": None}]}, "[0].title"),
        ({"negative_passages": [{"text": "n", "docid": []}]}, "[0].docid"),
        ({"query_id": ["7"]}, "query_id: expected a string or integer"),
    ],
)
def test_tevatron_fields_must_have_their_type(tmp_path, change, field):
    path = tmp_path / "tev.jsonl"
    row = {
        "query": "q",
        "positive_passages": [{"text": "p"}],
        "negative_passages": [{"text": "n"}],
        **change,
    }
    path.write_text(json.dumps(row) + "\n")
    one_line_error(lambda: TevatronSource(str(path)).load(), "tev.jsonl:1", field)


@pytest.mark.parametrize(
    "source, row",
    [
        (FlagEmbeddingSource, '{"query": "a\\ud800", "pos": ["p"], "neg": ["n"]}'),
        (
            TevatronSource,
            '{"query": "q", "positive_passages": [{"text": "\\udfff"}], '
            '"negative_passages": [{"text": "n"}]}',
        ),
    ],
)
def test_a_lone_surrogate_in_a_json_text_is_an_error(tmp_path, source, row):
    path = tmp_path / "train.jsonl"
    path.write_text(row + "\n")  # json reads it; it cannot be hashed or written as UTF-8
    one_line_error(
        lambda: source(str(path)).load(),
        "train.jsonl:1: ",
        "not valid Unicode (a lone surrogate U+",
    )


def test_a_tevatron_query_id_of_zero_is_kept(tmp_path):
    path = tmp_path / "tev.jsonl"
    path.write_text(
        json.dumps(
            {
                "query_id": 0,
                "query": "q",
                "positive_passages": [{"text": "p"}],
                "negative_passages": [{"text": "n"}],
            }
        )
        + "\n"
    )
    assert TevatronSource(str(path)).load()[0][0].qid == "0"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"system": 0}, "'system'"),
        ({"think": False}, "'think'"),
        ({"history": ""}, "'history'"),
        ({"input": []}, "'input'"),
    ],
)
def test_dear_cot_fields_must_have_their_type(tmp_path, change, field):
    path = tmp_path / "cot.jsonl"
    path.write_text(json.dumps({"instruction": "i", "output": "o", **change}) + "\n")
    one_line_error(lambda: load_cot(str(path)), "cot.jsonl:1: field", field)


def test_a_damaged_dear_cot_parquet_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "cot.parquet"
    path.write_bytes(b"PAR1 cut short")
    one_line_error(lambda: load_cot(str(path)), f"{path}: not a readable Parquet file")


@pytest.mark.parametrize(
    "row",
    [
        {"text": 5},
        {"text": "[1]", "prompt_tokens": "3"},
        {"text": "[1]", "finish": None},
        {"text": "[1]", "completion_tokens": True},
    ],
)
def test_a_listwise_cache_file_with_a_wrong_field_type_is_an_error_naming_it(tmp_path, row):
    cache = GenerationCache(tmp_path, {"backend": "x"})
    key = cache.key([{"role": "user", "content": "hi"}], True)
    cache.put(key, Generation("[1] > [2]"))
    cache.path(key).write_text(json.dumps(row))
    one_line_error(lambda: cache.get(key), str(cache.path(key)), "delete the file")


# 3. A qid listed twice in a queries TSV (as a docid twice in a docs TSV)


@pytest.mark.parametrize("second", ["other text", "query one"])
def test_a_qid_listed_twice_in_a_queries_tsv_is_an_error_naming_both_lines(tmp_path, second):
    path = tmp_path / "queries.tsv"
    path.write_text(f"q1\tquery one\nq2\tquery two\nq1\t{second}\n")
    one_line_error(
        lambda: load_queries(str(path)),
        "queries.tsv:3: query 'q1' is listed twice (first at line 1)",
    )


def test_a_queries_tsv_line_with_a_third_column_is_an_error(tmp_path):
    path = tmp_path / "queries.tsv"
    path.write_text("q1\tquery one\tnarrative\n")  # read as "query one" before: the rest dropped
    one_line_error(
        lambda: load_queries(str(path)), "queries.tsv:1: a query line needs 'qid<TAB>text', found 3"
    )


# 4. One-line errors for whatever a file holds


@pytest.mark.parametrize(
    "name, first, read",
    [
        ("run.trec", "q1 Q0 a 1 1.0 t", read_run),
        ("qrels.txt", "q1 0 a 1", read_qrels),
        ("queries.tsv", "q1\tquery", lambda p: load_queries(str(p))),
        ("docs.tsv", "a\ttext", read_docs_tsv),
        ("qa.csv", "who\t['x']", lambda p: read_qas(str(p))),
        ("c.json", "[", lambda p: rankllm_json(str(p), 10)),
        (
            "train.jsonl",
            '{"query": "q", "pos": ["p"], "neg": ["n"]}',
            lambda p: FlagEmbeddingSource(str(p)).load(),
        ),
    ],
)
def test_non_utf8_input_is_an_error_naming_file_and_line(tmp_path, name, first, read):
    path = tmp_path / name
    path.write_bytes(first.encode() + b"\ncaf\xe9\n")
    one_line_error(lambda: read(path), f"{name}:2: not UTF-8 text")


READERS = {
    "run": read_run,
    "rank_llm": lambda p: rankllm_json(str(p), 10),
    "qa": lambda p: read_qas(str(p)),
    "dpr": lambda p: dpr_retrieval_json(str(p), 10),
    "docs": read_docs_tsv,
    "cot": lambda p: load_cot(str(p)),
}


# a folder is a dataset for load_cot
@pytest.mark.parametrize("kind", ["run", "rank_llm", "dpr", "qa", "docs"])
def test_a_folder_is_an_error_naming_it(tmp_path, kind):
    one_line_error(
        lambda: READERS[kind](tmp_path), f"{tmp_path}: cannot read the file (Is a directory)"
    )


@pytest.mark.parametrize("kind", list(READERS))
def test_an_unreadable_file_is_an_error_naming_it(tmp_path, monkeypatch, kind):
    path = tmp_path / "input.json"
    path.write_text("[]")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # root reads any file: refuse it here
    monkeypatch.setattr("dear.utils.io.open", refuse, raising=False)
    one_line_error(lambda: READERS[kind](path), f"{path}: cannot read the file (Permission denied)")


@pytest.mark.parametrize(
    "name, read",
    [
        ("c.json", lambda p: rankllm_json(str(p), 10)),
        ("dpr.json", lambda p: dpr_retrieval_json(str(p), 10)),
        ("train.jsonl", lambda p: FlagEmbeddingSource(str(p)).load()),
        ("cot.jsonl", lambda p: load_cot(str(p))),
    ],
)
def test_very_deep_json_is_an_error_naming_the_file(tmp_path, name, read):
    path = tmp_path / name
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    one_line_error(lambda: read(path), name, "nested too deeply")


def test_a_json_integer_of_5000_digits_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(
        '[{"query": "q", "hits": [{"qid": 1, "docid": "a", "content": "x", "score": '
        + "9" * 5000
        + "}]}]"
    )
    one_line_error(lambda: rankllm_json(str(path), 10), "c.json: invalid JSON")


def test_a_json_file_given_as_a_trec_run_says_so(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text(json.dumps({"query": "q", "hits": []}, indent=1))
    one_line_error(lambda: read_run(path), "run.trec:1: expected a TREC run file", "found JSON")
    one_line_error(lambda: trec_run(str(path), None, None, 10), "found JSON")


def test_an_error_never_echoes_a_huge_line_whole(tmp_path):
    path = tmp_path / "run.trec"
    line = "q1 Q0 " + "x" * 10_000 + " 2"
    path.write_text(f"q1 Q0 a 1 1.0 t\n{line}\n")
    message = one_line_error(
        lambda: read_run(path),
        "run.trec:2: a TREC run line needs 6 fields",
        f"({len(line)} characters)",
    )
    assert len(message) < 300
    path.write_text("q1 Q0 a 1 " + "9" * 10_000 + "x t\n")
    assert (
        len(one_line_error(lambda: read_run(path), "run.trec:1: score must be a finite number"))
        < 300
    )


def test_fields_are_split_at_ascii_whitespace_only_as_trec_eval_splits(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0\u00a0a 1 1.0 t\n", encoding="utf-8")  # 5 fields for trec_eval
    one_line_error(lambda: read_run(path), "run.trec:1: a TREC run line needs 6 fields", "found 5")
    # one docid for trec_eval, not two fields
    path.write_text("q1 Q0 a\u00a0b 1 1.0 t\n", encoding="utf-8")
    assert read_run(path) == {"q1": [("a\u00a0b", 1.0)]}
    path.write_text("q1 Q0 a 1 2.0 t\rq1 Q0 b 2 1.0 t\n")  # a lone CR ends no line for trec_eval
    one_line_error(lambda: read_run(path), "run.trec:1: a TREC run line needs 6 fields", "found 12")
