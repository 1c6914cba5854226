"""`vgtui export FILE --csv OUT.csv`: a run's snapshots as CSV, one row per snapshot and layer, for pandas & co.

    rows = write_csv(run_index_or_path, "run.csv")     # what the UI's `e` key calls

Imports neither torch nor textual: it runs wherever the file was copied to.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

from vgtui.core.metrics import MetricsFileError, MetricsIndex, RunIndex
from vgtui.core.records import LayerStats

SNAPSHOT_COLUMNS = ("step", "epoch", "elapsed_s", "loss", "loss_avg", "steps_per_s", "activation")
LAYER_COLUMNS = ("layer", "layer_activation", *LayerStats._FLOATS)
COLUMNS = SNAPSHOT_COLUMNS + LAYER_COLUMNS

DESCRIPTION = """\
Write the snapshots of a run in a metrics file as CSV: one row per snapshot and layer, one column per number.
Columns: step, epoch, elapsed_s, loss, loss_avg, steps_per_s, activation (the network's at that step), layer,
layer_activation (that layer's; empty for none), then the layer's probes: grad_norm, grad_mean_abs, weight_norm,
grad_data_ratio, update_data_ratio, out_grad_norm, act_mean, act_std, saturated_frac, dead_frac, pre_p15,
pre_p50, pre_p85 (empty where a layer has none). Non-finite values are written nan, inf, -inf. The histograms are not exported."""

EPILOG = """\
examples:
  vgtui export run.jsonl --csv run.csv            the last run of the file
  vgtui export run.jsonl --csv first.csv --run 1  its first run (the UI's restarts start new runs)

then, in Python:  df = pd.read_csv("run.csv")
exit status: 0 written, 2 a bad metrics file, output path or option."""


def _cell(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def write_csv(source: RunIndex | str | os.PathLike, out_path: str | os.PathLike, run: int = -1,
              progress: Callable[[int, int], None] | None = None) -> int:
    """Write the CSV of a run (a RunIndex, or run number `run` of the file at a path: 0-based, negative from the
    end); returns the rows written. The file appears whole or not at all (written beside it, then renamed).
    `progress(done, total)` is called every 500 snapshots. Raises MetricsFileError, IndexError or OSError."""
    if not isinstance(source, RunIndex):
        with MetricsIndex(source) as index:
            return write_csv(index.runs[run], out_path, progress=progress)
    out = Path(out_path)
    part = out.with_name(f".{out.name}.part")
    rows, total = 0, source.n_snapshots
    try:
        with open(part, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for i, snap in enumerate(source.iter_snapshots(0, total)):
                head = [snap.step, snap.epoch, snap.elapsed_s, snap.loss, snap.loss_avg, snap.steps_per_s,
                        snap.activation]
                for layer in snap.layers:
                    w.writerow([_cell(v) for v in (*head, layer.name, layer.activation,
                                                   *(getattr(layer, k) for k in LayerStats._FLOATS))])
                    rows += 1
                if progress and (i + 1) % 500 == 0:
                    progress(i + 1, total)
        os.replace(part, out)
    finally:
        if part.exists():
            part.unlink()
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vgtui export", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="a metrics file (written by `vgtui --metrics FILE`)")
    p.add_argument("--csv", required=True, metavar="OUT.csv", help="the CSV file to write (replaced if it exists)")
    p.add_argument("--run", type=int, default=None, metavar="N",
                   help="which run of the file, from 1 (default: the last)")
    p.add_argument("--branch", choices=["A", "B"], default="A",
                   help="of a run forked in the UI (f): the run itself (A, default) or its fork (B; the last one "
                        "if it was forked more than once)")
    return p


def _check_out(out: Path, src: Path) -> str | None:
    """Why the CSV cannot be written at `out`, or None."""
    if out.is_dir():
        return f"--csv {out}: is a directory"
    if not out.parent.is_dir():
        return f"--csv {out}: folder {out.parent} does not exist"
    if out.exists() and src.exists() and out.samefile(src):
        return f"--csv {out}: is the metrics file itself"
    return None


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out, src = Path(args.csv).expanduser(), Path(args.file).expanduser()

    def fail(msg: str) -> int:
        print(f"vgtui: error: {msg}", file=sys.stderr)
        return 2

    if (why := _check_out(out, src)) is not None:
        return fail(why)
    try:
        index = MetricsIndex(src)
    except MetricsFileError as e:
        return fail(str(e))
    with index:
        n = len(index.runs)
        if args.run is not None and not 1 <= args.run <= n:
            return fail(f"--run {args.run}: {src} holds {n} run{'s' * (n != 1)} (1..{n})")
        number = args.run or n
        run = index.runs[number - 1]
        if n > 1 and args.run is None:
            print(f"vgtui export: {src} holds {n} runs; exporting run {n}, the last (--run N for another)",
                  file=sys.stderr)
        if args.branch == "B":
            if not run.branches:
                return fail(f"--branch B: run {number} of {src} was never forked (f in the UI forks a run)")
            run = run.branches[-1]
        elif run.branches:
            print(f"vgtui export: run {number} was forked at step {run.branches[-1].header.forked_at or 0:,}; "
                  "exporting the run itself (--branch B for its fork)", file=sys.stderr)
        if index.notice:
            print(f"vgtui export: {src}: {index.notice}", file=sys.stderr)
        live = sys.stderr.isatty()
        t0 = time.perf_counter()

        def progress(done: int, total: int) -> None:
            if live:
                print(f"\rvgtui export: {done:,} / {total:,} snapshots", end="", file=sys.stderr, flush=True)

        try:
            rows = write_csv(run, out, progress=progress)
        except MetricsFileError as e:
            return fail(str(e))
        except OSError as e:
            return fail(f"--csv {out}: cannot write it ({e.strerror or e})")
    if live and run.n_snapshots >= 500:
        print("\r\033[K", end="", file=sys.stderr)
    layers = len(run.header.layers)
    what = f"run {number}" + (" (its fork, branch B)" if args.branch == "B" else "")
    print(f"vgtui export: {rows:,} rows ({run.n_snapshots:,} snapshots x {layers} layers) of {what} -> {out} "
          f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
