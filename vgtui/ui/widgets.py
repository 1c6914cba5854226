"""The panels of the main screen. Each one draws from the app's RunState and redraws only when the data it
shows (its `key`) changed: the app's frame timer calls `update_key()` at most --fps times a second.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Callable

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widget import Widget

from vgtui.core.diagnosis import explain
from vgtui.ui import charts
from vgtui.ui.state import metric

if TYPE_CHECKING:
    from vgtui.ui.app import VgtuiApp

REGIME_STYLE = {"vanishing": "color(214)", "healthy": "color(78)", "exploding": "color(201)",
                "diverged": "bold color(196)"}
BADGE_STYLE = {"vanishing": "bold black on color(214)", "healthy": "bold black on color(78)",
               "exploding": "bold black on color(201)", "diverged": "bold white on color(196)"}


def layer_style(i: int, n: int) -> str:
    return f"color({charts.layer_colours(n)[i]})"


class Panel(Widget):
    """A bordered panel that caches what it rendered for its current key (data version, options, size)."""

    DEFAULT_CSS = """
    Panel { width: 1fr; height: 1fr; }
    """

    # Seconds between two rebuilds at least: the status line and the bars follow every frame; the figures
    # (which cost 5-20 ms each to build) at most once a second, which is as often as a person reads a curve.
    min_interval = 0.0

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._last_update = -1e9
        self._key: object = None
        self._cache_key: object = None
        self._cache: object = Text("")
        self.renders = 0  # how many times the content was rebuilt (tests and the benchmark read it)

    @property
    def vapp(self) -> "VgtuiApp":
        return self.app  # type: ignore[return-value]

    def key(self) -> object:
        """What the content depends on, besides the size."""
        return None

    def update_key(self, force: bool = False) -> bool:
        k = self.key()
        if k != self._key:
            now = time.monotonic()
            if not force and now - self._last_update < self.min_interval:
                return False  # the next frame will see the change again
            self._last_update = now
            self._key = k
            self.refresh()
            self.on_key_changed()
            return True
        return False

    def on_key_changed(self) -> None:
        """Hook: update titles etc. (cheap)."""

    def build(self, width: int, height: int) -> object:
        raise NotImplementedError

    def render(self) -> object:
        w, h = self.content_size.width, self.content_size.height
        ck = (self._key, w, h)
        if ck != self._cache_key and w > 0 and h > 0:
            self._cache = self.build(w, h)
            self._cache_key = ck
            self.renders += 1
        return self._cache


class PlotextPanel(Panel):
    """Shows a plotext 6 figure as Rich text.

    Why a widget of our own and not textual-plotext: textual-plotext 1.0.1 works only with plotext 5, and
    plotext 6.1's compiled kernel builds the same charts about 3x faster (measured: a 40-bar chart 4 ms against
    15-25 ms, ../shared/FACTS.md). In this UI every millisecond of pure Python also costs the GIL, so the
    charts use plotext 6: the figure is built to a string with ANSI colours and parsed once with
    `Text.from_ansi`; the result is cached until the data, the options or the size change.
    """

    min_interval = 1.0

    def __init__(self, figure: Callable[[int, int], str], key: Callable[[], object], *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._figure = figure
        self._keyfn = key

    def key(self) -> object:
        return self._keyfn()

    def build(self, width: int, height: int) -> object:
        return Text.from_ansi(self._figure(width, height), no_wrap=True, overflow="crop", end="")


# ---------------------------------------------------------------------------------------------- status
class StatusBar(Panel):
    DEFAULT_CSS = """
    StatusBar { height: 3; width: 1fr; }
    """

    def key(self) -> object:
        s = self.vapp.state
        o = self.vapp.opts
        return (s.snap_version, s.epoch_version, s.run_version, o.paused, o.cap, o.notice, o.config_version)

    def build(self, width: int, height: int) -> object:
        app = self.vapp
        s, o = app.state, app.opts
        with s.lock:
            cfg, run, snap, end, epochs = s.config, s.run, s.snap, s.end, s.epochs
            diag = s.diagnosis()
            layers = s.layers
        # line 1: what runs
        dataset = run.dataset if run else cfg.dataset
        device = run.device if run else cfg.device
        parts = [("vgtui", "bold"), (f"{dataset}", ""), (f"{device}", ""),
                 (cfg.activation, "bold color(81)"), (f"init {cfg.init}", ""),
                 (f"bn {'on' if cfg.batchnorm else 'off'}", "bold" if cfg.batchnorm else ""),
                 (f"skip {'on' if cfg.skip else 'off'}", "bold" if cfg.skip else ""),
                 (f"{cfg.depth}×{cfg.width}", ""), (f"{cfg.optimizer} lr {cfg.lr:g}", "")]
        badge = self._badge(diag, layers)
        line1 = Text(" ", no_wrap=True, overflow="ellipsis")
        for i, (t, st) in enumerate(parts):
            if i:
                line1.append(" · ", style="dim")
            line1.append(t, style=st)
        pad = width - line1.cell_len - badge.cell_len - 1
        if pad < 1:  # narrow: drop the separators' spaces
            line1 = Text(" ", no_wrap=True, overflow="ellipsis")
            for i, (t, st) in enumerate(parts[1:]):
                if i:
                    line1.append("·", style="dim")
                line1.append(t.replace("init ", "").replace(" lr ", " "), style=st)
            pad = width - line1.cell_len - badge.cell_len - 1
            if pad < 1:
                badge = self._badge(diag, layers, short=True)
                pad = width - line1.cell_len - badge.cell_len - 1
        line1.append(" " * max(pad, 1))
        line1.append_text(badge)
        line1.truncate(width)

        # line 2: where it is (segments by priority; the lowest go first when the line is too narrow)
        step = snap.step if snap else 0
        total = run.total_steps if run else 0
        epoch = snap.epoch if snap else (epochs[-1].epoch if epochs else 0)
        frac = min(step / total, 1.0) if total else 0.0
        bar_w = 24 if width >= 110 else 10
        filled = int(round(frac * bar_w))
        prog = Text()
        prog.append("━" * filled, style="color(81)")
        prog.append("━" * (bar_w - filled), style="color(238)")
        prog.append(f" {frac:4.0%}")
        segs: list[tuple[int, Text]] = [(0, Text(f"epoch {epoch}/{cfg.epochs}")),
                                        (0, Text(f"step {step}/{total or '?'}")), (3, prog)]
        if snap and snap.steps_per_s:
            segs.append((4, Text(f"{snap.steps_per_s:5.1f} steps/s")))
        if snap:
            segs.append((1, Text.assemble(("loss ", "dim"), (f"{snap.loss_avg:.3f}", "bold"))))
        if epochs:
            e = epochs[-1]
            segs.append((2, Text.assemble(("train ", "dim"), (f"{e.train_acc:.1%}", "bold color(214)"))))
            segs.append((1, Text.assemble(("test ", "dim"), (f"{e.test_acc:.1%}", "bold color(78)"))))
        state = self._run_state(end, o)

        def assemble(items: list[tuple[int, Text]]) -> Text:
            t = Text(" ", no_wrap=True, overflow="ellipsis")
            for i, (_, seg) in enumerate(items):
                if i:
                    t.append("  ")
                t.append_text(seg)
            return t

        while True:
            line2 = assemble(segs)
            if line2.cell_len + state.cell_len + 2 <= width or len(segs) <= 2:
                break
            drop = max(range(len(segs)), key=lambda k: (segs[k][0], k))
            segs.pop(drop)
        line2.append(" " * max(width - line2.cell_len - state.cell_len - 1, 1))
        line2.append_text(state)
        line2.truncate(width)

        # line 3: what it means, or what just happened
        line3 = Text(" ", no_wrap=True, overflow="ellipsis")
        if end is not None and end.status == "diverged":
            line3.append(f"DIVERGED at step {end.steps}: ", style="bold color(196)")
            line3.append(f"{end.message}. Press r to restart, i / b / a to change the recipe.")
        elif end is not None and end.status == "failed":
            line3.append("FAILED: ", style="bold color(196)")
            line3.append(end.message)
        elif o.notice:
            line3.append(o.notice, style="italic color(177)")
        elif diag is not None and layers:
            d, r = diag
            line3.append(explain(d, r, layers[0], layers[-1]), style="dim")
        elif run is None:
            line3.append("starting the trainer…", style="dim")
        else:
            line3.append("waiting for the first probe…", style="dim")
        line3.truncate(width)
        return Group(line1, line2, line3)

    @staticmethod
    def _badge(diag: tuple[str, float] | None, layers: tuple[str, ...], short: bool = False) -> Text:
        if diag is None:
            return Text(" … ", style="reverse")
        d, r = diag
        label = d.upper()
        if d == "diverged":
            return Text(f" {label} ", style=BADGE_STYLE[d])  # the layer is named on the line below
        if short:
            return Text(f" {label} {r:.0e} ", style=BADGE_STYLE[d])
        return Text(f" {label} {layers[0]}/{layers[-1]} {r:.1e} ", style=BADGE_STYLE[d])

    @staticmethod
    def _run_state(end, o) -> Text:
        if end is not None and end.status != "interrupted":
            return Text(f"■ {end.status}", style="bold")
        t = Text()
        if o.cap:
            t.append(f"cap {o.cap:g}/s  ", style="color(177)")
        t.append("⏸ paused" if o.paused else "▶ running", style="bold reverse" if o.paused else "bold")
        return t


# ---------------------------------------------------------------------------------------------- gradient bars
EIGHTHS = " ▏▎▍▌▋▊▉"


def hbar(length: float) -> str:
    """A bar `length` cells long, to the eighth of a cell."""
    full = int(length)
    rest = int((length - full) * 8)
    return "█" * full + (EIGHTHS[rest] if rest else "")


def elide_rows(lines: list[Text], names: tuple[str, ...] | list[str], room: int, label_w: int) -> list[Text]:
    """One row per layer in `room` rows: the first layers, a row that names the hidden ones, the last layer (the
    output layer, which the diagnosis compares against, is never dropped)."""
    if room < 3:
        return lines[:room]
    keep = room - 2
    hidden = names[keep:len(lines) - 1]
    more = Text(no_wrap=True, overflow="crop", style="bold color(244)")
    more.append(f"{'⋮':>{label_w - 9}} {len(hidden)} more: {hidden[0]}…{hidden[-1]} (tab: layer table)")
    return [*lines[:keep], more, lines[-1]]


class GradientBars(Panel):
    """One bar per layer on a log axis with the metric's fixed decades (or linear, scaled to the largest).

    Drawn with Rich rather than plotext: plotext 6.1's horizontal bars land one row off their tick labels
    whenever the canvas rows are not one per bar (tried: 4 bars on 8 and 12 rows), and this panel needs one
    exact row per layer with its value, to the eighth of a cell."""

    def key(self) -> object:
        s, o = self.vapp.state, self.vapp.opts
        return (s.snap_version, o.metric, o.log)

    def on_key_changed(self) -> None:
        o = self.vapp.opts
        m = metric(o.metric)
        scale = f"log, fixed decades 1e{m.lo}…1e{m.hi}" if o.log else "linear, scaled to the largest"
        self.border_title = f"gradients · {m.label}"
        self.border_subtitle = f"{scale} · m metric · l scale"

    def build(self, width: int, height: int) -> object:
        app = self.vapp
        s, o = app.state, app.opts
        m = metric(o.metric)
        with s.lock:
            snap, names, regimes = s.snap, s.layers, s.regimes()
            end = s.end
        bad = end.layer if end is not None and end.status == "diverged" else None
        vals = [getattr(l, m.key) for l in snap.layers] if snap else [None] * len(names)
        label_w = max((len(n) for n in names), default=3) + 9
        area = max(width - label_w - 1, 10)
        span = m.hi - m.lo
        finite = [v for v in vals if v is not None and math.isfinite(v)]
        top = max(finite) if finite and max(finite) > 0 else 1.0
        lines: list[Text] = []
        n = len(names)
        gap = 1 if height >= 2 * n + 2 else 0
        grid = {int(round((p - m.lo) / span * (area - 1))) for p in range(m.lo, m.hi + 1)} if o.log else set()
        for i, (name, v, r) in enumerate(zip(names, vals, regimes)):
            row = Text(no_wrap=True, overflow="crop")
            style = "bold reverse color(196)" if name == bad else layer_style(i, n)
            row.append(f"{name:>{label_w - 9}}", style=style)
            row.append(f" {charts.fmt(v)} ", style="bold color(196)" if name == bad else "")
            if v is None:
                length = 0.0
            elif not math.isfinite(v):
                length = float(area)
            elif o.log:
                length = 0.0 if v <= 0 else min(max((math.log10(v) - m.lo) / span, 0.0), 1.0) * area
            else:
                length = min(max(v / top, 0.0), 1.0) * area
            bar = hbar(length)
            row.append(bar, style=REGIME_STYLE.get(r, ""))
            rest = "".join("┊" if (len(bar) + j) in grid else " " for j in range(area - len(bar)))
            row.append(rest, style="color(238)")
            if name == bad:
                row = Text(no_wrap=True, overflow="crop").append_text(row)
            lines.append(row)
            if gap and i < n - 1:
                g = Text(" " * label_w, no_wrap=True)
                g.append("".join("┊" if j in grid else " " for j in range(area)), style="color(238)")
                lines.append(g)
        # ruler
        ruler = Text(" " * label_w, no_wrap=True, overflow="crop", style="color(244)")
        labels = Text(" " * label_w, no_wrap=True, overflow="crop", style="color(244)")
        if o.log:
            step = next((k for k in (1, 2, 5, 10) if span / k * 6 <= area), 10)
            marks = {int(round((p - m.lo) / span * (area - 1))): f"1e{p}" for p in range(m.lo, m.hi + 1)
                     if (p - m.lo) % step == 0}
        else:
            marks = {0: "0", (area - 1) // 2: f"{top / 2:.1e}", area - 1: f"{top:.1e}"}
        ruler.append("".join("┴" if j in marks else "─" for j in range(area)))
        lab = [" "] * (area + 8)
        for pos, t in sorted(marks.items()):
            start = max(0, min(pos - len(t) // 2, area - len(t)))
            if all(c == " " for c in lab[max(start - 1, 0):start + len(t)]):
                lab[start:start + len(t)] = list(t)
        labels.append("".join(lab[:area]))
        if gap and len(lines) + 2 > height:  # no room for the spacer rows
            lines = lines[::2]
        if height >= n + 2 or (n > height and height >= 8):  # the layers first, then the ruler
            foot = [ruler, labels]
        else:
            foot = [labels] if height >= n + 1 else []
        room = max(height - len(foot), 1)
        if len(lines) > room:  # more layers than rows: keep the first ones and the output layer, say what is left
            lines = elide_rows(lines, names, room, label_w)
        pad = max(height - len(foot) - len(lines), 0)
        return Group(*lines, *([Text("")] * pad), *foot)


# ---------------------------------------------------------------------------------------------- activations
class ActivationPanel(Panel):
    min_interval = 1.0
    def key(self) -> object:
        return (self.vapp.state.snap_version,)

    def on_key_changed(self) -> None:
        s = self.vapp.state
        snap = s.snap
        act = snap.activation if snap else s.config.activation
        rng = ""
        if snap:
            hidden = [l for l in snap.layers if l.is_hidden]
            if hidden:
                e = hidden[0].act_hist.edges
                rng = f" over [{e[0]:g}, {e[-1]:g}]"
        self.border_title = f"activations · {act}{rng}"
        self.border_subtitle = "per layer: saturated % · dead %"

    def build(self, width: int, height: int) -> object:
        app = self.vapp
        s = app.state
        with s.lock:
            snap = s.snap
            names = s.layers
        if snap is None:
            return Text("waiting for the first probe…", style="dim")
        hidden = [l for l in snap.layers if l.is_hidden]
        n_all = len(snap.layers)
        if not hidden:
            return Text("no hidden layers", style="dim")
        n = len(hidden)
        per = height // n
        out: list[Text] = []
        label_w = max(len(l.name) for l in hidden)
        for i, l in enumerate(hidden[: max(height, 1)]):
            idx = names.index(l.name) if l.name in names else i
            st = layer_style(idx, n_all)
            sat, dead = l.saturated_frac or 0.0, l.dead_frac or 0.0
            head = Text(no_wrap=True, overflow="crop")
            head.append(f"{l.name:<{label_w}} ", style="bold " + st)
            stats = Text(no_wrap=True)
            stats.append(f"sat {sat:4.0%}", style="bold color(214)" if sat > 0.5 else "")
            stats.append(f"  dead {dead:4.0%}", style="bold color(196)" if dead > 0.1 else "")
            if per >= 3:
                head.append_text(stats)
                head.append(f"   μ {l.act_mean:+.2f}  σ {l.act_std:.2f}", style="dim")
                out.append(head)
                chart = charts.act_hist(l.act_hist, width, per - 1, charts.layer_colours(n_all)[idx],
                                        colour=app.colour)
                out.extend(Text.from_ansi(chart, no_wrap=True, overflow="crop", end="").split("\n")[: per - 1])
            else:
                spark_w = max(width - label_w - 1 - stats.cell_len - 1, 4)
                head.append(charts.spark(l.act_hist, spark_w), style=st)
                head.append(" ")
                head.append_text(stats)
                out.append(head)
        if len(hidden) > height:
            out[-1] = Text(f"… {len(hidden) - height + 1} more layers: enlarge the terminal", style="dim")
        return Group(*out)


# ---------------------------------------------------------------------------------------------- the layer table
class LayerTable(Panel):
    def key(self) -> object:
        return (self.vapp.state.snap_version,)

    def on_key_changed(self) -> None:
        self.border_title = "layers · the numbers behind the charts"

    def build(self, width: int, height: int) -> object:
        s = self.vapp.state
        with s.lock:
            snap, regimes = s.snap, s.regimes()
        t = Table(expand=True, box=None, header_style="bold", pad_edge=False)
        for c in ("layer", "regime", "‖∇W‖", "mean|∇W|", "grad:data", "update:data", "‖∂L/∂out‖", "act μ",
                  "act σ", "saturated", "dead"):
            t.add_column(c, justify="left" if c in ("layer", "regime") else "right", no_wrap=True)
        if snap is None:
            return Text("waiting for the first probe…", style="dim")
        n = len(snap.layers)
        for i, (l, r) in enumerate(zip(snap.layers, regimes)):
            def f(v, pct=False):
                if v is None:
                    return "-"
                return f"{v:.0%}" if pct else (f"{v:+.2f}" if abs(v) < 100 and pct is None else charts.fmt(v))
            t.add_row(Text(l.name, style=layer_style(i, n)), Text(r, style=REGIME_STYLE.get(r, "")),
                      f(l.grad_norm), f(l.grad_mean_abs), f(l.grad_data_ratio), f(l.update_data_ratio),
                      f(l.out_grad_norm), "-" if l.act_mean is None else f"{l.act_mean:+.3f}",
                      "-" if l.act_std is None else f"{l.act_std:.3f}", f(l.saturated_frac, True),
                      f(l.dead_frac, True))
        return t
