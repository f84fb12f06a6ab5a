"""The DeAR pointwise input, built token-exactly as the released checkpoints were trained.

DeAR (and RankLLaMA before it) encode ``query: {q}`` and ``document: {title} {text}``
separately without special tokens, cut the query to 32 and the document to 196 tokens, then
join them with the tokenizer's own pair template. For Llama-3 that is
``<|begin_of_text|> query… <|begin_of_text|> document…``; for BERT ``[CLS] q [SEP] d [SEP]``.
Optionally an EOS is appended (RankLLaMA-style ``</s>`` pooling token).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Encoding, Tokenizer


@dataclass(frozen=True)
class PairTemplate:
    query_prefix: str = "query: "
    doc_prefix: str = "document: "
    query_max_len: int = 32
    doc_max_len: int = 196
    append_eos: bool = False

    def query_text(self, query: str) -> str:
        return f"{self.query_prefix}{query}"

    def doc_text(self, title: str, text: str) -> str:
        # Exactly the released format: an empty title still leaves its separating space.
        return f"{self.doc_prefix}{title} {text}"

    @property
    def max_len(self) -> int:
        """Upper bound of a joined pair: 32 + 196 + a few special tokens."""
        return self.query_max_len + self.doc_max_len + 4


class PairEncoder:
    """Tokenises queries and documents once each, then joins pairs with the model's template.

    Works on the tokenizer's Rust backend: ``encode_batch`` without special tokens, in-place
    ``truncate``, and ``post_process`` to add the pair's special tokens.
    """

    def __init__(self, hf_tokenizer, template: PairTemplate):
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise TypeError(f"{type(hf_tokenizer).__name__} has no fast (Rust) backend; a fast tokenizer is required")
        self.backend = Tokenizer.from_str(backend.to_str())  # private copy: no padding/truncation side effects
        self.backend.no_padding()
        self.backend.no_truncation()
        self.template = template
        self.eos_id = hf_tokenizer.eos_token_id
        if template.append_eos and self.eos_id is None:
            raise ValueError("template.append_eos is set but the tokenizer has no EOS token")

    def queries(self, texts: list[str]) -> list[Encoding]:
        return self._encode([self.template.query_text(t) for t in texts], self.template.query_max_len)

    def docs(self, titled: list[tuple[str, str]]) -> list[Encoding]:
        return self._encode([self.template.doc_text(t, x) for t, x in titled], self.template.doc_max_len)

    def pair(self, query: Encoding, doc: Encoding) -> tuple[list[int], list[int]]:
        """(input_ids, token_type_ids) for one joined pair."""
        joined = self.backend.post_process(query, doc, add_special_tokens=True)
        ids, types = list(joined.ids), list(joined.type_ids)
        if self.template.append_eos:
            ids.append(self.eos_id)
            types.append(types[-1] if types else 0)
        return ids, types

    def _encode(self, texts: list[str], max_len: int) -> list[Encoding]:
        encodings = self.backend.encode_batch(texts, add_special_tokens=False)
        for e in encodings:
            e.truncate(max_len)
        return encodings
