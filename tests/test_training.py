"""dear.training.exported_stages: the untrained start and the trained export rerank the same input (the last
evaluation stage's output, or first_stage), never one another's, through run_pipeline as train.py runs them."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from dear.eval.pipeline import Stage, run_pipeline
from dear.training import exported_stages
from tests.helpers.benchmarks import toy_benchmark


class Recorder:
    """Records the docid order each query arrives in; ``reverse``: answers with it reversed (a zero-shot model that
    reorders), else keeps it (a model that copies its input)."""

    def __init__(self, reverse: bool):
        self.reverse, self.seen = reverse, {}

    def rerank(self, heads):
        self.seen.update({h.qid: [c.docid for c in h.candidates] for h in heads})
        return [
            type(h)(h.query, h.candidates[::-1] if self.reverse else list(h.candidates), h.meta)
            for h in heads
        ]


class Module:
    """export_reranker as the SFT and distillation modules have it: one reranker per exported directory."""

    def __init__(self):
        self.rerankers: dict[str, Recorder] = {}

    def export_reranker(self, directory: Path) -> Recorder:
        return self.rerankers.setdefault(
            Path(directory).name, Recorder(reverse=Path(directory).name == "export_init")
        )


def exported(**overrides):
    return OmegaConf.create(
        {"name": "listwise", "initial": "listwise_init", "depth": 3, "source": None, **overrides}
    )


def test_start_and_export_both_rerank_the_first_stage_not_one_another(toy_files, tmp_path):
    module = Module()
    stages = exported_stages(exported(), module, tmp_path / "export", tmp_path / "export_init", [])
    assert [(s.name, s.source) for s in stages] == [
        ("listwise_init", "first_stage"),
        ("listwise", "first_stage"),
    ]
    run_pipeline(toy_benchmark(toy_files), stages, tmp_path / "out")
    first = {"q1": ["d2", "d4", "d1"], "q2": ["d4", "d2", "d3"]}  # the TREC run's order
    # the start reversed its input; the export still got BM25's order, not the start's output
    assert module.rerankers["export_init"].seen == first
    assert module.rerankers["export"].seen == first


def test_after_an_evaluation_stage_both_rerank_its_output(toy_files, tmp_path):
    module = Module()
    before = [Stage("pointwise", Recorder(reverse=True), 3)]
    stages = exported_stages(
        exported(), module, tmp_path / "export", tmp_path / "export_init", before
    )
    assert {s.source for s in stages} == {"pointwise"}
    run_pipeline(toy_benchmark(toy_files), before + stages, tmp_path / "out")
    reversed_first = {"q1": ["d1", "d4", "d2"], "q2": ["d3", "d2", "d4"]}
    assert module.rerankers["export_init"].seen == reversed_first
    assert module.rerankers["export"].seen == reversed_first


def test_an_explicit_source_wins_and_no_start_means_one_stage(tmp_path):
    before = [Stage("pointwise", Recorder(reverse=False), 3)]
    stages = exported_stages(
        exported(source="first_stage"), Module(), tmp_path / "export", None, before
    )
    assert [(s.name, s.source, s.depth) for s in stages] == [("listwise", "first_stage", 3)]
    assert exported_stages(None, Module(), tmp_path / "export", None, before) == []
