"""The table every interleaved-pairs benchmark prints (bench/overhead.py, bench/watch_overhead.py): one row per pair,
(a steps/s, b steps/s, b / a), then the medians of each column; and the CPU every benchmark names in its first lines
(the same code gives other ratios on another CPU: docs/benchmarks.md)."""

from __future__ import annotations

import os
import platform
import statistics
from typing import Sequence


def cpu_name() -> str:
    """This machine's CPU: its model name, its family and model numbers (a virtual machine often shows a generic
    name), its logical CPUs and its L2 cache a core, read from /proc and /sys on Linux (the name alone elsewhere)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first CPU's block is enough
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if info.get("cpu family") and info.get("model"):
        name += f" (family {info['cpu family']} model {info['model']})"
    l2 = ""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index2/level") as f, \
                open("/sys/devices/system/cpu/cpu0/cache/index2/size") as g:
            l2 = f", L2 {g.read().strip()} a core" if f.read().strip() == "2" else ""
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs{l2}"


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
