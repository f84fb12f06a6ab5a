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
    ranking = Ranking(
        Query("q", "t"),
        [Candidate("b", score=1.0), Candidate("a", score=1.0), Candidate("c", score=0.5)],
    )
    write_run(tmp_path / "r.trec", {"q": ranking}, tag="x")
    assert [d for d, _ in read_run(tmp_path / "r.trec")["q"]] == ["b", "a", "c"]


def test_strictly_decreasing_scores_are_kept():
    ranking = Ranking(Query("q", "t"), [Candidate("a", score=2.5), Candidate("b", score=-1.0)])
    assert format_run({"q": ranking}, "t").splitlines() == ["q Q0 a 1 2.5 t", "q Q0 b 2 -1.0 t"]


def ranked(qid: str, scores: list[float]) -> Ranking:
    """Candidates d0, d1, ... in this order (docids ascending, so trec_eval's docid-descending
    tie break would reverse every tie), with these scores."""
    return Ranking(Query(qid, "t"), [Candidate(f"d{i:04d}", score=s) for i, s in enumerate(scores)])


def by_rank_scores(run: dict) -> dict:
    """An independent order-reproducing scoring: n - position (no ties, no real scores)."""
    return {
        q: {c.docid: float(len(r.candidates) - i) for i, c in enumerate(r.candidates)}
        for q, r in run.items()
    }


def test_written_run_rescores_to_the_in_memory_metrics_with_ties_and_many_candidates(tmp_path):
    import ir_measures
    import numpy as np

    rng = np.random.default_rng(0)
    # 1,000 candidates, ~60 distinct values
    coarse = np.sort(np.round(rng.normal(size=1000), 1))[::-1]
    run = {
        "all_tied": ranked("all_tied", [0.0] * 50),
        "coarse": ranked("coarse", list(coarse)),
        # reranked top 3 (logits), then the tail keeps its higher, tied BM25 scores
        "tail": ranked("tail", [2.0, 2.0, -1.0, 15.0, 15.0, 14.0, 14.0]),
        "tiny_gaps": ranked("tiny_gaps", [1.0, 1.0 - 1e-9, 1.0 - 2e-9, 1.0 - 2e-9]),
    }
    qrels = {q: {c.docid: int(rng.integers(0, 3)) for c in r.candidates} for q, r in run.items()}
    write_run(tmp_path / "r.trec", run, tag="x")
    measures = [ir_measures.parse_measure(m) for m in ["nDCG@10", "nDCG@3", "RR", "AP"]]
    from_file = {
        (m.query_id, str(m.measure)): m.value
        for m in ir_measures.iter_calc(
            measures, qrels, ir_measures.read_trec_run(str(tmp_path / "r.trec"))
        )
    }
    expected = {
        (m.query_id, str(m.measure)): m.value
        for m in ir_measures.iter_calc(measures, qrels, by_rank_scores(run))
    }
    assert from_file == expected  # exactly, per query and measure
    assert [d for d, _ in read_run(tmp_path / "r.trec")["coarse"]] == [
        c.docid for c in run["coarse"].candidates
    ]


def test_written_scores_are_the_real_ones_up_to_the_tie_nudge(tmp_path):
    import numpy as np

    scores = [3.25, 1.5, 1.5, 1.5, -0.75]
    write_run(tmp_path / "r.trec", {"q": ranked("q", scores)}, tag="x")
    # read as trec_eval reads: text → double → float32
    written = [
        np.float32(float(line.split()[4]))
        for line in (tmp_path / "r.trec").read_text().splitlines()
    ]

    def step_below(x):
        return np.nextafter(np.float32(x), np.float32(-np.inf))

    assert written == [3.25, 1.5, step_below(1.5), step_below(step_below(1.5)), -0.75]
    assert (tmp_path / "r.trec").read_text().splitlines()[0] == "q Q0 d0000 1 3.25 x"


def test_scores_equal_in_float32_are_tied_for_trec_eval_and_get_nudged():
    import numpy as np

    values = list(ranked("q", [1.0, 1.0 - 1e-9, 0.3]).eval_scores().values())
    assert values[0] == 1.0 and values[1] == float(np.nextafter(np.float32(1.0), np.float32(0)))
    assert values[2] == float(np.float32(0.3))


def test_tail_past_the_depth_is_shifted_below_keeping_its_differences():
    scores = ranked("q", [2.0, -1.0, 15.0, 14.5, 14.5]).eval_scores()
    values = list(scores.values())
    assert values[:2] == [2.0, -1.0] and all(a > b for a, b in zip(values, values[1:]))
    assert values[2] < -1.0 and values[2] - values[3] == pytest.approx(0.5)


def test_non_finite_score_is_an_error_naming_query_and_document():
    with pytest.raises(ValueError, match=r"query 'q': document 'd0001' has score nan"):
        ranked("q", [1.0, float("nan")]).eval_scores()


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
    with pytest.raises(
        DataError, match=r"qrels\.txt:3: relevance grade must be an integer, got 'high'"
    ):
        read_qrels(path)


def test_json_missing_hits_names_entry(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            [{"query": "a", "hits": [{"content": "x", "qid": 1, "docid": "d"}]}, {"query": "b"}]
        )
    )
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
    with pytest.raises(
        DataError, match=r"run\.trec: 1 judged queries have no candidates, e\.g\. \['q2'\]"
    ):
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
