"""The panels of the main screen. Each one is handed a `RunView` (the runs' RunStates, both for two runs side by
side, and the view options, built by the screen each frame) and never reads the screen; it redraws only when what it
shows (its `key`) changed: the screen's frame timer calls `update_key(view)` at most --fps times a second.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Callable

from itertools import islice

from rich.console import Group
from rich.markup import escape
from rich.segment import Segment
from rich.table import Table
from rich.text import Text
from textual.widget import Widget

from vgtui.core.diagnosis import badge, explain, explain_learning
from vgtui.ui import charts
from vgtui.ui.state import PRE, SEGMENT_CONTROL, RunState, bar_metric, metric, number, shown


@dataclass(frozen=True)
class RunView:
    """What every panel draws from, handed by the screen: the runs shown (A, then B) and the view options. The
    RunStates are the runs' data (each with its versions); everything else is the screen's state at this frame."""

    states: tuple[RunState, ...]
    live: bool = False  # a trainer's run (r restarts it), not a recorded file or a stream
    replay: bool = False  # a recorded file under a cursor (played, paused, followed)
    follow: bool = False  # the file is followed as it grows
    paused: bool = False
    pause_wanted: bool | None = None  # asked of the trainer, not yet acknowledged
    cap: float | None = None  # the trainer's steps/s cap
    pace: float = 1.0  # a replay's speed
    notice: str = ""  # what just happened
    branch_focus: int = 0
    metric: str = "grad_norm"
    log: bool = True
    colour: bool = True

    @property
    def state(self) -> RunState:
        return self.states[0]

    @property
    def compare(self) -> bool:
        return len(self.states) > 1

    @property
    def focused(self) -> RunState:
        """The run the single-run views show (the histograms): in a fork, the branch `f` keeps."""
        return self.states[min(self.branch_focus, len(self.states) - 1)]

    @property
    def forked(self) -> bool:
        """A live fork: the trainer's run (A) and its branch B, side by side."""
        return self.live and len(self.states) > 1

    def versions(self, *names: str) -> tuple:
        """The data versions `names` of every run shown (a panel's key: it redraws when one changes)."""
        return tuple(getattr(st, n) for st in self.states for n in names)


@dataclass(frozen=True)
class BarRow:
    """One bar of the gradient panel: a layer of one run (or, with one run and more layers than rows, a group of
    consecutive layers under one module prefix, drawn from its smallest `low` to its largest `value`)."""

    name: str  # the layer's name, or the group's (`layer3.* ×4`)
    value: float | None
    regime: str
    style: str  # the label's style (the layer's colour)
    bad: bool  # non-finite first here (the diverged run's layer)
    run: int | None = None  # the run it belongs to (0 = A, 1 = B) when two runs share the panel, else None
    group: bool = False
    low: float | None = None  # a group's smallest finite value

    @property
    def label(self) -> str:
        return self.name if self.run is None else f"{self.name} {'AB'[self.run]}"

REGIME_STYLE = {"vanishing": "color(214)", "healthy": "color(78)", "exploding": "color(201)",
                "diverged": "bold color(196)"}
BADGE_STYLE = {"vanishing": "bold black on color(214)", "healthy": "bold black on color(78)",
               "exploding": "bold black on color(201)", "diverged": "bold white on color(196)",
               "loss rising": "bold black on color(201)", "not learning": "bold black on color(214)"}


STATUS_METRICS = 6  # the user's own metrics the status line names at most (the rest are counted)


def markup(value: object) -> str:
    """A string from a file, to put inside Textual/Rich markup (a border title, a notification): shown as text,
    its brackets escaped and its control characters made visible."""
    return escape(shown(value))


class Visible:
    """A renderable drawn with every control character in its text made visible: whatever a file held that got
    into a panel (a layer name, a label in a chart) reaches the terminal as text, never as a control sequence.
    Segments Rich marks as control codes are its own and pass unchanged."""

    def __init__(self, renderable: object):
        self.renderable = renderable

    def __rich_console__(self, console, options):
        for seg in console.render(self.renderable, options):
            text = seg.text
            if seg.control is None and not text.isprintable():
                clean = text.translate(SEGMENT_CONTROL)
                if clean != text:
                    seg = Segment(clean, seg.style)
            yield seg


def no_snapshot(s: RunState, tag: str = "") -> Text:
    """What a panel shows without a snapshot: the damaged line under the cursor, or the wait for the first."""
    what = "this snapshot's line is damaged (← / → show its neighbours)" if s.damaged else "waiting for the first probe…"
    return Text(f"{tag} {what}".strip(), style="dim")


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
        self.failures: list[str] = []  # what could not be drawn (data no panel foresaw): said in the panel, kept here
        self.view: RunView | None = None  # what the screen handed it last (nothing is drawn before the first)

    def key(self, view: RunView) -> object:
        """What the content depends on, besides the size."""
        return None

    def update_key(self, view: RunView, force: bool = False) -> bool:
        """Take the screen's view; redraw when what it shows changed."""
        self.view = view
        k = self.key(view)
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
        if ck != self._cache_key and w > 0 and h > 0 and self.view is not None:
            try:
                built = self.build(w, h)
            except Exception as e:  # noqa: BLE001 - a file's data no panel foresaw: said in the panel, not a crash
                self.failures = [*self.failures[-9:], f"{type(e).__name__}: {e}"]
                built = Text(f"cannot draw this snapshot here ({type(e).__name__}: {e})", style="dim")
            self._cache = Visible(built)
            self._cache_key = ck
            self.renders += 1
        return self._cache

    @property
    def drawn_key(self) -> object:
        """The key of what was last rendered (None before the first render)."""
        return self._cache_key[0] if self._cache_key else None


class PlotextPanel(Panel):
    """Shows a plotext 6 figure as Rich text.

    Why a widget of our own and not textual-plotext: textual-plotext 1.0.1 works only with plotext 5, and
    plotext 6.1's compiled kernel builds the same charts about 3x faster (measured: a 40-bar chart 4 ms against
    15-25 ms, ../shared/FACTS.md). In this UI every millisecond of pure Python also costs the GIL, so the
    charts use plotext 6: the figure is built to a string with ANSI colours and parsed once with
    `Text.from_ansi`; the result is cached until the data, the options or the size change.
    """

    min_interval = 1.0

    def __init__(self, figure: Callable[[RunView, int, int], str], key: Callable[[RunView], object], *,
                 id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._figure = figure
        self._keyfn = key

    def key(self, view: RunView) -> object:
        return self._keyfn(view)

    def build(self, width: int, height: int) -> object:
        return Text.from_ansi(self._figure(self.view, width, height), no_wrap=True, overflow="crop", end="")


# ---------------------------------------------------------------------------------------------- the figures
def loss_figure(v: RunView, w: int, h: int) -> str:
    runs = []
    for st in v.states:
        steps, loss, _ = st.curves()
        ep = st.visible_epochs()
        runs.append(charts.LossRun(steps, loss, [e.step for e in ep], [e.train_acc for e in ep],
                                   [e.test_acc for e in ep], [e[0] for e in st.visible_events()], st.total_steps))
    if not v.compare:
        r = runs[0]
        return charts.loss_curves(r.steps, r.loss, r.epoch_steps, r.train_acc, r.test_acc, r.events, r.total_steps,
                                  w, h, v.colour, user=v.state.user_curves())
    return charts.loss_compare(runs, [st.label for st in v.states], w, h, v.colour)


def flow_figure(v: RunView, w: int, h: int) -> str:
    if v.metric == PRE:
        return pre_figure(v, w, h)
    m = metric(v.metric)
    if not v.compare:
        s = v.state
        steps, _, series = s.curves(v.metric)
        return charts.layer_lines(steps, series, s.layers, m, v.log, s.total_steps,
                                  [e[0] for e in s.visible_events()], w, h, v.colour)
    runs = []
    for st in v.states:
        steps, _, series = st.curves(v.metric)
        runs.append(charts.LayerRun(steps, series, st.layers, st.total_steps))
    return charts.layer_lines_compare(runs, m, v.log, w, h, v.colour)


def pre_figure(v: RunView, w: int, h: int) -> str:
    """The curves panel's last choice (`m`): the hidden layers' pre-activation percentiles, always linear."""
    runs = [charts.PreRun(*st.pre_curves(), st.total_steps) for st in v.states]
    if not v.compare:
        r = runs[0]
        events = [e[0] for e in v.state.visible_events()]
        return charts.pre_percentiles(r.steps, r.names, r.bands, r.total_steps, events, w, h, v.colour)
    return charts.pre_percentiles_compare(runs, w, h, v.colour)


def hist_key(v: RunView) -> object:
    return (v.focused.snap_version, v.branch_focus, v.log)


def hist_all_figure(v: RunView, w: int, h: int) -> str:
    snap = v.focused.snap
    hist = charts.sum_hists([l.grad_hist for l in snap.layers]) if snap else None
    return charts.grad_hist(hist, w, h, v.log, 81, v.colour)


def hist_grid_figure(v: RunView, w: int, h: int) -> str:
    s = v.focused
    with s.lock:
        snap, names = s.snap, s.layers
    hists = [l.grad_hist for l in snap.layers] if snap else [None] * len(names)
    return charts.grad_hist_grid(hists, names, w, h, v.log, v.colour)


# ---------------------------------------------------------------------------------------------- status
class StatusBar(Panel):
    """Three lines. One run: what runs (and its diagnosis badge), where it is, what it means or what just
    happened. Two runs: one line per run, each with its badge, and a line with both positions."""

    DEFAULT_CSS = """
    StatusBar { height: 3; width: 1fr; }
    """

    def key(self, view: RunView) -> object:
        m = view
        return (m.versions("snap_version", "epoch_version", "run_version", "progress_version"), m.paused,
                m.pause_wanted, m.cap, m.pace, m.notice, m.branch_focus,
                tuple(st.config for st in m.states))

    def build(self, width: int, height: int) -> object:
        m = self.view
        if m.compare:
            a, b = m.states
            line3 = Text(" ", no_wrap=True, overflow="ellipsis")
            if m.forked:
                line3.append_text(self._fork_line(a, b, m))
            elif m.notice:
                line3.append(m.notice, style="italic color(177)")
            else:
                for tag, st in (("A", a), ("B", b)):
                    line3.append(f"{tag} ", style="bold")
                    line3.append(position(st) + "   ")
                line3.append_text(self._run_state(a, m))
            return Group(self._what(a, width, "A "), self._what(b, width, "B "), line3)
        s = m.state
        return Group(self._what(s, width), self._where(s, width), self._meaning(s, width))

    def _fork_line(self, a: RunState, b: RunState, m: RunView) -> Text:
        """A live fork: where both are, B's accuracy against A's, and the focus."""
        t = Text()
        tick = a.live_progress()
        step = tick.step if tick else a.step
        t.append(f"step {step:,}  ", style="bold")
        ea, eb = a.visible_epochs(), b.visible_epochs()
        if ea and eb:
            d = 100 * (eb[-1].test_acc - ea[-1].test_acc)
            t.append("test acc ", style="dim")
            t.append(f"A {ea[-1].test_acc:.1%}  B {eb[-1].test_acc:.1%}  ", style="bold")
            t.append(f"B−A {d:+.1f} pts  ", style="bold color(78)" if d > 0 else "bold color(214)" if d < 0 else "bold")
        t.append_text(self._run_state(a, m))
        t.append("  ")
        if m.notice:  # what just happened, else how to go on
            t.append(m.notice, style="italic color(177)")
        else:
            focus = "AB"[m.branch_focus]
            t.append(f"focus {focus} (o) · f ends the fork keeping {focus}", style="dim")
        return t

    def _what(self, s: RunState, width: int, tag: str = "") -> Text:
        """What runs: the file, the model or vgtui's configuration, and the diagnosis badge."""
        with s.lock:
            cfg, run, snap = s.config, s.run, s.snap
            diag, layers = s.diagnosis(), s.layers
        head = [(f"{tag}{s.label or 'vgtui'}", "bold")] if s.label or tag else [("vgtui", "bold")]
        if cfg is not None:
            dataset = run.dataset if run and run.dataset else cfg.dataset
            device = run.device if run else cfg.device
            parts = [(dataset, ""), (device, ""), (cfg.activation, "bold color(81)"), (f"init {cfg.init}", ""),
                     (f"bn {'on' if cfg.batchnorm else 'off'}", "bold" if cfg.batchnorm else ""),
                     (f"skip {'on' if cfg.skip else 'off'}", "bold" if cfg.skip else ""),
                     (f"{cfg.depth}×{cfg.width}", ""), (f"{cfg.optimizer} lr {cfg.lr:g}", "")]
        else:  # a run of another producer: what its header says
            parts = [(x, "") for x in (run.model if run else "", run.dataset if run else "", run.device if run else "")
                     if x]
            if snap is not None and snap.activation:
                parts.append((snap.activation, "bold color(81)"))
        parts = head + parts
        learning = s.learning()[0]
        badge = self._badge(diag, layers, learning=learning)
        line = join(parts)
        pad = width - line.cell_len - badge.cell_len - 1
        if pad < 1:  # narrow: drop the separators' spaces, a shorter badge, then the last parts
            parts = [(t.replace("init ", "").replace(" lr ", " "), st) for t, st in parts]
            badge = self._badge(diag, layers, short=True, learning=learning)
            while True:
                line = join(parts, "·")
                pad = width - line.cell_len - badge.cell_len - 1
                if pad >= 1 or len(parts) <= 2:
                    break
                parts.pop()
        line.append(" " * max(pad, 1))
        line.append_text(badge)
        line.truncate(width)
        return line

    def _where(self, s: RunState, width: int) -> Text:
        """Where the run is (segments by priority; the lowest go first when the line is too narrow)."""
        with s.lock:
            cfg, run, snap, epochs, tick = s.config, s.run, s.snap, s.visible_epochs(), s.live_progress()
        step = tick.step if tick else (snap.step if snap else 0)  # progress ticks move it between snapshots
        total = run.total_steps if run else 0
        epoch = tick.epoch if tick else (snap.epoch if snap else (epochs[-1].epoch if epochs else 0))
        segs: list[tuple[int, Text]] = []
        if s.position is not None:
            segs.append((0, Text(position(s))))
        elif not total and run is not None:  # a run of unknown length (a user's loop): no bar, no epochs; the step and the time
            segs.append((0, Text(f"step {step:,}")))
            if snap:
                segs.append((2, Text(clock(snap.elapsed_s))))
        else:
            frac = min(step / total, 1.0) if total else 0.0
            bar_w = 24 if width >= 110 else 10
            filled = int(round(frac * bar_w))
            prog = Text()
            prog.append("━" * filled, style="color(81)")
            prog.append("━" * (bar_w - filled), style="color(238)")
            prog.append(f" {frac:4.0%}")
            epochs_total = f"/{cfg.epochs}" if cfg is not None else ""
            segs += [(0, Text(f"epoch {epoch}{epochs_total}")), (0, Text(f"step {step}/{total or '?'}")), (3, prog)]
        rate = tick.steps_per_s if tick else (snap.steps_per_s if snap else 0.0)
        if rate and (s.position is None or self.view.follow):
            segs.append((4, Text(f"{rate:5.1f} steps/s")))
        if tick or snap:
            loss = tick.loss if tick else snap.loss_avg
            segs.append((1, Text.assemble(("loss ", "dim"), (f"{loss:.3f}", "bold"))))  # nan, inf too
        metrics = (snap.metrics if snap else None) or {}
        for k, v in islice(metrics.items(), STATUS_METRICS):  # the user's own numbers (metrics=), the first few
            segs.append((2, Text.assemble((f"{shown(k)} ", "dim"), (f"{number(v):.4g}", "bold color(214)"))))
        if len(metrics) > STATUS_METRICS:
            segs.append((1, Text(f"{len(metrics) - STATUS_METRICS:,} more metrics not shown", style="dim")))
        if epochs:
            e = epochs[-1]
            segs.append((2, Text.assemble(("train ", "dim"), (f"{e.train_acc:.1%}", "bold color(214)"))))
            segs.append((1, Text.assemble(("test ", "dim"), (f"{e.test_acc:.1%}", "bold color(78)"))))
        state = self._run_state(s, self.view)
        while True:
            line = join([(seg, "") for _, seg in segs], "  ")
            if line.cell_len + state.cell_len + 2 <= width or len(segs) <= 2:
                break
            segs.pop(max(range(len(segs)), key=lambda k: (segs[k][0], k)))
        line.append(" " * max(width - line.cell_len - state.cell_len - 1, 1))
        line.append_text(state)
        line.truncate(width)
        return line

    def _meaning(self, s: RunState, width: int) -> Text:
        """What it means, or what just happened."""
        m = self.view
        with s.lock:
            run, snap, end, diag, layers = s.run, s.snap, s.end, s.diagnosis(), s.layers
        line = Text(" ", no_wrap=True, overflow="ellipsis")
        live = m.live
        if m.notice:  # what just happened first (cleared when the cursor moves or the run ends)
            line.append(m.notice, style="italic color(177)")
        elif end is not None and end.status == "diverged":
            line.append(f"DIVERGED at step {end.steps}: ", style="bold color(196)")
            line.append(f"{end.message}." + (" Press r to restart, i / b / a to change the recipe." if live else ""))
        elif end is not None and end.status == "failed":
            line.append("FAILED: ", style="bold color(196)")
            line.append(end.message)
        elif diag is not None and layers:
            d, r = diag
            verdict, losses, acc = s.learning()
            if d == "healthy" and verdict in ("rising", "stalled", "exploding"):
                line.append(explain_learning(verdict, losses, accuracy=acc, flow=d), style="dim")
            else:
                line.append(explain(d, r, layers[0], layers[-1]), style="dim")
        elif run is None:
            line.append("starting the trainer…" if live else "waiting for records…", style="dim")
        elif snap is None:
            line.append_text(no_snapshot(s))
        line.truncate(width)
        return line

    @staticmethod
    def _badge(diag: tuple[str, float] | None, layers: tuple[str, ...], short: bool = False,
               learning: str = "too early") -> Text:
        """The diagnosis badge: the worst of the verdicts on gradient flow and on learning (vgtui.core.diagnosis)."""
        if diag is None:
            return Text(" … ", style="reverse")
        d, r = diag
        label = badge(d, learning)
        if label.lower() != d:  # gradients fine, the loss is not: the learning verdict stands alone
            return Text(f" {label} ", style=BADGE_STYLE[label.lower()])
        if d == "diverged":
            return Text(f" {label} ", style=BADGE_STYLE[d])  # the layer is named on the line below
        if short:  # still says what the number is: the first layer's gradient norm over the last's
            first, last = (abbreviate(shown(n), 8) for n in (layers[0], layers[-1]))
            return Text(f" {label} {first}/{last} {r:.0e} ", style=BADGE_STYLE[d])
        return Text(f" {label} {layers[0]}/{layers[-1]} {r:.1e} ", style=BADGE_STYLE[d])

    @staticmethod
    def _run_state(s: RunState, m: RunView) -> Text:
        end = s.end
        if end is not None and end.status != "interrupted":
            return Text(f"■ {end.status}", style="bold")
        t = Text()
        if m.replay:
            if s.lost:
                return Text("? writer gone", style="bold color(214)")
            if m.pace != 1.0:
                t.append(f"{m.pace:g}x  ", style="color(177)")
            following = m.follow and s.position is not None and s.position[0] >= s.position[1] - 1
            if following and not m.paused:
                t.append("● following", style="bold")
            else:
                t.append("⏸ paused" if m.paused else "▶ playing", style="bold reverse" if m.paused else "bold")
            return t
        if not m.live:  # a stream (a user's loop, a pipe)
            return Text("● following" if not m.paused else "⏸ paused", style="bold")
        if m.cap:
            t.append(f"cap {m.cap:g}/s  ", style="color(177)")
        if m.pause_wanted is not None and m.pause_wanted != m.paused:  # asked, not yet acknowledged
            t.append("⏸ pausing…" if m.pause_wanted else "▶ resuming…", style="italic")
        else:
            t.append("⏸ paused" if m.paused else "▶ running", style="bold reverse" if m.paused else "bold")
        return t


def join(parts: list[tuple[str | Text, str]], sep: str = " · ") -> Text:
    """One status line from (text, style) parts."""
    line = Text(" ", no_wrap=True, overflow="ellipsis")
    for i, (t, st) in enumerate(parts):
        if i:
            line.append(sep, style="dim")
        if isinstance(t, Text):
            line.append_text(t)
        else:
            line.append(t, style=st)
    return line


def clock(seconds: float) -> str:
    """03:12, or 1:03:12 past an hour."""
    if not math.isfinite(seconds):
        return charts.fmt(seconds)
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def position(s: RunState) -> str:
    """The position readout of a file's cursor: "snapshot 112 / 4,000 · step 4,480 · 03:12"."""
    if s.position is not None and s.snap is None and s.damaged:
        i, n = s.position
        run = f"run {s.run_of[0]} / {s.run_of[1]} · " if s.run_of else ""
        return f"{run}snapshot {i + 1:,} / {n:,} · damaged"
    if s.position is None or s.snap is None:
        return "no snapshot yet"
    i, n = s.position
    run = f"run {s.run_of[0]} / {s.run_of[1]} · " if s.run_of else ""
    return f"{run}snapshot {i + 1:,} / {n:,} · step {s.snap.step:,} · {clock(s.snap.elapsed_s)}"


# ---------------------------------------------------------------------------------------------- gradient bars
EIGHTHS = " ▏▎▍▌▋▊▉"


def hbar(length: float) -> str:
    """A bar `length` cells long, to the eighth of a cell."""
    full = int(length)
    rest = int((length - full) * 8)
    return "█" * full + (EIGHTHS[rest] if rest else "")


def abbreviate(name: str, width: int) -> str:
    """A layer name in `width` cells, cut from the left (`…1.conv2`): the end of a module path tells layers
    apart (the full names are in the layer table)."""
    return name if len(name) <= width else "…" + name[len(name) - width + 1:]


def label_width(names, width: int) -> int:
    """The label column of a panel `width` cells wide: the longest name, at most a third of the panel."""
    return min(max((len(n) for n in names), default=3), max(width // 3, 10))


def prefix(name: str, depth: int) -> str:
    """The module prefix of `name` at `depth` dotted parts (`layer3.1.conv2`, 1 -> `layer3`)."""
    parts = name.split(".")
    return ".".join(parts[:depth]) if len(parts) > depth else name


def group_rows(rows: list[BarRow], room: int) -> list[BarRow]:
    """Rows (one per layer) grouped by module prefix into at most `room` rows, as finely as fits: consecutive
    layers under the same prefix (`layer3.*`) become one row whose bar spans the group's min..max and whose
    regime is its worst. A group of one stays the layer. Returns the rows unchanged when they fit, and the
    coarsest grouping when none fits."""
    if len(rows) <= room:
        return rows
    deepest = max(r.name.count(".") for r in rows)
    grouped = rows
    for depth in range(deepest, 0, -1):
        runs: list[tuple[str, list[BarRow]]] = []
        for r in rows:
            p = prefix(r.name, depth)
            if runs and runs[-1][0] == p:
                runs[-1][1].append(r)
            else:
                runs.append((p, [r]))
        grouped = [members[0] if len(members) == 1 else group_row(p, members) for p, members in runs]
        if len(grouped) <= room:
            return grouped
    return grouped


WORST = ("diverged", "exploding", "vanishing", "healthy")


def group_row(p: str, members: list[BarRow]) -> BarRow:
    """One row for a group of layers: its max, min, worst regime, first layer's style, any non-finite."""
    vals = [m.value for m in members if m.value is not None]
    finite = [v for v in vals if math.isfinite(v)]
    hi = max(vals, key=lambda v: (not math.isfinite(v), v)) if vals else None
    lo = min(finite) if finite else None
    worst = min((m.regime for m in members), key=lambda r: WORST.index(r) if r in WORST else len(WORST))
    return BarRow(f"{p}.* ×{len(members)}", hi, worst, members[0].style, any(m.bad for m in members),
                  run=members[0].run, group=True, low=lo)


def elide_rows(lines: list[Text], names: tuple[str, ...] | list[str], room: int, label_w: int) -> list[Text]:
    """One row per layer in `room` rows: the first layers, a row that names the hidden ones, the last layer (the
    output layer, which the diagnosis compares against, is never dropped)."""
    if room < 3:
        return lines[:room]
    keep = room - 2
    hidden = names[keep:len(lines) - 1]
    more = Text(no_wrap=True, overflow="crop", style="bold color(244)")
    more.append(f"{'⋮':>{label_w}} {len(hidden)} more: {hidden[0]}…{hidden[-1]} (tab: layer table)")
    return [*lines[:keep], more, lines[-1]]


class GradientBars(Panel):
    """One bar per layer on a log axis with the metric's fixed decades (or linear, scaled to the largest).

    Drawn with Rich rather than plotext: plotext 6.1's horizontal bars land one row off their tick labels
    whenever the canvas rows are not one per bar (tried: 4 bars on 8 and 12 rows), and this panel needs one
    exact row per layer with its value, to the eighth of a cell."""

    def key(self, view: RunView) -> object:
        m = view
        return (m.versions("snap_version"), m.metric, m.log)

    def on_key_changed(self) -> None:
        m = bar_metric(self.view.metric)
        scale = f"log, fixed decades 1e{m.lo}…1e{m.hi}" if self.view.log else "linear, scaled to the largest"
        self.border_title = f"gradients · {m.label}" + (" · A and B" if self.view.compare else "")
        self.border_subtitle = f"{scale} · m metric · l scale"

    def rows(self, key: str) -> list[BarRow]:
        """A bar per layer, or with two runs one per run and layer, interleaved by layer name (a layer only one
        run has gets its one bar)."""
        states = self.view.states
        per_run = []
        for st in states:
            with st.lock:
                snap, names, regimes, end = st.snap, st.layers, st.regimes(), st.end
            vals = {l.name: getattr(l, key) for l in snap.layers} if snap else {}
            bad = end.layer if end is not None and end.status == "diverged" else None
            per_run.append((names, vals, dict(zip(names, regimes)), bad))
        order: list[str] = []
        for names, *_ in per_run:
            order += [n for n in names if n not in order]
        rows = []
        for i, name in enumerate(order):
            for run, (names, vals, regimes, bad) in enumerate(per_run):
                if name not in names:
                    continue
                rows.append(BarRow(name, vals.get(name), regimes.get(name, "healthy"), layer_style(i, len(order)),
                                   name == bad, run=run if len(per_run) > 1 else None))
        return rows

    def build(self, width: int, height: int) -> object:
        view = self.view
        m = bar_metric(view.metric)
        rows = self.rows(m.key)
        if len(view.states) == 1 or len(rows) + 2 <= height:
            if len(view.states) == 1:  # more layers than rows: grouped by module prefix
                rows = group_rows(rows, height - 2 if height >= 8 else height - 1)
            return Group(*self.bars(rows, m, view.log, width, height))
        # two runs and no room for a row per run and layer: A's bars and B's side by side
        half = (width - 1) // 2
        cols = [self.bars([replace(r, run=None) for r in rows if r.run == run], m, view.log, half, height)
                for run in (0, 1)]
        lines = []
        for left, right in zip(*cols):
            left = left.copy()
            left.truncate(half, pad=True)
            lines.append(Text(no_wrap=True, overflow="crop").append_text(left).append("│", style="color(238)")
                         .append_text(right))
        return Group(*lines)

    @staticmethod
    def bars(rows: list[BarRow], m, log: bool, width: int, height: int) -> list[Text]:
        """The bars of `rows` with their ruler, `height` lines of `width` cells."""
        vals = [r.value for r in rows]
        name_w = label_width([r.label for r in rows], width)
        # grouped rows: min‥max in the value column, where that leaves the bars 16 cells (else the max alone)
        ranged = any(r.group for r in rows) and width - name_w - 18 >= 16
        value_w = 17 if ranged else 9
        label_w = name_w + value_w
        area = max(width - label_w - 1, 10)
        span = m.hi - m.lo
        finite = [v for v in vals if v is not None and math.isfinite(v)]
        top = max(finite) if finite and max(finite) > 0 else 1.0
        lines: list[Text] = []
        n = len(rows)
        gap = 1 if height >= 2 * n + 2 else 0
        grid = {int(round((p - m.lo) / span * (area - 1))) for p in range(m.lo, m.hi + 1)} if log else set()
        def cells(v: float | None) -> float:
            if v is None:
                return 0.0
            if not math.isfinite(v):
                return float(area)
            if log:
                return 0.0 if v <= 0 else min(max((math.log10(v) - m.lo) / span, 0.0), 1.0) * area
            return min(max(v / top, 0.0), 1.0) * area

        for i, br in enumerate(rows):
            v, r, bad, lo = br.value, br.regime, br.bad, br.low
            row = Text(no_wrap=True, overflow="crop")
            style = "bold reverse color(196)" if bad else br.style
            row.append(f"{abbreviate(br.label, name_w):>{name_w}}", style=style)
            value = f"{charts.fmt(lo)}‥{charts.fmt(v)}" if ranged and lo is not None and lo != v else charts.fmt(v)
            row.append(f" {value:<{value_w - 2}} ", style="bold color(196)" if bad else "")
            length = cells(v)
            if lo is not None:  # a group: solid to its smallest layer, shaded to its largest
                solid = min(int(cells(lo)), int(length))
                bar = "█" * solid + "▒" * (int(length) - solid)
            else:
                bar = hbar(length)
            row.append(bar, style=REGIME_STYLE.get(r, ""))
            rest = "".join("┊" if (len(bar) + j) in grid else " " for j in range(area - len(bar)))
            row.append(rest, style="color(238)")
            lines.append(row)
            if gap and i < n - 1:
                g = Text(" " * label_w, no_wrap=True)
                g.append("".join("┊" if j in grid else " " for j in range(area)), style="color(238)")
                lines.append(g)
        # ruler
        ruler = Text(" " * label_w, no_wrap=True, overflow="crop", style="color(244)")
        labels = Text(" " * label_w, no_wrap=True, overflow="crop", style="color(244)")
        if log:
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
            lines = elide_rows(lines, [r.label for r in rows], room, name_w)
        pad = max(height - len(foot) - len(lines), 0)
        return [*lines, *([Text("")] * pad), *foot]


# ---------------------------------------------------------------------------------------------- activations
class ActivationPanel(Panel):
    """Each hidden layer's activation histogram; two runs side by side in two columns."""

    min_interval = 1.0

    def key(self, view: RunView) -> object:
        return view.versions("snap_version")

    def on_key_changed(self) -> None:
        s = self.view.state
        snap = s.snap
        act = snap.activation if snap else (s.config.activation if s.config else "")
        rng = ""
        hidden = []
        if snap:
            hidden = [l for l in snap.layers if l.is_hidden]
            if hidden and len(hidden[0].act_hist.edges) >= 2:
                e = hidden[0].act_hist.edges
                rng = f" over [{float(e[0]):g}, {float(e[-1]):g}]"
        self.border_title = f"activations · {markup(act or '')}{rng}" if not self.view.compare else "activations · A | B"
        sub = "per layer: saturated % · dead %"
        if snap and not self.view.compare and len(hidden) < len(snap.layers) - 1:
            # a user's model: layers with no activation module after them (a conv before a residual sum) have no
            # histogram; say so rather than leave a person looking for them (the output layer never has one)
            sub = f"{len(hidden)} of {len(snap.layers)} layers have an activation"
        self.border_subtitle = sub

    def build(self, width: int, height: int) -> object:
        states = self.view.states
        if len(states) == 1:
            return Group(*self.column(states[0], width, height))
        half = (width - 1) // 2
        cols = [self.column(st, half, height, tag) for st, tag in zip(states, "AB")]
        lines = []
        for i in range(max(len(c) for c in cols)):
            left = cols[0][i].copy() if i < len(cols[0]) else Text("")
            left.truncate(half, pad=True)
            line = Text(no_wrap=True, overflow="crop").append_text(left).append("│", style="color(238)")
            if i < len(cols[1]):
                line.append_text(cols[1][i])
            lines.append(line)
        return Group(*lines)

    def column(self, s: RunState, width: int, height: int, tag: str = "") -> list[Text]:
        with s.lock:
            snap, names = s.snap, s.layers
        if snap is None:
            return [no_snapshot(s, tag)]
        hidden = [l for l in snap.layers if l.is_hidden]
        n_all = len(snap.layers)
        if not hidden:
            return [Text("no hidden layers", style="dim")]
        out: list[Text] = []
        if tag:
            out.append(Text(f"{tag} {s.label} · {snap.activation}", style="bold", no_wrap=True, overflow="crop"))
            height -= 1
        per = max(height, 1) // len(hidden)
        label_w = label_width([l.name for l in hidden], width)
        for i, l in enumerate(hidden[: max(height, 1)]):
            idx = names.index(l.name) if l.name in names else i
            st = layer_style(idx, n_all)
            sat, dead = number(l.saturated_frac or 0.0), number(l.dead_frac or 0.0)
            head = Text(no_wrap=True, overflow="crop")
            head.append(f"{abbreviate(l.name, label_w):<{label_w}} ", style="bold " + st)
            stats = Text(no_wrap=True)
            stats.append(f"sat {sat:4.0%}", style="bold color(214)" if sat > 0.5 else "")
            stats.append(f"  dead {dead:4.0%}", style="bold color(196)" if dead > 0.1 else "")
            if per >= 3:
                head.append_text(stats)
                head.append(f"   μ {number(l.act_mean):+.2f}  σ {number(l.act_std):.2f}", style="dim")
                out.append(head)
                chart = charts.act_hist(l.act_hist, width, per - 1, charts.layer_colours(n_all)[idx],
                                        colour=self.view.colour)
                out.extend(Text.from_ansi(chart, no_wrap=True, overflow="crop", end="").split("\n")[: per - 1])
            else:
                spark_w = max(width - label_w - 1 - stats.cell_len - 1, 4)
                head.append(charts.spark(l.act_hist, spark_w), style=st)
                head.append(" ")
                head.append_text(stats)
                out.append(head)
        if len(hidden) > height:
            out[-1] = Text(f"… {len(hidden) - height + 1} more (tab: the layer table)", style="dim", no_wrap=True,
                           overflow="ellipsis")
        return out


# ---------------------------------------------------------------------------------------------- the layer table
# The layer table's columns: (header, priority); at a width too small for all of them the highest priority numbers
# go first (the layer and its regime never), so the table stays readable at 80 columns instead of cutting every
# column to "la…".
TABLE_COLUMNS = (("layer", 0), ("regime", 0), ("‖∇W‖", 1), ("mean|∇W|", 6), ("grad:data", 4), ("update:data", 2),
                 ("‖∂L/∂out‖", 5), ("act μ", 5), ("act σ", 6), ("saturated", 3), ("dead", 3))


class LayerTable(Panel):
    def key(self, view: RunView) -> object:
        return view.versions("snap_version")

    def on_key_changed(self) -> None:
        self.border_title = "layers · the numbers behind the charts"

    def build(self, width: int, height: int) -> object:
        states = self.view.states
        if len(states) == 1:
            table, dropped = self.table(states[0], width, height - 1)
        else:
            parts = [self.table(st, width, (height - 1 - 2 * len(states)) // len(states)) for st in states]
            dropped = parts[0][1]
            table = Group(*(Group(Text(f"{tag} {st.label}", style="bold"), t, Text(""))
                            for (t, _), st, tag in zip(parts, states, "AB")))
        if not dropped:
            return table
        note = Text(f"{dropped} more columns in a wider terminal: {', '.join(TABLE_HIDDEN[dropped])}",
                    style="dim", no_wrap=True, overflow="ellipsis")
        return Group(table, note)

    @staticmethod
    def cells(s: RunState) -> list[list[Text | str]]:
        """Each layer's row, every column (TABLE_COLUMNS' order)."""
        with s.lock:
            snap, regimes = s.snap, s.regimes()
        n = len(snap.layers)

        def f(v, pct=False):
            if v is None:
                return "-"
            return f"{v:.0%}" if pct else charts.fmt(v)

        return [[Text(l.name, style=layer_style(i, n)), Text(r, style=REGIME_STYLE.get(r, "")),
                 f(l.grad_norm), f(l.grad_mean_abs), f(l.grad_data_ratio), f(l.update_data_ratio),
                 f(l.out_grad_norm), "-" if l.act_mean is None else f"{l.act_mean:+.3f}",
                 "-" if l.act_std is None else f"{l.act_std:.3f}", f(l.saturated_frac, True),
                 f(l.dead_frac, True)] for i, (l, r) in enumerate(zip(snap.layers, regimes))]

    @classmethod
    def table(cls, s: RunState, width: int = 1000, height: int = 1000) -> tuple[object, int]:
        """The table in `width` cells: the columns that fit at their full width (see TABLE_COLUMNS), and how many
        were left out; the rows that fit in `height` lines, the last saying how many more there are."""
        if s.snap is None:
            return no_snapshot(s), 0
        rows = cls.cells(s)
        widths = [max(len(h), *(len(str(r[j])) for r in rows)) + 2 for j, (h, _) in enumerate(TABLE_COLUMNS)]
        keep = list(range(len(TABLE_COLUMNS)))
        while sum(widths[j] for j in keep) > width + 2:
            keep.remove(max(keep, key=lambda j: (TABLE_COLUMNS[j][1], j)))
        t = Table(expand=True, box=None, header_style="bold", pad_edge=False)
        for j in keep:
            h = TABLE_COLUMNS[j][0]
            t.add_column(h, justify="left" if j < 2 else "right", no_wrap=True, min_width=widths[j] - 2)
        room = max(height - 1, 1)
        shown = rows if len(rows) <= room else rows[:room - 1]
        for r in shown:
            t.add_row(*(r[j] for j in keep))
        dropped = len(TABLE_COLUMNS) - len(keep)
        if len(shown) < len(rows):
            more = Text(f"… {len(rows) - len(shown)} more layers: a taller terminal shows them", style="dim",
                        no_wrap=True, overflow="ellipsis")
            return Group(t, more), dropped
        return t, dropped


def _hidden_columns() -> dict[int, list[str]]:
    """The headers left out when `n` columns are dropped (the same order as LayerTable.table drops them)."""
    order = sorted(range(len(TABLE_COLUMNS)), key=lambda j: (TABLE_COLUMNS[j][1], j), reverse=True)
    return {n: [TABLE_COLUMNS[j][0] for j in order[:n]] for n in range(len(TABLE_COLUMNS) + 1)}


TABLE_HIDDEN = _hidden_columns()
