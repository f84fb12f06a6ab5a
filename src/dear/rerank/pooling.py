"""Which hidden state a one-logit classifier is scored from, made explicit.

``reference`` — what every released DeAR-P model and the RankLLaMA teacher were trained on
(``pointwise_reranker/data.py`` + ``modeling.py``): each pair right-padded with the tokenizer's
pad token (EOS when it has none) to ``max_length`` = 32 + 196 = 228 tokens, attention mask 0 on
the padding, and ``config.pad_token_id`` forced to 0 when the checkpoint leaves it unset, so
``LlamaForSequenceClassification`` pools the rightmost token whose id is not 0. For a pair of
n < 228 tokens that is **position 227, a padding EOS**: its query attends to the n real tokens
(the padding, itself included, is masked as a key) and its rotary position is 227.

Computed exactly at the cost of the real tokens: the pair plus one appended pad token with
position id 227 and attention mask 0 (so nothing, itself included, attends to it). The padded
tokens in between cannot reach position 227 (masked keys), so its hidden state is the one the
padded computation gives. Per pair: n + 1 tokens instead of 228.

``reference_padded`` — the same state by the literal padded computation (the slow baseline, kept
to prove equality). ``last`` — the last real token of right-padded input. ``model`` — the
checkpoint's own head (encoders: [CLS] through their pooler).
"""

from __future__ import annotations

import torch

MODES = ("reference", "reference_padded", "last", "model")


def pooled_pad_id(config) -> int:
    """The id the classifier skips when it looks for its pooled token: the checkpoint's own
    ``pad_token_id``, or 0 when unset (the reference forces 0)."""
    return 0 if config.pad_token_id is None else int(config.pad_token_id)


def reference_view(input_ids: torch.Tensor, attention_mask: torch.Tensor, fill_id: int, pooled_id: int,
                   max_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (B, W) pairs → (ids, mask, position_ids, pool_index) of shapes (B, W + 1) ×3
    and (B,): one pad token appended after each pair's n real tokens at position ``max_length - 1``,
    masked, and pooled — unless the padded view pools a real token (n = ``max_length``, or a pad
    id equal to ``pooled_id``), which is then pooled at its own position."""
    B, W = input_ids.shape
    lengths = attention_mask.sum(dim=1)  # (B,)
    if int(lengths.max()) > max_length:
        raise ValueError(f"a pair has {int(lengths.max())} tokens, more than the reference's max_length {max_length}")
    ids = torch.cat([input_ids, input_ids.new_full((B, 1), fill_id)], dim=1)
    rows = torch.arange(B, device=ids.device)
    ids[rows, lengths] = fill_id
    mask = torch.cat([attention_mask, attention_mask.new_zeros((B, 1))], dim=1)
    positions = torch.arange(W + 1, device=ids.device).expand(B, -1).clone()
    positions[rows, lengths] = max_length - 1
    real = (ids != pooled_id) & mask.bool()
    rightmost_real = (torch.arange(W + 1, device=ids.device) * real).argmax(dim=1)  # 0 when none
    in_padding = (lengths < max_length) & (fill_id != pooled_id)
    return ids, mask, positions, torch.where(in_padding, lengths, rightmost_real)


def padded_view(input_ids: torch.Tensor, attention_mask: torch.Tensor, fill_id: int, pooled_id: int,
                max_length: int) -> tuple[torch.Tensor, torch.Tensor, None, torch.Tensor]:
    """The literal reference batch: (B, max_length) ids padded with ``fill_id``, mask, no
    position ids, pool_index = the rightmost id that is not ``pooled_id`` (as HF pools)."""
    B, W = input_ids.shape
    ids = input_ids.new_full((B, max_length), fill_id)
    mask = attention_mask.new_zeros((B, max_length))
    ids[:, :W] = torch.where(attention_mask.bool(), input_ids, fill_id)
    mask[:, :W] = attention_mask
    index = (torch.arange(max_length, device=ids.device) * (ids != pooled_id)).argmax(dim=1)
    return ids, mask, None, index


def head_scores(model, input_ids, attention_mask, position_ids, pool_index) -> torch.Tensor:
    """The score head on the backbone's hidden state at ``pool_index``: (B,) float."""
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
    pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), pool_index]  # (B, H)
    return model.score(pooled).squeeze(-1).float()


class Pooling:
    """Scores a right-padded batch of pairs with one of ``MODES``.

    ``fill_id``: the token the reference pads with (the tokenizer's pad token, EOS when none);
    ``pooled_id``: the id the classifier skips (``pooled_pad_id(config)``); ``max_length``: the
    reference's padded length (the template's ``max_length``)."""

    def __init__(self, mode: str, fill_id: int | None = None, pooled_id: int = 0, max_length: int = 228):
        if mode not in MODES:
            raise ValueError(f"pooling must be one of {MODES} (or auto), got {mode!r}")
        if mode.startswith("reference") and fill_id is None:
            raise ValueError("reference pooling needs the tokenizer's pad (or EOS) token id")
        self.mode, self.fill_id, self.pooled_id, self.max_length = mode, fill_id, pooled_id, max_length

    def __call__(self, model, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """(B,) scores for (B, W) right-padded ids and mask."""
        if self.mode == "model":
            out = model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.logits.squeeze(-1).float()
        if self.mode == "last":
            return head_scores(model, input_ids, attention_mask, None, attention_mask.sum(dim=1) - 1)
        view = reference_view if self.mode == "reference" else padded_view
        return head_scores(model, *view(input_ids, attention_mask, self.fill_id, self.pooled_id, self.max_length))

    def describe(self) -> dict:
        return {"mode": self.mode, "fill_id": self.fill_id, "pooled_id": self.pooled_id, "max_length": self.max_length}


def auto_mode(model) -> str:
    """Decoder classifiers (a ``score`` head) → ``reference``; encoders → ``model``."""
    return "reference" if hasattr(model, "score") else "model"
