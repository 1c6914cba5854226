"""What a trainer's logs add to a snapshot: its numbers, less the ones that are not about the training."""

from __future__ import annotations

from typing import Any, Mapping

import torch

# A trainer's bookkeeping, not its training: timings and throughput, floating-point operation counts, the epoch
# (a counter), and the loss (the snapshot's own field).
SKIP_SUFFIXES = ("_runtime", "_per_second", "_flos")
SKIP = frozenset({"epoch", "loss", "learning_rate", "lr", "total_flos", "train_loss", "step"})


def numbers(logs: Mapping[str, Any]) -> dict[str, Any]:
    """The logged values that belong in a snapshot: floats and ints (not bools), and one-element tensors (left
    on their device), under their logged names."""
    out: dict[str, Any] = {}
    for k, v in logs.items():
        if not isinstance(k, str) or k in SKIP or k.endswith(SKIP_SUFFIXES):
            continue
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out[k] = float(v)
        elif isinstance(v, torch.Tensor) and v.numel() == 1:
            out[k] = v.detach()
    return out


def first_lr(optimizer: Any) -> Any:
    """The learning rate of the optimiser's first parameter group (None when it has none)."""
    try:
        lr = optimizer.param_groups[0]["lr"]
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    if isinstance(lr, torch.Tensor):  # capturable optimisers: left on the device (no sync)
        return lr.detach() if lr.numel() == 1 else None
    return float(lr) if isinstance(lr, (int, float)) else None
