"""What a fork costs: the seed's network trained alone, and forked into k = 2, 3, 4 branches (A and up to three
more in lockstep in one trainer, the same batches), interleaved. A fork of k trains k networks a step, so its steps/s
is at best 1/k of a single run's; the target is 0.9/k or more (issue 17; issue 9's was 0.45 for k = 2).

    python bench/fork_speed.py                          # 5 rounds of 300 steps a run (about 12 minutes on 2 cores)
    python bench/fork_speed.py --rounds 1 --steps 60    # a quick check that it runs
    python bench/fork_speed.py --ks 2                   # issue 9's pair only
    python bench/fork_speed.py --threads 1              # one CPU thread (a machine busy with other work)

Every run is vgtui's headless engine (vgtui.engine.trainer.Trainer) at its defaults: 784-1000x5-10 sigmoid, SGD lr
0.01 momentum 0.9, batch 100, mnist-5k on the device, the automatic probe cadence, no metrics file. The fork is made
at step 1, one branch at a time, each with its own change as a person comparing remedies would, with changes that
cost what the plain network costs (batch norm and skip connections add their own arithmetic, which is not the
fork's): B = `Fork(True)` then ReLU (`SetActivation`), C = `Fork(True, config=xavier init)` (fresh weights from the
run's seed), D = `Fork(True, config=tanh)`. Steps/s are timed from step 20 to the end, so start-up and the forks'
copies do not count. A round runs the single run and each k once, in an order that rotates from round to round; the
verdict is on the median over rounds of each k's ratio (forked k / that round's single run).
The load average is printed before and after: on a machine shared with other work the figures move with it; the
table's last line gives the same ratios by this process's own CPU time (steps per CPU second), which a busy machine
moves much less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from vgtui.core.config import RunConfig
from vgtui.core.records import Fork, SetActivation
from vgtui.engine.data import load_mnist5k
from vgtui.engine.trainer import Trainer

from pairs import cpu_name  # bench/pairs.py: python runs this file with bench/ first on its path

WARM = 20  # steps before the clock starts


def target(k: int) -> float:
    return 0.9 / k


def fork_commands(cfg: RunConfig, k: int) -> list:
    """The commands that fork a run into k branches (k - 1 beside A), each with its own change."""
    cmds = [Fork(True), SetActivation("relu", branch="B"), Fork(True, config=cfg.replace(init="xavier").to_dict()),
            Fork(True, config=cfg.replace(activation="tanh").to_dict())]
    return cmds[:{1: 0, 2: 2, 3: 3, 4: 4}[k]]


def steps_per_s(cfg: RunConfig, data, k: int) -> tuple[float, float]:
    """(steps per second of the wall clock, steps per second of this process's CPU time)."""
    marks: dict[int, tuple[float, float]] = {}

    def on_step(t: Trainer) -> None:
        if t.step == 1:
            for cmd in fork_commands(cfg, k):
                t.send(cmd)
        if t.step == 2:
            assert len(t.branches) == k, f"forked into {len(t.branches)}, not {k}"
        if t.step in (WARM, cfg.max_steps):
            if t.device.type == "cuda":
                torch.cuda.synchronize()
            marks[t.step] = (time.perf_counter(), time.process_time())

    t = Trainer(cfg, data=data, on_step=on_step)
    t.run()
    assert (t.fork is None) and t.step == cfg.max_steps  # the fork ended with the run
    n = cfg.max_steps - WARM
    return n / (marks[cfg.max_steps][0] - marks[WARM][0]), n / (marks[cfg.max_steps][1] - marks[WARM][1])


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", "--pairs", type=int, default=5,
                    help="interleaved rounds, each the single run and every k once (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=300, help="steps per run (default: %(default)s)")
    ap.add_argument("--ks", default="2,3,4", help="the fork sizes, branches A included (default: %(default)s)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch's CPU threads (default: torch's own; 1 keeps a loaded machine from thrashing)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps <= WARM:
        ap.error(f"--steps must be more than {WARM}")
    try:
        ks = sorted({int(k) for k in args.ks.split(",")})
    except ValueError:
        ap.error(f"--ks: whole numbers from 2 to 4, got {args.ks!r}")
    if not all(2 <= k <= 4 for k in ks):
        ap.error(f"--ks: whole numbers from 2 to 4, got {args.ks!r}")

    cfg = RunConfig(dataset="mnist-5k", device=args.device, max_steps=args.steps, epochs=100)
    data = load_mnist5k(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; 784-{cfg.width}x"
          f"{cfg.depth}-10 {cfg.activation}, batch {cfg.batch_size}, {data.name}; {args.steps} steps a run, timed from "
          f"step {WARM}; forks of k = {', '.join(map(str, ks))}", flush=True)
    print(f"cpu: {cpu_name()}", flush=True)
    print(f"before: {load()}", flush=True)
    steps_per_s(cfg.replace(max_steps=WARM + 5), data, max(ks))  # warm-up: allocator, kernels, the probes' first use
    order = [1, *ks]
    rows, cpu_rows = [], []  # per round: {k: steps/s}, of the wall clock and of the CPU time
    for i in range(args.rounds):
        rot = order[i % len(order):] + order[:i % len(order)]
        both = {k: steps_per_s(cfg, data, k) for k in rot}
        row = {k: v[0] for k, v in both.items()}
        rows.append(row)
        cpu_rows.append({k: v[1] for k, v in both.items()})
        print(f"  round {i + 1}/{args.rounds} (order {', '.join(map(str, rot))}): single {row[1]:6.2f} steps/s   " +
              "   ".join(f"k={k} {row[k]:6.2f} ({row[k] / row[1]:.3f})" for k in ks), flush=True)
    print(f"after: {load()}")
    print()
    print("| round | single run (steps/s) | " + " | ".join(f"k = {k} (steps/s, / single)" for k in ks) + " |")
    print("|---" * (2 + len(ks)) + "|")
    for i, row in enumerate(rows, 1):
        print(f"| {i} | {row[1]:.2f} | " + " | ".join(f"{row[k]:.2f} ({row[k] / row[1]:.3f})" for k in ks) + " |")
    meds = {k: statistics.median(row[k] / row[1] for row in rows) for k in ks}
    print(f"| median | {statistics.median(row[1] for row in rows):.2f} | " +
          " | ".join(f"{statistics.median(row[k] for row in rows):.2f} ({meds[k]:.3f})" for k in ks) + " |")
    cpu_meds = {k: statistics.median(row[k] / row[1] for row in cpu_rows) for k in ks}
    print("| CPU time: median | " + f"{statistics.median(row[1] for row in cpu_rows):.2f} | " +
          " | ".join(f"{statistics.median(row[k] for row in cpu_rows):.2f} ({cpu_meds[k]:.3f})" for k in ks) + " |")
    print()
    print("(CPU time: steps per second of this process's own CPU time, what the steps cost whatever share of the "
          "CPUs it got: on a machine busy with other work, the steadier figure)")
    for k in ks:
        meets = meds[k] >= target(k)
        print(f"k = {k}: median ratio {meds[k]:.3f} over {len(rows)} rounds ({k} networks a step: {1 / k:.3f} would be "
              f"free); {'meets' if meets else 'MISSES'} the target (>= 0.9/{k} = {target(k):.3f}); by CPU time "
              f"{cpu_meds[k]:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
