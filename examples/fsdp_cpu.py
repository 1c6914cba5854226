"""vgtui.watch on an FSDP2 model (`fully_shard`): parameters and gradients are DTensors, each rank holding a shard.
Every rank calls vgtui.watch the same way; at a probed step each rank sums its own shards and micro-batch, the
ranks add their sums together on the watch's own gloo group, and rank 0 alone writes the file. The numbers are
those of the same model trained in one process on the whole batch.

    torchrun --nproc_per_node 2 examples/fsdp_cpu.py --metrics fsdp.jsonl      # then: vgtui follow fsdp.jsonl
    python examples/fsdp_cpu.py --metrics fsdp.jsonl                            # the same, spawning 2 processes

On several machines: torchrun --nnodes 2 --node_rank N --nproc_per_node 8 --rdzv_backend c10d \\
    --rdzv_endpoint HEAD:29500 examples/fsdp_cpu.py ...   (the file is written on the node of global rank 0).
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

import vgtui


def build_model() -> nn.Module:
    torch.manual_seed(0)  # the same initial weights on every rank (each keeps its shard of them)
    return nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))


def batches(steps: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The whole job's batches (each rank takes its slice), the same in every process."""
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(batch_size, 20, generator=g), torch.randint(0, 4, (batch_size,), generator=g))
            for _ in range(steps)]


def shard(model: nn.Module, world: int, reshard_after_forward: bool = True) -> nn.Module:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    for m in model:
        if isinstance(m, nn.Linear):
            fully_shard(m, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)


def train(args: argparse.Namespace) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    model = shard(build_model(), world)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    part = args.batch_size // world
    with vgtui.watch(model, metrics=args.metrics, every=args.every, optimizer=opt, quiet=rank != 0) as probe:
        for x, y in batches(args.steps, args.batch_size):
            loss = F.cross_entropy(model(x[rank * part:(rank + 1) * part]), y[rank * part:(rank + 1) * part])
            opt.zero_grad()
            loss.backward()  # FSDP reduce-scatters the gradients here: each rank keeps its shard's average
            opt.step()
            probe.step(loss=loss)
    # one write (the ranks share the pipe: print's separate newline could land after the other rank's line)
    print(f"rank {rank}: pid {os.getpid()}, {probe.steps} steps, writes the file: {probe.active}\n", end="",
          flush=True)
    dist.barrier()  # leave together (a rank tearing gloo down while its peer is busy can abort under load)
    dist.destroy_process_group()


def _spawned(rank: int, world: int, port: int, args: argparse.Namespace) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    train(args)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metrics", default="fsdp.jsonl", help="the metrics file (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32, help="the whole batch, split over the ranks")
    ap.add_argument("--nproc", type=int, default=2, help="processes to spawn without torchrun (default: 2)")
    args = ap.parse_args(argv)
    if "LOCAL_RANK" in os.environ:  # started by torchrun: it set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT
        dist.init_process_group("gloo")
        train(args)
    else:
        mp.spawn(_spawned, args=(args.nproc, free_port(), args), nprocs=args.nproc, join=True)


if __name__ == "__main__":
    main()
