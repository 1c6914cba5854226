"""Where a probed step of the seed's network goes: each part of it timed against a plain step, interleaved.

    python bench/probe_profile.py                 # 60 pairs (a plain step, then a probed one), medians
    python bench/probe_profile.py --pairs 20 --torch-profiler
    python bench/probe_profile.py --threads 1     # one thread: steadier on a machine shared with other jobs
    git show HEAD~3:vgtui/engine/probes.py > /tmp/old_probes.py
    python bench/probe_profile.py --baseline /tmp/old_probes.py   # also an older probes.py, in the same rounds

The network is the seed's (784-1000x5-10 sigmoid, SGD lr 0.01 momentum 0.9, batch 100) on the embedded mnist-5k
digits, on the CPU. A pair runs a plain step and a probed step (vgtui.engine.probes.Probes, as the engine uses
it) one after the other, alternating which goes first; each part is timed on the host clock. The table gives the
median of each part, and the ratio probed / plain of the whole step's medians. With --baseline, each round also
runs a step probed by the Probes class of another probes.py (an older version, say) on a third network, so that
before and after are measured in the same sitting.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from vgtui.core.config import RunConfig
from vgtui.engine.data import load_mnist5k
from vgtui.engine.model import build_model, build_optimizer
from vgtui.engine.probes import Probes

from pairs import cpu_name  # bench/pairs.py: python runs this file with bench/ first on its path

PARTS = ("forward", "backward", "collect_grads", "step", "collect_update", "finish")


def step(model, opt, data, idx, probes: Probes | None) -> dict[str, float]:
    """One training step (probed when `probes` is given): the wall-clock seconds of each part, and "cpu", the
    process's CPU seconds for the whole step (both threads; less disturbed by other processes on a shared machine)."""
    c0 = time.process_time()
    t = [time.perf_counter()]
    if probes is not None:
        probes.arm()
    loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
    t.append(time.perf_counter())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    t.append(time.perf_counter())
    if probes is not None:
        probes.collect_grads(opt)
    t.append(time.perf_counter())
    opt.step()
    t.append(time.perf_counter())
    if probes is not None:
        probes.collect_update()
    t.append(time.perf_counter())
    if probes is not None:
        probes.finish(extra=[loss.detach().double()])
    t.append(time.perf_counter())
    out = {k: b - a for k, a, b in zip(PARTS, t, t[1:])}
    out["total"] = t[-1] - t[0]
    out["cpu"] = time.process_time() - c0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--torch-profiler", action="store_true", help="also print torch.profiler's table of a probed step")
    ap.add_argument("--baseline", help="another probes.py whose Probes class also runs, in the same rounds")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = RunConfig(dataset="mnist-5k", device="cpu")
    data = load_mnist5k("cpu")
    kinds = ["plain", "probed"] + (["baseline"] if args.baseline else [])
    nets = {}
    for k in kinds:
        model = build_model(cfg)
        nets[k] = (model, build_optimizer(cfg, model))
    probes = {"plain": None, "probed": Probes(nets["probed"][0])}
    if args.baseline:
        import importlib.util

        spec = importlib.util.spec_from_file_location("baseline_probes", args.baseline)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        probes["baseline"] = mod.Probes(nets["baseline"][0])
    gen = torch.Generator().manual_seed(0)
    n, b = len(data.x_train), cfg.batch_size
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for i in range(args.pairs + 5):
        idx = torch.randperm(n, generator=gen)[:b]
        for k in kinds[i % len(kinds):] + kinds[:i % len(kinds)]:  # each kind goes first in turn
            model, opt = nets[k]
            t = step(model, opt, data, idx, probes[k])
            if i >= 5:  # warm-up
                rows[k].append(t)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians of {args.pairs} interleaved rounds (ms)")
    print(f"cpu: {cpu_name()}")
    print("| part | " + " | ".join(f"{k} step" for k in kinds) + " |")
    print("|---" * (len(kinds) + 1) + "|")
    for part in (*PARTS, "total", "cpu"):
        print(f"| {part} | " + " | ".join(f"{1000 * statistics.median(r[part] for r in rows[k]):.2f}" for k in kinds)
              + " |")
    for k in kinds[1:]:
        med = statistics.median(r["total"] for r in rows[k]) / statistics.median(r["total"] for r in rows["plain"])
        ratios = [p["total"] / a["total"] for a, p in zip(rows["plain"], rows[k])]
        cpu = statistics.median(r["cpu"] for r in rows[k]) / statistics.median(r["cpu"] for r in rows["plain"])
        print(f"{k} / plain: {med:.3f} (ratio of medians); median of the rounds' ratios {statistics.median(ratios):.3f};"
              f" by CPU time {cpu:.3f}")
    if args.torch_profiler:
        from torch.profiler import ProfilerActivity, profile

        model, opt = nets["probed"]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                step(model, opt, data, torch.randperm(n, generator=gen)[:b], probes["probed"])
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


if __name__ == "__main__":
    main()
