"""TREC run/qrels IO and the candidate sources: round trips and errors that name file and line."""

from __future__ import annotations

import json

import pytest

from dear.data import irds
from dear.data.benchmarks import FilesBenchmark
from dear.data.candidates import rankllm_json
from dear.data.contract import Candidate, Query, Ranking
from dear.data.trec import format_run, read_qrels, read_run, write_run
from dear.errors import DataError

M = ["nDCG@10"]


def test_run_round_trip_preserves_order_even_with_ties(tmp_path):
    ranking = Ranking(Query("q", "t"), [Candidate("b", score=1.0), Candidate("a", score=1.0), Candidate("c", score=0.5)])
    write_run(tmp_path / "r.trec", {"q": ranking}, tag="x")
    assert [d for d, _ in read_run(tmp_path / "r.trec")["q"]] == ["b", "a", "c"]


def test_strictly_decreasing_scores_are_kept():
    ranking = Ranking(Query("q", "t"), [Candidate("a", score=2.5), Candidate("b", score=-1.0)])
    assert format_run({"q": ranking}, "t").splitlines() == ["q Q0 a 1 2.500000 t", "q Q0 b 2 -1.000000 t"]


def test_read_run_sorts_by_score(tmp_path):
    (tmp_path / "r").write_text("1 Q0 x 1 1.0 t\n1 Q0 y 2 5.0 t\n")
    assert read_run(tmp_path / "r") == {"1": [("y", 5.0), ("x", 1.0)]}


def test_run_line_with_five_fields_names_file_and_line(tmp_path):
    path = tmp_path / "bad.trec"
    path.write_text("1 Q0 a 1 1.0 t\n1 Q0 b 2 0.5\n")
    with pytest.raises(DataError, match=r"bad\.trec:2: .*6 fields.*found 5"):
        read_run(path)


def test_qrels_non_integer_grade_names_file_and_line(tmp_path):
    path = tmp_path / "qrels.txt"
    path.write_text("1 0 a 1\n1 0 b 1\n1 0 c high\n")
    with pytest.raises(DataError, match=r"qrels\.txt:3: relevance grade must be an integer, got 'high'"):
        read_qrels(path)


def test_json_missing_hits_names_entry(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"query": "a", "hits": [{"content": "x", "qid": 1, "docid": "d"}]}, {"query": "b"}]))
    with pytest.raises(DataError, match=r"c\.json: entry \[1\] is missing field\(s\) \['hits'\]"):
        rankllm_json(str(path), depth=100)


def test_json_query_with_no_candidates(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"query": "a", "hits": []}]))
    with pytest.raises(DataError, match=r"entry \[0\]\.hits: the query has no candidates"):
        rankllm_json(str(path), depth=100)


def test_judged_query_without_candidates_in_run(toy_files):
    toy_files["run"].write_text("q1 Q0 d1 1 1.0 t\n")
    bench = FilesBenchmark("toy", str(toy_files["run"]), str(toy_files["qrels"]), M)
    with pytest.raises(DataError, match=r"run\.trec: 1 judged queries have no candidates, e\.g\. \['q2'\]"):
        bench.load()


def test_unknown_ir_datasets_id():
    with pytest.raises(DataError, match=r"unknown ir_datasets id 'beir/no-such-set'"):
        irds.load("beir/no-such-set")


def test_trec_run_reranking_needs_texts(toy_files, tmp_path):
    from dear.eval.pipeline import Stage, run_pipeline
    from dear.rerank.pointwise import PointwiseReranker

    bench = FilesBenchmark("toy", str(toy_files["run"]), str(toy_files["qrels"]), M)
    with pytest.raises(DataError, match="needs query texts: set benchmark.queries"):
        run_pipeline(bench, [Stage("p", PointwiseReranker(scorer=None), 10)], tmp_path)
