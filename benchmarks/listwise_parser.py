"""Listwise parser time on 10 MB model outputs of degenerate shapes (a model that loops until
``max_new_tokens``): every shape must parse in well under a second.

    python benchmarks/listwise_parser.py              # 10 MB each
    python benchmarks/listwise_parser.py --mb 1

Prints CPU seconds per shape (``time.process_time``: on a shared machine wall time also counts
other people's jobs), with the final-ranking marker asked for and without, and the wall time of all.
"""

from __future__ import annotations

import argparse
import time

from _common import table

from dear.listwise.parsing import parse_ranking

MARKER = "### Final Reranking:"


def shapes(size: int) -> dict[str, str]:
    """Shape name → text of about ``size`` characters."""
    return {
        "spaces after '[2]'": f"{MARKER} [2]" + " " * size + "x",
        "newlines after '[2] >'": f"{MARKER} [2] >" + "\n" * size + "x",
        "spaces after the marker": MARKER + " " * size + "x",
        "'[' repeated": "[" * size,
        "'[1' repeated": "[1" * (size // 2),
        "'1 > ' repeated": "1 > " * (size // 4) + "]",
        "'[1] > ' repeated": "[1] > " * (size // 6),
        "numbered list": MARKER + "\n" + "1. [1]\n" * (size // 7),
        "marker phrase repeated": "final reranking " * (size // 16),
        "'#' repeated": "#" * size + " Final Reranking: [2] > [1]",
        "'<think>' repeated": "<think>" * (size // 7),
        "digits": "1" * size,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--mb", type=float, default=10.0, help="size of each output in MB (10**6 characters)"
    )
    args = p.parse_args()
    rows, wall = [], time.perf_counter()
    for name, text in shapes(int(args.mb * 1_000_000)).items():
        row = [name]
        for marker in (MARKER, None):
            start = time.process_time()
            parse_ranking(text, 20, marker=marker)
            row.append(f"{time.process_time() - start:.3f}")
        rows.append(row)
    print(table(rows, ("shape", "CPU s (marker)", "CPU s (no marker)")))
    print(f"wall time, all {2 * len(rows)} parses: {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
