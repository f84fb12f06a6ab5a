"""Build the Stage-1 student: a one-logit sequence classifier with LoRA (optionally QLoRA).

Decoder students (Llama 3.x, Qwen 2.5/3) are pooled as the released DeAR-P models were
(``reference``: the EOS at position 227 of the 228-token padded pair), encoders at [CLS]
(see ``dear.rerank.pooling``); the score head is trained in full alongside
the adapters (PEFT's ``modules_to_save`` for sequence classification).
"""

from __future__ import annotations

from dear.models.adapters import add_lora
from dear.models.loading import load_tokenizer, load_trainable, resolve_model_path
from dear.rerank.bi_encoder import BiEncoderInputs


def build_student(model: str, revision: str | None = None, lora: dict | None = None,
                  quantization: dict | None = None, gradient_checkpointing: bool = False, dtype: str = "auto",
                  kind: str = "cross_encoder", **_):
    """→ (tokenizer, model). ``lora``: peft LoraConfig fields (r, lora_alpha, lora_dropout,
    target_modules, ...) or None for full fine-tuning; ``quantization``: BitsAndBytesConfig fields
    (e.g. ``load_in_4bit: true``) for a 4-bit frozen base (QLoRA). Other student keys (template,
    pooling) are read by the module. ``kind``: ``cross_encoder`` (a one-logit classifier over the
    joined pair) or ``bi_encoder`` (the bare encoder body: queries and documents embedded apart)."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    if kind not in ("cross_encoder", "bi_encoder"):
        raise ValueError(f"student.kind must be cross_encoder or bi_encoder, got {kind!r}")
    path = resolve_model_path(model)
    tokenizer = load_tokenizer(path, revision)
    if kind == "bi_encoder":
        if lora or quantization:
            raise ValueError("a bi_encoder student is fully fine-tuned (export: a plain encoder directory); "
                             "set student.lora=null and student.quantization=null")
        return tokenizer, load_trainable(AutoModel, path, revision, dtype,
                                         gradient_checkpointing=gradient_checkpointing)
    net = load_trainable(AutoModelForSequenceClassification, path, revision, dtype, quantization,
                         gradient_checkpointing, fill_pad_id=True, num_labels=1)
    if lora:
        net = add_lora(net, lora, "SEQ_CLS")
    return tokenizer, net


def student_inputs(student: dict, tokenizer) -> BiEncoderInputs:
    """A bi-encoder student's inputs (``max_len``, ``query_prefix``, ``doc_prefix``)."""
    return BiEncoderInputs(tokenizer, int(student.get("max_len", 256)), student.get("query_prefix", ""),
                           student.get("doc_prefix", ""))
