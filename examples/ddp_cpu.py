"""vgtui.watch in a DistributedDataParallel job: two processes on the CPU (the gloo backend), each on its own half
of every batch. Every rank calls vgtui.watch the same way; rank 0 alone writes the file, with the gradients as
DDP left them after backward: averaged over the ranks.

    python examples/ddp_cpu.py --metrics ddp.jsonl      # then: vgtui follow ddp.jsonl

(With torchrun, the same `vgtui.watch(ddp_model, ...)` line works: the rank comes from torch.distributed.)
"""

from __future__ import annotations

import argparse
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import vgtui

WORLD = 2


def build_model() -> nn.Module:
    torch.manual_seed(0)  # the same weights on every rank (DDP also broadcasts rank 0's)
    return nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))


def batches(steps: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The whole job's batches (each rank takes its half), the same in every process."""
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(batch_size, 20, generator=g), torch.randint(0, 4, (batch_size,), generator=g))
            for _ in range(steps)]


def worker(rank: int, args: argparse.Namespace) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(args.port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    model = DistributedDataParallel(build_model())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    half = args.batch_size // WORLD
    with vgtui.watch(model, metrics=args.metrics, every=args.every, optimizer=opt, quiet=rank != 0) as probe:
        for x, y in batches(args.steps, args.batch_size):
            loss = F.cross_entropy(model(x[rank * half:(rank + 1) * half]), y[rank * half:(rank + 1) * half])
            opt.zero_grad()
            loss.backward()  # DDP all-reduces the gradients here
            opt.step()
            probe.step(loss=loss)
    # one write (the ranks share the pipe: print's separate newline could land after the other rank's line)
    print(f"rank {rank}: pid {os.getpid()}, {probe.steps} steps, writes the file: {probe.active}\n", end="",
          flush=True)
    # Leave together: a rank that tears gloo down while its peer is still busy can abort (SIGABRT) under load.
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metrics", default="ddp.jsonl", help="the metrics file (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32, help="the whole batch, split over the ranks")
    ap.add_argument("--port", type=int, default=0, help="rendezvous port on 127.0.0.1 (default: a free one)")
    args = ap.parse_args(argv)
    args.port = args.port or free_port()
    mp.spawn(worker, args=(args,), nprocs=WORLD, join=True)


if __name__ == "__main__":
    main()
