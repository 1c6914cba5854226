"""Plain-words diagnosis, shared by the headless summary and the UI's badge (no torch): a verdict on gradient flow
(from the first/last layer gradient-norm ratio) and, beside it, one on learning (from the training loss): flowing
gradients alone do not make a healthy run."""

from __future__ import annotations

import math
import statistics
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
    if diagnosis == "exploded":  # a run the trainer ended for a loss far above chance (no NaN)
        return ("EXPLODING: the training loss grew far above chance without a NaN: the steps are far too large. "
                "Try a much lower --lr (divide by 100), batchnorm, or xavier init.")
    return f"HEALTHY: {first} gets {r} of {last}'s gradient: every layer learns."


# ---------------------------------------------------------------------------------------------- learning
# A training loss this many times chance (ln of the number of classes: 2.30 for 10) means logits in the hundreds:
# the weights have blown up. The trainer ends such a run as it ends a NaN (status "diverged", exit 3).
EXPLODED_X_CHANCE = 100
RISING_X = 1.1  # recent loss above 1.1x its start (or chance, if higher): the steps make it worse
AT_CHANCE_X = 0.95  # recent loss within 5% of chance, or accuracy under 1.5x chance: nothing learnt yet

LEARNING = ("too early", "learning", "stalled", "rising", "exploding")


def chance_loss(n_classes: int = 10) -> float:
    """Cross-entropy of a uniform guess over n_classes."""
    return math.log(max(n_classes, 2))


def exploded(loss: float, n_classes: int = 10) -> bool:
    """A mean training loss that says the run exploded (without a NaN, or before one)."""
    return math.isfinite(loss) and loss > EXPLODED_X_CHANCE * chance_loss(n_classes)


def judge_learning(losses: Sequence[float], n_classes: int = 10, accuracy: float | None = None) -> str:
    """One of LEARNING from the mean training loss at each snapshot (in order) and the latest accuracy (None if
    unknown): compares the last quarter of the snapshots with the first and with chance."""
    finite = [l for l in losses if math.isfinite(l)]
    if len(finite) < 2:
        return "too early"
    chance = chance_loss(n_classes)
    recent = statistics.fmean(finite[-max(1, len(finite) // 4):])
    if exploded(recent, n_classes):
        return "exploding"
    if recent > RISING_X * max(finite[0], chance):
        return "rising"
    if recent > AT_CHANCE_X * chance or (accuracy is not None and accuracy < 1.5 / n_classes):
        return "stalled"
    return "learning"


def explain_learning(verdict: str, losses: Sequence[float], n_classes: int = 10, accuracy: float | None = None,
                     flow: str = "healthy") -> str:
    """One sentence for people on the learning verdict; `flow` (the gradient verdict) picks what to try."""
    finite = [l for l in losses if math.isfinite(l)]
    chance = chance_loss(n_classes)
    start, now = (f"{finite[0]:.3g}", f"{finite[-1]:.3g}") if finite else ("?", "?")
    acc = f", accuracy {accuracy:.0%}" if accuracy is not None else ""
    if verdict == "exploding":
        return (f"EXPLODING: the loss reached {now} (chance is {chance:.2f}) without a NaN: the steps are far too "
                "large. Try a much lower --lr (divide by 100), batchnorm, or xavier init.")
    if verdict == "rising":
        cure = "Try a lower --lr (divide by 10) or batchnorm."
        if flow == "healthy":
            cure = "The gradients flow, but the steps overshoot: try a lower --lr (divide by 10) or batchnorm."
        return f"LOSS RISING: the loss went from {start} to {now} (chance is {chance:.2f}){acc}. {cure}"
    if verdict == "stalled":
        cure = ("The vanishing gradients above are why: try relu + kaiming, batchnorm, or skip connections."
                if flow == "vanishing" else "The gradients flow but nothing is learnt yet: give it more steps, or "
                "try a lower --lr, batchnorm, or --optimizer adam.")
        return f"NOT LEARNING: the loss stays at chance ({now}; chance is {chance:.2f}){acc}. {cure}"
    if verdict == "learning":
        return f"LEARNING: the loss fell from {start} to {now} (chance is {chance:.2f}){acc}."
    return "TOO EARLY to say whether it learns: fewer than two snapshots."


def badge(flow: str, learning: str) -> str:
    """The one word for the UI's badge from both verdicts, the worst first: DIVERGED, EXPLODING, VANISHING, LOSS
    RISING, NOT LEARNING, HEALTHY (gradients flow and the loss falls, or it is too early to tell)."""
    if flow == "diverged":
        return "DIVERGED"
    if flow == "exploding" or learning == "exploding":
        return "EXPLODING"
    if flow == "vanishing":
        return "VANISHING"
    if learning == "rising":
        return "LOSS RISING"
    if learning == "stalled":
        return "NOT LEARNING"
    return "HEALTHY"
