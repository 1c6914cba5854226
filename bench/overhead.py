"""What vgtui's probes cost: the headless engine against a bare PyTorch loop of the same network, side by side.

    python bench/overhead.py                  # 5 interleaved pairs of 200 steps, then a 5,000-step memory run
    python bench/overhead.py --pairs 3 --steps 120 --memory-steps 0
    python bench/overhead.py --device cuda --steps 5000   # on a GPU: longer runs, a step is well under 1 ms
    python bench/overhead.py --bare-only --steps 2000     # one bare-loop figure (steps/s), for bench/tui_cost.py
    python bench/overhead.py --flight --pairs 7           # the flight recorder's cost: the engine with it off / on

Both train the seed's network (784-1000x5-10 sigmoid, SGD lr 0.01 momentum 0.9, batch 100) on the embedded
mnist-5k digits held as tensors on the device, and both evaluate the test set at each epoch end (as
pytorch/examples' mnist does). The engine runs as `vgtui --headless` does: default probing, its reporter and a
metrics file. Runs are interleaved (bare, engine, engine, bare, bare, ...: each goes first in every other pair) so
that machine noise hits both; the table gives each pair's ratio and the median.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from vgtui.core.config import DEFAULT_PROBE_EVERY, PROBE_MIN_INTERVAL_S, RunConfig
from vgtui.engine.data import device_name, load_mnist5k, resolve_device
from vgtui.core.writer import MetricsWriter
from vgtui.engine.model import build_model, build_optimizer
from vgtui.engine.trainer import Trainer
from vgtui.commands.headless import Reporter

from pairs import cpu_name, print_pairs  # bench/pairs.py: python runs this file with bench/ first on its path


def sync(device: torch.device) -> None:
    """Wait for the device to finish its queued work (timing on a GPU is otherwise the launch time only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(cfg: RunConfig, data, steps: int) -> float:
    """A plain PyTorch loop of the same network: steps/s, evaluation at each epoch end included."""
    device = data.x_train.device
    model = build_model(cfg).to(device)
    opt = build_optimizer(cfg, model)
    gen = torch.Generator().manual_seed(cfg.seed)
    n, b = len(data.x_train), cfg.batch_size
    spe = n // b
    sync(device)
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=gen).to(device)
        model.train()
        for i in range(min(spe, steps - done)):
            idx = perm[i * b:(i + 1) * b]
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
        model.eval()
        with torch.no_grad():
            for j in range(0, len(data.x_test), 1000):
                F.cross_entropy(model(data.x_test[j:j + 1000]), data.y_test[j:j + 1000], reduction="sum")
    sync(device)
    return steps / (time.perf_counter() - t0)


def engine(cfg: RunConfig, data, steps: int, on_step=None) -> float:
    """The headless engine with default probing, its reporter and a metrics file: steps/s."""
    with tempfile.TemporaryDirectory() as d, open(os.devnull, "w") as devnull:
        writer = MetricsWriter(os.path.join(d, "m.jsonl"))
        trainer = Trainer(cfg.replace(max_steps=steps, epochs=10 ** 6), data=data, on_step=on_step)
        trainer.prepare()
        trainer.sinks = [writer, Reporter(devnull, tty=False)]
        sync(trainer.device)
        t0 = time.perf_counter()
        end = trainer.run()
        sync(trainer.device)
        dt = time.perf_counter() - t0
        writer.close()
    assert end.status == "completed" and end.steps == steps
    return steps / dt


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB, from /proc."""
    vals = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                vals[k] = int(v.split()[0]) / 1024
    return vals.get("VmRSS", float("nan")), vals.get("VmHWM", float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5, help="interleaved bare/engine pairs (default 5)")
    ap.add_argument("--steps", type=int, default=200, help="steps per run (default 200: 5 epochs of mnist-5k)")
    ap.add_argument("--memory-steps", type=int, default=5000, help="length of the memory run (0 skips it)")
    ap.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, mps")
    ap.add_argument("--bare-only", action="store_true", help="print one bare-loop figure (steps/s) and stop")
    ap.add_argument("--flight", action="store_true",
                    help="compare the engine with the flight recorder off (--no-flight) and on, interleaved pairs")
    args = ap.parse_args()

    device, notice = resolve_device(args.device)
    cfg = RunConfig(dataset="mnist-5k", device=device.type)
    data = load_mnist5k(device)
    if args.bare_only:
        bare_loop(cfg, data, min(args.steps, 50))  # warm-up
        print(f"{bare_loop(cfg, data, args.steps):.2f}")
        return
    name = device_name(device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
          f"{f' ({name})' if name else ''}, probes every {DEFAULT_PROBE_EVERY} steps but at most "
          f"{1 / PROBE_MIN_INTERVAL_S:g} a second, {args.steps} steps a run", flush=True)
    print(f"cpu: {cpu_name()}", flush=True)
    if notice:
        print(f"notice: {notice}", flush=True)
    if args.flight:
        flight_pairs(cfg, data, args.pairs, args.steps)
        return
    rows = []
    if args.pairs:
        bare_loop(cfg, data, 20)  # warm-up
        engine(cfg, data, 20)
    for i in range(args.pairs):  # each goes first in every other pair: the first run of a pair meets the machine
        if i % 2 == 0:  # in another state (memory just freed by the other's run)
            b = bare_loop(cfg, data, args.steps)
            e = engine(cfg, data, args.steps)
        else:
            e = engine(cfg, data, args.steps)
            b = bare_loop(cfg, data, args.steps)
        rows.append((b, e, e / b))
        print(f"  pair {i + 1}: bare {b:6.2f} steps/s  engine {e:6.2f} steps/s  ratio {e / b:.3f}", flush=True)
    if rows:
        print_table(rows)
    if args.memory_steps:
        memory(cfg, data, args.memory_steps)
    sys.stdout.flush()


def flight_pairs(cfg: RunConfig, data, pairs: int, steps: int) -> None:
    """The flight recorder's cost: the engine with it off and on, interleaved (pairs alternate which runs first)."""
    engine(cfg.replace(flight=False), data, 20)  # warm-up
    engine(cfg, data, 20)
    rows = []
    for i in range(pairs):
        order = (False, True) if i % 2 == 0 else (True, False)
        got = {f: engine(cfg.replace(flight=f), data, steps) for f in order}
        rows.append((got[False], got[True], got[True] / got[False]))
        print(f"  pair {i + 1}: flight off {got[False]:6.2f} steps/s  on {got[True]:6.2f} steps/s  ratio "
              f"{got[True] / got[False]:.3f}", flush=True)
    print()
    print_pairs(("pair", "engine, --no-flight (steps/s)", "engine, flight recorder on (steps/s)", "on / off"), rows)
    print(f"load average while it ran: {os.getloadavg()[0]:.2f} (1 min), {torch.get_num_threads()} threads")


def print_table(rows) -> None:
    print()
    print_pairs(("run", "bare PyTorch (steps/s)", "vgtui headless engine (steps/s)", "engine / bare"), rows)


def memory(cfg, data, steps: int) -> None:
    """RSS at step 500 and at the end of one long engine run: flat means nothing accumulates."""
    marks = sorted({min(500, steps), steps})
    seen: dict[int, tuple[float, float]] = {}

    def watch(trainer):
        if trainer.step in marks:
            seen[trainer.step] = rss_mb()

    sps = engine(cfg, data, steps, on_step=watch)
    print()
    print(f"memory over a {steps:,}-step engine run ({sps:.1f} steps/s):")
    print("| step | RSS (MiB) | peak RSS (MiB) |")
    print("|---|---|---|")
    for s in marks:
        print(f"| {s:,} | {seen[s][0]:.0f} | {seen[s][1]:.0f} |")


if __name__ == "__main__":
    main()
