"""What every panel shares: the frozen view a screen hands its panels (`RunView`), the `Panel` that redraws only
when its key changes, and the plotext panel with its figures."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from rich.markup import escape
from rich.segment import Segment
from rich.text import Text
from textual.widget import Widget

from vgtui.ui import charts, colours, curveview
from vgtui.ui.state import PRE, SEGMENT_CONTROL, USER, RunState, metric, shown


@dataclass(frozen=True)
class TableView:
    """The layer table's view state (the screen's): the cursor's layer ("": the first row), the sort column (an
    index into TABLE_COLUMNS, -1: the network's order) and its direction, the `/` filter's text (patterns as
    vgtui.watch(layers=...) takes them, vgtui.core.layermatch) and whether the cursor's layer history is open."""

    cursor: str = ""
    sort: int = -1
    descending: bool = False
    filter: str = ""
    open: bool = False


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
    relative: bool = False  # the gradient bars over the output layer's value (`x`)
    colour: bool = True
    table: TableView = TableView()  # the layer table's cursor, sort and filter
    smooth: float = 0.0  # the curves' EMA weight (`~`; 0: off)
    wall: bool = False  # the curves' x axis in wall time, not steps (`w`)
    zoom: int = 0  # the curves show the last 1/2^zoom of the steps (`z` / `Z`)
    spike: int | None = None  # the spikes view's spike (an index into the run's spikes; None: the latest)

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


def abbreviate(name: str, width: int) -> str:
    """A layer name in `width` cells, cut from the left (`…1.conv2`): the end of a module path tells layers
    apart (the full names are in the layer table)."""
    return name if len(name) <= width else "…" + name[len(name) - width + 1:]


def run_label(label: str, width: int) -> str:
    """A run's label (its file's name) in `width` cells: without `.jsonl`, cut in the middle (`tanh…vier`): files
    of one sweep differ at their start or at their end."""
    label = label[:-len(".jsonl")] if label.endswith(".jsonl") and len(label) > len(".jsonl") else label
    if len(label) <= width:
        return label
    if width < 3:
        return label[:max(width, 0)]
    head = (width - 1) // 2
    return label[:head] + "…" + label[len(label) - (width - 1 - head):]


def label_width(names, width: int) -> int:
    """The label column of a panel `width` cells wide: the longest name, at most a third of the panel."""
    return min(max((len(n) for n in names), default=3), max(width // 3, 10))


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
def _xy(st: RunState, wall: bool, metric_key: str | None = None) -> tuple[list, list[float], list[list[float]]]:
    """A run's curves with x in the axis's unit (steps, or seconds on the time axis), read at once."""
    with st.lock:
        steps, loss, series = st.curves(metric_key)
        return (curveview.xs(st, wall) if wall else steps), loss, series


def loss_figure(v: RunView, w: int, h: int) -> str:
    xa = curveview.xaxis(v)
    runs = []
    for st in v.states:
        x, loss, _ = _xy(st, v.wall)
        ep = st.visible_epochs()
        runs.append(charts.LossRun(x, loss, curveview.epoch_xs(st, ep, v.wall), [e.train_acc for e in ep],
                                   [e.test_acc for e in ep],
                                   curveview.step_xs(st, [e[0] for e in st.visible_events()], v.wall), st.total_steps))
    if not v.compare:
        r = runs[0]
        tr = v.state.trace
        return charts.loss_curves(r.steps, r.loss, r.epoch_steps, r.train_acc, r.test_acc, r.events, r.total_steps,
                                  w, h, v.colour, user=v.state.user_curves(), smooth=v.smooth, xaxis=xa,
                                  axes=v.state.axes, spikes=curveview.spike_xs(v.state, v.wall),
                                  trace=(tr.steps, tr.loss) if tr is not None and not v.wall else None)
    return charts.loss_compare(runs, [st.label for st in v.states], w, h, v.colour, smooth=v.smooth, xaxis=xa)


def flow_figure(v: RunView, w: int, h: int) -> str:
    if v.metric == PRE:
        return pre_figure(v, w, h)
    if v.metric == USER:
        return user_figure(v, w, h)
    m = metric(v.metric)
    xa = curveview.xaxis(v)
    if not v.compare:
        s = v.state
        x, _, series = _xy(s, v.wall, v.metric)
        tr = s.trace if s.trace is not None and s.trace.names == s.layers and not v.wall else None  # same layers
        return charts.layer_lines(x, series, s.layers, m, v.log, s.total_steps,
                                  curveview.step_xs(s, [e[0] for e in s.visible_events()], v.wall), w, h, v.colour,
                                  smooth=v.smooth, xaxis=xa,
                                  trace=(tr.steps, tr.series[v.metric]) if tr is not None else None)
    runs = []
    for st in v.states:
        x, _, series = _xy(st, v.wall, v.metric)
        runs.append(charts.LayerRun(x, series, st.layers, st.total_steps))
    return charts.layer_lines_compare(runs, m, v.log, w, h, v.colour, smooth=v.smooth, xaxis=xa)


def user_figure(v: RunView, w: int, h: int) -> str:
    """The curves panel's "your metrics" (`m`): the focused run's own metrics that have no place on the loss chart,
    each on its own axis."""
    st = v.focused
    with st.lock:
        x = curveview.xs(st, v.wall)
        user = st.user_curves()
    return charts.user_metrics(x, user, st.axes, st.total_steps, w, h, v.colour, smooth=v.smooth,
                               xaxis=curveview.xaxis(v), log=v.log)


def pre_figure(v: RunView, w: int, h: int) -> str:
    """The curves panel's choice after the gradient metrics (`m`): the hidden layers' pre-activation percentiles,
    always linear."""
    xa = curveview.xaxis(v)
    runs = []
    for st in v.states:
        with st.lock:
            steps, names, bands = st.pre_curves()
            x = curveview.xs(st, v.wall) if v.wall else steps
        runs.append(charts.PreRun(x, names, bands, st.total_steps))
    if not v.compare:
        r = runs[0]
        events = curveview.step_xs(v.state, [e[0] for e in v.state.visible_events()], v.wall)
        return charts.pre_percentiles(r.steps, r.names, r.bands, r.total_steps, events, w, h, v.colour, xaxis=xa)
    return charts.pre_percentiles_compare(runs, w, h, v.colour, xaxis=xa)


def hist_key(v: RunView) -> object:
    return (v.focused.snap_version, v.branch_focus, v.log)


def hist_all_figure(v: RunView, w: int, h: int) -> str:
    snap = v.focused.snap
    hist = charts.sum_hists([l.grad_hist for l in snap.layers]) if snap else None
    code = colours.RUN[min(v.branch_focus, len(v.states) - 1)] if len(v.states) > 2 else colours.RUN_A
    return charts.grad_hist(hist, w, h, v.log, code, v.colour)  # many runs: in the colour of the one in focus


def hist_grid_figure(v: RunView, w: int, h: int) -> str:
    s = v.focused
    with s.lock:
        snap, names = s.snap, s.layers
    hists = [l.grad_hist for l in snap.layers] if snap else [None] * len(names)
    return charts.grad_hist_grid(hists, names, w, h, v.log, v.colour)
