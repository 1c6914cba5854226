"""What a long metrics file costs: its size, and how fast a viewer opens it (index, then parse what it shows first).

    python bench/metrics_file.py                       # records 200 steps of the seed's network, makes 10,000 snapshots
    python bench/metrics_file.py --from run.jsonl      # repeats a recorded run (--probe-every 1) instead
    python bench/metrics_file.py --file long.jsonl     # measures a file as it is

The file is made by scripts/make_long_run.py (a real run of the 784-1000x5-10 sigmoid network on mnist-5k, its
snapshots repeated with new step numbers). Prints one table; times are the median of --repeat runs, with the file
in the page cache (as right after copying it home):
- index: MetricsIndex(file), which reads each line's first bytes and parses no snapshot;
- first screen: index + the header + the last snapshot parsed (what a viewer shows first); target < 1 s;
- one snapshot: parsing one snapshot line (median over 200 of them);
- full parse: read_metrics(file), every record parsed (what a viewer does not wait for).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from vgtui.core.metrics import MetricsIndex, read_metrics  # noqa: E402


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def first_screen(path: Path) -> None:
    with MetricsIndex(path) as index:
        run = index.runs[-1]
        run.header, run.snapshot(-1)


def one_snapshot_s(path: Path) -> float:
    with MetricsIndex(path) as index:
        run = index.runs[-1]
        picks = range(0, run.n_snapshots, max(run.n_snapshots // 200, 1))
        times = []
        for i in picks:
            t = time.perf_counter()
            run.snapshot(i)
            times.append(time.perf_counter() - t)
        return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--file", type=Path, help="measure this metrics file (default: make one)")
    p.add_argument("--from", dest="source", metavar="FILE", help="make the file from this recorded run")
    p.add_argument("--snapshots", type=int, default=10_000, help="snapshots in the file made (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=5, help="runs per timing (default: %(default)s)")
    args = p.parse_args(argv)
    if args.file:
        return measure(args.file, args.repeat)
    import make_long_run

    source = make_long_run.read_run(args.source) if args.source else make_long_run.record_seed_run()
    with tempfile.TemporaryDirectory(prefix="vgtui-bench-") as tmp:
        path = Path(tmp) / "long.jsonl"
        make_long_run.write(make_long_run.long_run(source, args.snapshots), path)
        return measure(path, args.repeat)


def measure(path: Path, repeat: int) -> int:
    size = os.path.getsize(path)
    with MetricsIndex(path) as index:
        n = sum(r.n_snapshots for r in index.runs)
    rows = [
        ("snapshots", f"{n:,}"),
        ("file size", f"{size / 1e6:.1f} MB"),
        ("bytes per snapshot", f"{size / max(n, 1):,.0f}"),
        ("index", f"{median_time(lambda: MetricsIndex(path).close(), repeat) * 1e3:.0f} ms"),
        ("first screen (index + header + last snapshot)", f"{median_time(lambda: first_screen(path), repeat) * 1e3:.0f} ms"),
        ("one snapshot", f"{one_snapshot_s(path) * 1e3:.2f} ms"),
        ("full parse (read_metrics)", f"{median_time(lambda: read_metrics(path), repeat):.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
