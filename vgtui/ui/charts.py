"""Chart builders: plain data in, a plotext 6 figure out as a string with ANSI colours (no Textual here).

Every function takes the size in terminal cells and returns what `plotext.figure.build().string()` gives. They
run on the UI thread only (plotext's figure is one global object). Histograms arrive already binned by the
engine, so they are drawn as bars, never with `hist()`. Log axes have fixed decades chosen per metric: they are
never rescaled from the data, so a healthy run never looks as if it vanished when a big value appears.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import plotext as plt

from vgtui.engine.records import Hist
from vgtui.ui.state import Metric

FIG = plt.figure

# 256-colour codes. Layers run from cold (fc1, deepest from the loss) to warm (the output layer).
LAYER_RAMP = (33, 39, 45, 50, 48, 83, 154, 190, 220, 214, 208, 203, 198, 170, 134)
REGIME_COLOURS = {"vanishing": 214, "healthy": 78, "exploding": 201, "diverged": 196}
AXIS_COLOUR = 244
LOSS_COLOUR = 81
TRAIN_COLOUR = 214
TEST_COLOUR = 78
EVENT_COLOUR = 177

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


def _px(code: int, colour: bool):
    return code if colour else None


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


def _downsample(x: np.ndarray, ys: list[np.ndarray], limit: int) -> tuple[np.ndarray, list[np.ndarray]]:
    if len(x) <= limit:
        return x, ys
    idx = np.unique(np.linspace(0, len(x) - 1, limit).round().astype(int))
    return x[idx], [y[idx] for y in ys]


# ---------------------------------------------------------------------------------------------- gradient bars
def grad_bars(names: Sequence[str], values: Sequence[float], regimes: Sequence[str], m: Metric, log: bool,
              width: int, height: int, colour: bool = True) -> str:
    """One horizontal bar per layer, fc1 on top; log axis with the metric's fixed decades (or linear)."""
    n = len(names)
    _start(width, height, colour)
    if n == 0:
        return _finish(colour)
    ys = list(range(n, 0, -1))
    vals = [float(v) if v is not None else math.nan for v in values]
    span = m.hi - m.lo
    if log:
        lengths = [span if not math.isfinite(v) else (min(max(math.log10(v) - m.lo, 0.0), span) if v > 0 else 0.0)
                   for v in vals]
    else:
        finite = [v for v in vals if math.isfinite(v)]
        top = max(finite) if finite and max(finite) > 0 else 1.0
        lengths = [top if not math.isfinite(v) else v for v in vals]
    markers = [_marker("█", REGIME_COLOURS.get(r, 78), colour) for r in regimes]
    FIG.draw(FIG.bar(ys, lengths, orientation="h", marker=markers, width=0.6))
    labels = [f"{name} {fmt(v)}" for name, v in zip(names, vals)]
    FIG.ruler("y").lim(0.5, n + 0.5)
    FIG.ruler("y").ticks(ys, labels)
    label_w = max(len(s) for s in labels) + 2
    if log:
        FIG.ruler("x").lim(0, span)
        FIG.ruler("x").ticks(*_decade_ticks(m.lo, m.hi, width - label_w))
    else:
        FIG.ruler("x").lim(0, max(lengths) * 1.05 if lengths and max(lengths) > 0 else 1.0)
        FIG.ruler("x").frequency(max(2, min(5, (width - label_w) // 12)))
    return _finish(colour)


# ---------------------------------------------------------------------------------------------- activations
SPARK = " ▁▂▃▄▅▆▇█"


def spark(hist: Hist, width: int) -> str:
    """A one-row histogram for tight layouts: `width` cells of ▁..█, each the max of the bins it covers."""
    counts = np.asarray(hist.counts, dtype=float)
    if width <= 0 or counts.size == 0:
        return ""
    groups = np.array_split(counts, min(width, counts.size))
    cells = np.array([g.max() if g.size else 0.0 for g in groups])
    top = cells.max()
    if top <= 0:
        return " " * len(cells)
    levels = np.ceil(cells / top * (len(SPARK) - 1)).astype(int)
    return "".join(SPARK[i] for i in levels)


def act_hist(hist: Hist, width: int, height: int, colour_code: int, colour: bool = True,
             xticks: bool = False) -> str:
    """A frameless bar chart of one layer's activations over the activation's fixed range (counts scaled
    to the layer's own largest bin); x ticks only when asked (the bottom chart of a stack)."""
    _start(width, height, colour)
    edges = np.asarray(hist.edges, dtype=float)
    counts = np.asarray(hist.counts, dtype=float)
    centres = (edges[:-1] + edges[1:]) / 2
    top = counts.max() if counts.size and counts.max() > 0 else 1.0
    FIG.draw(FIG.bar(centres.tolist(), (counts / top).tolist(), width=1.0, marker=_marker("█", colour_code, colour)))
    FIG.axes(False)
    FIG.ruler("y").lim(0, 1)
    FIG.ruler("y").frequency(0)
    FIG.ruler("x").lim(float(edges[0]), float(edges[-1]))
    if xticks:
        lo, hi = float(edges[0]), float(edges[-1])
        ticks = [lo, (lo + hi) / 2, hi]
        FIG.ruler("x").ticks(ticks, [f"{t:g}" for t in ticks])
    else:
        FIG.ruler("x").frequency(0)
    return _finish(colour)


# ---------------------------------------------------------------------------------------------- curves
def loss_curves(steps: Sequence[int], loss: Sequence[float], epoch_steps: Sequence[int],
                train_acc: Sequence[float], test_acc: Sequence[float], events: Sequence[int], total_steps: int,
                width: int, height: int, colour: bool = True) -> str:
    """Training loss over steps (left axis) and train/test accuracy per epoch (right axis, 0..1)."""
    _start(width, height, colour)
    x = np.asarray(steps, dtype=float)
    y = np.asarray(loss, dtype=float)
    ok = np.isfinite(y)
    x, (y,) = _downsample(x[ok], [y[ok]], max(2 * width, 10))
    xmax = float(max(total_steps, x.max() if x.size else 1, 1))
    if x.size:
        s = FIG.signal(x.tolist(), y.tolist(), marker=_marker("hd", LOSS_COLOUR, colour)).lines()
        s.label("loss")
        FIG.draw(s)
        ymax = float(max(y.max(), 0.1))
        FIG.ruler("y", 0).lim(0, ymax * 1.05)
    else:
        FIG.ruler("y", 0).lim(0, 2.5)
    if epoch_steps:
        for acc, code, name in ((train_acc, TRAIN_COLOUR, "train acc"), (test_acc, TEST_COLOUR, "test acc")):
            s = FIG.signal([float(e) for e in epoch_steps], [float(a) for a in acc],
                           marker=_marker("●", code, colour), yside="right").lines()
            s.label(name)
            FIG.draw(s)
        FIG.ruler("y", 1).lim(0, 1)
        FIG.ruler("y", 1).ticks([0, 0.5, 1], ["0%", "50%", "100%"])
    for e in events:
        FIG.line(float(e), orientation=1, pixel=_px(EVENT_COLOUR, colour))
    FIG.ruler("x").lim(0, xmax)
    FIG.ruler("x").frequency(max(2, min(6, width // 14)))
    FIG.ruler("y", 0).frequency(max(2, min(5, height // 4)))
    return _finish(colour)


def layer_lines(steps: Sequence[int], series: Sequence[Sequence[float]], names: Sequence[str], m: Metric,
                log: bool, total_steps: int, events: Sequence[int], width: int, height: int,
                colour: bool = True) -> str:
    """One line per layer over steps; log y with the metric's fixed decades (or linear)."""
    _start(width, height, colour)
    x = np.asarray(steps, dtype=float)
    ys = [np.asarray(s, dtype=float) for s in series]
    x, ys = _downsample(x, ys, max(2 * width, 10))
    cols = layer_colours(len(names))
    xmax = float(max(total_steps, x.max() if x.size else 1, 1))
    top = 0.0
    for name, y, c in zip(names, ys, cols):
        if not y.size:
            continue
        if log:
            v = np.where(np.isfinite(y) & (y > 0), y, np.nan)
            v = np.clip(np.log10(v) - m.lo, 0, m.hi - m.lo)
        else:
            v = y
        ok = np.isfinite(v)
        if ok.any():
            top = max(top, float(v[ok].max()))
            s = FIG.signal(x[ok].tolist(), v[ok].tolist(), marker=_marker("hd", c, colour)).lines()
            s.label(name)
            FIG.draw(s)
    if log:
        FIG.ruler("y").lim(0, m.hi - m.lo)
        FIG.ruler("y").ticks(*_decade_ticks(m.lo, m.hi, (height - 2) * 3))
    else:
        FIG.ruler("y").lim(0, top * 1.05 if top > 0 else 1.0)
    for e in events:
        FIG.line(float(e), orientation=1, pixel=_px(EVENT_COLOUR, colour))
    FIG.ruler("x").lim(0, xmax)
    FIG.ruler("x").frequency(max(2, min(6, width // 14)))
    FIG.legend(ha="right", va="bottom")
    return _finish(colour)


# ---------------------------------------------------------------------------------------------- gradient histograms
def grad_hist(hist: Hist | None, width: int, height: int, log_counts: bool, colour_code: int,
              colour: bool = True, title: str | None = None, xticks: bool = True) -> str:
    """Weight gradients on a log10|g| axis (the engine's fixed bins, 2^-46..2^8), counts log or linear."""
    _start(width, height, colour)
    if title:
        FIG.title(title)
    if hist is None:
        return _finish(colour)
    edges = np.asarray(hist.edges, dtype=float)
    counts = np.asarray(hist.counts, dtype=float)
    centres = (edges[:-1] + edges[1:]) / 2
    if log_counts:
        h = np.where(counts > 0, np.log10(np.maximum(counts, 1)) + 0.3, 0.0)  # 1 count still shows
        top = 8.0  # fixed: up to 1e8 counts
        FIG.ruler("y").lim(0, top)
        ps = [p for p in range(0, 9, 2 if height >= 10 else 4)]
        FIG.ruler("y").ticks([p + 0.3 for p in ps], [f"1e{p}" for p in ps])
    else:
        h = counts
        FIG.ruler("y").lim(0, float(max(counts.max(), 1)) * 1.05)
        FIG.ruler("y").frequency(3)
    FIG.draw(FIG.bar(centres.tolist(), h.tolist(), width=1.0, marker=_marker("█", colour_code, colour)))
    lo, hi = -14, 3
    FIG.ruler("x").lim(lo, hi)
    if xticks:
        ps = list(range(lo, hi + 1, 2 if width >= 70 else 4))
        FIG.ruler("x").ticks([float(p) for p in ps], [decade_label(p) for p in ps])
    else:
        FIG.ruler("x").frequency(0)
    return _finish(colour)


def sum_hists(hists: Sequence[Hist | None]) -> Hist | None:
    hs = [h for h in hists if h is not None]
    if not hs:
        return None
    return Hist(hs[0].edges, np.sum([h.counts for h in hs], axis=0), sum(h.under for h in hs),
                sum(h.over for h in hs), sum(h.zeros for h in hs))
