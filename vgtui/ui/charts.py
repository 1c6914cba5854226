"""Chart builders: plain data in, a plotext 6 figure out as a string with ANSI colours (no Textual here).

Every function takes the size in terminal cells and returns what `plotext.figure.build().string()` gives. They
run on the UI thread only (plotext's figure is one global object). Histograms arrive already binned by the
engine, so they are drawn as bars, never with `hist()`. Log axes have fixed decades chosen per metric: they are
never rescaled from the data, so a healthy run never looks as if it vanished when a big value appears.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotext as plt

from vgtui.core.records import Hist
from vgtui.ui import colours
from vgtui.ui.state import Metric, TAGS, shown

FIG = plt.figure

# 256-colour codes. Layers run from cold (fc1, deepest from the loss) to warm (the output layer).
LAYER_RAMP = colours.LAYER_RAMP
AXIS_COLOUR = colours.AXIS
LOSS_COLOUR = colours.LOSS
TRAIN_COLOUR = colours.TRAIN_ACC
TEST_COLOUR = colours.TEST_ACC
USER_COLOURS = colours.USER  # the user's metrics in the loss chart, in name order
# A user's metric drawn on the accuracy axis (0..100%): one whose name says it is an accuracy ("acc", "val_acc",
# "accuracy", "top1", "top-5") and whose values lie in 0..1. A learning rate or a fraction of another kind, also in
# 0..1, is not an accuracy: the status line shows its latest value, no axis claims it.
ACCURACY_NAME = re.compile(r"acc|top-?\d", re.IGNORECASE)


def is_accuracy(name: str) -> bool:
    return bool(ACCURACY_NAME.search(str(name)))


# Where a user's metric is drawn (issue 20): "acc" the loss chart's accuracy axis (0..1 as 0..100%), "loss" the loss's
# own axis, "log" / "linear" a chart of its own (the curves panel's "your metrics", `m`). The run says it
# (vgtui.watch(axes={"lr": "log"}), the header's `axes`); without a say, an accuracy by its name ("acc", "top1")
# whose values all lie in 0..1 goes on the accuracy axis, and any other metric, a learning rate in 0..1 included,
# on a chart of its own ("own": log when its values are positive and span two decades or more, else linear).
USER_AXES = ("acc", "loss", "log", "linear")
SPIKE_COLOUR = colours.SPIKE


def user_axis(name: str, values: Sequence[float], axes: dict[str, str] | None = None) -> str:
    """The axis a user's metric is drawn on: what `axes` says of it, else "acc" for an accuracy in 0..1, else
    "own" (a chart of its own; `own_scale` picks log or linear)."""
    said = (axes or {}).get(name)
    if said in USER_AXES:
        return said
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if is_accuracy(name) and v.size and v.min() >= 0 and v.max() <= 1:
        return "acc"
    return "own"


def own_scale(values: np.ndarray) -> str:
    """A metric's own chart: "log" when every value is positive and they span two decades or more."""
    v = values[np.isfinite(values)]
    return "log" if v.size and v.min() > 0 and v.max() / v.min() >= 100 else "linear"
EVENT_COLOUR = colours.EVENT
B_COLOUR = colours.RUN_B  # run B, beside run A in LOSS_COLOUR
RUN_COLOURS = colours.RUN  # the runs on one screen, in TAGS' order (A in LOSS_COLOUR, B in B_COLOUR, C...)

_THEMES = {True: "vgtui", False: "colorless"}
plt.add_theme("vgtui", text=AXIS_COLOUR, sequence=list(LAYER_RAMP))


def layer_colours(n: int) -> list[int]:
    """n colours spread over the ramp (fc1 coldest, the output layer warmest)."""
    if n <= 1:
        return [LAYER_RAMP[-1]] * n
    k = len(LAYER_RAMP) - 1
    return [LAYER_RAMP[round(i * k / (n - 1))] for i in range(n)]


def _start(width: int, height: int, colour: bool) -> None:
    FIG.clear()
    FIG.theme(_THEMES[colour])
    FIG.plot_size(max(width, 8), max(height, 3))


def _finish(colour: bool) -> str:
    return FIG.build().string(colorless=not colour)


def _marker(symbol: str, code: int, colour: bool):
    return plt.marker(symbol, pixel=code) if colour else symbol


def fmt(v: float | None) -> str:
    if v is None:
        return "   -   "
    if not math.isfinite(v):
        return f"{v!s:>7}"
    return f"{v:7.1e}"


def decade_label(p: int) -> str:
    return f"1e{p}"


def _decade_ticks(lo: int, hi: int, room: int) -> tuple[list[float], list[str]]:
    """Tick every decade, or every 2nd/5th when the axis is short of room (`room` cells along it)."""
    n = hi - lo
    step = next((s for s in (1, 2, 5, 10) if n / s * 6 <= room), 10)
    ps = list(range(lo, hi + 1, step))
    return [float(p - lo) for p in ps], [decade_label(p) for p in ps]


def _step_ticks(xmax: float, room: int) -> list[float]:
    """Whole, round step ticks from 0 to xmax, about one per 14 cells."""
    want = max(2, min(6, room // 14))
    raw = max(xmax / want, 1.0)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    ticks = [i * step for i in range(int(xmax // step) + 1)]
    return ticks


def _downsample(x: np.ndarray, ys: list[np.ndarray], limit: int) -> tuple[np.ndarray, list[np.ndarray]]:
    if len(x) <= limit:
        return x, ys
    idx = np.unique(np.linspace(0, len(x) - 1, limit).round().astype(int))
    return x[idx], [y[idx] for y in ys]


def _bins(hist: Hist | None) -> tuple[np.ndarray, np.ndarray] | None:
    """A histogram's (edges, counts) as floats when they can be drawn: at least one bin, len(edges) =
    len(counts) + 1, finite edges (a file's odd histogram draws as none instead of failing)."""
    if hist is None:
        return None
    try:
        edges = np.asarray(hist.edges, dtype=float).ravel()
        counts = np.asarray(hist.counts, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    if counts.size == 0 or edges.size != counts.size + 1 or not np.isfinite(edges).all():
        return None
    return edges, np.where(np.isfinite(counts) & (counts > 0), counts, 0.0)


MAX_GRID = 48  # per-layer histograms drawn at most (a panel holds no more that can be read)

# ---------------------------------------------------------------------------------------------- activations
SPARK = " ▁▂▃▄▅▆▇█"


def spark(hist: Hist, width: int) -> str:
    """A one-row histogram for tight layouts: `width` cells of ▁..█, each the max of the bins it covers."""
    bins = _bins(hist)
    if width <= 0 or bins is None:
        return ""
    counts = bins[1]
    groups = np.array_split(counts, min(width, counts.size))
    cells = np.array([g.max() if g.size else 0.0 for g in groups])
    top = cells.max()
    if top <= 0:
        return " " * len(cells)
    levels = np.ceil(cells / top * (len(SPARK) - 1)).astype(int)
    return "".join(SPARK[i] for i in levels)


def act_hist(hist: Hist, width: int, height: int, colour_code: int, colour: bool = True) -> str:
    """A frameless area chart of one layer's activations over the activation's fixed range, counts scaled to
    the layer's own largest bin (the shape is what tells saturation). The engine's bins are drawn as they
    are: an area through the bin centres, filled down to the axis."""
    _start(width, height, colour)
    bins = _bins(hist)
    if bins is None or bins[0][0] >= bins[0][-1]:
        FIG.axes(False)
        return _finish(colour)
    edges, counts = bins
    centres = (edges[:-1] + edges[1:]) / 2
    top = counts.max() if counts.size and counts.max() > 0 else 1.0
    if counts.size > 2:  # one spike (ReLU's exact zeros, sigmoid pinned at 0 or 1) would flatten the rest:
        second = np.sort(counts)[-2]  # scale to the runner-up and let the spike run off the top
        if second > 0 and top > 3 * second:
            top = 1.5 * second
    FIG.draw(FIG.signal(centres.tolist(), np.minimum(counts / top, 1.0).tolist(),
                        marker=_marker("hd", colour_code, colour)).lines().fillx())
    FIG.axes(False)
    FIG.ruler("y").lim(0, 1)
    FIG.ruler("y").ticks([])
    FIG.ruler("x").lim(float(edges[0]), float(edges[-1]))
    FIG.ruler("x").ticks([])
    return _finish(colour)


# ---------------------------------------------------------------------------------------------- curves
# Smoothing, the x axis and zoom (issue 20): the curves' own view of their data. A chart is given an `XAxis` (the
# range it shows, in steps or in seconds of wall time) and a smoothing weight; its data arrive with x already in the
# axis's unit (vgtui.ui.curveview turns steps into seconds and the zoom into a range).
SMOOTHINGS = (0.0, 0.6, 0.9, 0.99)  # the EMA weights `~` cycles through (0: off)


@dataclass(frozen=True)
class XAxis:
    """The x range a curve chart shows: `lo`..`hi` (None: from 0 to the run's length or its data's end), in steps,
    or in seconds since the run started (`time`)."""

    lo: float = 0.0
    hi: float | None = None
    time: bool = False


def ema(rows: np.ndarray, weight: float) -> np.ndarray:
    """An exponential moving average along the last axis, debiased as TensorBoard's is (the first points are not
    pulled towards 0): s_t = w s_{t-1} + (1 - w) x_t, shown as s_t / (1 - w^n) after n finite points. A non-finite
    point is skipped (nan where it was; the average goes on from the point before). `weight` 0: `rows` as they are."""
    y = np.asarray(rows, dtype=float)
    if weight <= 0 or y.size == 0:
        return y
    flat = y.reshape(-1, y.shape[-1])
    out = np.full_like(flat, np.nan)
    acc = np.zeros(flat.shape[0])
    n = np.zeros(flat.shape[0])
    for t in range(flat.shape[1]):  # over points, every series at once (a hundred layers cost one loop)
        v = flat[:, t]
        ok = np.isfinite(v)
        acc = np.where(ok, acc * weight + (1 - weight) * np.where(ok, v, 0.0), acc)
        n += ok
        out[:, t] = np.where(ok, acc / (1 - weight ** np.maximum(n, 1)), np.nan)
    return out.reshape(y.shape)


def crop(x: np.ndarray, ys: list[np.ndarray], xa: XAxis | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The points of a zoomed axis's range (all of them without one)."""
    if xa is None or (xa.lo <= 0 and xa.hi is None):
        return x, ys
    keep = (x >= xa.lo) & (x <= (math.inf if xa.hi is None else xa.hi))
    return x[keep], [y[keep] for y in ys]


def duration(s: float) -> str:
    """Seconds as a time-axis label: 1.2s, 45s, 12:30 (minutes), 2h05."""
    s = max(float(s), 0.0)
    if s < 10:
        return f"{s:.2g}s"
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}:{int(s % 60):02d}"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}"


TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600, 86400)


def _range_ticks(lo: float, hi: float, room: int, time: bool) -> list[float]:
    """Round ticks from lo to hi, about one per 14 cells: steps of 1, 2, 2.5, 5 x 10^k, or whole seconds/minutes."""
    want = max(2, min(6, room // 14))
    raw = max((hi - lo) / want, 1e-9 if time else 1.0)
    if time and raw >= 1:
        step = next((t for t in TIME_STEPS if t >= raw), TIME_STEPS[-1] * math.ceil(raw / TIME_STEPS[-1]))
    else:
        mag = 10 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9)
    ticks = [k * step for k in range(first, int(hi // step + 1e-9) + 1)]
    if len(ticks) < 2:  # a narrow zoomed range: its two ends
        ticks = [round(lo, 1), round(hi, 1)] if time else [float(math.ceil(lo)), float(math.floor(hi))]
    return ticks


def _x_range(xa: XAxis | None, xmax: float) -> tuple[float, float]:
    """The x limits a chart draws: the axis's range, or 0..xmax."""
    if xa is None:
        return 0.0, xmax
    hi = xmax if xa.hi is None else xa.hi
    return xa.lo, max(hi, xa.lo + (1e-3 if xa.time else 1.0))


def _faint(code: int, colour: bool):
    """The raw curve behind a smoothed one: thin (braille) and dim."""
    return _band_marker(code, colour)


def _events(p, events: Sequence[int], ylo: float, yhi: float, colour: bool) -> None:
    for e in events:  # a vertical mark where a live change happened (figure.line paints a white background)
        p.draw(p.segment([float(e), float(e)], [ylo, yhi], marker=_marker("│", EVENT_COLOUR, colour)))


@dataclass(frozen=True)
class LossRun:
    """One run of the loss chart: its loss per probe, its accuracies per epoch, its live changes' steps."""

    steps: Sequence[int]
    loss: Sequence[float]
    epoch_steps: Sequence[int]
    train_acc: Sequence[float]
    test_acc: Sequence[float]
    events: Sequence[int]
    total_steps: int


@dataclass(frozen=True)
class LayerRun:
    """One run of the per-layer chart: a metric's series per layer over its steps."""

    steps: Sequence[int]
    series: Sequence[Sequence[float]]
    names: Sequence[str]
    total_steps: int


@dataclass(frozen=True)
class PreRun:
    """One run of the pre-activation chart: each hidden layer's percentile bands over its steps."""

    steps: Sequence[int]
    names: Sequence[str]
    bands: Sequence[Sequence[Sequence[float]]]
    total_steps: int


def loss_curves(steps: Sequence[int], loss: Sequence[float], epoch_steps: Sequence[int],
                train_acc: Sequence[float], test_acc: Sequence[float], events: Sequence[int], total_steps: int,
                width: int, height: int, colour: bool = True, user: dict[str, Sequence[float]] | None = None,
                smooth: float = 0.0, xaxis: XAxis | None = None, axes: dict[str, str] | None = None,
                spikes: Sequence[float] = (), trace: tuple[Sequence[int], Sequence[float]] | None = None) -> str:
    """Training loss over steps (left axis, linear) and train/test accuracy per epoch (right axis, 0..100%);
    `user`: the user's own metrics per probe (vgtui.watch's metrics=, aligned with `steps`): those whose axis
    (`user_axis`, said by `axes` or by name) is "acc" on the right axis as dots, "loss" on the loss's axis as lines;
    the others are not drawn here (the curves panel's "your metrics", `user_metrics`).
    `smooth`: an EMA weight (`ema`): the loss smoothed, its raw curve faint behind. `xaxis`: the range shown (x
    values, `epoch_steps`, `events` and `spikes` in its unit: steps, or seconds). `spikes`: a ▲ on the loss curve
    at each spike's x (vgtui.core.records.SpikeRecord).
    `trace`: the previous run's (steps, loss), drawn faint under this one's (a lesson's restart; steps only).
    """
    _start(width, height, colour)
    x = np.asarray(steps, dtype=float)
    y = np.asarray(loss, dtype=float)
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    x, (y, ys) = crop(x, [y, ema(y, smooth)], xaxis)
    x, (y, ys) = _downsample(x, [y, ys], max(width, 10))
    xmax = float(max(total_steps, x.max() if x.size else 1, 1))
    lo, hi = _x_range(xaxis, xmax)
    ymax = float(max(y.max(), 0.1)) * 1.05 if y.size else 2.5
    tx, ty = _trace_line(trace, xmax, width)
    if ty.size:
        ymax = max(ymax, float(ty.max()) * 1.05)
        FIG.draw(FIG.signal(tx.tolist(), ty.tolist(), marker=_marker("hd", TRACE_COLOUR, colour)).lines())
    _events(FIG, [e for e in events if lo <= e <= hi], 0, ymax, colour)
    if x.size:
        if smooth > 0:
            FIG.draw(FIG.signal(x.tolist(), y.tolist(), marker=_faint(LOSS_COLOUR, colour)).lines())
            FIG.draw(FIG.signal(x.tolist(), ys.tolist(), marker=_marker("hd", LOSS_COLOUR, colour)).lines())
        else:
            FIG.draw(FIG.signal(x.tolist(), y.tolist(), marker=_marker("hd", LOSS_COLOUR, colour)).lines())
    FIG.ruler("y", 0).lim(0, ymax)
    n_user = {k: min(len(v), len(steps)) for k, v in (user or {}).items()}  # a history that grew between reads
    placed = sorted((k, user_axis(k, (user or {})[k][:n], axes)) for k, n in n_user.items())
    for (name, axis), code in zip(placed, itertools.cycle(USER_COLOURS)):
        if axis not in ("acc", "loss"):
            continue
        n = n_user[name]
        v = np.asarray(user[name][:n], dtype=float)
        ok = np.isfinite(v)
        ux, (uy,) = crop(np.asarray(steps[:n], dtype=float)[ok], [ema(v[ok], smooth)], xaxis)
        ux, (uy,) = _downsample(ux, [uy], max(width, 10))
        if ux.size:
            if axis == "acc":
                FIG.draw(FIG.signal(ux.tolist(), np.clip(uy, 0, 1).tolist(), marker=_marker("•", code, colour),
                                    yside="right").lines())
            else:
                FIG.draw(FIG.signal(ux.tolist(), np.minimum(uy, ymax).tolist(), marker=_marker("•", code, colour))
                         .lines())
    if epoch_steps:
        for acc, code in ((train_acc, TRAIN_COLOUR), (test_acc, TEST_COLOUR)):
            pts = [(float(e), float(a)) for e, a in zip(epoch_steps, acc) if lo <= e <= hi]
            if pts:
                FIG.draw(FIG.signal([p[0] for p in pts], [p[1] for p in pts],
                                    marker=_marker("●", code, colour), yside="right").lines())
    marks = [(float(s), float(np.interp(s, x, y))) for s in spikes if x.size and lo <= s <= hi]
    if marks:  # on the raw loss curve at the spike's step (a smoothed one lags behind the spike)
        FIG.draw(FIG.signal([m[0] for m in marks], [min(m[1], ymax) for m in marks],
                            marker=_marker("▲", SPIKE_COLOUR, colour)))
    return _finish_loss_axes(xmax, width, height, colour, xaxis)


TRACE_COLOUR = 240  # the previous run's curves, under this run's: a dim grey


def _trace_line(trace: tuple[Sequence[int], Sequence[float]] | None, xmax: float,
                width: int) -> tuple[np.ndarray, np.ndarray]:
    """A previous run's curve, its finite points within this chart's steps (0..xmax), downsampled."""
    if trace is None:
        return np.zeros(0), np.zeros(0)
    n = min(len(trace[0]), len(trace[1]))
    x, y = np.asarray(trace[0][:n], dtype=float), np.asarray(trace[1][:n], dtype=float)
    ok = np.isfinite(y) & (x <= xmax)
    x, (y,) = _downsample(x[ok], [y[ok]], max(width, 10))
    return x, y


def _step_axis(xmax: float, width: int, xa: XAxis | None = None) -> None:
    """Steps on x, from 0 to `xmax`, ticks that fit `width`; with an `XAxis`, its range (zoomed, or in seconds)."""
    lo, hi = _x_range(xa, xmax)
    FIG.ruler("x").lim(lo, hi)
    if lo == 0 and not (xa and xa.time):
        xt = _step_ticks(hi, width)
        FIG.ruler("x").ticks(xt, [f"{t:g}" for t in xt])
    else:
        xt = _range_ticks(lo, hi, width, bool(xa and xa.time))
        FIG.ruler("x").ticks(xt, [duration(t) if xa and xa.time else f"{t:g}" for t in xt])


def _finish_metric_axes(m: Metric, log: bool, ymax: float, xmax: float, width: int, height: int,
                        colour: bool, xa: XAxis | None = None) -> str:
    """A per-layer metric chart's axes (the metric's fixed decades when log) and the finished figure."""
    FIG.ruler("y").lim(0, ymax)
    if log:
        FIG.ruler("y").ticks(*_decade_ticks(m.lo, m.hi, (height - 2) * 3))
    _step_axis(xmax, width, xa)
    return _finish(colour)


def _finish_loss_axes(xmax: float, width: int, height: int, colour: bool, xa: XAxis | None = None) -> str:
    """The loss charts' axes (steps on x, accuracy 0..100% on the right) and the finished figure."""
    FIG.ruler("y", 1).lim(0, 1)
    FIG.ruler("y", 1).ticks([0, 0.5, 1], ["0%", "50%", "100%"])
    _step_axis(xmax, width, xa)
    FIG.ruler("y", 0).frequency(max(2, min(5, height // 4)))
    return _finish(colour)


def layer_lines(steps: Sequence[int], series: Sequence[Sequence[float]], names: Sequence[str], m: Metric,
                log: bool, total_steps: int, events: Sequence[int], width: int, height: int,
                colour: bool = True, smooth: float = 0.0, xaxis: XAxis | None = None,
                trace: tuple[Sequence[int], Sequence[Sequence[float]]] | None = None) -> str:
    """One line per layer over steps; log y with the metric's fixed decades (or linear from 0). `smooth`: each
    line an EMA (`ema`) of what is drawn (of log10 on a log axis); `xaxis`: the range shown (x in its unit).
    `trace`: the previous run's (steps, one series per layer), drawn faint under this run's (a lesson's
    restart; steps only)."""
    _start(width, height, colour)
    x = np.asarray(steps, dtype=float)
    ys = [np.asarray(s, dtype=float) for s in series]
    if log:
        ys = [np.clip(np.log10(np.where(np.isfinite(y) & (y > 0), y, np.nan)) - m.lo, 0, m.hi - m.lo) for y in ys]
    if smooth > 0 and ys and x.size:
        n = min(min(len(y) for y in ys), len(x))
        ys = list(ema(np.array([y[:n] for y in ys]), smooth))
        x = x[:n]
    x, ys = crop(x, ys, xaxis)
    x, ys = _downsample(x, ys, max(width, 10))
    cols = layer_colours(len(names))
    xmax = float(max(total_steps, x.max() if x.size else 1, 1))
    lo, hi = _x_range(xaxis, xmax)
    lines, top = [], 0.0
    faint = []
    for y in (trace[1] if trace else ()):
        tx, ty = _trace_line((trace[0], y), xmax, width)
        if log:
            ty = np.clip(np.log10(np.where(np.isfinite(ty) & (ty > 0), ty, np.nan)) - m.lo, 0, m.hi - m.lo)
        faint.append(((tx, ty), TRACE_COLOUR))
    for (xt, v), c in faint + [((x, v), c) for v, c in zip(ys, cols)]:
        if not v.size:
            continue
        ok = np.isfinite(v)
        if ok.any():
            top = max(top, float(v[ok].max()))
            lines.append((xt[ok], v[ok], c))
    ymax = float(m.hi - m.lo) if log else (top * 1.05 if top > 0 else 1.0)
    _events(FIG, [e for e in events if lo <= e <= hi], 0, ymax, colour)
    for xx, vv, c in lines:
        FIG.draw(FIG.signal(xx.tolist(), vv.tolist(), marker=_marker("hd", c, colour)).lines())
    return _finish_metric_axes(m, log, ymax, xmax, width, height, colour, xaxis)


NO_USER = "no metrics of your own on a chart of their own (vgtui.watch: probe.step(metrics={...}), axes={...})"


def user_metrics(x: Sequence[float], user: dict[str, Sequence[float]], axes: dict[str, str] | None,
                 total_steps: float, width: int, height: int, colour: bool = True, smooth: float = 0.0,
                 xaxis: XAxis | None = None, log: bool = True) -> str:
    """The user's metrics that have no place on the loss chart (`user_axis` not "acc" or "loss"), each on a
    y axis of its own, in a grid of small charts: "log" (decades, 1e-4) or "linear" as the run said, else
    `own_scale` (with `log` False: all linear). `x` aligned with every series (steps, or seconds)."""
    xs = np.asarray(x, dtype=float)
    mine = []
    for i, name in enumerate(sorted(user)):
        vals = np.asarray(user[name][:len(xs)], dtype=float)
        axis = user_axis(name, vals, axes)
        if axis in ("acc", "loss"):
            continue
        scale = axis if axis in ("log", "linear") else own_scale(vals)
        mine.append((name, vals, "log" if scale == "log" and log else "linear", USER_COLOURS[i % len(USER_COLOURS)]))
    if not mine:
        return NO_USER
    mine = mine[:MAX_GRID]
    _start(width, height, colour)
    n = len(mine)
    cols = max(1, min(n, width // 36, 4))
    rows = -(-n // cols)
    while rows > 1 and height // rows < 6 and cols < n:
        cols += 1
        rows = -(-n // cols)
    if n > 1:
        FIG.subplots(rows, cols)
    xmax = float(max(total_steps, xs.max() if xs.size else 1, 1))
    for i in range(rows * cols):
        p = FIG.subplot(i // cols + 1, i % cols + 1) if n > 1 else FIG
        p.theme(_THEMES[colour])
        if i >= n:
            p.axes(False)
            p.ruler("x").ticks([])
            p.ruler("y").ticks([])
            continue
        name, vals, scale, code = mine[i]
        _user_chart(p, name, xs[:len(vals)], vals, scale, code, xmax, width // cols, height // rows, colour, smooth,
                    xaxis)
    return _finish(colour)


def _user_chart(p, name: str, x: np.ndarray, vals: np.ndarray, scale: str, code: int, xmax: float, width: int,
                height: int, colour: bool, smooth: float, xaxis: XAxis | None) -> None:
    """One user metric on its own axis (log: log10 of its positive values, ticks at decades)."""
    p.title(shown(f"{name} · {scale}"))
    v = np.log10(np.where(vals > 0, vals, np.nan)) if scale == "log" else vals.astype(float)
    ok = np.isfinite(v)
    xx, (raw, sm) = crop(x[ok], [v[ok], ema(v[ok], smooth)], xaxis)
    xx, (raw, sm) = _downsample(xx, [raw, sm], max(width, 10))
    if xx.size:
        if smooth > 0:
            p.draw(p.signal(xx.tolist(), raw.tolist(), marker=_faint(code, colour)).lines())
        p.draw(p.signal(xx.tolist(), sm.tolist(), marker=_marker("hd", code, colour)).lines())
        lo, hi = float(raw.min()), float(raw.max())
    else:
        lo, hi = 0.0, 1.0
    if scale == "log":
        a, b = math.floor(lo), max(math.ceil(hi), math.floor(lo) + 1)
        p.ruler("y").lim(a, b)
        ps = list(range(a, b + 1, max(1, -(-(b - a) // max(2, (height - 3) // 2)))))
        p.ruler("y").ticks([float(q) for q in ps], [decade_label(q) for q in ps])
    else:
        pad = (hi - lo) * 0.05 or max(abs(hi) * 0.05, 0.1)
        p.ruler("y").lim(lo - pad, hi + pad)
        p.ruler("y").frequency(max(2, min(4, height // 4)))
    xlo, xhi = _x_range(xaxis, xmax)
    p.ruler("x").lim(xlo, xhi)
    xt = _range_ticks(xlo, xhi, width, bool(xaxis and xaxis.time))
    p.ruler("x").ticks(xt, [duration(t) if xaxis and xaxis.time else f"{t:g}" for t in xt])


def loss_compare(runs: Sequence[LossRun], labels: Sequence[str], width: int, height: int,
                 colour: bool = True, smooth: float = 0.0, xaxis: XAxis | None = None) -> str:
    """Several runs' loss (lines) and test accuracy (dots, right axis) over the same steps, each in its colour
    (RUN_COLOURS: A in LOSS_COLOUR, B in B_COLOUR, ...)."""
    _start(width, height, colour)
    xmax, ymax = 1.0, 0.1
    # A diverged run's loss would flatten the other's: the axis stops at 3x the larger median of the runs that
    # did not blow up (a cross-entropy median above 100 did), and what lies above is drawn at the top.
    finite = [y[np.isfinite(y)] for y in (np.asarray(r.loss, dtype=float) for r in runs)]
    medians = [float(np.median(y)) for y in finite if y.size]
    cap = 3 * max([m for m in medians if m < 100], default=math.inf)
    for run, code in zip(runs, RUN_COLOURS):
        steps, loss, ep_steps, test, total = run.steps, run.loss, run.epoch_steps, run.test_acc, run.total_steps
        x, y = np.asarray(steps, dtype=float), np.asarray(loss, dtype=float)
        ok = np.isfinite(y)
        x, (y,) = crop(x[ok], [ema(np.minimum(y[ok], cap), smooth)], xaxis)  # smoothed: no raw behind two runs
        x, (y,) = _downsample(x, [y], max(width, 10))
        xmax = max(xmax, float(total), float(x.max()) if x.size else 0.0)
        if x.size:
            ymax = max(ymax, float(y.max()))
            FIG.draw(FIG.signal(x.tolist(), y.tolist(), marker=_marker("hd", code, colour)).lines())
        lo, hi = _x_range(xaxis, math.inf)
        pts = [(float(e), float(a)) for e, a in zip(ep_steps, test) if lo <= e <= hi]
        if pts:
            FIG.draw(FIG.signal([p[0] for p in pts], [p[1] for p in pts],
                                marker=_marker("●", code, colour), yside="right").lines())
    FIG.ruler("y", 0).lim(0, ymax * 1.05)
    return _finish_loss_axes(xmax, width, height, colour, xaxis)


def layer_lines_compare(runs: Sequence[LayerRun], m: Metric, log: bool, width: int, height: int,
                        colour: bool = True, smooth: float = 0.0, xaxis: XAxis | None = None) -> str:
    """Several runs' gradient metric over steps, first and last layer of each, each run in its colour
    (RUN_COLOURS; the first layer solid, the last dotted)."""
    _start(width, height, colour)
    xmax, top, lines = 1.0, 0.0, []
    for run, code in zip(runs, RUN_COLOURS):
        steps, series, total = run.steps, run.series, run.total_steps
        if not series:
            continue
        x = np.asarray(steps, dtype=float)
        picked = [np.asarray(series[0], dtype=float), np.asarray(series[-1], dtype=float)]
        if log:
            picked = [np.clip(np.log10(np.where(np.isfinite(y) & (y > 0), y, np.nan)) - m.lo, 0, m.hi - m.lo)
                      for y in picked]
        picked = [ema(y, smooth) for y in picked]
        x, picked = crop(x, picked, xaxis)
        x, picked = _downsample(x, picked, max(width, 10))
        xmax = max(xmax, float(total), float(x.max()) if x.size else 0.0)
        for v, symbol in zip(picked, ("hd", "•")):
            ok = np.isfinite(v)
            if ok.any():
                top = max(top, float(v[ok].max()))
                lines.append((x[ok], v[ok], symbol, code))
    ymax = float(m.hi - m.lo) if log else (top * 1.05 if top > 0 else 1.0)
    for xx, vv, symbol, code in lines:
        FIG.draw(FIG.signal(xx.tolist(), vv.tolist(), marker=_marker(symbol, code, colour)).lines())
    return _finish_metric_axes(m, log, ymax, xmax, width, height, colour, xaxis)


NO_PRE = "no pre-activation percentiles (older files lack them)"
BAND_KEY = "⠤ 15th & 85th"


def _legend(parts: Sequence[tuple[str, int]], width: int, colour: bool) -> str:
    """A line of (text, 256-colour code) parts over a chart, cut at `width` cells (Text.from_ansi would wrap it)."""
    out, room = [], width
    for text, code in parts:
        text = shown(text)[:room]
        room -= len(text)
        if text:
            out.append(f"\x1b[38;5;{code}m{text}\x1b[0m" if colour else text)
    return "".join(out)


def _band_marker(code: int, colour: bool):
    """The 15th and 85th percentiles: thin (braille) and dim, in the colour of their median."""
    return plt.marker("braille", pixel=plt.pixel(code, style="dim")) if colour else "braille"


def _pre_axes(legend: str, lines: list, events: Sequence[int], xmax: float, width: int, height: int,
              colour: bool, xa: XAxis | None = None) -> str:
    """`legend` on a line of its own over `lines` (x, y, marker) drawn on a linear y axis around the data (z is
    signed)."""
    _start(width, height - 1, colour)
    ys = [y for _, y, _ in lines if y.size]
    lo, hi = (min(float(y.min()) for y in ys), max(float(y.max()) for y in ys)) if ys else (-1.0, 1.0)
    pad = (hi - lo) * 0.05 or max(abs(hi) * 0.05, 0.1)
    lo, hi = lo - pad, hi + pad
    _events(FIG, events, lo, hi, colour)
    for x, y, marker in lines:
        FIG.draw(FIG.signal(x.tolist(), y.tolist(), marker=marker).lines())
    FIG.ruler("y").lim(lo, hi)
    FIG.ruler("y").frequency(max(2, min(5, height // 4)))
    _step_axis(xmax, width, xa)
    return legend + "\n" + _finish(colour)


def _pre_lines(x: np.ndarray, band: Sequence[Sequence[float]], code: int, colour: bool, width: int,
               xaxis: XAxis | None = None) -> list:
    """One layer's (p15, p50, p85) as lines: the median solid, the other two as `_band_marker`; [] without data."""
    ys = [np.asarray(s, dtype=float) for s in band]
    x, ys = crop(x, ys, xaxis)
    x, ys = _downsample(x, ys, max(width, 10))
    out = []
    for y, marker in zip(ys, (_band_marker(code, colour), _marker("hd", code, colour), _band_marker(code, colour))):
        ok = np.isfinite(y)
        if ok.any():
            out.append((x[ok], y[ok], marker))
    return out


def pre_percentiles(steps: Sequence[int], names: Sequence[str], bands: Sequence[Sequence[Sequence[float]]],
                    total_steps: int, events: Sequence[int], width: int, height: int, colour: bool = True,
                    xaxis: XAxis | None = None) -> str:
    """Ioffe & Szegedy 2015, Figure 1, for every hidden layer: the median of its pre-activation z over steps in
    the layer's colour, the 15th and 85th percentiles thin and dim in the same colour, on a linear y axis (z is
    signed, so no log). `bands` is (p15, p50, p85) per layer of `names`, nan where a layer has none: those layers
    (the output layer) are left out, and a run with none at all (an older file) gets the one-line NO_PRE."""
    x = np.asarray(steps, dtype=float)
    lines, keys = [], []
    for name, band, code in zip(names, bands, layer_colours(len(names))):
        drawn = _pre_lines(x, band, code, colour, width, xaxis)
        if drawn:
            lines += drawn
            keys.append((f"━ {name} ", code))
    if x.size and not lines:
        return NO_PRE
    legend = _legend([*keys, ("medians  " if keys else "", AXIS_COLOUR), (BAND_KEY, AXIS_COLOUR)], width, colour)
    xmax = float(max(total_steps, x.max() if x.size else 1, 1))
    lo, hi = _x_range(xaxis, xmax)
    return _pre_axes(legend, lines, [e for e in events if lo <= e <= hi], xmax, width, height, colour, xaxis)


def pre_percentiles_compare(runs: Sequence[PreRun], width: int, height: int, colour: bool = True,
                            xaxis: XAxis | None = None) -> str:
    """Several runs' pre-activation percentiles over steps, each run's last hidden layer (Figure 1's "typical
    activation from the last hidden layer"), each run in its colour (RUN_COLOURS), the median solid, the 15th and
    85th thin."""
    xmax, lines, keys, any_steps = 1.0, [], [], False
    for run, tag, code in zip(runs, TAGS, RUN_COLOURS):
        steps, names, bands, total = run.steps, run.names, run.bands, run.total_steps
        x = np.asarray(steps, dtype=float)
        any_steps = any_steps or bool(x.size)
        xmax = max(xmax, float(total), float(x.max()) if x.size else 0.0)
        drawn = [(n, d) for n, d in ((n, _pre_lines(x, b, code, colour, width, xaxis)) for n, b in zip(names, bands))
                 if d]
        if drawn:
            lines += drawn[-1][1]
            keys.append((f"━ {tag} {drawn[-1][0]} ", code))
    if any_steps and not lines:
        return NO_PRE
    legend = _legend([*keys, ("medians  " if keys else "", AXIS_COLOUR), (BAND_KEY, AXIS_COLOUR)], width, colour)
    return _pre_axes(legend, lines, [], xmax, width, height, colour, xaxis)


# ---------------------------------------------------------------------------------------------- gradient histograms
GRAD_LO, GRAD_HI = -14, 3  # the x axis of weight-gradient histograms, log10 |g| (the engine bins 2^-46..2^8)
COUNT_DECADES = 8  # log count axis: 1 .. 1e8, fixed


def _grad_hist_on(p, hist: Hist | None, width: int, height: int, log_counts: bool, colour_code: int,
                  colour: bool, title: str | None) -> None:
    if title:
        p.title(shown(title))
    bins = _bins(hist)
    if bins is not None:
        edges, counts = bins
        centres = (edges[:-1] + edges[1:]) / 2
        nz = counts > 0
        h = np.log10(counts[nz]) + 0.3 if log_counts else counts[nz]  # +0.3: a single count still shows
        if nz.any():
            p.draw(p.bar(centres[nz].tolist(), h.tolist(), width=float(edges[1] - edges[0]),
                         marker=_marker("hd", colour_code, colour)))
        top = float(counts.max()) if counts.size else 1.0
    else:
        top = 1.0
    if log_counts:
        p.ruler("y").lim(0, COUNT_DECADES + 0.3)
        step = 2 if height >= 12 else 4
        ps = list(range(0, COUNT_DECADES + 1, step))
        p.ruler("y").ticks([q + 0.3 for q in ps], [f"1e{q}" for q in ps])
    else:
        p.ruler("y").lim(0, max(top, 1.0) * 1.05)
        p.ruler("y").frequency(3)
    p.ruler("x").lim(GRAD_LO, GRAD_HI)
    step = 2 if width >= 70 else (4 if width >= 34 else 8)
    ps = [q for q in range(GRAD_LO, GRAD_HI + 1) if q % step == 0]
    p.ruler("x").ticks([float(q) for q in ps], [decade_label(q) for q in ps])


def grad_hist(hist: Hist | None, width: int, height: int, log_counts: bool, colour_code: int,
              colour: bool = True, title: str | None = None) -> str:
    """Weight gradients on a log10|g| axis (the engine's fixed bins), counts on a log (fixed decades) or
    linear axis."""
    _start(width, height, colour)
    _grad_hist_on(FIG, hist, width, height, log_counts, colour_code, colour, title)
    return _finish(colour)


def grad_hist_grid(hists: Sequence[Hist | None], names: Sequence[str], width: int, height: int,
                   log_counts: bool, colour: bool = True) -> str:
    """Small multiples: one weight-gradient histogram per layer, same fixed axes, in a grid."""
    n = min(len(names), MAX_GRID)
    if n == 1:  # one layer (a user's model of one Linear): plotext's 1x1 grid holds no subplot
        return grad_hist(hists[0] if hists else None, width, height, log_counts, layer_colours(1)[0], colour, names[0])
    _start(width, height, colour)
    if n == 0:
        return _finish(colour)
    cols = max(1, min(n, width // 36, 4))
    rows = -(-n // cols)
    while rows > 1 and height // rows < 7 and cols < n:
        cols += 1
        rows = -(-n // cols)
    FIG.subplots(rows, cols)
    colours = layer_colours(n)
    for i in range(rows * cols):
        p = FIG.subplot(i // cols + 1, i % cols + 1)
        p.theme(_THEMES[colour])
        if i < n:
            _grad_hist_on(p, hists[i] if i < len(hists) else None, width // cols, height // rows, log_counts, colours[i],
                          colour, names[i])
        else:
            p.axes(False)
            p.ruler("x").ticks([])
            p.ruler("y").ticks([])
    return _finish(colour)


def sum_hists(hists: Sequence[Hist | None]) -> Hist | None:
    hs = [h for h in hists if _bins(h) is not None]
    hs = [h for h in hs if np.shape(h.counts) == np.shape(hs[0].counts)]  # the bins of the first (a file's may differ)
    if not hs:
        return None
    return Hist(hs[0].edges, np.sum([_bins(h)[1] for h in hs], axis=0), sum(int(h.under) for h in hs),
                sum(int(h.over) for h in hs), sum(int(h.zeros) for h in hs))


# ---------------------------------------------------------------------------------------------- loss spikes (issue 18)
def spike_loss(steps: Sequence[int], loss: Sequence[float], step: int, width: int, height: int,
               colour: bool = True) -> str:
    """A spike's window: the loss at every step of it (linear y), the spike's step marked (│, ▲)."""
    _start(width, height, colour)
    x = np.asarray(steps, dtype=float)
    y = np.asarray(loss, dtype=float)
    ok = np.isfinite(y)
    top = float(y[ok].max()) if ok.any() else 1.0
    bottom = float(y[ok].min()) if ok.any() else 0.0
    pad = (top - bottom) * 0.05 or max(abs(top) * 0.05, 0.1)
    lo, hi = (bottom - pad if bottom < 0 else max(bottom - pad, 0.0)), top + pad  # a loss of 0 or more: from 0 up
    FIG.draw(FIG.segment([float(step)] * 2, [lo, hi], marker=_marker("│", SPIKE_COLOUR, colour)))
    if ok.any():
        FIG.draw(FIG.signal(x[ok].tolist(), y[ok].tolist(), marker=_marker("hd", LOSS_COLOUR, colour)).lines())
    at = np.flatnonzero(x == step)
    if at.size and ok[at[0]]:
        FIG.draw(FIG.signal([float(step)], [float(y[at[0]])], marker=_marker("▲", SPIKE_COLOUR, colour)))
    FIG.ruler("y").lim(lo, hi)
    ys = [lo, hi] if height < 7 else [lo, (lo + hi) / 2, hi]
    FIG.ruler("y").ticks(ys, [f"{v:.3g}" for v in ys])
    _window_axis(x, width)
    return _finish(colour)


def _window_axis(x: np.ndarray, width: int) -> None:
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 1.0)
    hi = max(hi, lo + 1)
    FIG.ruler("x").lim(lo, hi)
    xt = _range_ticks(lo, hi, width, False)
    FIG.ruler("x").ticks(xt, [f"{t:,.0f}" for t in xt])


def spike_layers(steps: Sequence[int], series: dict[str, Sequence[float]], names: Sequence[str], leader: str | None,
                 lead_step: int | None, step: int, width: int, height: int, colour: bool = True) -> str:
    """A spike's window, one metric per layer on a log y axis (decades from the data): every layer thin and dim in
    its depth colour, the leading layer bold in the spike colour on top; a │ at the loss's spike step and a ┊ at the
    step the leader left its band (the lead time is the distance between them)."""
    _start(width, height, colour)
    x = np.asarray(steps, dtype=float)
    logs = {}
    for name in names:
        v = np.asarray(series.get(name, ()), dtype=float)[:len(x)]
        with np.errstate(divide="ignore", invalid="ignore"):
            logs[name] = np.where(np.isfinite(v) & (v > 0), np.log10(np.where(v > 0, v, 1.0)), np.nan)
    finite = [v[np.isfinite(v)] for v in logs.values()]
    finite = [f for f in finite if f.size]
    lo = math.floor(min(float(f.min()) for f in finite)) if finite else -1
    hi = math.ceil(max(float(f.max()) for f in finite)) if finite else 0
    hi = max(hi, lo + 1)
    FIG.draw(FIG.segment([float(step)] * 2, [lo, hi], marker=_marker("│", SPIKE_COLOUR, colour)))
    if lead_step is not None and lead_step != step:
        FIG.draw(FIG.segment([float(lead_step)] * 2, [lo, hi], marker=_marker("┊", SPIKE_COLOUR, colour)))
    for name, code in zip(names, layer_colours(len(names))):
        v = logs[name]
        ok = np.isfinite(v)
        if name != leader and ok.any():
            FIG.draw(FIG.signal(x[ok].tolist(), v[ok].tolist(), marker=_faint(code, colour)).lines())
    if leader in logs and np.isfinite(logs[leader]).any():
        v = logs[leader]
        ok = np.isfinite(v)
        FIG.draw(FIG.signal(x[ok].tolist(), v[ok].tolist(), marker=_marker("hd", SPIKE_COLOUR, colour)).lines())
    FIG.ruler("y").lim(lo, hi)
    FIG.ruler("y").ticks(*_spike_decades(lo, hi, height))
    _window_axis(x, width)
    return _finish(colour)


def _spike_decades(lo: int, hi: int, height: int) -> tuple[list[float], list[str]]:
    step = max(1, -(-(hi - lo) // max(2, (height - 3) // 2)))
    ps = list(range(lo, hi + 1, step))
    return [float(p) for p in ps], [decade_label(p) for p in ps]
