"""Loss spikes in words, and the robust score the flight recorder finds them with (numpy only: no torch).

The flight recorder (vgtui.engine.flight) keeps, every step, the loss and per layer the weight-gradient norm and
the update norm; at the trainer's checks it scores each new step against the window before it,

    score = (x - median) / (1.4826 * MAD)      (MAD: the median absolute deviation of the window before)

which is a z-score for Gaussian noise but is not moved by the outliers it is looking for. A SpikeRecord says where
the loss left its band and which layers' numbers left theirs first; `spike_words` says it for people:

    step 1,234: loss spike (score 12); fc2's update norm rose 3 steps before the loss; fc5 followed 1 step later
"""

from __future__ import annotations

import math
import warnings
from typing import Iterable

import numpy as np

from vgtui.core.records import Lead, SpikeRecord

MAD_SCALE = 1.4826  # MAD * this = the standard deviation, for Gaussian noise
METRIC_WORDS = {"grad_norm": "gradient norm", "update_norm": "update norm", "step_norm": "step norm",
                "weight_norm": "weight norm"}


def robust_scores(x: np.ndarray, window: int, start: int | None = None, floor: float = 0.0) -> np.ndarray:
    """Each value's score against the `window` values before it, (x[i] - median) / (MAD_SCALE * MAD), along the
    last axis, for i from `start` (default: `window`) on; NaN before. Non-finite values before are left out of the
    band; a non-finite value itself scores +inf. `floor` is a least spread, as a fraction of |median| (a flat series
    does not make every wiggle a spike)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    start = window if start is None else max(start, 1)
    out = np.full(x.shape, np.nan)
    if n <= start:
        return out
    lo = start - window
    pad = -lo if lo < 0 else 0
    if pad:  # too few steps before: the band is what there is
        x_p = np.concatenate([np.full(x.shape[:-1] + (pad,), np.nan), x], axis=-1)
        lo = 0
    else:
        x_p = x
    before = np.lib.stride_tricks.sliding_window_view(x_p[..., lo:lo + (n - start) + window - 1], window, axis=-1)
    finite = np.isfinite(before)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN band: NaN, said below
        if finite.all():
            med = np.median(before, axis=-1)
            mad = np.median(np.abs(before - med[..., None]), axis=-1)
        else:
            band = np.where(finite, before, np.nan)
            med = np.nanmedian(band, axis=-1)
            mad = np.nanmedian(np.abs(band - med[..., None]), axis=-1)
        spread = np.maximum(MAD_SCALE * mad, floor * np.abs(med))
        spread = np.where(spread > 0, spread, np.finfo(np.float64).tiny)
        now = x[..., start:]
        s = (now - med) / spread
    s = np.where(np.isfinite(now), s, np.inf)
    out[..., start:] = np.where(np.isnan(med), np.nan, s)
    return out


def _steps(n: int) -> str:
    return f"{n:,} step" + ("" if n == 1 else "s")


def score_number(x: float, decimals: int = 0) -> str:
    """A robust score as a number for people: '12', '3.4' (`decimals` from 10 up), '2.51e+38' from a million up
    (an explosion's loss scores 1e38 against a band of 2.3: forty digits said nothing), 'nan', 'inf'."""
    if not math.isfinite(x):
        return str(x)
    if abs(x) >= 1e6:
        return f"{x:.3g}"
    return f"{x:,.{decimals}f}" if abs(x) >= 10 else f"{x:.1f}"


def _score(x: float) -> str:
    if not math.isfinite(x):
        return "non-finite" if math.isnan(x) else "off the scale"
    return f"score {score_number(x)}"


def lead_words(leaders: Iterable[Lead], most: int = 3, n_layers: int = 0) -> str:
    """'fc2's update norm rose 3 steps before the loss; fc5 followed 1 step later' (the first `most` leaders). When
    every one of the `n_layers` layers left its band at the loss's own step, no layer led: the batch did."""
    leaders = list(leaders)
    if not leaders:
        return "no layer's numbers left their band before the loss"
    first = leaders[0]
    if first.lead == 0 and n_layers > 1 and len({l.layer for l in leaders if l.lead == 0}) >= n_layers:
        return f"all {n_layers} layers moved at the loss's own step, none before (the batch, not a layer)"
    what = f"{first.layer}'s {METRIC_WORDS.get(first.metric, first.metric)} rose"
    if first.lead > 0:
        parts = [f"{what} {_steps(first.lead)} before the loss"]
    elif first.lead == 0:
        parts = [f"{what} at the same step as the loss"]
    else:
        parts = [f"{what} {_steps(-first.lead)} after the loss"]
    for l in leaders[1:most]:
        later = l.step - first.step
        parts.append(f"{l.layer} followed {_steps(later)} later" if later else f"{l.layer} at the same step")
    if len(leaders) > most:
        parts[-1] += f" (and {len(leaders) - most} more)"
    return "; ".join(parts)


def spike_words(rec: SpikeRecord) -> str:
    """One line for people: 'step 1,234: loss spike (score 12); fc2's update norm rose 3 steps before the loss;
    fc5 followed 1 step later'. The names come from the record (made safe to show when it was read)."""
    what = "loss explosion" if rec.kind == "explosion" else "loss spike"
    branch = f" (branch {rec.branch})" if rec.branch else ""
    n_layers = max((len(v) for v in rec.series.values()), default=0)
    return f"step {rec.step:,}{branch}: {what} ({_score(rec.score)}); {lead_words(rec.leaders, n_layers=n_layers)}"


def spikes_summary(spikes: list[SpikeRecord]) -> str:
    """'2 loss spikes: fc3 led 1, fc2 led 1' or 'no loss spikes' (the end of a run)."""
    if not spikes:
        return "no loss spikes"
    led: dict[str, int] = {}
    for s in spikes:
        name = s.leader.layer if s.leader else "no layer"
        led[name] = led.get(name, 0) + 1
    n = len(spikes)
    return f"{n} loss spike{'' if n == 1 else 's'}: " + ", ".join(f"{k} led {v}" for k, v in led.items())
