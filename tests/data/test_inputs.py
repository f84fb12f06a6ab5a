"""Input readers refuse what would silently change results: BOMs, duplicates, conflicts,
non-finite scores, depths < 1, unknown metrics; a warning when no candidate is judged."""

from __future__ import annotations

import json

import pytest

from dear.cot.generate import load_candidates
from dear.data.beir import read_beir_folder
from dear.data.benchmarks import FilesBenchmark
from dear.data.candidates import is_json, rankllm_json
from dear.data.contract import Candidate, Query, Ranking
from dear.data.texts import load_queries, read_docs_tsv
from dear.data.trec import read_qrels, read_run
from dear.errors import ConfigError, DataError
from dear.eval.judges import RelevanceJudge
from dear.eval.pipeline import Stage, stages_from_config

BOM = "\ufeff"


def test_bom_before_a_run_keeps_the_first_line(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text(BOM + "q1 Q0 a 1 2.0 t\nq1 Q0 b 2 1.0 t\n", encoding="utf-8")
    assert read_run(path) == {"q1": [("a", 2.0), ("b", 1.0)]}  # not a query "\ufeffq1"


def test_bom_is_stripped_from_qrels_docs_queries_and_json(tmp_path):
    (tmp_path / "qrels").write_text(BOM + "q1 0 a 1\n", encoding="utf-8")
    (tmp_path / "docs.tsv").write_text(BOM + "a\ttext a\n", encoding="utf-8")
    (tmp_path / "queries.tsv").write_text(BOM + "q1\tquery one\n", encoding="utf-8")
    (tmp_path / "c.json").write_text(
        BOM
        + json.dumps(
            [{"query": "q", "hits": [{"qid": "q1", "docid": "a", "content": "x", "score": 1}]}]
        ),
        encoding="utf-8",
    )
    assert read_qrels(tmp_path / "qrels") == {"q1": {"a": 1}}
    assert read_docs_tsv(tmp_path / "docs.tsv") == {"a": ("", "text a")}
    assert load_queries(str(tmp_path / "queries.tsv")) == {"q1": "query one"}
    assert is_json(str(tmp_path / "c.json")) and list(
        rankllm_json(str(tmp_path / "c.json"), 10)
    ) == ["q1"]


def test_dpr_header_after_a_bom_is_recognised(tmp_path):
    path = tmp_path / "psgs.tsv"
    path.write_text(BOM + 'id\ttext\ttitle\n1\t"a text"\tA title\n', encoding="utf-8")
    assert read_docs_tsv(path) == {"1": ("A title", "a text")}


@pytest.mark.parametrize(
    "content, docid, first",
    [
        ("a\tfirst\nb\tx\na\tsecond\n", "a", 1),
        ("id\ttext\ttitle\n1\tt\tT\n2\tv\tV\n1\tu\tU\n", "1", 2),
    ],
)
def test_a_docid_listed_twice_is_an_error_naming_both_lines(tmp_path, content, docid, first):
    path = tmp_path / "docs.tsv"
    path.write_text(content)
    with pytest.raises(
        DataError,
        match=rf"docs\.tsv:{first + 2}: document '{docid}' is listed twice "
        rf"\(first at line {first}\)",
    ):
        read_docs_tsv(path)


def test_conflicting_qrels_grades_are_an_error_and_repeats_are_fine(tmp_path):
    path = tmp_path / "qrels.txt"
    path.write_text("q1 0 a 1\nq1 0 b 0\nq1 0 a 1\n")
    assert read_qrels(path) == {"q1": {"a": 1, "b": 0}}
    path.write_text("q1 0 a 1\nq1 0 b 0\nq1 0 a 2\n")
    with pytest.raises(
        DataError, match=r"qrels\.txt:3: query 'q1' document 'a' is graded 2 here and 1 at line 1"
    ):
        read_qrels(path)


def test_conflicting_beir_qrels_are_an_error(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "y"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ta\t1\nq1\ta\t0\n")
    with pytest.raises(DataError, match=r"test\.tsv:3: query 'q1' document 'a' is graded 0"):
        read_beir_folder(tmp_path)


@pytest.mark.parametrize("score", ["nan", "NaN", "inf", "-Infinity"])
def test_non_finite_run_scores_are_an_error(tmp_path, score):
    path = tmp_path / "run.trec"
    path.write_text(f"q1 Q0 a 1 2.0 t\nq1 Q0 b 2 {score} t\n")
    with pytest.raises(
        DataError, match=rf"run\.trec:2: score must be a finite number, found '{score}'"
    ):
        read_run(path)


def _json_hits(tmp_path, hits) -> str:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            [
                {"query": "q", "hits": [{"qid": "q1", "docid": "z", "content": "z", "score": 9}]},
                {"query": "q", "hits": hits},
            ]
        )
    )
    return str(path)


def test_a_docid_twice_in_one_json_hit_list_is_an_error(tmp_path):
    hits = [
        {"qid": "q2", "docid": d, "content": d, "score": s}
        for d, s in [("a", 3), ("b", 2), ("a", 1)]
    ]
    with pytest.raises(
        DataError, match=r"c\.json: entry \[1\]\.hits\[2\]: document 'a' appears twice .*hits\[0\]"
    ):
        rankllm_json(_json_hits(tmp_path, hits), depth=2)  # checked beyond the depth too


@pytest.mark.parametrize("score", ["high", "nan", float("nan"), float("inf"), True, None, [1]])
def test_a_json_score_that_is_not_a_finite_number_names_the_field(tmp_path, score):
    hits = [
        {"qid": "q2", "docid": "a", "content": "a", "score": 1},
        {"qid": "q2", "docid": "b", "content": "b", "score": score},
    ]
    with pytest.raises(
        DataError, match=r"c\.json: entry \[1\]\.hits\[1\]\.score: expected a finite number"
    ):
        rankllm_json(_json_hits(tmp_path, hits), depth=10)


def test_numeric_string_scores_are_numbers(tmp_path):
    hits = [{"qid": "q2", "docid": "a", "content": "a", "score": "80.5"}]
    assert rankllm_json(_json_hits(tmp_path, hits), depth=10)["q2"].candidates[0].score == 80.5


@pytest.mark.parametrize("depth", [0, -1, 2.5, "10"])
def test_depths_below_one_name_the_config_field(toy_files, depth):
    with pytest.raises(ConfigError, match=r"benchmark\.depth: expected an integer depth >= 1"):
        FilesBenchmark(
            "files", str(toy_files["run"]), str(toy_files["qrels"]), ["nDCG@10"], depth=depth
        )
    with pytest.raises(
        ConfigError, match=r"pipeline\.stages\.pointwise\.depth: expected an integer depth >= 1"
    ):
        stages_from_config({"pointwise": _Node(depth=depth)}, build=lambda node: None)
    with pytest.raises(ConfigError, match=r"stage 'x' depth"):
        Stage("x", reranker=None, depth=depth)
    with pytest.raises(ConfigError, match=r"candidates\.depth: expected an integer depth >= 1"):
        load_candidates(str(toy_files["json"]), depth=depth)


class _Node(dict):
    """A stage config node (attribute access like a DictConfig); its reranker is never built."""

    def __getattr__(self, name):
        return self[name]


def test_unknown_metric_lists_the_valid_names_and_no_metric_is_an_error(toy_files):
    with pytest.raises(
        ConfigError, match=r"metrics: unknown or malformed metric 'nDGC@10'.*valid measures: .*nDCG"
    ):
        RelevanceJudge({"q": {"a": 1}}, ["nDCG@10", "nDGC@10"])
    with pytest.raises(ConfigError, match=r"benchmark\.measures .*at least one metric"):
        FilesBenchmark("files", str(toy_files["run"]), str(toy_files["qrels"]), [])


def test_judged_query_without_any_judged_candidate_is_a_warning():
    judge = RelevanceJudge({"q1": {"a": 1, "b": 0}, "q2": {"c": 1}}, ["nDCG@10"])
    # docid case differs from the qrels
    run = {
        # b is judged (grade 0): fine
        "q1": Ranking(Query("q1", ""), [Candidate("b"), Candidate("x")]),
        "q2": Ranking(Query("q2", ""), [Candidate("C"), Candidate("y")]),
    }
    warnings = judge.warnings(run)
    assert (
        len(warnings) == 1
        and warnings[0].startswith("1 of 2 judged queries have no judged document")
        and "['q2']" in warnings[0]
    )
    assert judge.warnings({"q1": run["q1"]}) == []


def test_dpr_json_scores_may_be_numeric_strings_but_not_words(tmp_path):
    from dear.data.qa import dpr_retrieval_json

    path = tmp_path / "dpr.json"
    ctx = {"id": "1", "title": "t", "text": "x"}
    path.write_text(
        json.dumps([{"question": "q", "answers": ["x"], "ctxs": [{**ctx, "score": "80.1"}]}])
    )
    assert dpr_retrieval_json(str(path), 10)[0]["0"].candidates[0].score == 80.1
    path.write_text(
        json.dumps([{"question": "q", "answers": ["x"], "ctxs": [{**ctx, "score": "n/a"}]}])
    )
    with pytest.raises(
        DataError,
        match=r"dpr\.json: entry \[0\]\.ctxs\[0\]\.score: expected a finite number, "
        r"found 'n/a'",
    ):
        dpr_retrieval_json(str(path), 10)
