"""What a fork costs: the seed's network trained alone, and forked (A and B in lockstep in one trainer, the same
batches), side by side. A forked step trains two networks, so the pair's steps/s is at best half a single run's;
the target is 0.45 or more (issue 9).

    python bench/fork_speed.py                       # 5 interleaved pairs of 300 steps (about 4 minutes on 2 cores)
    python bench/fork_speed.py --pairs 1 --steps 60  # a quick check that it runs

Both runs are vgtui's headless engine (vgtui.engine.trainer.Trainer) at its defaults: 784-1000x5-10 sigmoid, SGD lr
0.01 momentum 0.9, batch 100, mnist-5k on the device, the automatic probe cadence, no metrics file. The fork is made
at step 1 (`Fork(True)`, then B's activation set to ReLU, as a person comparing remedies would), and steps/s are
timed from step 20 to the end, so start-up and the fork's copy do not count. Pairs alternate which run goes first;
the verdict is on the median of the pairs' ratios (forked / single).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from vgtui.core.config import RunConfig
from vgtui.core.records import Fork, SetActivation
from vgtui.engine.data import load_mnist5k
from vgtui.engine.trainer import Trainer

TARGET = 0.45
WARM = 20  # steps before the clock starts


def steps_per_s(cfg: RunConfig, data, fork: bool) -> float:
    marks: dict[int, float] = {}

    def on_step(t: Trainer) -> None:
        if fork and t.step == 1:
            t.send(Fork(True))
            t.send(SetActivation("relu", branch="B"))
        if t.step in (WARM, cfg.max_steps):
            if t.device.type == "cuda":
                torch.cuda.synchronize()
            marks[t.step] = time.perf_counter()

    t = Trainer(cfg, data=data, on_step=on_step)
    t.run()
    assert (t.fork is None) and t.step == cfg.max_steps  # the fork ended with the run
    return (cfg.max_steps - WARM) / (marks[cfg.max_steps] - marks[WARM])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5, help="interleaved single/forked pairs (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=300, help="steps per run (default: %(default)s)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.steps <= WARM:
        ap.error(f"--steps must be more than {WARM}")

    cfg = RunConfig(dataset="mnist-5k", device=args.device, max_steps=args.steps, epochs=100)
    data = load_mnist5k(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; 784-{cfg.width}x"
          f"{cfg.depth}-10 {cfg.activation}, batch {cfg.batch_size}, {data.name}; {args.steps} steps a run, timed from "
          f"step {WARM}", flush=True)
    steps_per_s(cfg.replace(max_steps=WARM + 5), data, True)  # warm-up: allocator, kernels, the probes' first use
    rows = []
    for i in range(args.pairs):
        if i % 2 == 0:
            single, forked = steps_per_s(cfg, data, False), steps_per_s(cfg, data, True)
        else:
            forked, single = steps_per_s(cfg, data, True), steps_per_s(cfg, data, False)
        rows.append((single, forked, forked / single))
        print(f"  pair {i + 1}/{args.pairs}: single {single:6.2f} steps/s   forked (A+B) {forked:6.2f} steps/s   "
              f"ratio {forked / single:.3f}", flush=True)
    print()
    print("| pair | single run (steps/s) | forked, A and B in lockstep (steps/s) | forked / single |")
    print("|---|---|---|---|")
    for i, (s, f, r) in enumerate(rows, 1):
        print(f"| {i} | {s:.2f} | {f:.2f} | {r:.3f} |")
    med = statistics.median(r[2] for r in rows)
    print(f"| median | {statistics.median(r[0] for r in rows):.2f} | {statistics.median(r[1] for r in rows):.2f} | "
          f"{med:.3f} |")
    print()
    verdict = "meets the target" if med >= TARGET else "MISSES the target"
    print(f"median ratio {med:.3f} over {len(rows)} pairs (two networks a step: 0.5 would be free); {verdict} "
          f"(>= {TARGET})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
