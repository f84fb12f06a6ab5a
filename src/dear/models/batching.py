"""Length-sorted dynamic batching: no fixed pad-to-max, few pad tokens, bounded memory."""

from __future__ import annotations

import torch


def length_batches(lengths: list[int], max_items: int, max_tokens: int) -> list[list[int]]:
    """Indices in batches of similar length within ``max_items`` and ``max_tokens``, longest first (OOM at once)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, current = [], []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and (len(current) + 1 > max_items or (len(current) + 1) * longest > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad(
    sequences: list[list[int]], pad_id: int, width: int | None = None, left: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the longest (or ``width``), right or ``left`` (for generation) → (ids, attention_mask), (B, L) int64."""
    width = max(len(s) for s in sequences) if width is None else width
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask
