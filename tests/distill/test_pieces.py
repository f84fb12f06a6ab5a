"""The pieces of Stage-1 data, each alone: the teacher's fingerprint and cache, the validation set,
and how train.py hands the data module its teacher (only when the loss distils one)."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate

from dear.data.benchmarks import Loaded, Qrels
from dear.data.contract import Candidate, Query, Ranking
from dear.data.texts import DocStore
from dear.distill.data import DistillDataModule
from dear.distill.sources import TrainQuery
from dear.distill.teacher import Teacher, TeacherLogits, runtime_only, scoring_settings
from dear.distill.teacher_cache import digest
from dear.distill.validation import ValidationSet
from dear.training import build_datamodule
from dear.utils.plain import to_plain
from tests.helpers.configs import compose_cfg

# The fingerprints the caches made before the scorers named their runtime-only settings (computed
# with the exclusion list distill/data.py used to hold): an existing cache must stay valid.
# fusion_bm25_minilm changed once on purpose: its bi-encoder member went from dtype float32 to
# auto (bf16 autocast where the CPU has it), which changes its logits, so fp32 caches are not reused.
FINGERPRINTS = {
    "fusion_bm25_minilm": "d7f4243f7341242c27756288e95a98f043060a3c7208abc7c959b04c1d978239",
    "rankllama_13b": "edb53e18d6505f4089ea36c31711c0a245886260df6c3ad81f1d35475f309764",
}


@pytest.mark.parametrize("teacher", sorted(FINGERPRINTS))
def test_teacher_cache_fingerprints_are_unchanged(teacher):
    cfg = compose_cfg("train", ["paths.cache_dir=/cache", f"teacher={teacher}"])
    logits = TeacherLogits(Teacher(to_plain(cfg.teacher), build=None), instantiate(cfg.data.train))
    assert digest(logits.fingerprint) == FINGERPRINTS[teacher]


def test_each_scorer_names_the_settings_that_do_not_change_its_scores():
    cross = {
        "_target_": "dear.rerank.pointwise.CrossEncoderScorer",
        "model": "m",
        "device": "cuda:1",
        "max_batch_pairs": 8,
        "max_batch_tokens": 99,
        "dtype": "auto",
    }
    assert scoring_settings(cross) == {"_target_": cross["_target_"], "model": "m", "dtype": "auto"}
    bi = {
        "_target_": "dear.rerank.pointwise.BiEncoderScorer",
        "model": "m",
        "memo_size": 5,
        "max_batch_items": 3,
    }
    assert scoring_settings(bi) == {"_target_": bi["_target_"], "model": "m"}
    lexical = {"_target_": "dear.rerank.lexical.BM25Scorer", "dataset": "d", "cache_dir": "/c"}
    assert scoring_settings(lexical) == lexical  # the index it scores from is part of what it is
    assert runtime_only({"_target_": "dear.rerank.vllm_pointwise.VLLMPointwiseScorer"}) == {
        "device"
    }
    assert runtime_only({"_target_": "dear.rerank.fusion.FusionScorer"}) == set()
    assert runtime_only({"model": "no target"}) == set()


class Source:
    def load(self):
        docs = {f"d{i}": ("", f"doc {i}") for i in range(6)}
        queries = [
            TrainQuery(f"q{i}", f"query {i}", (f"d{2 * i}",), (f"d{2 * i + 1}",)) for i in range(3)
        ]
        return queries, DocStore("toy", docs)

    def describe(self):
        return {"toy": 3}


class Scorer:
    def score(self, rankings, desc=""):
        return [np.array([float(c.docid[1:]) for c in r.candidates]) for r in rankings]


def test_the_teacher_is_built_only_while_its_cache_is_missing(tmp_path):
    built = []
    teacher = Teacher(
        {"_target_": "tests.distill.test_pieces.Scorer", "model": "toy"},
        build=lambda **kw: built.append(kw) or Scorer(),
    )
    logits = TeacherLogits(teacher, Source(), str(tmp_path), shard_size=2)
    assert not logits.ready
    queries, docs = Source().load()
    logits.precompute(queries, docs)
    assert built == [{}] and logits.ready
    again = TeacherLogits(teacher, Source(), str(tmp_path), shard_size=2)
    assert again.ready and again.load([("q1", "d3")])[("q1", "d3")] == 3.0
    assert built == [{}]  # read back, never rebuilt
    assert again.record() == {"dir": str(again.cache.dir), "fingerprint": again.fingerprint}


class Benchmark:
    def load(self):
        run = {
            "q1": Ranking(
                Query("q1", "query 1"), [Candidate("d2", "two"), Candidate("d3", "three")]
            )
        }
        return Loaded(run, Qrels({"q1": {"d3": 1}}, ["nDCG@10"]))


def test_validation_set_holds_out_its_queries_and_scores_flat_pairs():
    val = ValidationSet(Benchmark())
    assert val.held_out == {"q1"} and val.pairs == [("q1", "d2"), ("q1", "d3")]
    assert val.queries == {"q1": "query 1"} and val.docs["d3"] == ("", "three")
    assert val.evaluate(np.array([0.0, 1.0]))["nDCG@10"] == pytest.approx(1.0)
    assert val.evaluate(np.array([1.0, 0.0]))["nDCG@10"] < 1.0
    assert [c.docid for c in val.rankings(np.array([0.0, 1.0]))["q1"].candidates] == ["d3", "d2"]


def test_data_module_without_a_teacher_has_nothing_to_cache(tiny_bert_cls, tmp_path):
    student = {"model": tiny_bert_cls, "template": {"query_max_len": 8, "doc_max_len": 8}}
    dm = DistillDataModule(
        Source(), student, None, val=Benchmark(), group_size=2, cache_dir=str(tmp_path)
    )
    dm.prepare_data()
    dm.setup()
    assert dm.records() == {} and not any(tmp_path.iterdir())
    assert [q.qid for q in dm.queries] == ["q0", "q2"]  # q1 is the validation set's
    assert "teacher" not in dm.collate([dm.train_set[0]]) and dm.val_pairs == [
        ("q1", "d2"),
        ("q1", "d3"),
    ]


@pytest.mark.parametrize("alpha, wanted", [("a0", False), ("a0.5", True)])
def test_train_hands_the_teacher_only_when_the_loss_distils(alpha, wanted):
    datamodule = build_datamodule(compose_cfg("train", [f"alpha={alpha}"]))
    assert (datamodule.teacher is not None) == wanted
    if wanted:
        assert datamodule.teacher.teacher.config["_target_"] == "dear.rerank.fusion.FusionScorer"
        assert list(datamodule.records()) == ["teacher_cache.json"]


def test_the_listwise_stage_gets_no_teacher():
    assert build_datamodule(compose_cfg("train_listwise", [])).records() == {}
