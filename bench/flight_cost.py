"""What the flight recorder's per-step work costs, inside one process, two ways:

- the row alone: `FlightRecorder.record` (the norms of its row) timed after each step on its own, and the checks'
  host work (one copy of the buffer and the loss's scores at a progress tick) per check;
- in lockstep: networks with and without the recorder (two or three of each, the seed's network, each with its own
  optimiser) step in turn on the same batches, in a new random order every round, each whole iteration timed (the
  step and, where it is on, the recorder's row); the cost is the ratio of the medians. This is what the steps/s of
  a run pays: work done on cold caches after a step is partly work the next step would have done anyway, and is
  counted once here.

    python bench/flight_cost.py                 # 400 steps with the row timed alone, then 400 rounds in lockstep
    python bench/flight_cost.py --steps 100 --threads 1
    python bench/flight_cost.py --baseline OLD_flight.py   # an older flight.py's recorder too, in the lockstep rounds

On a loaded shared machine both are steadier than whole runs one after the other (bench/overhead.py --flight,
bench/watch_overhead.py --flight): both timings meet the machine in the same state, step by step.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import torch
import torch.nn.functional as F

from vgtui.core.config import RunConfig
from vgtui.engine.data import load_mnist5k
from vgtui.engine.flight import FlightRecorder
from vgtui.engine.model import build_model, build_optimizer

from pairs import cpu_name  # bench/pairs.py: python runs this file with bench/ first on its path


def lockstep(cfg: RunConfig, data, args) -> None:
    """Networks without and with the recorder (and with --baseline's) stepped in turn, whole iterations timed."""
    kinds = {"bare": None, "recorder": FlightRecorder}
    if args.baseline:
        import importlib.util

        spec = importlib.util.spec_from_file_location("baseline_flight", args.baseline)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        kinds["baseline"] = mod.FlightRecorder
    nets = []
    made = list(kinds.items())
    # as many of each as kinds, made in turn in rotated orders (a Latin square): the order the networks are made in
    # places their tensors in memory, which moved one kind's cost by a point against another's on this CPU
    for kind, cls in [made[(r + c) % len(made)] for r in range(len(made)) for c in range(len(made))]:
        model = build_model(cfg)
        opt = build_optimizer(cfg, model)
        layers = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
        nets.append((kind, model, opt, cls(layers, opt, "cpu") if cls else None))
    times: dict[str, list[float]] = {k: [] for k in kinds}
    rng = random.Random(0)
    n, b = len(data.x_train), cfg.batch_size
    for i in range(args.steps + 10):
        j = (i * b) % (n - b)
        x, y = data.x_train[j:j + b], data.y_train[j:j + b]
        order = nets[:]
        rng.shuffle(order)  # a new order every round: which network follows which also changes a step's time
        for kind, model, opt, flight in order:
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if flight is not None:
                flight.record(i + 1, loss.detach())
            if i >= 10:  # warm-up
                times[kind].append(time.perf_counter() - t0)
    bare = statistics.median(times["bare"])
    print(f"in lockstep, {args.steps} rounds of {len(nets)} networks: a bare step {1000 * bare:.2f} ms (median); "
          + "; ".join(f"with the {k} {1000 * statistics.median(times[k]):.2f} ms, "
                      f"{100 * (statistics.median(times[k]) / bare - 1):+.2f}%" for k in kinds if k != "bare"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--optimizer", default="sgd")
    ap.add_argument("--baseline", help="another flight.py whose FlightRecorder also runs in the lockstep rounds")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = RunConfig(dataset="mnist-5k", device="cpu", optimizer=args.optimizer,
                    lr=0.001 if args.optimizer == "adam" else RunConfig.lr)
    data = load_mnist5k("cpu")
    model = build_model(cfg)
    opt = build_optimizer(cfg, model)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    flight = FlightRecorder(layers, opt, "cpu")
    step_t, rec_t, check_t = [], [], []
    n, b = len(data.x_train), cfg.batch_size
    for i in range(args.steps):
        j = (i * b) % (n - b)
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(data.x_train[j:j + b]), data.y_train[j:j + b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        flight.record(i + 1, loss.detach())
        t2 = time.perf_counter()
        step_t.append(t1 - t0)
        rec_t.append(t2 - t1)
        if (i + 1) % 10 == 0:  # a progress tick every 0.25 s is every 10 steps of a 25 ms step
            flight.check()
            check_t.append(time.perf_counter() - t2)
    step, rec = statistics.median(step_t[10:]), statistics.median(rec_t[10:])
    check = statistics.median(check_t)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu; 784-{cfg.width}x{cfg.depth}-10 "
          f"{cfg.activation}, {cfg.optimizer}, batch {b}; {args.steps} steps; load average {os.getloadavg()[0]:.2f}")
    print(f"cpu: {cpu_name()}")
    print(f"a training step {1000 * step:.2f} ms, the recorder's row {1000 * rec:.3f} ms ({100 * rec / step:.2f}% of a "
          f"step), a check {1000 * check:.3f} ms (every 10 steps: {100 * check / (10 * step):.2f}% of them)")
    print(f"the row alone: expected steps/s with the recorder on / off: {step / (step + rec + check / 10):.3f}")
    lockstep(cfg, data, args)


if __name__ == "__main__":
    main()
