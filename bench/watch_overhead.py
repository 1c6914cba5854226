"""What vgtui.watch costs a user's loop: the seed's network trained by a bare PyTorch loop, and by the same loop
watched by vgtui (every=50), side by side.

    python bench/watch_overhead.py                        # 9 pairs of 500 steps each (about 4 minutes)
    python bench/watch_overhead.py --pairs 3 --steps 100  # a quick check that it runs
    python bench/watch_overhead.py --whole-runs           # each pair as two whole runs, one after the other
    python bench/watch_overhead.py --fsdp --pairs 5       # two CPU ranks (gloo), the network under fully_shard
    python bench/watch_overhead.py --flight --pairs 7     # the flight recorder's cost: watch(flight=False) / on

Both loops train 784-1000x5-10 sigmoid (vgtui.engine.model.build_model with RunConfig's defaults), SGD lr 0.01
momentum 0.9, batch 100, on the embedded mnist-5k digits held as tensors on the device. The watched loop is the
README's: `vgtui.watch(model, metrics=..., every=50, optimizer=opt)` and `probe.step(loss=loss)` after each step,
writing a real metrics file.

A pair trains two fresh networks, one bare and one watched, step by step in turn (bare step 1, watched step 1,
bare step 2, ...; pairs alternate which goes first), and times each loop's own steps: both meet the machine in
the same state. This shared 2-core machine drifts by 10% over tens of seconds, so whole runs one after the other
(`--whole-runs`, the first form of this benchmark) gave pair ratios from 0.85 to 1.08 and medians of 0.932 and
0.973 for the same code. The verdict is on the median of the pairs' ratios (watched / bare steps/s); target:
0.97 or more. It also prints what a probed step costs inside the watched loop, and the ratio that cost alone
predicts.

With --fsdp, two processes on the CPU (gloo) train the same network under FSDP2 (`fully_shard` on each Linear and
on the model), each rank on its half of every batch, bare and watched in turn as above, every rank calling
vgtui.watch (its probed steps add the ranks' partial sums on the watch's own gloo group); rank 0 prints the pairs.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

import vgtui
from vgtui.core.config import RunConfig
from vgtui.engine.data import load_mnist5k
from vgtui.engine.model import build_model, build_optimizer

from pairs import cpu_name, print_pairs  # bench/pairs.py: python runs this file with bench/ first on its path

TARGET = 0.97


STEP_TIMES: dict[bool, list[float]] = {True: [], False: []}  # watched runs: seconds per probed / plain step


def train(cfg: RunConfig, data, steps: int, every: int | None = None) -> tuple[float, float]:
    """(steps/s, steps per CPU second of this process) of the plain loop; with `every`, the same loop under
    vgtui.watch. The CPU-time figure is less disturbed by other processes on a shared machine. A watched run also
    times each of its steps (STEP_TIMES), probed or not: what a probed step costs, measured inside one run."""
    model = build_model(cfg).to(data.x_train.device)
    opt = build_optimizer(cfg, model)
    gen = torch.Generator().manual_seed(cfg.seed)
    n, b = len(data.x_train), cfg.batch_size
    with tempfile.TemporaryDirectory() as d:
        probe = (vgtui.watch(model, metrics=os.path.join(d, "run.jsonl"), every=every, optimizer=opt, quiet=True)
                 if every else None)
        sync(data)
        t0, c0 = time.perf_counter(), time.process_time()
        done = 0
        while done < steps:
            perm = torch.randperm(n, generator=gen).to(data.x_train.device)
            for i in range(min(n // b, steps - done)):
                idx = perm[i * b:(i + 1) * b]
                one_step(model, opt, probe, data, idx, every)
                done += 1
        if probe is not None:
            probe.close()
        sync(data)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
    if probe is not None:
        assert probe.steps == steps and probe.snapshots == 1 + steps // every, (probe.steps, probe.snapshots)
    return steps / dt, steps / dc


def one_step(model, opt, probe, data, idx: torch.Tensor, every: int | None) -> float:
    """One training step of the README's loop (and `probe.step` when watched); its seconds, also kept in STEP_TIMES
    for a watched loop, as probed or plain."""
    nxt = probe.steps + 1 if probe is not None else 0  # the step about to run
    ts = time.perf_counter()
    loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if probe is not None:
        probe.step(loss=loss)
    sync(data)
    dt = time.perf_counter() - ts
    if probe is not None:
        STEP_TIMES[nxt == 1 or nxt % every == 0].append(dt)
    return dt


def lockstep(cfg: RunConfig, data, steps: int, every: int, watched_first: bool) -> tuple[float, float]:
    """(bare steps/s, watched steps/s) of two fresh networks trained step by step in turn, each timed on its own
    steps only."""
    return in_turn(cfg, data, steps, every, (None, {}), second_first=watched_first)


def in_turn(cfg: RunConfig, data, steps: int, every: int, watches: tuple[dict | None, dict | None],
            second_first: bool) -> tuple[float, float]:
    """(steps/s, steps/s) of two fresh networks trained step by step in turn, each timed on its own steps only: the
    first unwatched where its `watches` entry is None, else under vgtui.watch(every=every, **that entry); a watch's
    close() (the end record) counts in its loop's time."""
    loops = []
    d = tempfile.TemporaryDirectory()
    for k, watch in enumerate(watches):
        model = build_model(cfg).to(data.x_train.device)
        opt = build_optimizer(cfg, model)
        probe = (vgtui.watch(model, metrics=os.path.join(d.name, f"run{k}.jsonl"), every=every, optimizer=opt,
                             quiet=True, **watch) if watch is not None else None)
        loops.append([model, opt, probe, torch.Generator().manual_seed(cfg.seed), 0.0])
    n, b = len(data.x_train), cfg.batch_size
    per_epoch = n // b
    perms: list[torch.Tensor | None] = [None, None]
    for i in range(steps):
        for k in ((1, 0) if second_first else (0, 1)):
            model, opt, probe, gen, _ = loops[k]
            if i % per_epoch == 0:
                perms[k] = torch.randperm(n, generator=gen).to(data.x_train.device)
            idx = perms[k][(i % per_epoch) * b:(i % per_epoch + 1) * b]
            sync(data)
            loops[k][4] += one_step(model, opt, probe, data, idx, every)
    for loop in loops:
        probe = loop[2]
        if probe is not None:
            t0 = time.perf_counter()
            probe.close()  # the end record: part of what watching costs
            loop[4] += time.perf_counter() - t0
            assert probe.steps == steps and probe.snapshots == 1 + steps // every
    d.cleanup()
    return steps / loops[0][4], steps / loops[1][4]


def _shard(model):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (torch.distributed.get_world_size(),))
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            fully_shard(m, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def _fsdp_worker(rank: int, world: int, port: int, args) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)  # two ranks on two cores
    cfg = RunConfig(dataset="mnist-5k", device="cpu", width=args.width or RunConfig().width)
    data = load_mnist5k("cpu")
    n, b = len(data.x_train), cfg.batch_size
    part = b // world
    say = (lambda *a: print(*a, flush=True)) if rank == 0 else (lambda *a: None)
    say(f"torch {torch.__version__}, {world} ranks (gloo, 1 thread each), FSDP2 fully_shard; 784-{cfg.width}x"
        f"{cfg.depth}-10 {cfg.activation}, {cfg.optimizer} lr {cfg.lr} momentum {cfg.momentum}, batch {b} ({part} a "
        f"rank), {data.name}; {args.steps} steps a run, vgtui.watch every {args.every} steps, interleaved pairs")
    rows = []
    d = tempfile.TemporaryDirectory()
    for pair in range(args.pairs + 1):  # pair 0: a warm-up, not counted
        loops = []
        for watched in (False, True):
            model = _shard(build_model(cfg))
            opt = build_optimizer(cfg, model)
            probe = (vgtui.watch(model, metrics=os.path.join(d.name, f"run{pair}.jsonl"), every=args.every,
                                 optimizer=opt, quiet=True) if watched else None)
            loops.append([model, opt, probe, torch.Generator().manual_seed(cfg.seed), 0.0, None])
        steps = args.steps if pair else 20
        for i in range(steps):
            for k in ((1, 0) if pair % 2 else (0, 1)):
                model, opt, probe, gen, _, perm = loops[k]
                if i % (n // b) == 0:
                    loops[k][5] = perm = torch.randperm(n, generator=gen)
                idx = perm[(i % (n // b)) * b:(i % (n // b) + 1) * b][rank * part:(rank + 1) * part]
                ts = time.perf_counter()
                loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if probe is not None:
                    probe.step(loss=loss)
                loops[k][4] += time.perf_counter() - ts
        t0 = time.perf_counter()
        loops[1][2].close()
        loops[1][4] += time.perf_counter() - t0
        if pair:
            bare, watched = steps / loops[0][4], steps / loops[1][4]
            rows.append((bare, watched, watched / bare))
            say(f"  pair {pair}/{args.pairs}: bare {bare:7.2f} steps/s   watched {watched:7.2f} steps/s   "
                f"ratio {watched / bare:.3f}")
    d.cleanup()
    if rank == 0:
        print()
        print(f"| pair | bare FSDP2, {world} ranks (steps/s) | with vgtui.watch(every={args.every}) (steps/s) | "
              "watched / bare |")
        print("|---|---|---|---|")
        for i, (bb, w, r) in enumerate(rows, 1):
            print(f"| {i} | {bb:.2f} | {w:.2f} | {r:.3f} |")
        med = statistics.median(r[2] for r in rows)
        print(f"| median | {statistics.median(r[0] for r in rows):.2f} | "
              f"{statistics.median(r[1] for r in rows):.2f} | {med:.3f} |")
        verdict = "meets the target" if med >= TARGET else "MISSES the target"
        print(f"median ratio {med:.3f} over {len(rows)} pairs; {verdict} (ratio >= {TARGET})", flush=True)
    dist.barrier()
    dist.destroy_process_group()


def fsdp_main(args) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    mp.spawn(_fsdp_worker, args=(2, port, args), nprocs=2, join=True)


def flight_main(cfg: RunConfig, data, args) -> None:
    rows = []
    for i in range(args.pairs):
        # watch(flight=False) and watch() with its default flight recorder, in turn
        off, on = in_turn(cfg, data, args.steps, args.every, ({"flight": False}, {}), second_first=i % 2 == 1)
        rows.append((off, on, on / off))
        print(f"  pair {i + 1}/{args.pairs}: flight off {off:7.2f} steps/s   on {on:7.2f} steps/s   ratio "
              f"{on / off:.3f}", flush=True)
    print()
    print_pairs(("pair", f"vgtui.watch(every={args.every}, flight=False) (steps/s)", "flight recorder on (steps/s)",
                 "on / off"), rows)
    print(f"load average while it ran: {os.getloadavg()[0]:.2f} (1 min), {torch.get_num_threads()} threads")


def sync(data) -> None:
    if data.x_train.device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=9, help="interleaved bare/watched pairs (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=500, help="steps per run (default: %(default)s)")
    ap.add_argument("--every", type=int, default=50, help="vgtui.watch(every=...) (default: %(default)s)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--whole-runs", action="store_true",
                    help="each pair as two whole runs one after the other (noisier on a shared machine)")
    ap.add_argument("--fsdp", action="store_true", help="two CPU ranks (gloo), the network under FSDP2's fully_shard")
    ap.add_argument("--width", type=int, default=0, help="with --fsdp: the hidden layers' width (default: the seed's)")
    ap.add_argument("--flight", action="store_true",
                    help="compare vgtui.watch with the flight recorder off (flight=False) and on, step by step in turn")
    args = ap.parse_args()
    if args.fsdp:
        fsdp_main(args)
        return

    cfg = RunConfig(dataset="mnist-5k", device=args.device)
    data = load_mnist5k(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; 784-"
          f"{cfg.width}x{cfg.depth}-10 {cfg.activation}, {cfg.optimizer} lr {cfg.lr} momentum {cfg.momentum}, batch "
          f"{cfg.batch_size}, {data.name}; {args.steps} steps a run, vgtui.watch every {args.every} steps", flush=True)
    print(f"cpu: {cpu_name()}", flush=True)
    train(cfg, data, 20)  # warm-up: allocator, kernels, the probes' first use
    train(cfg, data, 20, args.every)
    STEP_TIMES[True].clear(), STEP_TIMES[False].clear()
    if args.flight:
        flight_main(cfg, data, args)
        return
    print("pairs: " + ("whole runs, one after the other" if args.whole_runs else "the two loops step by step in turn"),
          flush=True)
    rows = []
    for i in range(args.pairs):
        if not args.whole_runs:
            b, w = lockstep(cfg, data, args.steps, args.every, watched_first=i % 2 == 1)
            bare, watched = (b, math.nan), (w, math.nan)
        elif i % 2 == 0:
            bare, watched = train(cfg, data, args.steps), train(cfg, data, args.steps, args.every)
        else:
            watched, bare = train(cfg, data, args.steps, args.every), train(cfg, data, args.steps)
        rows.append((bare[0], watched[0], watched[0] / bare[0], watched[1] / bare[1]))
        cpu = f"   (by CPU time {watched[1] / bare[1]:.3f})" if args.whole_runs else ""
        print(f"  pair {i + 1}/{args.pairs}: bare {bare[0]:7.2f} steps/s   watched {watched[0]:7.2f} steps/s   "
              f"ratio {watched[0] / bare[0]:.3f}{cpu}", flush=True)
    print()
    med = print_pairs(("pair", "bare PyTorch (steps/s)", f"with vgtui.watch(every={args.every}) (steps/s)",
                       "watched / bare"), rows)
    print()
    probed, plain = statistics.median(STEP_TIMES[True]), statistics.median(STEP_TIMES[False])
    n_probed = 1 + args.steps // args.every
    expected = 1 / (1 + n_probed * (probed - plain) / (args.steps * plain))
    print(f"inside the watched loop: a plain step {1000 * plain:.1f} ms, a probed step {1000 * probed:.1f} ms (medians of "
          f"{len(STEP_TIMES[False])} and {len(STEP_TIMES[True])}); {n_probed} probed steps in {args.steps} give an "
          f"expected ratio of {expected:.3f} (the snapshots' writing and the per-step hooks come on top)")
    verdict = "meets the target" if med >= TARGET else "MISSES the target"
    cost = f"the probe costs {100 * (1 - med):.1f}% of the bare loop's steps/s" if med < 1 else "no cost measured"
    print(f"median wall-clock ratio {med:.3f} over {len(rows)} pairs: {cost}; {verdict} (ratio >= {TARGET}, at "
          f"most {100 * (1 - TARGET):.0f}%)")
    if len(rows) < 9:
        print(f"(only {len(rows)} pairs: the target is judged on 9 or more)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
