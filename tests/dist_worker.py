"""A distributed job for the tests (tests/test_fsdp.py, tests/test_ranks.py, tests/test_sync.py): `python
tests/dist_worker.py WORLD OUT MODE...` spawns WORLD processes on the CPU (gloo) which train the same small MLP in
each MODE in turn, every rank on its own slice of the same global batches, with vgtui.watch writing
OUT/MODE-WORLD.jsonl. Each rank prints "rank R MODE done" and every WatchWarning as "warn rank R: ...".

Modes: fsdp (fully_shard, SGD with momentum), fsdp-keep (reshard_after_forward=False, Adam), fsdp-manual (no
optimizer= for the watch: probe.step() counts the steps, the update from a copy of the weight shards), ddp (SGD with
momentum), bad-data (DDP on a ReLU MLP; the last rank's inputs scaled by 30, and after step 3 its replica's
weights nudged, which DDP never undoes), rank0-only (DDP; only rank 0 calls vgtui.watch,
timeout 2 s), quit (FSDP; the last rank closes its watch after step 3, timeout 2 s), sync (FSDP: no host sync from
vgtui and no watch collective on an ordinary step, checked on every rank).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import traceback
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

STEPS, EVERY, BATCH = 6, 2, 16


def build_model(mode: str = "") -> nn.Module:
    torch.manual_seed(0)
    if mode == "bad-data":  # ReLU scales with its input: a shard of inputs 30 times larger has a far larger loss
        return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 5))
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, 5))


def batches(steps: int = STEPS, scale_last: float = 1.0, world: int = 1):
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):
        x, y = torch.randn(BATCH, 12, generator=g), torch.randint(0, 5, (BATCH,), generator=g)
        if scale_last != 1.0:
            x[BATCH - BATCH // world:] *= scale_last
        out.append((x, y))
    return out


def optimizer(mode: str, model: nn.Module) -> torch.optim.Optimizer:
    if mode == "fsdp-keep":
        return torch.optim.Adam(model.parameters(), lr=0.01)
    if mode == "bad-data":
        return torch.optim.SGD(model.parameters(), lr=0.001)
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def reference(mode: str, path: str, world: int = 1) -> None:
    """The same training in one process on the whole batch: the numbers every distributed run must equal."""
    import vgtui

    model = build_model(mode)
    opt = optimizer(mode, model)
    watched = None if mode == "fsdp-manual" else opt
    with vgtui.watch(model, metrics=path, every=EVERY, optimizer=watched, quiet=True) as probe:
        for x, y in batches(scale_last=30.0 if mode == "bad-data" else 1.0, world=world):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            probe.step(loss=loss)


def _wrap(mode: str, model: nn.Module, world: int) -> nn.Module:
    if mode.startswith("fsdp") or mode in ("quit", "sync"):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        keep = mode == "fsdp-keep"
        for m in model:
            if isinstance(m, nn.Linear):
                fully_shard(m, mesh=mesh, reshard_after_forward=not keep)
        return fully_shard(model, mesh=mesh, reshard_after_forward=not keep)
    return nn.parallel.DistributedDataParallel(model)


@contextlib.contextmanager
def _sync_guard(state: dict):
    """Count every tensor-to-Python conversion made from vgtui's code, and every call of the watch's collectives,
    while state["ordinary"] is true."""
    import vgtui.engine.distributed as d

    names = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "cpu", "numpy")
    originals = {n: getattr(torch.Tensor, n) for n in names}
    link = {n: getattr(d.Link, n) for n in ("sum", "gather")}

    def from_vgtui() -> bool:
        f = sys._getframe(2)
        while f is not None:
            if "/vgtui/" in f.f_code.co_filename.replace(os.sep, "/"):
                return True
            f = f.f_back
        return False

    def guard(name, original):
        def patched(self, *a, **k):
            if state["ordinary"] and from_vgtui():
                state["bad"].append(f"Tensor.{name} at step {state['step']}")
            return original(self, *a, **k)
        return patched

    def counted(name, original):
        def patched(self, *a, **k):
            state["collectives"].append((state["step"], name, state["ordinary"]))
            return original(self, *a, **k)
        return patched

    for n, o in originals.items():
        setattr(torch.Tensor, n, guard(n, o))
    for n, o in link.items():
        setattr(d.Link, n, counted(n, o))
    try:
        yield
    finally:
        for n, o in originals.items():
            setattr(torch.Tensor, n, o)
        for n, o in link.items():
            setattr(d.Link, n, o)


def run_mode(mode: str, rank: int, world: int, out: str) -> None:
    import vgtui

    model = _wrap(mode, build_model(mode), world)
    opt = optimizer(mode, model)
    part = BATCH // world
    path = os.path.join(out, f"{mode}-{world}.jsonl")
    calls = mode != "rank0-only" or rank == 0
    timeout = 2.0 if mode in ("rank0-only", "quit") else 60.0
    watched = None if mode == "fsdp-manual" else opt
    probe = (vgtui.watch(model, metrics=path, every=EVERY, optimizer=watched, quiet=True, timeout=timeout)
             if calls else None)
    state = {"ordinary": False, "step": 0, "bad": [], "collectives": []}
    guard = _sync_guard(state) if mode == "sync" else contextlib.nullcontext()
    with guard:
        for step, (x, y) in enumerate(batches(scale_last=30.0 if mode == "bad-data" else 1.0, world=world), 1):
            state["step"], state["ordinary"] = step, step != 1 and step % EVERY != 0
            loss = F.cross_entropy(model(x[rank * part:(rank + 1) * part]), y[rank * part:(rank + 1) * part])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if probe is not None:
                probe.step(loss=loss)
                state["ordinary"] = False
                if mode == "quit" and rank == world - 1 and step == 3:
                    probe.close()
            if mode == "bad-data" and rank == world - 1 and step == 3:
                with torch.no_grad():
                    model.module[0].weight[0, 0] += 1e-3
    if probe is not None:
        link = probe._link
        probe.close()
        if link is not None:  # the watch's own gloo group is let go at close, not at the interpreter's exit
            held = probe._link is not None or link.pg is not None
            print(f"rank {rank} {mode} link {'held' if held else 'released'}\n", end="", flush=True)
    if mode == "sync":
        on_ordinary = [c for c in state["collectives"] if c[2]]
        probed = sorted({c[0] for c in state["collectives"]})
        print(f"sync rank {rank}: host syncs on ordinary steps {state['bad']}, watch collectives on ordinary steps "
              f"{on_ordinary}, watch collectives at steps {probed}\n", end="", flush=True)
    print(f"rank {rank} {mode} done\n", end="", flush=True)


def worker(rank: int, world: int, port: int, out: str, modes: list[str]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for mode in modes:
            try:
                run_mode(mode, rank, world, out)
            except Exception:
                print(f"rank {rank} {mode} failed: {traceback.format_exc()}\n", end="", flush=True)
            dist.barrier()
    for w in caught:
        if "vgtui.watch" in str(w.message):
            print(f"warn rank {rank}: {w.message}\n", end="", flush=True)
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    world, out, modes = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    mp.spawn(worker, args=(world, free_port(), out, modes), nprocs=world, join=True)
