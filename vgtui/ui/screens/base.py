"""The run screen every mode shares: the layout (status, view tabs, the views, the footer), the view options, the
frame timer and the keys every mode has. A live screen (vgtui.ui.screens.live) and a replay screen
(vgtui.ui.screens.replay) add what their source does; neither is told apart by a string.

The screen owns what is shown and how: one `RunState` per run on screen (two for a fork or `vgtui replay A B`), and
the view options as reactive attributes whose watchers retitle and redraw. Each frame it builds one frozen `RunView`
and hands it to the panels (vgtui.ui.widgets), which never read the screen.

Threads and cost (the budget: training inside the TUI at >= 0.90 of headless speed): a frame timer runs at most `fps`
times a second and asks each visible panel whether its data changed; only those re-render. Keys act at once: an
action updates the status line on the spot (`_status_now`), the panels at the next frame.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import time
from dataclasses import replace
from typing import ClassVar, Iterator

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import BindingsMap
from textual.containers import Grid, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Static

from vgtui.core.config import next_choice
from vgtui.core.spikes import spike_words
from vgtui.sources.base import Source
from vgtui.ui import charts, colours, curveview, keymap
from vgtui.ui.colours import hexc
from vgtui.ui.screens.dialogs import HelpScreen
from vgtui.ui.state import CURVE_KEYS, PRE, TAGS, USER, RunState, metric, shown
from vgtui.ui.widgets import (ActivationPanel, GradientBars, LayerHistory, LayerTable, Panel, PlotextPanel, RunView,
                              SpikeView, StatusBar, TableView, WhyPanel, run_label,
                              flow_figure, hist_all_figure, hist_grid_figure, hist_key, loss_figure, markup)
from vgtui.ui.widgets.table import TABLE_COLUMNS

MIN_SIZE = (80, 24)
VIEWS = ("overview", "histograms", "layers", "why")
VIEW_TITLES = {"overview": "overview", "histograms": "gradient histograms", "layers": "layer table",
               "why": "why: derivative × weights", "spikes": "loss spikes"}
SHORT_TITLES = {"histograms": "histograms", "why": "why"}  # at 80 columns, with the loss spikes' tab
SPIKES = "spikes"  # the loss spikes' view (issue 18): in the tab cycle once a run on screen has a spike
MAX_LEGEND = 40  # layers named under the curves panel at most (a border line holds no more)


class RunScreen(Screen):
    """What every mode has. Subclasses set KIND (the key map's source kind: their bindings, help and palette) and
    LIVE/REPLAY (what the panels are told), and add their own keys' actions."""

    KIND: ClassVar[str] = ""
    LIVE: ClassVar[bool] = False  # a trainer's run (r restarts it)
    REPLAY: ClassVar[bool] = False  # a recorded file under a cursor
    MEANWHILE: ClassVar[str] = ""  # said on the too-small screen: what goes on while it is shown

    metric: reactive[str] = reactive("grad_norm", init=False)
    # log axes (`l`); not `log`, which would shadow Textual's own `self.log` (the logger set_focus calls)
    log_axes: reactive[bool] = reactive(True, init=False)
    relative: reactive[bool] = reactive(False, init=False)  # the gradient bars over the output layer's value
    view: reactive[str] = reactive("overview", init=False)
    paused: reactive[bool] = reactive(False, init=False)  # training paused, or a replay not playing
    notice: reactive[str] = reactive("", init=False)  # the status line's third line, when something just happened
    smooth: reactive[float] = reactive(0.0, init=False)  # the curves' EMA weight (`~`)
    wall: reactive[bool] = reactive(False, init=False)  # the curves over wall time (`w`)
    zoom: reactive[int] = reactive(0, init=False)  # the curves show the last 1/2^zoom of the steps (`z` / `Z`)

    def __init__(self, sources: list[Source], fps: float = 2.0, screenshot_dir: str | None = None) -> None:
        super().__init__()
        self.sources = list(sources)  # the screen's own list (a replay adds a file's fork as a second source)
        self.source = self.sources[0]
        self.states = [RunState(s.config, s.label) for s in self.sources]
        self.state = self.states[0]
        self.branch_focus = 0  # the run the single-run views show (the histograms); in a fork, the branch `f` keeps
        self._user_metrics = 0  # the user's metrics the titles were made for
        self._curve_words = ""  # the curves' options in the loss panel's title (curveview.describe)
        self.spike_index: int | None = None  # the spikes view's spike (None: the latest)
        self._has_spikes = False  # the tabs were drawn with the spikes view
        self._spike_count = 0
        self._seen_spikes = False  # the first frame's spikes (a file's, at its opening) are not news
        self.fps = max(float(fps), 0.2)
        self.screenshot_dir = screenshot_dir or os.getcwd()
        self.frames = 0  # frame timer ticks that redrew something (bench/tests)
        self._bindings = BindingsMap(keymap.bindings(self.KIND, metrics_file=self._has_file))
        self._footer_width = 0
        self.table_view = TableView()  # the layer table's cursor, sort, filter and open history (RunView.table)
        self._filter_text: str | None = None  # the `/` filter while it is typed

    @property
    def _has_file(self) -> bool:
        """A metrics file behind the run on screen: `e` (export) is offered in the footer only then."""
        return bool(self.source.metrics_path)

    @property
    def colour(self) -> bool:
        return not self.app.no_color

    @property
    def compare(self) -> bool:
        return len(self.states) > 1

    @property
    def forked(self) -> bool:
        """A live fork (the live screen's); a replay shows a recorded fork as two runs."""
        return False

    @property
    def focused_state(self) -> RunState:
        return self.states[min(self.branch_focus, len(self.states) - 1)]

    # ------------------------------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static(id="tabs")
        with ContentSwitcher(initial="overview", id="views"):
            with Grid(id="overview"):
                yield GradientBars(id="grads", classes="panel")
                yield ActivationPanel(id="acts", classes="panel")
                yield PlotextPanel(loss_figure, lambda v: (v.versions("snap_version", "epoch_version"),
                                                           curveview.curve_key(v)), id="loss", classes="panel")
                yield PlotextPanel(flow_figure, lambda v: (v.versions("snap_version"), v.metric, v.log,
                                                           curveview.curve_key(v)), id="flow", classes="panel")
            with Vertical(id="histograms"):
                yield PlotextPanel(hist_all_figure, hist_key, id="hist-all", classes="panel")
                yield PlotextPanel(hist_grid_figure, hist_key, id="hist-grid", classes="panel")
            with Vertical(id="layers"):
                yield LayerTable(id="table", classes="panel")
                yield LayerHistory(id="layer-history", classes="panel")
                yield Static(id="layer-filter")
            with Vertical(id="why"):
                yield WhyPanel(id="why-panel", classes="panel")
            with Vertical(id=SPIKES):
                yield SpikeView(id="spike-view", classes="panel")
        yield Static(id="too-small")
        yield Footer(compact=True)

    def versions(self, *names: str) -> tuple:
        """The data versions `names` of every run shown (a panel's key: it redraws when one changes)."""
        return tuple(getattr(st, n) for st in self.states for n in names)

    def view_options(self) -> dict:
        """What a mode adds to the panels' view (the live screen: pause asked, speed cap; a replay: its pace)."""
        return {}

    def run_view(self) -> RunView:
        """What the panels draw from at this frame (they never read the screen)."""
        return RunView(states=tuple(self.states), live=self.LIVE, replay=self.REPLAY, paused=self.paused,
                       notice=self.notice, branch_focus=self.branch_focus, metric=self.metric, log=self.log_axes,
                       relative=self.relative, colour=self.colour, table=self.table_view, smooth=self.smooth,
                       wall=self.wall, zoom=self.zoom, spike=self.spike_index, **self.view_options())

    def on_mount(self) -> None:
        self.query_one("#layer-history").display = False
        self.query_one("#layer-filter").display = False
        self._titles()
        self._update_tabs()
        self.check_size()
        self.start()
        self.set_interval(1.0 / self.fps, self._frame)
        self._frame()

    def start(self) -> None:
        """A mode's own start: read the live source, or open the file's run."""

    def on_resize(self) -> None:
        self.check_size()
        if len(self.states) > 2 and self.is_mounted:  # the runs' legend is shortened to the width
            self._titles()
        if self._has_spikes:
            self._update_tabs()

    def check_size(self) -> None:
        w, h = self.app.size
        if w != self._footer_width:  # the footer shows the keys that fit (q and ? always: keymap.FOOTER)
            self._footer_width = w
            self._bindings = BindingsMap(keymap.bindings(self.KIND, w, metrics_file=self._has_file))
            self.refresh_bindings()
        small = w < MIN_SIZE[0] or h < MIN_SIZE[1]
        self.set_class(small, "too-small")
        if small:
            self.query_one("#too-small", Static).update(
                f"The terminal is {w}x{h}.\n\nEnlarge to at least {MIN_SIZE[0]}x{MIN_SIZE[1]}.\n\n"
                f"{self.MEANWHILE}q quits.")

    # ------------------------------------------------------------------------------------------ watchers
    def watch_metric(self) -> None:
        self._titles()
        self._frame(force=True)

    def watch_log_axes(self, log: bool) -> None:
        self.notice = "log axes (fixed decades)" if log else "linear axes"
        self._titles()
        self._frame(force=True)

    def watch_relative(self, relative: bool) -> None:
        self.notice = ("gradient bars relative to the output layer: each is a fraction of its value" if relative
                       else "gradient bars on their own values")
        self._frame(force=True)

    def watch_view(self, view: str) -> None:
        self.query_one("#views", ContentSwitcher).current = view
        if view != "layers" and self._filtering:
            self._close_filter()
        self._update_tabs()
        self.call_after_refresh(self._frame, True)

    def watch_notice(self) -> None:
        self._status_now()

    def watch_paused(self) -> None:
        self._status_now()

    def _titles(self) -> None:
        """The panels' border titles and legends: the screen's (the panels draw inside their borders)."""
        loss = self.query_one("#loss", Panel)
        flow = self.query_one("#flow", Panel)
        over = "wall time" if self.wall else "steps"
        self._curve_words = curveview.describe(self.run_view())  # zoom, time axis, smoothing: short, 80 columns
        loss.border_title = f"loss · {self._curve_words}" if self._curve_words else "loss & accuracy over steps"
        if self.metric == PRE:
            flow.border_title = "pre-activation z percentiles · linear y (always)"
        elif self.metric == USER:
            flow.border_title = "your metrics, each on its own axis (vgtui.watch axes=)"
        else:
            m = metric(self.metric)
            scale = f"log y, fixed decades 1e{m.lo}…1e{m.hi}" if self.log_axes else "linear y"
            flow.border_title = f"{m.label} per layer over {over} · {scale}"
        if self.compare:
            loss.border_subtitle = flow.border_subtitle = self._run_legend()
            flow.border_subtitle += " · last hidden layer" if self.metric == PRE else " · first and last layer"
        else:
            loss.border_subtitle = (f"[{hexc(colours.LOSS)}]━ loss (avg per probe)[/] "
                                    f"[{hexc(colours.TRAIN_ACC)}]● train acc[/] "
                                    f"[{hexc(colours.TEST_ACC)}]● test acc[/] [{hexc(colours.EVENT)}]│ live change[/]")
            spike_key = f" [{hexc(colours.SPIKE)}]▲ loss spike[/]" if self.state.spikes else ""
            loss.border_subtitle += spike_key
            s = self.state
            if s.run is not None and s.run.config is None:  # a user's run (vgtui.watch): no epochs, maybe metrics=
                with s.lock:  # the user's metrics on the loss chart, in the colours it gives them (charts.loss_curves)
                    user = {k: list(v) for k, v in s.history.user.items()}
                placed = [(k, charts.user_axis(k, user[k], s.axes), c)
                          for k, c in zip(sorted(user), itertools.cycle(colours.USER))]
                loss.border_subtitle = f"[{hexc(colours.LOSS)}]━ loss (avg per probe)[/]" + spike_key + "".join(
                    f" [{hexc(c)}]• {markup(k)}{' (loss axis)' if a == 'loss' else ''}[/]"
                    for k, a, c in placed if a in ("acc", "loss"))
                own = sum(a not in ("acc", "loss") for _, a, _ in placed)
                if own:
                    loss.border_subtitle += f" · {own} more: m → your metrics"
            names = self.state.layers
            cols = charts.layer_colours(len(names))
            flow.border_subtitle = " ".join(f"[{hexc(c)}]━{markup(n)}[/]" for n, c in zip(names[:MAX_LEGEND], cols))
            if len(names) > MAX_LEGEND:
                flow.border_subtitle += f" … {len(names) - MAX_LEGEND:,} more"
            if self.metric in (PRE, USER):  # the chart names what it draws
                flow.border_subtitle = ""
        counts = "log counts, fixed decades 1…1e8" if self.log_axes else "linear counts"
        self.query_one("#hist-all", Panel).border_title = (
            f"all weight gradients · x: |g| on a log axis 1e{charts.GRAD_LO}…1e{charts.GRAD_HI} · y: {counts}")
        self.query_one("#hist-grid", Panel).border_title = "per layer: the same axes"
        if self.compare:  # several runs: the histograms show the one in focus
            tag = TAGS[min(self.branch_focus, len(self.states) - 1)]
            self.query_one("#hist-all", Panel).border_title += (f" · run {tag} {markup(self.focused_state.label)} "
                                                                 f"(o: the {'other' if len(self.states) == 2 else 'next'})")

    def _run_legend(self) -> str:
        """The curves' legend under the loss and the gradient charts: each run's tag and label in its colour
        (colours.RUN); with more than two runs the labels shortened so that all fit, and the run in focus marked
        (▸, bold: `o` moves it)."""
        runs = list(zip(TAGS, self.states, colours.RUN))
        if len(runs) <= 2:
            return " ".join(f"[{hexc(code)}]━ {tag} {markup(st.label)}[/]" for tag, st, code in runs)
        room = max((self.app.size.width // 2 - 4) // len(runs) - 5, 3)
        focus = min(self.branch_focus, len(runs) - 1)
        parts = []
        for i, (tag, st, code) in enumerate(runs):
            label = markup(run_label(st.label, room))
            parts.append(f"[bold {hexc(code)}]━▸{tag} {label}[/]" if i == focus else f"[{hexc(code)}]━ {tag} {label}[/]")
        return " ".join(parts)

    def _update_tabs(self) -> None:
        titles = {v: VIEW_TITLES[v] for v in self.views()}
        if SPIKES in titles:
            titles[SPIKES] += f" ({sum(len(st.spikes) for st in self.states):,})"
        hint = "  [dim]tab: next view[/]"
        width = self.app.size.width
        if SPIKES in titles and 1 + sum(len(t) + 2 for t in titles.values()) + 17 > width:  # the hint, then long titles
            hint = ""
            if 1 + sum(len(t) + 2 for t in titles.values()) > width:
                titles.update({k: SHORT_TITLES.get(k, t) for k, t in titles.items() if k != SPIKES})
        parts = [f"[reverse bold] {t} [/]" if v == self.view else f" [dim]{t}[/] " for v, t in titles.items()]
        self.query_one("#tabs", Static).update(" " + "".join(parts) + hint)

    # ------------------------------------------------------------------------------------------ frames
    def _frame(self, force: bool = False) -> None:
        """At most fps times a second: every visible panel whose data changed re-renders (figures at most once
        a second, see Panel.min_interval; `force` skips that, for a key the person just pressed)."""
        if self.has_class("too-small") or not self.is_mounted:
            return
        count = sum(len(st.spikes) for st in self.states)
        if count != self._spike_count:  # the tabs offer the spikes view; live or followed, a new one is said
            new = count > self._spike_count and self._seen_spikes
            self._has_spikes, self._spike_count = count > 0, count
            self._update_tabs()
            self._titles()
            last = max((sp for st in self.states for sp in st.spikes), key=lambda sp: sp.elapsed_s, default=None)
            # an explosion is said by the end record that follows it ("B diverged at step ..."), whose notice it
            # must not replace when both arrive within one frame
            if (new and last is not None and not last.ends_run
                    and (self.LIVE or getattr(self.source, "follow", False))):
                self.notice = f"{shown(spike_words(last))} (tab: loss spikes)"
        self._seen_spikes = True
        if len(self.state.history.user) != self._user_metrics:  # the loss panel's legend names the user's accuracies
            self._user_metrics = len(self.state.history.user)
            self._titles()
        elif (self.zoom or self.wall) and curveview.describe(self.run_view()) != self._curve_words:
            self._titles()  # the zoomed range moves with the run
        changed = False
        view = self.run_view()
        with self.app.batch_update():
            for panel in self.visible_panels():
                changed |= panel.update_key(view, force)
        if changed:
            self.frames += 1

    def visible_panels(self) -> list[Panel]:
        return [p for p in self.query(Panel) if p.display and (p.parent is None or p.parent.display)]

    def up_to_date(self) -> bool:
        """Whether every visible panel shows the data it has now (tests and the benchmark wait for it)."""
        view = self.run_view()
        return all(p.drawn_key == p.key(view) for p in self.visible_panels())

    def _status_now(self) -> None:
        """Answer a key at once: the status line (cheap) redraws now, the rest at the next frame."""
        if self.is_mounted:
            self.query_one(StatusBar).update_key(self.run_view())

    # ------------------------------------------------------------------------------------------ actions
    def what_this_is(self) -> str:
        """For a key that does nothing here: 'a replay of run.jsonl', 'a stream of records'."""
        return ""

    def action_unavailable(self, label: str, needs: str) -> None:
        self.notify(f"{label}: needs {needs}; this is {self.what_this_is()}", severity="warning", timeout=4)

    def action_focus(self) -> None:
        """Several runs (a fork, or a replay of several files): the next one in focus, which the gradient histograms
        show (with more than two, the activations and the layer table too) and which `F` keeps when it ends a
        fork."""
        if not self.compare:
            self.notify("o moves the focus among the runs when several are shown (f forks a live run; "
                        "vgtui replay a.jsonl b.jsonl ...)", timeout=3)
            return
        self.branch_focus = (self.branch_focus + 1) % len(self.states)
        tag = TAGS[self.branch_focus]
        if len(self.states) == 2:
            self.notice = f"focus on {tag}: the histograms show {tag}"
        else:
            self.notice = (f"focus on {tag} ({shown(self.focused_state.label)}): the histograms, the activations and "
                           "the layer table show it")
        if self.forked:
            self.notice += f"; F ends the fork keeping {tag}"
        if self.table_view.cursor:  # the layer table's cursor on a layer the run in focus has
            self._set_table()
        self._titles()
        self._frame(force=True)

    def action_metric(self) -> None:
        """The curves panel's next choice; "your metrics" only for a run that has some (vgtui.watch metrics=)."""
        choices = CURVE_KEYS if self.focused_state.history.user else tuple(k for k in CURVE_KEYS if k != USER)
        self.metric = next_choice(self.metric, choices, 1)

    # ------------------------------------------------------------------------------------------ the curves (issue 20)
    def watch_smooth(self, smooth: float) -> None:
        self.notice = (f"curves smoothed: exponential moving average, weight {smooth:g} (the raw loss faint behind)"
                       if smooth else "curves not smoothed")
        self._titles()
        self._frame(force=True)

    def watch_wall(self, wall: bool) -> None:
        self.notice = "curves over wall time (since the run started)" if wall else "curves over steps"
        self._titles()
        self._frame(force=True)

    def watch_zoom(self, zoom: int) -> None:
        r = curveview.step_range(self.states, zoom)
        self.notice = (f"curves zoomed to steps {r[0]:,}–{r[1]:,} (the last 1/{2 ** zoom:,}; Z: out)" if r
                       else "curves: the whole run")
        self._titles()
        self._frame(force=True)

    def action_smooth(self) -> None:
        self.smooth = curveview.next_smoothing(self.smooth)

    def action_wall(self) -> None:
        self.wall = not self.wall

    def action_zoom(self, by: int) -> None:
        if by > 0 and not curveview.can_zoom_in(self.states, self.zoom):
            self.notice = "curves: zoomed in as far as they go"
            return
        if by < 0 and self.zoom == 0:
            self.notice = "curves: the whole run is shown"
            return
        self.zoom = max(0, self.zoom + by)

    def action_log(self) -> None:
        self.log_axes = not self.log_axes

    def action_relative(self) -> None:
        self.relative = not self.relative

    def action_next_view(self) -> None:
        self.view = next_choice(self.view, self.views(), 1)

    def views(self) -> tuple[str, ...]:
        """The views `tab` cycles through: the spikes view once a run on screen has a loss spike."""
        return (*VIEWS, SPIKES) if self._has_spikes or self.view == SPIKES else VIEWS

    def action_spike_move(self, by: int) -> None:
        """The spikes view: the previous / next spike of the run in focus."""
        n = len(self.focused_state.visible_spikes())
        if not n:
            return
        at = n - 1 if self.spike_index is None else min(self.spike_index, n - 1)
        self.spike_index = max(0, min(at + by, n - 1))
        self._frame(force=True)

    # ------------------------------------------------------------------------------------------ the layer table
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """The layer table's keys (keymap.Key.view) act only while the table is shown; elsewhere the key goes to
        the next binding (home and end: a replay's first and last snapshot)."""
        if action in keymap.VIEW_ACTIONS and self.view != keymap.VIEW_ACTIONS[action]:
            return False
        if action == "layer_back" and not (self.table_view.open or self.table_view.filter or self._filtering):
            return False
        return True

    @property
    def _filtering(self) -> bool:
        """The `/` filter is being typed (the screen takes the keys: see on_key)."""
        return self._filter_text is not None

    def _table_names(self) -> list[str]:
        return LayerTable.names(self.focused_state, self.table_view)

    def _set_table(self, top: bool = False, **changes) -> None:
        """A new table view (the cursor on a layer the table shows; on its first row with `top`: after a sort)."""
        tv = replace(self.table_view, **changes)
        names = LayerTable.names(self.focused_state, tv)
        if names and (top or tv.cursor not in names):
            tv = replace(tv, cursor=names[0])
        self.table_view = tv
        self.query_one("#table").display = not tv.open
        self.query_one("#layer-history").display = tv.open
        self._frame(force=True)

    def _move_to(self, index) -> None:
        names = self._table_names()
        if not names:
            return
        at = names.index(self.table_view.cursor) if self.table_view.cursor in names else 0
        self._set_table(cursor=names[max(0, min(index(at, len(names)), len(names) - 1))])

    def action_layer_move(self, by: int) -> None:
        self._move_to(lambda at, n: at + by)

    def action_layer_page(self, by: int) -> None:
        page = max(self.query_one("#table", Panel).content_size.height - 3, 1)
        self._move_to(lambda at, n: at + by * page)

    def action_layer_edge(self, end: int) -> None:
        self._move_to(lambda at, n: n - 1 if end else 0)

    def action_layer_sort(self) -> None:
        """The next column to sort by (after the last: the network's order again)."""
        nxt = self.table_view.sort + 1
        self._set_table(top=True, sort=nxt if nxt < len(TABLE_COLUMNS) else -1)
        tv = self.table_view
        way = "descending" if tv.descending else "ascending"
        self.notice = (f"layer table sorted by {TABLE_COLUMNS[tv.sort][0]} ({way})" if tv.sort >= 0
                       else "layer table in the network's order")

    def action_layer_reverse(self) -> None:
        self._set_table(top=True, descending=not self.table_view.descending)
        self.notice = "layer table: " + ("descending" if self.table_view.descending else "ascending")

    def action_layer_filter(self) -> None:
        """`/`: type the filter's patterns (a line under the table shows them; the table follows each key)."""
        self._filter_text = self.table_view.filter
        self._show_filter()

    def _show_filter(self) -> None:
        box = self.query_one("#layer-filter", Static)
        box.display = self._filter_text is not None
        if self._filter_text is not None:
            box.update(Text.assemble(("/", "bold"), shown(self._filter_text), ("▏", "blink"),
                                     ("   a name or a glob (layer3.*, fc1?), several with spaces · enter keeps · "
                                      "esc clears", "dim"), no_wrap=True, overflow="ellipsis"))

    def on_key(self, event: events.Key) -> None:
        """While the filter is typed, every key but the priority ones (tab, ctrl+c, ctrl+s) is the filter's: enter
        keeps it, esc clears it, backspace takes a character back."""
        if self._filter_text is None:
            return
        event.stop()
        event.prevent_default()
        if event.key == "enter":
            self._close_filter()
            n = len(self._table_names())
            self.notice = f"layer filter {self.table_view.filter!r}: {n} layers" if self.table_view.filter else ""
            return
        if event.key == "escape":
            self._close_filter()
            self._set_table(filter="")
            return
        if event.key == "backspace":
            self._filter_text = self._filter_text[:-1]
        elif event.is_printable and event.character:
            self._filter_text += event.character
        else:
            return
        self._show_filter()
        self._set_table(filter=self._filter_text.strip())

    def _close_filter(self) -> None:
        self._filter_text = None
        self._show_filter()

    def action_layer_open(self) -> None:
        names = self._table_names()
        if names:
            self._set_table(open=True, cursor=self.table_view.cursor if self.table_view.cursor in names else names[0])

    def action_layer_back(self) -> None:
        """esc: close the filter box, else the layer's history, else clear the filter."""
        if self.table_view.open:
            self._set_table(open=False)
        elif self.table_view.filter:
            self._set_table(filter="")
            self.notice = "layer filter cleared"

    def export_target(self) -> tuple[object, int, int] | None:
        """The run `e` writes as CSV: (a run index, its number, how many runs the file holds); None: nothing yet
        (said by the mode). Called in the export's thread."""
        raise NotImplementedError

    @contextlib.contextmanager
    def export_targets(self) -> Iterator[list[tuple[str, object, str]]]:
        """Every run `e` writes, one CSV each: (its tag, its run index, the CSV path it wants). By default the mode's
        one run (`export_target`), beside its metrics file; a replay of several runs gives each of them."""
        with self.export_target() as (run, number, count):
            yield [(TAGS[0], run, self.csv_path(self.source.metrics_path, number, count))]

    def csv_path(self, path: str, number: int, count: int, suffix: str = "") -> str:
        """The CSV a run of metrics file `path` wants: beside it (run.csv; run-2.csv for the second run of a file
        with several; `suffix` after that: a fork's branch, run-B.csv), or in the screenshot folder when that folder
        is not writable. write_csv_new takes the next free name when this one exists."""
        stem = os.path.splitext(os.path.basename(path))[0] + (f"-{number}" if count > 1 else "") + suffix
        folder = os.path.dirname(os.path.abspath(path))
        return os.path.join(folder if os.access(folder, os.W_OK) else self.screenshot_dir, stem + ".csv")

    def can_export(self) -> bool:
        """Whether `e` has a run to write (a mode says why not)."""
        return True

    def action_export(self) -> None:
        if not self.source.metrics_path:
            self.notify("e: no metrics file behind this run (start vgtui with --metrics PATH)", severity="warning",
                        timeout=5)
            return
        if not self.can_export():
            return
        self.notice = "writing the CSV…"
        self._export()

    @work(thread=True, group="export")
    def _export(self) -> None:
        """What is on screen as CSV (vgtui.core.csvfile.write_csv_new), one file per run shown (`export_targets`: a
        CSV holds one run), each beside its metrics file, or in the screenshot folder when that one is not writable:
        run.csv, or run-2.csv for the second run of a file with several. Nothing is ever overwritten (the metrics
        file itself, a CSV already there, a link): the first free name of run-2.csv, run-3.csv... is taken instead,
        and said. A run that cannot be written is said; the others are still written."""
        from vgtui.core.csvfile import write_csv_new

        done: list[str] = []
        failed: list[str] = []
        folders: set[str] = set()
        warn = False
        try:
            with self.export_targets() as targets:
                many = len(targets) > 1
                for tag, run, wanted in targets:
                    damaged: list[str] = []
                    try:
                        out, rows = write_csv_new(run, wanted, on_damaged=damaged.append)
                    except Exception as e:  # noqa: BLE001 - a run that cannot be exported is said, never a crash
                        why = e.strerror if isinstance(e, OSError) and e.strerror else (
                            e if isinstance(e, ValueError) else f"{type(e).__name__}: {e}")
                        failed.append(f"{tag} {why}" if many else str(why))
                        continue
                    said = f"{tag} " * many + f"{os.path.basename(out) if many else out} ({rows:,} rows"
                    if out != wanted:
                        said += f"; {os.path.basename(wanted)} exists: left as it is"
                    if damaged:
                        lines = ", ".join(m.group(1) for d in damaged[:5] if (m := re.search(r"line (\d+)", d)))
                        said += (f"; {len(damaged):,} damaged snapshot{'s' * (len(damaged) != 1)} skipped: line "
                                 f"{lines}{'…' if len(damaged) > 5 else ''}")
                    done.append(said + ")")
                    folders.add(os.path.dirname(out))
                    warn |= out != wanted or bool(damaged)
        except Exception as e:  # noqa: BLE001 - a file that cannot be opened for export is a notice, never a crash
            why = e.strerror if isinstance(e, OSError) and e.strerror else (
                e if isinstance(e, ValueError) else f"{type(e).__name__}: {e}")
            failed.append(str(why))
        if not done:
            self.app.call_from_thread(self.notify, f"e: could not write the CSV: {'; '.join(failed)}", severity="error")
            return
        said = ("CSV written: " if len(done) == 1 and not failed else
                f"CSV written, one per run shown ({len(done)} of {len(done) + len(failed)}) in "
                f"{', '.join(sorted(folders))}: ") + " · ".join(done)
        if failed:
            said += " · not written: " + "; ".join(failed)
        self.app.call_from_thread(setattr, self, "notice", said)
        # a toast as well: a live run's next snapshot or its end replaces the status line within a second
        severity, timeout = ("warning", 8) if warn or failed else ("information", 6)
        self.app.call_from_thread(self.notify, said, severity=severity, timeout=timeout)

    def action_screenshot_svg(self) -> None:
        """An SVG of the screen in the screenshot folder, under a new name (vgtui_DATE_TIME.svg, or -2, -3...
        within the same second): never over an existing file or through a link (vgtui.core.outfile)."""
        from vgtui.core.outfile import numbered, write_new

        folder = os.path.expanduser(self.screenshot_dir)
        name = os.path.join(folder, time.strftime("vgtui_%Y%m%d_%H%M%S.svg"))
        try:
            svg = self.app.export_screenshot().encode("utf-8")
            path, _ = write_new(numbered(name), lambda f: f.write(svg))
        except (OSError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else e
            self.notice = f"screenshot not saved: {self.screenshot_dir}: {why}"
            self.notify(self.notice, severity="error", timeout=8)
            return
        self.notice = f"screenshot saved: {path}"
        self.notify(self.notice, timeout=6)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(self.KIND))

    def action_quit(self, status: int = 0) -> None:
        self.app.close_sources(timeout=1.5)  # type: ignore[attr-defined]
        self.app.exit(int(status))
