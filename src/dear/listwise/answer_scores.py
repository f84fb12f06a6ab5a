"""Candidate answers' log-probabilities after one prompt: the prompt and the answers' common token prefix are one
causal pass, the rest of each answer one pass over that pass's cache. Shared by ``scoring=first_id``
(``TransformersBackend.score_answers``, under ``inference_mode``) and the FIRST ranking loss of listwise SFT
(``ListwiseSFTModule``, with gradients).

With SmolLM2's tokenizer the answers ``### Final Reranking: [3]`` and ``… [13]`` share ``### Final Reranking: [``
and differ in ``3 ]`` / ``1 3 ]``: the ids are not single tokens, so an id's score is the sum over its tokens, and
the tokens after the first need a pass of their own.
"""

from __future__ import annotations

import torch


def split_answers(encoded: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """→ (the tokens every answer starts with, short of each one's last; each answer's remaining tokens)."""
    if not encoded or not all(encoded):
        raise ValueError("answers to score must be non-empty token sequences")
    shared = 0
    while shared < min(map(len, encoded)) - 1 and all(
        e[shared] == encoded[0][shared] for e in encoded
    ):
        shared += 1
    return encoded[0][:shared], [e[shared:] for e in encoded]


# attention implementations that honour a custom 4D mask (flash-attention kernels take padding masks only)
TREE_ATTENTION = ("sdpa", "eager")


def tail_logprobs(
    model,
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    next_logprobs: torch.Tensor,
    tails: list[list[int]],
    pad_id: int,
    batch_size: int | None = None,
) -> torch.Tensor:
    """(len(tails),) float32: each tail's log-probability after a prefix whose per-layer (key, value) cache
    (batch 1, exactly the prefix's positions) is ``layers`` and whose next-token log-probabilities are
    ``next_logprobs`` (V,). A tail's first token is read from ``next_logprobs``; its others from one more pass over
    the cache. Under sdpa or eager attention that pass is **one row**: every tail's tokens but its last, side by
    side, each at its own positions after the prefix and seeing the prefix and its own earlier tokens only (a 4D
    tree mask), so the cache is read once, never copied per tail. Otherwise, rows of up to ``batch_size`` tails
    (all at once if None) over the cache expanded to them, each right-padded (causal: padding after a token never
    reaches it). Differentiable where the inputs are."""
    scores = [next_logprobs[t[0]] for t in tails]
    longer = [r for r, t in enumerate(tails) if len(t) > 1]
    if not longer:
        return torch.stack([s.float() for s in scores])
    if getattr(model.config, "_attn_implementation", None) in TREE_ATTENTION:
        rows = [longer]
        passes = [_tree_pass(model, layers, [tails[r] for r in longer])]
    else:
        step = batch_size or len(longer)
        rows = [longer[i : i + step] for i in range(0, len(longer), step)]
        passes = [_batched_pass(model, layers, [tails[r] for r in chunk], pad_id) for chunk in rows]
    for chunk, following in zip(rows, passes):
        for r, logprobs in zip(chunk, following):
            scores[r] = scores[r] + logprobs
    return torch.stack([s.float() for s in scores])


def _cache(model, layers, rows: int = 1):
    from transformers import DynamicCache

    return DynamicCache(
        [tuple(x.expand(rows, -1, -1, -1) if rows > 1 else x for x in layer) for layer in layers],
        config=model.config,
    )


def _tree_pass(model, layers, tails: list[list[int]]) -> list[torch.Tensor]:
    """One row holding every tail but its last token; → per tail, the sum of its later tokens' log-probabilities."""
    device = layers[0][0].device
    prefix = layers[0][0].size(-2)
    tokens, positions, owners = [], [], []
    for r, tail in enumerate(tails):
        tokens += tail[:-1]
        positions += range(prefix, prefix + len(tail) - 1)
        owners += [r] * (len(tail) - 1)
    n = len(tokens)
    owner = torch.tensor(owners, device=device)
    mine = (owner[:, None] == owner[None, :]) & torch.ones(
        n, n, device=device, dtype=torch.bool
    ).tril()
    seen = torch.cat([torch.ones(n, prefix, device=device, dtype=torch.bool), mine], dim=1)
    # additive (0 / the dtype's minimum), as eager attention adds it; sdpa takes it as well
    dtype = layers[0][0].dtype
    mask = torch.zeros(seen.shape, device=device, dtype=dtype).masked_fill(
        ~seen, torch.finfo(dtype).min
    )
    logprobs = (
        model(
            input_ids=torch.tensor([tokens], device=device),
            attention_mask=mask[None, None],
            position_ids=torch.tensor([positions], device=device),
            past_key_values=_cache(model, layers),
            use_cache=True,
        )
        .logits[0]
        .float()
        .log_softmax(-1)
    )
    out, start = [], 0
    for tail in tails:
        out.append(_later_tokens(logprobs[start:], tail))
        start += len(tail) - 1
    return out


def _batched_pass(model, layers, tails: list[list[int]], pad_id: int) -> list[torch.Tensor]:
    """One row per tail over the cache expanded to them; → per tail, its later tokens' log-probabilities summed."""
    device = layers[0][0].device
    width = max(len(t) for t in tails) - 1
    ids = torch.tensor([t[:-1] + [pad_id] * (width + 1 - len(t)) for t in tails], device=device)
    logprobs = (
        model(input_ids=ids, past_key_values=_cache(model, layers, len(tails)), use_cache=True)
        .logits.float()
        .log_softmax(-1)
    )
    return [_later_tokens(logprobs[b], tail) for b, tail in enumerate(tails)]


def _later_tokens(logprobs: torch.Tensor, tail: list[int]) -> torch.Tensor:
    """The sum of ``tail``'s tokens after its first, read from ``logprobs`` rows (T, V) whose row j predicts token
    j + 1 of the tail."""
    following = torch.tensor(tail[1:], device=logprobs.device)
    return logprobs[: len(following)].gather(-1, following[:, None]).sum()
