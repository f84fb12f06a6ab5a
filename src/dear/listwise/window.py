"""Sliding-window spans over the top-k, back to front, always ending on the top ranks."""

from __future__ import annotations


def window_spans(k: int, size: int = 20, step: int = 10) -> list[tuple[int, int]]:
    """``[start, end)`` spans (0-based) in processing order: the first ends at ``k``, each next moves ``step`` up.

    Unlike the RankGPT-era loop, which can skip the top, the last window is clamped to ``[0, min(size, k))``:

        window_spans(25, 20, 10) == [(5, 25), (0, 20)]
    """
    if size < 2:
        raise ValueError(f"window size must be at least 2, got {size}")
    if not 0 < step <= size:
        raise ValueError(
            f"window step must satisfy 0 < step <= size (size {size}), got {step}: "
            "a larger step leaves ranks that no window compares"
        )
    if k < 2:
        return []
    start = max(0, k - size)
    spans = [(start, k)]
    while start > 0:
        start = max(0, start - step)
        spans.append((start, min(k, start + size)))
    return spans
