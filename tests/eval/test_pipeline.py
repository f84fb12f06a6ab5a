"""run_pipeline's outputs: metrics.json only once every stage is done, partial results before,
and the input's warnings in metrics.json."""

from __future__ import annotations

import json

import pytest

from dear.eval.pipeline import Stage, run_pipeline
from dear.report.runs import _read_metrics
from tests.helpers.benchmarks import toy_benchmark


class Reverse:
    """Reverses each head: a reranker without a model."""

    def rerank(self, heads):
        return [type(h)(h.query, h.candidates[::-1], h.meta) for h in heads]


class Dies:
    def rerank(self, heads):
        raise RuntimeError("killed mid-stage")


def test_a_run_that_dies_in_a_stage_leaves_no_metrics_json_but_keeps_finished_stages(
    toy_files, tmp_path
):
    (tmp_path / "metrics.json").write_text("{}")  # an earlier complete run into the same dir
    with pytest.raises(RuntimeError, match="killed mid-stage"):
        run_pipeline(
            toy_benchmark(toy_files),
            [Stage("reverse", Reverse(), 3), Stage("dies", Dies(), 3)],
            tmp_path,
        )
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "per_query.json").exists()
    partial = json.loads((tmp_path / "metrics.partial.json").read_text())
    assert list(partial) == ["first_stage", "reverse"] and partial["reverse"]["nDCG@1"] == 1.0
    assert list(json.loads((tmp_path / "per_query.partial.json").read_text())) == [
        "first_stage",
        "reverse",
    ]


def test_a_complete_run_replaces_the_partial_files(toy_files, tmp_path):
    out = tmp_path / "out"
    result = run_pipeline(toy_benchmark(toy_files), [Stage("reverse", Reverse(), 3)], out)
    assert sorted(p.name for p in out.glob("*.json")) == ["metrics.json", "per_query.json"]
    written = json.loads((out / "metrics.json").read_text())
    assert list(written) == list(result["metrics"])  # the stages, no warnings key: none
    assert {k: v for k, v in written["reverse"].items() if k != "significance"} == result[
        "metrics"
    ]["reverse"]
    assert result["warnings"] == []


def test_warnings_reach_the_log_and_metrics_json_and_readers_skip_them(toy_files, tmp_path, capsys):
    toy_files["qrels"].write_text("q1 0 d1 2\nq2 0 other 1\n")  # q2's candidates are all unjudged
    out = tmp_path / "out"
    result = run_pipeline(toy_benchmark(toy_files), [], out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["warnings"] == result["warnings"] and "e.g. ['q2']" in metrics["warnings"][0]
    assert "WARNING files: 1 of 2 judged queries" in " ".join(capsys.readouterr().err.split())
    # dear.report sees stages only
    assert list(_read_metrics(out / "metrics.json")) == ["first_stage"]
