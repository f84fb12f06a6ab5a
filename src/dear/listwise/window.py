"""Sliding-window spans over the top-k, back to front, always ending on the top ranks."""

from __future__ import annotations


def window_spans(k: int, size: int = 20, step: int = 10) -> list[tuple[int, int]]:
    """``[start, end)`` spans (0-based, end exclusive) in processing order.

    The first window ends at ``k``; each next one moves ``step`` ranks up; the last one is
    ``[0, min(size, k))``. The RankGPT-era loop stops once ``start`` would go below zero, so
    the top is skipped whenever k, size and step do not line up (k=25, size 20, step 10 reranks
    ranks 6–25 then stops); clamping the last window to start at 0 covers ranks 1–20 too:

        window_spans(25, 20, 10) == [(5, 25), (0, 20)]
        window_spans(100, 20, 10) == [(80, 100), (70, 90), ..., (0, 20)]   # 9 windows
    """
    if size < 2:
        raise ValueError(f"window size must be at least 2, got {size}")
    if not 0 < step <= size:
        raise ValueError(f"window step must satisfy 0 < step <= size (size {size}), got {step}: "
                         "a larger step leaves ranks that no window compares")
    if k < 2:
        return []
    start = max(0, k - size)
    spans = [(start, k)]
    while start > 0:
        start = max(0, start - step)
        spans.append((start, min(k, start + size)))
    return spans
