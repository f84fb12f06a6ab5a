"""Bi-encoder inputs and embeddings, shared by the scorer and the Stage-1 bi-encoder student, so a student is scored
exactly as trained.

Query ``query_prefix + text``, document ``doc_prefix + full_text``, each with the model's special tokens, cut to
``max_len``; embedding: attention-masked mean of the last hidden states, L2-normalised (all-MiniLM-L6-v2's recipe);
score: ``logit_scale`` × cosine.
"""

from __future__ import annotations

import torch

from dear.data.contract import Candidate
from dear.models.batching import pad


def mean_embedding(body, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) right-padded ids → (B, H) float L2-normalised mean of the last hidden states."""
    hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(mean.float(), dim=-1)


class BiEncoderInputs:
    """Token ids for queries and documents, and padded (query, document) batches of pairs."""

    def __init__(self, tokenizer, max_len: int = 256, query_prefix: str = "", doc_prefix: str = ""):
        self.tokenizer, self.max_len = tokenizer, max_len
        self.query_prefix, self.doc_prefix = query_prefix, doc_prefix

    def encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(
            texts, truncation=True, max_length=self.max_len, add_special_tokens=True
        )["input_ids"]

    def queries(self, texts: list[str]) -> list[list[int]]:
        return self.encode([self.query_prefix + t for t in texts])

    def docs(self, titled: list[tuple[str, str]]) -> list[list[int]]:
        return self.encode(
            [self.doc_prefix + Candidate("", text, title).full_text for title, text in titled]
        )

    def collate(self, encoded: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        """[(query ids, doc ids)] → {query_ids, query_mask, doc_ids, doc_mask}, each (N, L)."""
        pad_id = self.tokenizer.pad_token_id
        q_ids, q_mask = pad([q for q, _ in encoded], pad_id)
        d_ids, d_mask = pad([d for _, d in encoded], pad_id)
        return {"query_ids": q_ids, "query_mask": q_mask, "doc_ids": d_ids, "doc_mask": d_mask}

    def describe(self) -> dict:
        return {
            "max_len": self.max_len,
            "query_prefix": self.query_prefix,
            "doc_prefix": self.doc_prefix,
        }
