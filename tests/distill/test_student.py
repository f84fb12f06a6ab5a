"""Student kinds: the module delegates scoring, input encoding and export description to the
kind its ``student.kind`` names; an unknown kind is refused naming the known ones."""

from __future__ import annotations

import pytest
import torch

from dear.distill.student import KINDS, BiEncoderKind, CrossEncoderKind, load_student, student_kind
from dear.rerank.bi_encoder import BiEncoderInputs
from dear.rerank.template import PairEncoder


def test_unknown_kind_is_refused_naming_the_kinds():
    with pytest.raises(
        ValueError, match=r"student.kind must be one of \['bi_encoder', 'cross_encoder'\], got 'x'"
    ):
        student_kind({"kind": "x"})
    assert student_kind({}) is CrossEncoderKind and set(KINDS) == {"cross_encoder", "bi_encoder"}


def test_each_kind_encodes_scores_and_describes_its_export(tiny_bert_cls):
    spec = {
        "model": tiny_bert_cls,
        "lora": None,
        "dtype": "float32",
        "template": {"query_max_len": 8, "doc_max_len": 16},
    }
    tokenizer, net, kind = load_student(spec)
    assert isinstance(kind, CrossEncoderKind) and isinstance(
        kind.encoder(spec, tokenizer), PairEncoder
    )
    assert kind.export_meta(spec, tokenizer) == {
        "template": spec["template"],
        "pooling": kind.pooling,
    }

    bi = {
        "model": tiny_bert_cls,
        "lora": None,
        "dtype": "float32",
        "kind": "bi_encoder",
        "logit_scale": 10.0,
    }
    tokenizer, net, kind = load_student(bi)
    assert isinstance(kind, BiEncoderKind) and isinstance(
        kind.encoder(bi, tokenizer), BiEncoderInputs
    )
    ids = tokenizer(["a query", "another"], return_tensors="pt", padding=True)
    same = {
        "query_ids": ids["input_ids"],
        "query_mask": ids["attention_mask"],
        "doc_ids": ids["input_ids"],
        "doc_mask": ids["attention_mask"],
    }
    with torch.no_grad():
        scores = kind.scores(net.eval(), same)
    # cosine of a text with itself
    torch.testing.assert_close(scores, torch.full((2,), 10.0), atol=1e-4, rtol=0)
    assert kind.export_meta(bi, tokenizer)["logit_scale"] == 10.0
