"""Training groups (deterministic, student and teacher on the same documents) and sources."""

from __future__ import annotations

import json

import pytest

from dear.data.texts import DocStore
from dear.distill.groups import GroupDataset, GroupSampler, PairCollator
from dear.distill.sources import FlagEmbeddingSource, TevatronSource, TrainQuery
from dear.errors import DataError

QUERIES = [
    TrainQuery(f"q{i}", f"query {i}", (f"p{i}", f"p{i}b"), tuple(f"n{i}_{j}" for j in range(12)))
    for i in range(5)
]


def test_groups_are_deterministic_per_seed_and_epoch():
    ds = GroupDataset(QUERIES, group_size=4, seed=7)
    assert ds[3] == GroupDataset(QUERIES, 4, seed=7)[3]
    epoch0 = [ds[i] for i in range(5)]
    epoch1 = [ds[5 + i] for i in range(5)]  # index = epoch * n + i
    assert epoch0 != epoch1
    for qid, docs in epoch0 + epoch1:
        q = next(x for x in QUERIES if x.qid == qid)
        assert (
            docs[0] in q.positives
            and all(d in q.negatives for d in docs[1:])
            and len(set(docs[1:])) == 3
        )


def test_small_pools_are_sampled_with_replacement():
    q = [TrainQuery("q", "x", ("p",), ("n1", "n2"))]
    assert len(GroupDataset(q, group_size=8)[0][1]) == 8


def test_sampler_shuffles_per_epoch_and_encodes_the_epoch():
    sampler = GroupSampler(5, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == list(range(5)) and sorted(second) == list(range(5, 10))
    assert [i - 5 for i in second] != first


def test_collator_gives_teacher_logits_of_the_very_documents_in_the_batch(tiny_bert_cls):
    from dear.models.loading import load_tokenizer
    from dear.rerank.template import PairEncoder, PairTemplate

    encoder = PairEncoder(load_tokenizer(tiny_bert_cls), PairTemplate.of())
    docs = DocStore("mem", {d: ("", f"text of {d}") for q in QUERIES for d in q.docids})
    teacher = {(q.qid, d): float(hash((q.qid, d)) % 1000) for q in QUERIES for d in q.docids}
    collate = PairCollator(encoder, {q.qid: q.text for q in QUERIES}, docs, teacher, memo_size=5)
    groups = [GroupDataset(QUERIES, 4, seed=3)[i] for i in (0, 2)]
    batch = collate(groups)
    assert batch["input_ids"].shape[0] == 8 and batch["labels"].tolist() == [[1, 0, 0, 0]] * 2
    assert len(collate.d_enc) == 5  # the memo stays bounded
    for g, (qid, group_docs) in enumerate(groups):
        assert batch["teacher"][g].tolist() == [teacher[(qid, d)] for d in group_docs]
        for j, d in enumerate(group_docs):  # row g*4+j holds exactly that (query, doc) pair
            q_text = next(q.text for q in QUERIES if q.qid == qid)
            expected = encoder.pair(
                encoder.queries([q_text])[0], encoder.docs([("", f"text of {d}")])[0]
            )[0]
            assert batch["input_ids"][g * 4 + j, : len(expected)].tolist() == expected


def test_tevatron_and_flagembedding_sources(tmp_path):
    tev = tmp_path / "tev.jsonl"
    tev.write_text(
        json.dumps(
            {
                "query_id": "7",
                "query": "q",
                "positive_passages": [{"title": "T", "text": "pos"}],
                "negative_passages": [{"title": "", "text": "neg1"}, {"text": "neg2"}],
            }
        )
        + "\n"
    )
    queries, docs = TevatronSource(str(tev)).load()
    assert queries[0].qid == "7" and len(queries[0].negatives) == 2
    assert docs.get_many(queries[0].positives) == {queries[0].positives[0]: ("T", "pos")}
    flag = tmp_path / "flag.jsonl"
    flag.write_text(
        json.dumps(
            {
                "query": "q",
                "pos": ["a"],
                "neg": ["b", "c"],
                "pos_scores": [1.0],
                "neg_scores": [0, 0],
            }
        )
        + "\n"
    )
    fq, _ = FlagEmbeddingSource(str(flag)).load()
    assert fq[0].qid == FlagEmbeddingSource(str(flag)).load()[0][0].qid  # stable content-hash ids
    flag.write_text('{"query": "q", "neg": ["b"]}\n')
    with pytest.raises(DataError, match=r"flag\.jsonl:1 is missing field\(s\) \['pos'\]"):
        FlagEmbeddingSource(str(flag)).load()


def test_shared_flagembedding_sample_loads():
    from tests.helpers import shared

    path = shared("msmarco-sample", "flagembedding_reranker_examples.jsonl")
    queries, docs = FlagEmbeddingSource(str(path)).load()
    assert len(queries) == 10 and all(q.positives and q.negatives for q in queries)
