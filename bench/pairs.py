"""The table every interleaved-pairs benchmark prints (bench/overhead.py, bench/watch_overhead.py): one row per pair,
(a steps/s, b steps/s, b / a), then the medians of each column."""

from __future__ import annotations

import statistics
from typing import Sequence


def print_pairs(header: Sequence[str], rows: Sequence[Sequence[float]]) -> float:
    """Print the markdown table of `rows` ((a, b, b / a, ...): the first three columns shown) under `header` (the
    four column titles, the first one naming a row) and its median row; returns the median ratio."""
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for i, (a, b, r, *_) in enumerate(rows, 1):
        print(f"| {i} | {a:.2f} | {b:.2f} | {r:.3f} |")
    med = [statistics.median(r[c] for r in rows) for c in range(3)]
    print(f"| median | {med[0]:.2f} | {med[1]:.2f} | {med[2]:.3f} |")
    return med[2]
