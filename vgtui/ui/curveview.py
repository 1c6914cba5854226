"""The curves' view options (issue 20), from the screen's state to what the charts take: smoothing (`~`), the x axis
in steps or in wall time (`w`), and zoom into the latest steps and back (`z` / `Z`). No Textual here.

Zoom is a trailing window: level k shows the last 1/2^k of the steps so far, ending at the latest step (live) or at
the cursor (replay, follow), so the newest points stay in view as a run grows. The range is in steps; on the time axis
its ends are the wall times of those steps (the history's Snapshot.elapsed_s, interpolated between points).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vgtui.ui.charts import SMOOTHINGS, XAxis, duration
from vgtui.ui.state import RunState

ZOOM_MAX = 12  # 1/4096 of the run at most
MIN_SPAN = 4  # steps: zooming in stops short of a range under this


def curve_key(v) -> tuple:
    """What the curves depend on besides their data (a panel's key)."""
    return (v.smooth, v.wall, v.zoom)


def last_step(states: Sequence[RunState]) -> int:
    """The latest step the curves show, over the runs on screen (0 before any point)."""
    out = 0
    for st in states:
        steps = st.curves()[0]
        if steps:
            out = max(out, int(steps[-1]))
    return out


def step_range(states: Sequence[RunState], zoom: int) -> tuple[int, int] | None:
    """The steps zoom level `zoom` shows (None: the whole run): the last 1/2^zoom of the steps so far."""
    if zoom <= 0:
        return None
    end = last_step(states)
    span = max(end / 2 ** zoom, MIN_SPAN)
    return max(0, int(round(end - span))), end


def can_zoom_in(states: Sequence[RunState], zoom: int) -> bool:
    end = last_step(states)
    return zoom < ZOOM_MAX and end / 2 ** (zoom + 1) >= MIN_SPAN


def to_time(st: RunState, xs: Sequence[float]) -> np.ndarray:
    """Steps of `st` as its seconds since the run started (interpolated between its points; 0 without any)."""
    with st.lock:
        n = st.history.upto(st.upto)
        steps, times = st.history.steps[:n], st.history.elapsed[:n]
    if not steps:
        return np.zeros(len(xs))
    return np.interp(np.asarray(xs, dtype=float), np.asarray(steps, dtype=float), np.asarray(times, dtype=float))


def xs(st: RunState, wall: bool) -> list[float] | list[int]:
    """The x of each point of `st.curves()`: its step, or its seconds since the run started."""
    return st.times() if wall else st.curves()[0]


def epoch_xs(st: RunState, epochs, wall: bool) -> list[float]:
    return [e.elapsed_s if wall else e.step for e in epochs]


def step_xs(st: RunState, steps: Sequence[int], wall: bool) -> list[float]:
    """Marks at steps (live changes, spikes) in the axis's unit."""
    return to_time(st, steps).tolist() if wall and len(steps) else [float(s) for s in steps]


def xaxis(v) -> XAxis | None:
    """The x range the curves of `v` (a RunView) show: None (steps from 0 to the run's length) unless zoomed or on
    the time axis."""
    r = step_range(v.states, v.zoom)
    if not v.wall:
        return None if r is None else XAxis(float(r[0]), float(r[1]))
    ends = [to_time(st, [r[0], r[1]]) if r else None for st in v.states]
    hi = max([float(st.times()[-1]) for st in v.states if st.times()] or [1.0])
    if r is None:
        return XAxis(0.0, hi, time=True)
    return XAxis(min(float(e[0]) for e in ends), max(float(e[1]) for e in ends), time=True)


def describe(v) -> str:
    """The curves' options in effect, in a few words for the loss panel's title (it must fit 80 columns):
    "steps 60–120 · EMA 0.9", "time 0:10–0:20"; "" when none is."""
    words = []
    r = step_range(v.states, v.zoom)
    if v.wall:
        xa = xaxis(v)
        words.append(f"time {duration(xa.lo)}–{duration(xa.hi)}" if r else "over wall time")
    elif r is not None:
        words.append(f"steps {r[0]:,}–{r[1]:,}")
    if v.smooth > 0:
        words.append(f"EMA {v.smooth:g}")
    return " · ".join(words)


def next_smoothing(current: float) -> float:
    i = SMOOTHINGS.index(current) if current in SMOOTHINGS else 0
    return SMOOTHINGS[(i + 1) % len(SMOOTHINGS)]


def spike_xs(st: RunState, wall: bool) -> list[float]:
    """The x of each loss spike of `st` shown so far (its SpikeRecords, vgtui.core.records; none before any)."""
    return step_xs(st, [s.step for s in st.visible_spikes()], wall)  # on the time axis: its step's time
