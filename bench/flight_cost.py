"""What the flight recorder's per-step work costs, inside one process: the seed's network's training step, and
`FlightRecorder.record` (three fused norms and one row write) after it, each timed on its own, interleaved.

    python bench/flight_cost.py                 # 400 steps
    python bench/flight_cost.py --steps 100 --threads 1

On a loaded shared machine this is steadier than whole runs one after the other (bench/overhead.py --flight,
bench/watch_overhead.py --flight): both timings meet the machine in the same state, step by step. The checks' host
work (one copy of the buffer and the loss's scores at a progress tick) is timed too, per check.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from vgtui.core.config import RunConfig
from vgtui.engine.data import load_mnist5k
from vgtui.engine.flight import FlightRecorder
from vgtui.engine.model import build_model, build_optimizer

from pairs import cpu_name  # bench/pairs.py: python runs this file with bench/ first on its path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--optimizer", default="sgd")
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
    print(f"expected steps/s with the recorder on / off: {step / (step + rec + check / 10):.3f}")


if __name__ == "__main__":
    main()
