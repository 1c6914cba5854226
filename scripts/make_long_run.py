"""Make a long metrics file of the seed's network from a real recorded run: its snapshots repeated with new step
numbers (epochs, epoch records and elapsed times that keep increasing), ending with an end record. For measuring
the file's size and how fast a viewer opens it, without training for hours.

    python scripts/make_long_run.py OUT.jsonl                        # records 200 steps first (about a minute on a CPU)
    python scripts/make_long_run.py OUT.jsonl --from run.jsonl       # repeats a run recorded with --probe-every 1
    python scripts/make_long_run.py OUT.jsonl --snapshots 10000 --record-steps 200

The recorded run is the default 784-1000x5-10 sigmoid network on the embedded mnist-5k digits, a snapshot every
step. The file is written as vgtui writes schema 2 (vgtui.core.records.RecordEncoder): edges in the header.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vgtui.core.records import (SCHEMA_VERSION, EndRecord, EpochRecord, Record, RecordEncoder,  # noqa: E402
                                RunRecord, Snapshot)


def record_seed_run(steps: int = 200, device: str = "auto") -> list[Record]:
    """The records of a real run of the seed's network on mnist-5k, a snapshot every step."""
    from vgtui.core.config import RunConfig
    from vgtui.engine.trainer import Trainer

    records: list[Record] = []
    cfg = RunConfig(dataset="mnist-5k", max_steps=steps, epochs=10_000, probe_every=1, device=device)
    Trainer(cfg, [records.append]).run()
    return records


def read_run(path: str | os.PathLike) -> list[Record]:
    """The records of the first run of a metrics file (any schema)."""
    from vgtui.core.metrics import MetricsIndex

    with MetricsIndex(path) as index:
        run = index.runs[0]
        return [run.header, *run.iter_snapshots(), *run.epochs]


def long_run(source: list[Record], n_snapshots: int) -> list[Record]:
    """`n_snapshots` snapshots from the source's, in cycles: each cycle continues the steps, epochs and elapsed
    time where the previous one ended; an epoch record (the source's, cycled) closes each epoch."""
    header = next(r for r in source if isinstance(r, RunRecord))
    snaps = [r for r in source if isinstance(r, Snapshot)]
    epochs = [r for r in source if isinstance(r, EpochRecord)] or None
    if not snaps:
        raise SystemExit("make_long_run: the source run has no snapshot")
    stride = snaps[1].step - snaps[0].step if len(snaps) > 1 else 1  # the source's probe cadence
    spe = header.steps_per_epoch or 40
    cycle_s = snaps[-1].elapsed_s + (snaps[-1].elapsed_s - snaps[0].elapsed_s) / max(len(snaps) - 1, 1)
    last_step = n_snapshots * stride
    if header.grad_edges is None:  # a schema-1 run: its edges are in its snapshots
        hists = [(l.activation, l.grad_hist, l.act_hist) for s in snaps for l in s.layers]
        header = dataclasses.replace(header, grad_edges=next(g.edges for _, g, _ in hists if g is not None),
                                     act_edges={a: h.edges for a, _, h in hists if h is not None})
    out: list[Record] = [dataclasses.replace(header, total_steps=last_step, probe_every=stride, schema=SCHEMA_VERSION,
                                             notice="made by scripts/make_long_run.py: a real run's snapshots "
                                                    "repeated")]
    elapsed = 0.0
    for i in range(n_snapshots):
        cycle, src = divmod(i, len(snaps))
        step, elapsed = (i + 1) * stride, snaps[src].elapsed_s + cycle * cycle_s
        epoch = (step - 1) // spe + 1
        out.append(dataclasses.replace(snaps[src], step=step, epoch=epoch, elapsed_s=elapsed))
        if epochs and (step % spe == 0 or i == n_snapshots - 1):
            e = epochs[(epoch - 1) % len(epochs)]
            out.append(dataclasses.replace(e, epoch=epoch, step=step, elapsed_s=elapsed))
    out.append(EndRecord("completed", last_step, elapsed, f"{last_step} steps, {(last_step - 1) // spe + 1} epochs"))
    return out


def write(records: list[Record], path: str | os.PathLike) -> int:
    """Write the records as vgtui writes a metrics file; returns its size in bytes."""
    enc = RecordEncoder()
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(enc.line(rec))
    return os.path.getsize(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="the metrics file to write")
    p.add_argument("--from", dest="source", metavar="FILE", help="repeat this recorded run (default: record one)")
    p.add_argument("--snapshots", type=int, default=10_000, help="snapshots in the file (default: %(default)s)")
    p.add_argument("--record-steps", type=int, default=200,
                   help="steps of the run recorded when there is no --from (default: %(default)s)")
    p.add_argument("--device", default="auto", help="device for the recorded run (default: %(default)s)")
    args = p.parse_args(argv)
    t = time.perf_counter()
    source = read_run(args.source) if args.source else record_seed_run(args.record_steps, args.device)
    size = write(long_run(source, args.snapshots), args.out)
    print(f"{args.out}: {args.snapshots:,} snapshots, {size / 1e6:.1f} MB ({size / args.snapshots:,.0f} bytes a "
          f"snapshot), made in {time.perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
