"""The Stage-1 student, by kind (``student.kind``): how it loads, encodes a pair, scores and exports.

- ``cross_encoder`` (default): a one-logit classifier over the joined pair with LoRA (optionally QLoRA), pooled as the
  released DeAR-P models (``dear.rerank.pooling``); the score head trains in full.
- ``bi_encoder``: queries and documents embedded apart (mean pooling), score ``logit_scale`` × cosine, as
  ``BiEncoderScorer``.
"""

from __future__ import annotations

import torch

from dear.models.adapters import add_lora
from dear.models.loading import load_tokenizer, load_trainable, resolve_model_path
from dear.rerank.bi_encoder import BiEncoderInputs, mean_embedding
from dear.rerank.pooling import Pooling, auto_mode, pooled_pad_id
from dear.rerank.template import PairEncoder, PairTemplate


def build_student(
    model: str,
    revision: str | None = None,
    lora: dict | None = None,
    quantization: dict | None = None,
    gradient_checkpointing: bool = False,
    dtype: str = "auto",
    kind: str = "cross_encoder",
    **_,
):
    """→ (tokenizer, model); ``lora``: LoraConfig fields (None: full fine-tuning); ``quantization``: 4-bit (QLoRA)."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    student_kind({"kind": kind})  # a known kind, else a ValueError naming them
    path = resolve_model_path(model)
    tokenizer = load_tokenizer(path, revision)
    if kind == "bi_encoder":
        if lora or quantization:
            raise ValueError(
                "a bi_encoder student is fully fine-tuned (export: a plain encoder directory); "
                "set student.lora=null and student.quantization=null"
            )
        return tokenizer, load_trainable(
            AutoModel, path, revision, dtype, gradient_checkpointing=gradient_checkpointing
        )
    net = load_trainable(
        AutoModelForSequenceClassification,
        path,
        revision,
        dtype,
        quantization,
        gradient_checkpointing,
        fill_pad_id=True,
        num_labels=1,
    )
    if lora:
        net = add_lora(net, lora, "SEQ_CLS")
    return tokenizer, net


def student_inputs(student: dict, tokenizer) -> BiEncoderInputs:
    """A bi-encoder student's inputs (``max_len``, ``query_prefix``, ``doc_prefix``)."""
    return BiEncoderInputs(
        tokenizer,
        int(student.get("max_len", 256)),
        student.get("query_prefix", ""),
        student.get("doc_prefix", ""),
    )


def base_net(net):
    """The HF model under a PEFT wrapper (LoRA layers are injected in place)."""
    return net.get_base_model() if hasattr(net, "get_base_model") else net


class CrossEncoderKind:
    name = "cross_encoder"

    def __init__(self, spec: dict, tokenizer, net):
        pooling = spec.get("pooling", "auto")
        self.template = dict(spec.get("template") or {})
        self.pooling = auto_mode(base_net(net)) if pooling == "auto" else pooling
        self.pool = Pooling(
            self.pooling,
            tokenizer.pad_token_id,
            pooled_pad_id(base_net(net).config),
            PairTemplate.of(self.template).max_length,
        )

    @staticmethod
    def encoder(spec: dict, tokenizer) -> PairEncoder:
        return PairEncoder(tokenizer, PairTemplate.of(spec.get("template")))

    def scores(self, net, batch: dict) -> torch.Tensor:
        """(N,) scores of N tokenised joined pairs."""
        return self.pool(
            base_net(net), batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        )

    def export_meta(self, spec: dict, tokenizer) -> dict:
        return {"template": self.template, "pooling": self.pooling}


class BiEncoderKind:
    name = "bi_encoder"

    def __init__(self, spec: dict, tokenizer, net):
        self.pooling, self.logit_scale = "mean", float(spec.get("logit_scale", 20.0))

    @staticmethod
    def encoder(spec: dict, tokenizer) -> BiEncoderInputs:
        return student_inputs(spec, tokenizer)

    def scores(self, net, batch: dict) -> torch.Tensor:
        """(N,) ``logit_scale`` × cosine of the query and document embeddings."""
        q = mean_embedding(net, batch["query_ids"], batch["query_mask"])  # (N, H)
        d = mean_embedding(net, batch["doc_ids"], batch["doc_mask"])
        return self.logit_scale * (q * d).sum(-1)

    def export_meta(self, spec: dict, tokenizer) -> dict:
        # a plain encoder dir: loadable by transformers / sentence-transformers
        return {
            "inputs": student_inputs(spec, tokenizer).describe(),
            "logit_scale": self.logit_scale,
        }


KINDS = {kind.name: kind for kind in (CrossEncoderKind, BiEncoderKind)}


def student_kind(spec: dict) -> type:
    """The class of ``spec['kind']`` (default cross_encoder), or a ValueError naming the kinds."""
    kind = spec.get("kind", CrossEncoderKind.name)
    if kind not in KINDS:
        raise ValueError(f"student.kind must be one of {sorted(KINDS)}, got {kind!r}")
    return KINDS[kind]


def load_student(spec: dict):
    """→ (tokenizer, network, kind) for a ``conf/student`` node."""
    tokenizer, net = build_student(**spec)
    return tokenizer, net, student_kind(spec)(spec, tokenizer, net)
