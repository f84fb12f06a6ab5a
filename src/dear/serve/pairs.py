"""Client-side tokenisation for serving engines: DeAR's pair input as plain token ids.

An engine's rerank endpoint joins query and document as one string and truncates the joined
pair; DeAR cuts them separately (``query: {q}`` to ``query_max_len`` tokens, ``document:
{title} {text}`` to ``doc_max_len``), joins them as the reference did (``[bos] q [bos] d``) and
pools a fixed position. This module builds exactly those token ids (through the same
``PairEncoder`` as training, whose ids are tested against the reference on real tokenizers) and
pads them so that a plain ``*ForSequenceClassification`` pools the right hidden state, from a
merged export directory (``python -m dear.export``) and the settings in its
``dear_scorer.json``. ``dear.export --verify`` scores through it.

Padding per pooling (always right padding, attention mask 0 on padding):

* ``reference`` (DeAR's released checkpoints): every pair padded with the pad token to the
  template's ``max_length`` (228); the merged config's ``pad_token_id`` is 0, so
  ``*ForSequenceClassification`` pools the rightmost non-0 token: the last padding position.
* ``last``: padded to the batch's longest pair; ``pad_token_id`` is the tokenizer's pad, so the
  rightmost non-pad token (the last real one) is pooled.
* ``model`` (encoders): [CLS] through the model's own head; token type ids are passed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Encoding

from dear.models.batching import pad
from dear.rerank.template import PairEncoder, PairTemplate

SETTINGS = "dear_scorer.json"


def read_settings(model_dir: str | Path) -> dict:
    """``{"template": {...all fields...}, "pooling": ..., "base_model": ...}`` of a merged export."""
    return json.loads((Path(model_dir) / SETTINGS).read_text())


class PairTokenizer:
    """``tokenizer``: the export's ``AutoTokenizer``; ``settings``: its ``dear_scorer.json``."""

    def __init__(self, tokenizer, settings: dict):
        self.template, self.pooling = PairTemplate(**settings["template"]), settings["pooling"]
        self.encoder = PairEncoder(tokenizer, self.template)
        self.pad_id = tokenizer.pad_token_id

    def encode(self, query: str, title: str, text: str) -> tuple[list[int], list[int]]:
        """(input_ids, token_type_ids) of one pair, unpadded."""
        q: Encoding = self.encoder.queries([query])[0]
        d: Encoding = self.encoder.docs([(title, text)])[0]
        return self.encoder.pair(q, d)

    def batch(self, pairs: list[tuple[str, str, str]]) -> dict[str, torch.Tensor]:
        """(query, title, text) triples → ``input_ids``, ``attention_mask``, ``token_type_ids``, each (B, L)."""
        encoded = [self.encode(*p) for p in pairs]
        longest = max(len(ids) for ids, _ in encoded)
        length = self.template.max_length if self.pooling == "reference" else longest
        if longest > length:
            raise ValueError(f"a pair of {longest} tokens exceeds the reference length {length}")
        ids, mask = pad([x for x, _ in encoded], self.pad_id, length)
        out = {"input_ids": ids, "attention_mask": mask}
        if self.pooling == "model":
            out["token_type_ids"] = pad([y for _, y in encoded], 0, length)[0]
        return out
