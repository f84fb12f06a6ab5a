"""Which hidden state a one-logit classifier is scored from, made explicit (docs/fidelity.md).

``reference``: what the released DeAR-P models and the RankLLaMA teacher were trained on: pairs right-padded with the
pad token (EOS when none) to ``max_length`` = 32 + 196 = 228, mask 0 on padding, ``config.pad_token_id`` forced to 0
when unset, so HF pools **position 227, a padding EOS** attending to the real tokens. Computed exactly on n + 1
tokens: one appended masked pad token at position id 227 (the padding in between is masked as keys).
``reference_padded``: the literal padded computation (kept to prove equality). ``last``: the last real token.
``model``: the checkpoint's own head (encoders: [CLS]).
"""

from __future__ import annotations

import torch

MODES = ("reference", "reference_padded", "last", "model")


def pooled_pad_id(config) -> int:
    """The id the classifier skips when pooling: the checkpoint's ``pad_token_id``, else 0 (the reference forces 0)."""
    return 0 if config.pad_token_id is None else int(config.pad_token_id)


def reference_view(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    fill_id: int,
    pooled_id: int,
    max_length: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (B, W) pairs → (ids, mask, position_ids) (B, W + 1), pool_index (B,): a masked pad token appended
    at position ``max_length - 1`` and pooled, unless the padded view pools a real token (then pooled in place)."""
    B, W = input_ids.shape
    lengths = attention_mask.sum(dim=1)  # (B,)
    if int(lengths.max()) > max_length:
        raise ValueError(
            f"a pair has {int(lengths.max())} tokens, more than the reference's max_length {max_length}"
        )
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


def padded_view(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    fill_id: int,
    pooled_id: int,
    max_length: int,
) -> tuple[torch.Tensor, torch.Tensor, None, torch.Tensor]:
    """The literal reference batch: (B, max_length), no position ids, pooling the rightmost id not ``pooled_id``."""
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
    hidden = backbone(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
    ).last_hidden_state
    pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), pool_index]  # (B, H)
    return model.score(pooled).squeeze(-1).float()


class Pooling:
    """Scores right-padded pairs with a ``MODES`` mode; ``fill_id``: the reference's pad token (EOS when none);
    ``pooled_id``: ``pooled_pad_id(config)``; ``max_length``: the template's padded length."""

    def __init__(
        self, mode: str, fill_id: int | None = None, pooled_id: int = 0, max_length: int = 228
    ):
        if mode not in MODES:
            raise ValueError(f"pooling must be one of {MODES} (or auto), got {mode!r}")
        if mode.startswith("reference") and fill_id is None:
            raise ValueError("reference pooling needs the tokenizer's pad (or EOS) token id")
        self.mode, self.fill_id, self.pooled_id, self.max_length = (
            mode,
            fill_id,
            pooled_id,
            max_length,
        )

    def __call__(self, model, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """(B,) scores for (B, W) right-padded ids and mask."""
        if self.mode == "model":
            out = model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.logits.squeeze(-1).float()
        if self.mode == "last":
            return head_scores(
                model, input_ids, attention_mask, None, attention_mask.sum(dim=1) - 1
            )
        view = reference_view if self.mode == "reference" else padded_view
        return head_scores(
            model, *view(input_ids, attention_mask, self.fill_id, self.pooled_id, self.max_length)
        )

    def describe(self) -> dict:
        return {
            "mode": self.mode,
            "fill_id": self.fill_id,
            "pooled_id": self.pooled_id,
            "max_length": self.max_length,
        }


def auto_mode(model) -> str:
    """Decoder classifiers (a ``score`` head) → ``reference``; encoders → ``model``."""
    return "reference" if hasattr(model, "score") else "model"
