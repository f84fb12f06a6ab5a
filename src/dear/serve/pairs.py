"""Client-side tokenisation for serving engines: DeAR's pair input as plain token ids (docs/serving.md).

Engines truncate the joined pair; DeAR cuts query and document separately and joins them as the reference did
(``[bos] q [bos] d``). This builds those ids with the training ``PairEncoder`` from a merged export and its
``dear_scorer.json``, right-padded (mask 0) so a plain ``*ForSequenceClassification`` pools our position:
``reference`` pads to ``max_length`` (228) with config ``pad_token_id`` 0 (the last padding position is pooled);
``last`` pads to the longest with the tokenizer's pad (the last real token); ``model`` (encoders) pools [CLS] and
passes token type ids. ``dear.export --verify`` scores through it.
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
        self.template, self.pooling = PairTemplate.of(settings["template"]), settings["pooling"]
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
