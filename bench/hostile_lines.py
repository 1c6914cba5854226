"""What a hostile line costs the reader: one huge line in a metrics file, and a line that keeps growing while it is
followed.

    python bench/hostile_lines.py make big.jsonl --mb 1024          # the sigmoid fixture with a 1 GB line inside
    /usr/bin/time -v python bench/hostile_lines.py index big.jsonl  # index it: time, and the peak RSS from time -v
    python bench/hostile_lines.py follow --mb 60                    # one line growing to 60 MiB, followed

`follow` starts a writer process that appends 1 MiB to one line every 100 ms (--every-ms), and follows the file in this process
(MetricsIndex.refresh() every 50 ms, as the viewer polls) until the line ends; it prints the follower's CPU time
and its peak RSS. `--module PATH` reads with another copy of vgtui/core/metrics.py (e.g. an older one, from
`git show REV:vgtui/core/metrics.py > old.py`) to compare.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURE = ROOT / "tests" / "ui" / "fixtures" / "sigmoid.jsonl"


def reader(module: str | None):
    if module is None:
        from vgtui.core import metrics

        return metrics
    spec = importlib.util.spec_from_file_location("metrics_under_test", module)
    m = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = m  # dataclasses look their module up
    spec.loader.exec_module(m)
    return m


def make(path: str, mb: int) -> None:
    lines = FIXTURE.read_bytes().splitlines(keepends=True)
    with open(path, "wb") as f:
        f.writelines(lines[:8])
        f.write(b'{"type":"event","step":40,"set":{"x":"')
        block = b"x" * (1 << 20)
        for _ in range(mb):
            f.write(block)
        f.write(b'"}}\n')
        f.writelines(lines[8:])


def index(path: str, module: str | None) -> None:
    m = reader(module)
    t = time.perf_counter()
    with m.MetricsIndex(path) as ix:
        n = ix.runs[0].n_snapshots
        notice = ix.notice
    print(f"indexed {os.path.getsize(path) / 1e6:,.0f} MB in {time.perf_counter() - t:.2f} s: {n} snapshots; "
          f"notice: {notice}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


WRITER = """
import sys, time
path, mb, every = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with open(path, "ab", buffering=0) as f:
    f.write(b'{"type":"event","step":40,"set":{"x":"')
    for _ in range(mb):
        f.write(b"x" * (1 << 20))
        time.sleep(every)
    f.write(b'"}}\\n')
"""


def follow(mb: int, module: str | None, every_s: float) -> None:
    m = reader(module)
    path = Path(f"/tmp/vgtui-bench-follow-{os.getpid()}.jsonl")
    lines = FIXTURE.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:8]))
    try:
        ix = m.MetricsIndex(path)
        c0, t0 = time.process_time(), time.perf_counter()
        w = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(mb), str(every_s)])
        refreshes = 0
        while w.poll() is None or refreshes == 0:
            ix.refresh()
            refreshes += 1
            time.sleep(0.05)
        ix.refresh()
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        print(f"followed a line growing to {mb} MiB for {wall:.1f} s ({refreshes} refreshes): follower CPU {cpu:.2f} s "
              f"({100 * cpu / wall:.0f}% of a core); notice: {ix.notice}")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
        ix.close()
    finally:
        path.unlink(missing_ok=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["make", "index", "follow"])
    p.add_argument("file", nargs="?")
    p.add_argument("--mb", type=int, default=1024, help="the line's size in MiB (make, follow)")
    p.add_argument("--every-ms", type=float, default=100, help="follow: the writer adds 1 MiB this often")
    p.add_argument("--module", help="another copy of vgtui/core/metrics.py to read with")
    a = p.parse_args()
    if a.what == "make":
        make(a.file, a.mb)
    elif a.what == "index":
        index(a.file, a.module)
    else:
        follow(a.mb, a.module, a.every_ms / 1000)


if __name__ == "__main__":
    main()
