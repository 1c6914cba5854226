"""The records a producer writes about its network, assembled in one place for vgtui's own trainer and for
`vgtui.watch` (a user's loop): the run header (what the network and the machine are) and the snapshot (one probed
step). Each producer keeps its own clocks and sums; this module only says how they become records, so that the
two kinds of metrics file cannot drift apart field by field.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Iterable

import torch

from vgtui import __version__
from vgtui.core.records import DERIV_EDGES, LayerInfo, LayerStats, RunRecord, Snapshot
from vgtui.engine.data import device_name


def started_now() -> str:
    """A header's `started`: the local wall-clock time, ISO 8601 to the second."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def steps_per_s(dt: float, ds: int) -> float:
    """A rate over `ds` steps in `dt` seconds; 0 (unknown) for an empty or timeless window."""
    return ds / dt if dt > 0 and ds > 0 else 0.0


def run_header(layers: Iterable[tuple[str, str, str | None]], *, source: str, device: torch.device, model: str,
               started: str | None = None, **fields: Any) -> RunRecord:
    """A run header: `layers` as (name, module type, activation); the device, version, start time and process
    filled in here; `fields` the producer's own (config, dataset, sizes, cadence, notice, edges, ...). The
    derivative histograms' edges are the probes' own (DERIV_EDGES) for every producer."""
    fields.setdefault("deriv_edges", DERIV_EDGES)
    return RunRecord(layers=tuple(LayerInfo(*layer) for layer in layers), device=str(device), version=__version__,
                     source=source, model=model, device_name=device_name(device), started=started or started_now(),
                     pid=os.getpid(), **fields)


_TOTAL_MEMORY: dict[int, int] = {}  # a CUDA device's total memory, asked once per device


def device_state(device: torch.device | None) -> dict[str, float] | None:
    """What a CUDA device holds now (records.DEVICE_FIELDS): the memory the tensors use and the caching allocator
    reserves (the allocator's own counters, read on the host: no sync), the device's total, and its utilisation
    where NVML answers (`torch.cuda.utilization` needs the nvidia-ml-py package; without it the field is left
    out). None for any other device: there is nothing a CPU run's strip would add to steps/s."""
    if device is None or device.type != "cuda":
        return None
    idx = device.index if device.index is not None else torch.cuda.current_device()
    out: dict[str, float] = {"mem_allocated": float(torch.cuda.memory_allocated(idx)),
                             "mem_reserved": float(torch.cuda.memory_reserved(idx))}
    if idx not in _TOTAL_MEMORY:
        _TOTAL_MEMORY[idx] = torch.cuda.get_device_properties(idx).total_memory
    out["mem_total"] = float(_TOTAL_MEMORY[idx])
    try:
        out["util"] = float(torch.cuda.utilization(idx))
    except Exception:  # no NVML (pynvml missing, or a driver without it): the strip shows memory only
        pass
    return out


def snapshot(*, step: int, epoch: int, elapsed_s: float, loss: float, loss_avg: float, rate: float,
             activation: str, layers: tuple[LayerStats, ...], metrics: dict[str, float] | None = None,
             device: torch.device | None = None) -> Snapshot:
    """A probed step's snapshot (`metrics` left out when there are none, as the file has always had it), with the
    state of the CUDA device it ran on (`device_state`)."""
    return Snapshot(step=step, epoch=epoch, elapsed_s=elapsed_s, loss=loss, loss_avg=loss_avg, steps_per_s=rate,
                    activation=activation, layers=layers, metrics=metrics or None, device=device_state(device))


__all__ = ["device_state", "run_header", "snapshot", "started_now", "steps_per_s"]
