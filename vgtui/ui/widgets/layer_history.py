"""One layer's history (the layer table's `enter`): its gradient metric, update:data, saturated fraction and mean
|derivative| over steps, and its latest gradient and activation histograms."""

from __future__ import annotations

import math

from rich.console import Group
from rich.table import Table
from rich.text import Text

from vgtui.ui import charts, colours
from vgtui.ui.state import METRICS, Metric, RunState, bar_metric, metric, shown
from vgtui.ui.widgets.base import Panel, RunView, markup, no_snapshot

# the linear series (no fixed decades): lo = hi = 0
SATURATED = Metric("saturated_frac", "saturated fraction", "saturated", 0, 0)
DERIV = Metric("deriv_mean", "mean |φ'| (the activation's derivative)", "mean|φ'|", 0, 0)


def history_metrics(curve_metric: str) -> tuple[Metric, ...]:
    """The series a layer's history draws: the gradient metric the bars show (grad norm when that is update:data,
    drawn beside it anyway), update:data, the saturated fraction and the mean |derivative|."""
    g = bar_metric(curve_metric)
    if g.key == "update_data_ratio":
        g = METRICS[0]
    return g, metric("update_data_ratio"), SATURATED, DERIV


def last(values) -> float | None:
    for v in reversed(values):
        if v is not None and math.isfinite(v):
            return v
    return None


class LayerHistory(Panel):
    """The cursor's layer of the layer table (RunView.table.cursor), in the run in focus."""

    def key(self, view: RunView) -> object:
        return view.versions("snap_version"), view.table.cursor, view.metric, view.log, view.branch_focus

    def on_key_changed(self) -> None:
        v = self.view
        tag = f" · run {markup(v.focused.label)}" if v.compare and v.focused.label else ""
        self.border_title = f"layer {markup(v.table.cursor)} · its history over steps{tag}"  # a title is markup
        self.border_subtitle = "esc: back to the table · ↑↓: the layer above / below"

    def build(self, width: int, height: int) -> object:
        v = self.view
        s: RunState = v.focused
        name = v.table.cursor
        if s.snap is None:
            return no_snapshot(s)
        with s.lock:
            snap = s.snap
        layer = next((l for l in snap.layers if l.name == name), None)
        if layer is None:
            return Text(f"no layer {shown(name)} in this snapshot", style="dim")
        judged = {j.name: j for j in s.verdict().layers}.get(name)
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(shown(name), style="bold")
        if judged is not None:
            head.append(f" · {judged.regime}", style=colours_regime(judged.regime))
            head.append(f" · {shown(judged.reason)}", style="dim")
        ms = history_metrics(v.metric)
        steps, series = s.layer_curves(name, [m.key for m in ms])
        events = [e[0] for e in s.visible_events()]
        ncols = 3 if width >= 110 or height < 24 else 2  # a short panel: two rows of charts, each taller
        nrows = math.ceil(6 / ncols)
        cw = max(width // ncols - 1, 10)
        ch = max((height - 1) // nrows - 1, 3)
        cells = []
        for m in ms:
            ys = series[m.key]
            now = last(ys)
            log = v.log and m.lo < m.hi
            title = f"{m.short} {charts.fmt(now).strip() if now is not None else '-'}"
            if now is None:  # a layer with no such number (the output's saturation; files older than the probe)
                cells.append((title, Text(f"no {m.short} for this layer in this run", style="dim")))  # wraps
                continue
            chart = charts.layer_lines(steps, [ys], [name], m, log, s.total_steps, events, cw, ch, v.colour)
            cells.append((title, Text.from_ansi(chart, no_wrap=True, overflow="crop", end="")))
        counts = "log counts" if v.log else "linear counts"
        cells.append((f"gradients now · log|g| · {counts}",
                      Text.from_ansi(charts.grad_hist(layer.grad_hist, cw, ch, v.log, colours.RUN_A, v.colour),
                                     no_wrap=True, overflow="crop", end="")))
        if layer.act_hist is not None:
            act = Text.from_ansi(charts.act_hist(layer.act_hist, cw, ch, charts.layer_colours(1)[0], v.colour),
                                 no_wrap=True, overflow="crop", end="")
            lo, hi = layer.act_hist.edges[0], layer.act_hist.edges[-1]
            cells.append((f"activations now {lo:g}…{hi:g}", act))
        else:
            cells.append(("activations now", Text("no activation right after this layer", style="dim")))
        grid = Table.grid(padding=(0, 1))
        for _ in range(ncols):
            grid.add_column(width=cw)
        for r in range(nrows):
            row = cells[r * ncols:(r + 1) * ncols]
            grid.add_row(*(Group(Text(t, style="bold", no_wrap=True, overflow="ellipsis"), c) for t, c in row))
        return Group(head, grid)


def colours_regime(regime: str) -> str:
    return colours.REGIME_STYLE.get(regime, "")
