"""The watch's own link between the ranks of a distributed job: a gloo process group with a timeout, separate from
the user's (so vgtui's collectives never interleave with the training's, and a rank that never joins costs a
timeout and a warning, not a job that waits for ever).

The group is built straight on the default group's store under a prefix of its own, not through
`dist.new_group`: that call advances a counter on the ranks that make it, so a watch created on rank 0 alone would
shift the names of every group the user's code creates afterwards. The watch's collectives carry host (CPU)
tensors of float64: the probes' partial sums reach the host in one copy first (on a GPU that copy is the probed
step's one sync), and gloo reduces them there, whatever the training's own backend (NCCL included).

    link = Link.create(timeout_s=60.0)   # None outside a distributed job (or a world of one)
    total = link.sum(array)              # one all_reduce(SUM)
    rows = link.gather(array)            # one all_gather: (world, len)
"""

from __future__ import annotations

import collections
import datetime
import hashlib

import numpy as np
import torch


_DTENSOR_TYPES: dict[type, bool] = {}


def is_dtensor(t: object) -> bool:
    """A DTensor (FSDP2's fully_shard parameters, their gradients and optimiser states): each rank holds a shard.
    Duck-typed, so that torch builds without torch.distributed work, and answered once per type (a failed hasattr
    raises and catches an AttributeError: 5 us a tensor, asked of every probed tensor). Host-side: no sync."""
    kind = type(t)
    if kind not in _DTENSOR_TYPES:
        _DTENSOR_TYPES[kind] = hasattr(kind, "to_local") and hasattr(kind, "placements")
    return _DTENSOR_TYPES[kind]


DEFAULT_TIMEOUT_S = 60.0
# How many watches of each kind this process made: the n-th watch of a model (its probed layers and its `every`)
# on one rank meets the n-th of the same kind on the others. A plain count of every watch would pair the wrong
# ones for good after one rank skipped a watch (only rank 0 called it, say).
_made: collections.Counter = collections.Counter()


class LinkError(RuntimeError):
    """A collective of the watch's own group failed or timed out: a rank did not join."""


def world() -> tuple[int, int]:
    """(rank, world size) of the job, (0, 1) outside one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Link:
    """The watch's gloo group over every rank of the job's default group."""

    def __init__(self, pg: "torch.distributed.ProcessGroup", rank: int, size: int, timeout_s: float):
        self.pg, self.rank, self.size, self.timeout_s = pg, rank, size, timeout_s

    @classmethod
    def create(cls, timeout_s: float = DEFAULT_TIMEOUT_S, kind: str = "") -> "Link | None":
        """The group, or None in a single process. Raises LinkError when another rank does not create its own
        within `timeout_s` (it never called vgtui.watch). `kind` names the watch (the same on every rank)."""
        rank, size = world()
        if size == 1:
            return None
        from torch.distributed import PrefixStore, ProcessGroupGloo
        from torch.distributed.distributed_c10d import _get_default_store

        key = hashlib.sha1(kind.encode()).hexdigest()[:16]
        _made[key] += 1
        store = PrefixStore(f"vgtui.watch/{key}/{_made[key]}/", _get_default_store())
        try:
            pg = ProcessGroupGloo(store, rank, size, datetime.timedelta(seconds=timeout_s))
            link = cls(pg, rank, size, timeout_s)
            link.sum(np.zeros(1))  # every rank is here: gloo connects lazily, so meet once now
        except LinkError:
            raise
        except Exception as e:
            raise LinkError(_missing(size, timeout_s, e)) from None
        return link

    def sum(self, a: np.ndarray) -> np.ndarray:
        """Element-wise sum over the ranks (one all_reduce on the host)."""
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
        self._wait(self.pg.allreduce([t]))
        return t.numpy()

    def gather(self, a: np.ndarray) -> np.ndarray:
        """Every rank's `a` (the same length on each), one row per rank (one all_gather on the host)."""
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
        out = [torch.empty_like(t) for _ in range(self.size)]
        self._wait(self.pg.allgather([out], [t]))
        return torch.stack(out).numpy()

    def close(self) -> None:
        """Let the group go now, its threads joined while the interpreter is whole: left to the interpreter's exit
        (a watch in a reference cycle lives that long, and destroy_process_group() does not know this group), gloo's
        teardown can abort the process ("terminate called without an active exception", pytorch/pytorch#179291).
        Every collective has completed by then (each is waited for)."""
        self.pg = None

    def _wait(self, work) -> None:
        try:
            work.wait()
        except Exception as e:
            raise LinkError(_missing(self.size, self.timeout_s, e)) from None


def _missing(size: int, timeout_s: float, e: BaseException) -> str:
    first = " ".join(str(e).split())[:120]
    return (f"not every one of the {size} ranks called vgtui.watch, or one stopped calling it (no answer within "
            f"{timeout_s:g} s: {first})")
