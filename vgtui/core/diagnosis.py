"""Plain-words diagnosis of gradient flow, shared by the headless summary and the UI's badge (no torch)."""

from __future__ import annotations

import math
from typing import Sequence

VANISHING_BELOW = 1e-2  # fc1 gets less than 1% of the last layer's gradient
EXPLODING_ABOVE = 1e2  # fc1 gets more than 100x the last layer's gradient
EXPLODING_NORM = 1e3  # or any layer's weight gradient norm is this large

DIAGNOSES = ("vanishing", "healthy", "exploding", "diverged")


def diagnose(ratio: float, grad_norms: Sequence[float] = ()) -> str:
    """'vanishing' | 'healthy' | 'exploding' | 'diverged' from the first/last layer gradient-norm ratio."""
    if not math.isfinite(ratio) or any(not math.isfinite(g) for g in grad_norms):
        return "diverged"
    if ratio > EXPLODING_ABOVE or any(g > EXPLODING_NORM for g in grad_norms):
        return "exploding"
    if ratio < VANISHING_BELOW:
        return "vanishing"
    return "healthy"


def explain(diagnosis: str, ratio: float, first: str = "fc1", last: str = "the output layer") -> str:
    """One sentence for people."""
    r = f"{ratio:.1e}" if math.isfinite(ratio) else str(ratio)
    if diagnosis == "vanishing":
        return (f"VANISHING: {first} gets {r} of {last}'s gradient, so the first layers barely learn. "
                "Try relu + kaiming, batchnorm, or skip connections.")
    if diagnosis == "exploding":
        return f"EXPLODING: {first} gets {r}x {last}'s gradient. Try a lower --lr, batchnorm, or xavier init."
    if diagnosis == "diverged":
        return "DIVERGED: non-finite gradients. Try a lower --lr, batchnorm, or a different init."
    return f"HEALTHY: {first} gets {r} of {last}'s gradient: every layer learns."
