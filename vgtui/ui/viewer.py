"""The main screen: status, view tabs, the views, the footer; its bindings (from the key map) and actions.

The screen owns what is shown and how: one `RunState` per source (two for `vgtui replay A B`), and the view
options as reactive attributes whose watchers retitle and redraw. The App only wires sources to it.

Threads and cost (the budget: training inside the TUI at >= 0.90 of headless speed):
- A live source (the trainer, standard input) is read by a thread worker that folds every record into the
  RunState and posts a message (`vgtui.ui.messages`) for the records the screen reacts to.
- A file source is read where it lies: a worker fills the curves' (bounded) history in the background, the
  cursor keys parse one snapshot each, and a timer follows a growing file (`vgtui.sources.file`).
- A frame timer runs at most `fps` times a second and asks each visible panel whether its data changed; only
  those re-render. Keys act at once.
"""

from __future__ import annotations

import os
import time

from rich.color import Color
from textual import on, work
from textual.app import ComposeResult
from textual.binding import BindingsMap
from textual.containers import Grid, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Static
from textual.worker import get_current_worker

from vgtui.core.config import ACTIVATIONS, INITS, RunConfig, next_choice
from vgtui.core.metrics import MetricsFileError
from vgtui.core.records import (EndRecord, EventRecord, Fork, NoticeRecord, Pause, Restart, RunRecord, SetActivation,
                                SetLR, SetSpeedCap, Snapshot, StatusRecord, StepOnce)
from vgtui.sources.base import RecordedSource, Source, TrainerSource
from vgtui.sources.file import BranchSource
from vgtui.ui import charts, keymap
from vgtui.ui.messages import (Acknowledged, ForkEnded, ForkStarted, LiveChange, RunEnded, RunStarted, SourceLost,
                               TrainerNotice)
from vgtui.ui.screens import FailureScreen, HelpScreen
from vgtui.ui.state import CURVE_KEYS, PRE, RunState, metric, shown
from vgtui.ui.widgets import (ActivationPanel, GradientBars, LayerTable, Panel, PlotextPanel, RunView, StatusBar,
                              flow_figure, hist_all_figure, hist_grid_figure, hist_key, loss_figure, markup)

MIN_SIZE = (80, 24)
SPEED_CAPS: tuple[float | None, ...] = (None, 200.0, 100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5)
PACES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)  # a replay's speed against the recorded pace
VIEWS = ("overview", "histograms", "layers")
VIEW_TITLES = {"overview": "overview", "histograms": "gradient histograms", "layers": "layer table"}
MAX_DEPTH = 20
MAX_LEGEND = 40  # layers named under the curves panel at most (a border line holds no more)
FOLLOW_POLL_S = 0.25  # how often a followed file is checked for new lines
STALL_S = 5.0  # a running trainer silent for this long (and 3 snapshot intervals) is said to be stalled


def changes(old: RunConfig, new: RunConfig) -> str:
    """What a restart changes, as a person reads it: 'depth 5 → 2', 'batchnorm off → on, lr 0.01 → 0.001'."""
    def word(v: object) -> str:
        return ("on" if v else "off") if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)

    a, b = old.to_dict(), new.to_dict()
    return ", ".join(f"{k} {word(a.get(k))} → {word(b[k])}" for k in b if k != "seed" and a.get(k) != b[k])


def hexc(code: int) -> str:
    """A 256-colour code as #rrggbb (Textual markup does not take color(N))."""
    return Color.from_ansi(code).get_truecolor().hex


class MainScreen(Screen):
    metric: reactive[str] = reactive("grad_norm", init=False)
    log: reactive[bool] = reactive(True, init=False)
    view: reactive[str] = reactive("overview", init=False)
    paused: reactive[bool] = reactive(False, init=False)  # training paused, or a replay not playing
    pause_wanted: reactive[bool | None] = reactive(None, init=False)  # asked of the trainer, not yet acknowledged
    cap: reactive[float | None] = reactive(None, init=False)  # the trainer's steps/s cap
    pace: reactive[float] = reactive(1.0, init=False)  # a replay's speed
    notice: reactive[str] = reactive("", init=False)  # the status line's third line, when something just happened

    def __init__(self, sources: list[Source], fps: float = 2.0, screenshot_dir: str | None = None) -> None:
        super().__init__()
        self.sources = sources
        self.source = sources[0]
        self.kind = self.source.kind
        self.states = [RunState(s.config, s.label) for s in sources]
        self.state = self.states[0]
        self.branch_focus = 0  # the run the single-run views show (the histograms); in a fork, the branch `f` keeps
        self.ending_fork: str | None = None  # the branch `f` asked the trainer to keep, until B's end record comes
        self._user_metrics = 0  # the user's metrics the titles were made for
        self.fork_pending = False  # `f` forked, B's header not yet here: the recipe keys already change B
        self.fps = max(float(fps), 0.2)
        self.screenshot_dir = screenshot_dir or os.getcwd()
        self.frames = 0  # frame timer ticks that redrew something (bench/tests)
        self._lost_reported = False
        self.pending: RunConfig | None = None  # what the person asked the trainer for, not yet acknowledged
        self._last_word = time.monotonic()  # when the live source last sent anything
        self.stalled = False
        self._play_from: tuple[float, float] | None = None  # (monotonic, elapsed_s) when play started
        self._bindings = BindingsMap(keymap.bindings(self.kind, metrics_file=self._has_file))
        self._footer_width = 0

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
        """A live fork: the trainer's run (A) and its branch B, side by side."""
        return self.kind == "trainer" and len(self.states) > 1

    @property
    def to_b(self) -> bool:
        """The recipe keys change B: during a fork, and from the `f` that asked for one (the trainer reads the
        commands in order: the fork first, then the change, which is B's); no longer from the `f` that ends it (then
        the change is the kept run's, which the trainer runs without a branch by the time it reads the change)."""
        return (self.forked and self.ending_fork is None) or self.fork_pending

    @property
    def ended(self) -> bool:
        """The run has ended (completed, diverged, failed): nothing trains until `r`."""
        end = self.state.end
        return self.kind == "trainer" and end is not None and end.status != "interrupted"

    @property
    def focused_state(self) -> RunState:
        return self.states[min(self.branch_focus, len(self.states) - 1)]

    @property
    def target(self) -> RunState:
        """The run the recipe keys change: B during a fork (A is the control), else the run (while a fork ends: the
        branch it keeps)."""
        if self.forked and (self.ending_fork is None or self.ending_fork == "B"):
            return self.states[1]
        return self.state

    # ------------------------------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield Static(id="tabs")
        with ContentSwitcher(initial="overview", id="views"):
            with Grid(id="overview"):
                yield GradientBars(id="grads", classes="panel")
                yield ActivationPanel(id="acts", classes="panel")
                yield PlotextPanel(loss_figure, lambda v: v.versions("snap_version", "epoch_version"),
                                   id="loss", classes="panel")
                yield PlotextPanel(flow_figure, lambda v: (v.versions("snap_version"), v.metric, v.log),
                                   id="flow", classes="panel")
            with Vertical(id="histograms"):
                yield PlotextPanel(hist_all_figure, hist_key, id="hist-all", classes="panel")
                yield PlotextPanel(hist_grid_figure, hist_key, id="hist-grid", classes="panel")
            with Vertical(id="layers"):
                yield LayerTable(id="table", classes="panel")
        yield Static(id="too-small")
        yield Footer(compact=True)

    def versions(self, *names: str) -> tuple:
        """The data versions `names` of every run shown (a panel's key: it redraws when one changes)."""
        return tuple(getattr(st, n) for st in self.states for n in names)

    def run_view(self) -> RunView:
        """What the panels draw from at this frame (they never read the screen)."""
        return RunView(states=tuple(self.states), live=self.kind == "trainer", replay=self.kind == "file",
                       follow=bool(getattr(self.source, "follow", False)), paused=self.paused,
                       pause_wanted=self.pause_wanted, cap=self.cap, pace=self.pace, notice=self.notice,
                       branch_focus=self.branch_focus, metric=self.metric, log=self.log, colour=self.colour)

    def on_mount(self) -> None:
        self._titles()
        self._update_tabs()
        self.check_size()
        if self.kind == "file":
            for i, src in enumerate(self.sources):
                if src.run is not None:
                    self._open_run(i)
            if self.source.follow:
                self.set_interval(FOLLOW_POLL_S, self._follow)
                self.notice = self.source.waiting or self.notice
            else:
                self.paused = True
            self.set_interval(0.1, self._play)
            self._show_branch()
        else:
            self._bridge()
        if self.kind == "trainer":
            self.set_interval(1.0, self.check_stall)
        self.set_interval(1.0 / self.fps, self._frame)
        self._frame()

    def on_resize(self) -> None:
        self.check_size()

    def check_size(self) -> None:
        w, h = self.app.size
        if w != self._footer_width:  # the footer shows the keys that fit (q and ? always: keymap.FOOTER)
            self._footer_width = w
            self._bindings = BindingsMap(keymap.bindings(self.kind, w, metrics_file=self._has_file))
            self.refresh_bindings()
        small = w < MIN_SIZE[0] or h < MIN_SIZE[1]
        self.set_class(small, "too-small")
        if small:
            what = "Training goes on meanwhile; " if self.kind == "trainer" else ""
            self.query_one("#too-small", Static).update(
                f"The terminal is {w}x{h}.\n\nEnlarge to at least {MIN_SIZE[0]}x{MIN_SIZE[1]}.\n\n{what}q quits.")

    # ------------------------------------------------------------------------------------------ watchers
    def watch_metric(self) -> None:
        self._titles()
        self._frame(force=True)

    def watch_log(self, log: bool) -> None:
        self.notice = "log axes (fixed decades)" if log else "linear axes"
        self._titles()
        self._frame(force=True)

    def watch_view(self, view: str) -> None:
        self.query_one("#views", ContentSwitcher).current = view
        self._update_tabs()
        self.call_after_refresh(self._frame, True)

    def watch_notice(self) -> None:
        self._status_now()

    def watch_paused(self) -> None:
        self._status_now()

    def watch_pause_wanted(self) -> None:
        self._status_now()

    def watch_cap(self) -> None:
        self._status_now()

    def watch_pace(self) -> None:
        self._status_now()

    def _titles(self) -> None:
        loss = self.query_one("#loss", Panel)
        flow = self.query_one("#flow", Panel)
        loss.border_title = "loss & accuracy over steps"
        if self.metric == PRE:
            flow.border_title = "pre-activation z percentiles · linear y (always)"
        else:
            m = metric(self.metric)
            scale = f"log y, fixed decades 1e{m.lo}…1e{m.hi}" if self.log else "linear y"
            flow.border_title = f"{m.label} per layer over steps · {scale}"
        if self.compare:
            a, b = (markup(st.label) for st in self.states)
            loss.border_subtitle = flow.border_subtitle = (f"[{hexc(charts.LOSS_COLOUR)}]━ A {a}[/] "
                                                           f"[{hexc(charts.B_COLOUR)}]━ B {b}[/]")
            flow.border_subtitle += " · last hidden layer" if self.metric == PRE else " · first and last layer"
        else:
            loss.border_subtitle = (f"[{hexc(81)}]━ loss (avg per probe)[/] [{hexc(214)}]● train acc[/] "
                                    f"[{hexc(78)}]● test acc[/] [{hexc(177)}]│ live change[/]")
            s = self.state
            if s.run is not None and s.run.config is None:  # a user's run (vgtui.watch): no epochs, maybe metrics=
                with s.lock:  # the user's accuracies, in the colours the chart gives them (charts.loss_curves)
                    accuracies = sorted(k for k in s.history.user if charts.is_accuracy(k))
                loss.border_subtitle = f"[{hexc(81)}]━ loss (avg per probe)[/]" + "".join(
                    f" [{hexc(c)}]• {markup(k)}[/]" for k, c in zip(accuracies, charts.USER_COLOURS))
            names = self.state.layers
            cols = charts.layer_colours(len(names))
            flow.border_subtitle = " ".join(f"[{hexc(c)}]━{markup(n)}[/]" for n, c in zip(names[:MAX_LEGEND], cols))
            if len(names) > MAX_LEGEND:
                flow.border_subtitle += f" … {len(names) - MAX_LEGEND:,} more"
            if self.metric == PRE:  # the chart names the layers it draws (the hidden ones)
                flow.border_subtitle = ""
        counts = "log counts, fixed decades 1…1e8" if self.log else "linear counts"
        self.query_one("#hist-all", Panel).border_title = (
            f"all weight gradients · x: |g| on a log axis 1e{charts.GRAD_LO}…1e{charts.GRAD_HI} · y: {counts}")
        self.query_one("#hist-grid", Panel).border_title = "per layer: the same axes"
        if self.compare:  # two runs: the histograms show the one in focus
            tag = "AB"[min(self.branch_focus, len(self.states) - 1)]
            self.query_one("#hist-all", Panel).border_title += (f" · run {tag} {markup(self.focused_state.label)} "
                                                                 "(o: the other)")

    def _update_tabs(self) -> None:
        parts = []
        for v in VIEWS:
            t = VIEW_TITLES[v]
            parts.append(f"[reverse bold] {t} [/]" if v == self.view else f" [dim]{t}[/] ")
        self.query_one("#tabs", Static).update(" " + "".join(parts) + "  [dim]tab: next view[/]")

    # ------------------------------------------------------------------------------------------ frames
    def _frame(self, force: bool = False) -> None:
        """At most fps times a second: every visible panel whose data changed re-renders (figures at most once
        a second, see Panel.min_interval; `force` skips that, for a key the person just pressed)."""
        if self.has_class("too-small") or not self.is_mounted:
            return
        if len(self.state.history.user) != self._user_metrics:  # the loss panel's legend names the user's accuracies
            self._user_metrics = len(self.state.history.user)
            self._titles()
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

    # ------------------------------------------------------------------------------------------ live sources
    @work(thread=True, exclusive=True, name="source-bridge", group="bridge")
    def _bridge(self) -> None:
        """Fold every record of a live source into the state; post what the screen reacts to."""
        worker = get_current_worker()
        state, source = self.state, self.source
        branch: RunState | None = None  # a fork's branch B
        while not worker.is_cancelled:
            rec = source.get(timeout=0.1)
            if rec is None:
                if source.alive or worker.is_cancelled:
                    continue
                rec = source.get(timeout=0.05)  # drain what the pipe still holds
                if rec is None:
                    self.post_message(SourceLost(source.why))
                    return
            self._last_word = time.monotonic()
            if isinstance(rec, StatusRecord):  # acknowledgements and notices are not run data
                self.post_message(Acknowledged(rec))
                continue
            if isinstance(rec, NoticeRecord):
                self.post_message(TrainerNotice(rec))
                continue
            if getattr(rec, "branch", None) == "B":  # the fork's records go to B's state
                if isinstance(rec, RunRecord):
                    before = branch.config if branch is not None else None
                    branch = RunState(None, f"fork@{rec.forked_at or 0:,}")
                    branch.begin(rec)
                    self.post_message(ForkStarted(branch, rec, before))
                elif branch is not None:
                    branch.apply(rec)
                    if isinstance(rec, EndRecord):
                        self.post_message(ForkEnded(rec))
                    elif isinstance(rec, EventRecord):
                        self.post_message(LiveChange(rec))
                continue
            before = state.config
            state.apply(rec)  # snapshots and epochs: the frame timer redraws what changed
            if isinstance(rec, RunRecord):
                if rec.forked_at is not None and branch is not None:  # the fork ended keeping B: B goes on
                    state.carry_on(branch, rec.forked_at)
                    branch = None
                self.post_message(RunStarted(rec, before))
            elif isinstance(rec, EventRecord):
                self.post_message(LiveChange(rec))
            elif isinstance(rec, EndRecord):
                self.post_message(RunEnded(rec))

    @on(Acknowledged)
    def _on_ack(self, message: Acknowledged) -> None:
        self.paused = message.status.paused
        if self.pause_wanted == self.paused:
            self.pause_wanted = None

    @on(TrainerNotice)
    def _on_notice(self, message: TrainerNotice) -> None:
        n = message.notice
        self.notice = n.message
        self.notify(n.message, severity="error" if n.level == "error" else "warning", timeout=15)

    def _acknowledged(self) -> None:
        """A run header or an event arrived: a pending change is done once what runs is what was asked for."""
        if self.pending is not None and self.target.config == self.pending:
            self.pending = None

    def check_stall(self) -> None:
        """A running trainer that sends nothing for a while (stopped with SIGSTOP, stuck) is said to be stalled."""
        s = self.state
        expected = 0.0
        if s.snap is not None and s.snap.steps_per_s > 0 and s.run is not None:
            expected = 3 * (s.run.probe_every or 40) / s.snap.steps_per_s  # three snapshot intervals
        silent = time.monotonic() - self._last_word
        stalled = (not self.paused and s.run is not None and s.end is None and not self.app.closing_sources
                   and silent > max(STALL_S, expected))
        if stalled != self.stalled:
            self.stalled = stalled
            self.notice = (f"no word from the trainer for {silent:.0f} s (stopped? stuck?); q still quits"
                           if stalled else "the trainer is answering again")

    @on(RunStarted)
    def _on_run(self, message: RunStarted) -> None:
        kept_b = message.run.forked_at is not None and self.kind == "trainer"
        if not kept_b:  # a new run starts running; B kept goes on as the trainer was (paused or not)
            self.paused = False  # a later pause comes with its own acknowledgement
        self._acknowledged()
        if kept_b:
            self.notice = f"the fork ended at step {message.run.forked_at:,}: B goes on as the run"
            self.notify(self.notice, timeout=4)
        elif self.state.runs > 1 and not (self.forked and self.pending is not None):
            cfg = self.state.config
            what = cfg.describe() if cfg is not None else message.run.model
            if self.kind != "trainer":
                self.notice = f"a new run started: {what}"
            elif message.before is not None and cfg is not None and changes(message.before, cfg):
                self.notice = f"restarted: {changes(message.before, cfg)} (fresh weights)"
            else:
                self.notice = f"restarted with the same configuration, fresh weights: {what}"
            self.notify(self.notice, timeout=4)
        elif message.run.notice:
            self.notice = message.run.notice
            self.notify(message.run.notice, severity="warning", timeout=8)
        self._titles()
        self._status_now()

    @on(LiveChange)
    def _on_event(self, message: LiveChange) -> None:
        ev = message.event
        who = "B: " if ev.branch == "B" else ""
        if "activation" in ev.set:
            self.notice = f"{who}activation → {ev.set['activation']} at step {ev.step} (live, weights kept)"
        elif "lr" in ev.set:
            self.notice = f"{who}lr → {ev.set['lr']:g} at step {ev.step} (live, weights kept)"
        if who:
            self.notice += "; A unchanged"
        self._acknowledged()
        self._status_now()

    @on(ForkStarted)
    def _on_fork(self, message: ForkStarted) -> None:
        restarted = self.forked
        self.fork_pending = False
        self.states = [self.state, message.state]
        self._acknowledged()
        if restarted:  # a recipe change restarted A and B: the notice already says so
            changed = changes(message.before, message.state.config) if message.before is not None else ""
            self.notice = (f"restarted A and B from seed {self.state.config.seed}: "
                           f"B = {message.state.config.describe()}" + (f" ({changed})" if changed else ""))
        else:
            self.notice = (f"forked at step {message.run.forked_at:,}: B = A; a L change B, i b s + - r restart "
                           "both; o focus, f ends")
        self._titles()
        self._status_now()

    @on(ForkEnded)
    def _on_fork_end(self, message: ForkEnded) -> None:
        end = message.end
        kept, self.ending_fork = self.ending_fork, None
        if not self.forked or not (kept or end.status == "diverged"):
            return  # the run ended (or restarted) with its fork: both stay on screen
        self.states = [self.state]
        self.branch_focus = 0
        self.pending = None
        if end.status == "diverged":
            self.notice = f"B diverged at step {end.steps} ({end.message}); A goes on alone"
            self.notify(self.notice, severity="error", timeout=8)
        elif kept == "A":  # keeping B, the run's new header says so (_on_run)
            self.notice = f"the fork ended at step {end.steps}: A goes on, B is in the metrics file"
        self._titles()
        self._status_now()

    @on(RunEnded)
    def _on_end(self, message: RunEnded) -> None:
        end = message.end
        if end.status != "interrupted":  # a fork asked for just before the end never comes
            self.fork_pending = False
        self.notice = ""  # the status line now says how the run ended
        again = " r runs it again." if self.kind == "trainer" else ""
        if end.status == "failed" and self.kind == "trainer" and self.state.run is None:
            self.app.startup_error = end.message  # refused before it started (no CUDA, bad data): say it and go
            self.action_quit(2)
            return
        if end.status == "failed" and self.kind == "trainer":
            self._show_failure(end)
        elif end.status == "diverged":
            self.paused = True
            self.notify(f"Diverged at step {end.steps}, first in {end.layer or 'the loss'}: try a lower lr, "
                        f"batchnorm, or a different init.{again}", severity="error", timeout=10)
        elif end.status == "completed":
            self.notify(f"run completed: {end.message}.{again}", timeout=6)
        self._status_now()

    @on(SourceLost)
    def _on_lost(self, message: SourceLost) -> None:
        if self._lost_reported or self.app.closing_sources:  # type: ignore[attr-defined]
            return
        self._lost_reported = True
        if self.kind != "trainer":
            self.notice = message.why or "the stream ended"
            return
        src = self.source
        if isinstance(src, TrainerSource):  # it says how it died, and writes the end record its run lacks
            death, written = src.death(), src.ensure_end("failed", src.death(), "trainer-died")
        else:
            death, written = "the trainer ended", None
        if written is not None:
            self.state.apply(written)
        hint = ("vgtui wrote its end record (status failed)." if written is not None else
                "The metrics file keeps every record it wrote." if self.source.metrics_path else "")
        self._show_failure(None, f"{death[0].upper()}{death[1:]} without a word (killed, or out of memory?).",
                           hint=hint)

    def _show_failure(self, end: EndRecord | None, message: str | None = None, hint: str = "") -> None:
        """The failure dialog, one at a time (a second failure under an open dialog adds nothing)."""
        if any(isinstance(sc, FailureScreen) for sc in self.app.screen_stack):
            return
        if end is not None and self.source.metrics_path and not hint:
            hint = "The metrics file ends with status failed, with the traceback."

        def chosen(choice: str | None) -> None:
            if choice == "restart":
                if not self.source.alive:  # the process is gone: a new one, with the configuration on screen
                    self._lost_reported = False
                    self.source.start(self.wanted)
                    self._bridge()
                    self.notice = f"restarting: {self.wanted.describe()} …"
                else:
                    self._restart(self.wanted)
            elif choice == "quit":
                self.action_quit()

        self.app.push_screen(FailureScreen(end, message, hint), chosen)

    # ------------------------------------------------------------------------------------------ file sources
    def _open_run(self, i: int) -> None:
        """Show source i's chosen run: the header at once, the cursor on its last snapshot, and the curves'
        history filled in the background."""
        src, st = self.sources[i], self.states[i]
        run = src.run
        if run is None:
            return
        st.begin(run.header, run.epochs, run.events)
        st.run_of = (src.run_number, len(src.runs)) if len(src.runs) > 1 else None
        if i == 0:
            self._seek_index(max(run.n_snapshots - 1, 0))
        else:
            self._align()
        # after the first frame: parsing the history must not hold the GIL while the first screen is drawn
        self.call_after_refresh(self._fill_history, st, src, run, st.runs)
        if src.notice:
            self.notify(shown(src.notice), severity="warning", timeout=8)
            self.notice = shown(src.notice)
        self._titles()

    @staticmethod
    def _snapshot(run, index: int) -> tuple[Snapshot | None, str]:
        """Snapshot `index` of `run`, or why it cannot be shown: a damaged line (MetricsFileError, one line), or
        a line the index took that has since changed (the file was rewritten)."""
        try:
            return run.snapshot(index), ""
        except MetricsFileError as e:
            return None, str(e)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as e:
            return None, f"snapshot {index + 1} cannot be read ({type(e).__name__}: {e})"

    def _show_at(self, st: RunState, run, index: int) -> None:
        """Put `st`'s cursor on snapshot `index` of `run`; a damaged one shows as damaged (a notice, its position,
        the curves up to its step), and the cursor keys go on to its neighbours."""
        n = run.n_snapshots
        end = run.end if index == n - 1 else None
        snap, why = self._snapshot(run, index)
        if snap is not None:
            st.show(snap, index, n, end)
            return
        steps = run.snapshot_steps
        st.show_damaged(shown(why), index, n, int(steps[index]) if index < len(steps) else None, end)
        self.notice = f"snapshot {index + 1:,} is damaged: {shown(why)}"

    @work(thread=True, group="history")
    def _fill_history(self, st: RunState, src: RecordedSource, run, runs: int) -> None:
        """The curves: every snapshot of the run folded into the bounded history, in chunks so that the cursor
        keys keep answering (each key parses its one snapshot on the UI thread); for a followed file, then each
        new snapshot as it is indexed. The only writer of this run's history (`runs`: while `st` shows this
        opening of the run), so its steps stay in order. A damaged snapshot is left out of the curves."""
        worker = get_current_worker()
        done = 0
        while not worker.is_cancelled and st.run is run.header and st.runs == runs:
            n = run.n_snapshots
            if done < n:
                stop = min(done + 50, n)
                snaps = [s for s in (self._snapshot(run, k)[0] for k in range(done, stop)) if s is not None]
                st.add_history(snaps)  # parsed before the state's lock is taken
                done = stop
            elif not src.follow or run.end is not None:
                return
            else:
                time.sleep(FOLLOW_POLL_S)

    def _seek_index(self, index: int) -> None:
        """Put run A's cursor on snapshot `index` (clamped), and B's on the same step."""
        run = self.source.run
        if run is None or run.n_snapshots == 0:
            return
        index = min(max(index, 0), run.n_snapshots - 1)
        self._show_at(self.state, run, index)
        if self.compare:
            self._align()

    def _align(self) -> None:
        """Run B's cursor on its last snapshot at or before A's step (the runs are aligned by step, read from the
        index: A's snapshot may be damaged). A state whose run is not its source's run any more (`p` to a run with
        another fork, or none) is left to `_show_branch`."""
        a, pos = self.source.run, self.state.position
        if a is not None and pos is not None and pos[0] < a.n_snapshots:
            step = int(a.snapshot_steps[pos[0]])
        else:
            step = self.state.step
        for src, st in zip(self.sources[1:], self.states[1:]):
            run = src.run
            if run is None or st.run is not run.header or run.n_snapshots == 0:
                continue
            n = run.n_snapshots
            j = run.index_of_step(step)
            end = run.end if j == n - 1 else None
            if st.position == (j, n) and st.end is end and (st.snap is not None or st.damaged):
                continue  # shown already (a followed file polls it several times a second)
            self._show_at(st, run, j)

    def _at_end(self) -> bool:
        pos = self.state.position
        return pos is None or pos[0] >= pos[1] - 1

    def _follow(self) -> None:
        """A followed file: new lines, a new run, the end, or a writer gone quiet."""
        src, st = self.source, self.state
        try:
            change = src.poll()
        except (ValueError, OSError, IndexError) as e:  # the file became unreadable (MetricsFileError: one line)
            self.notice = shown(e)
            return
        if src.run is None:
            return
        if change.new_run:
            self._open_run(0)
            n = len(src.runs)
            self.notice = (f"showing run {src.run_number} of {n} in {shown(st.label)}" if n > 1
                           else f"following {shown(st.label)}")
            self._show_branch()
            return
        if change.notice:  # the reader skipped a damaged line appended since, or read the file again
            self.notice = shown(change.notice)
            self.notify(self.notice, severity="warning", timeout=8)
        if change.new_epochs:
            st.add_epochs(change.new_epochs)
        if change.new_snapshots:
            at_end = self._at_end()
            index = st.position[0] if st.position else 0
            self._seek_index(src.run.n_snapshots - 1 if at_end and not self.paused else index)
        if change.ended and self._at_end():
            self._seek_index(src.run.n_snapshots - 1)
            end = src.run.end
            self.notice = "" if end.status in ("diverged", "failed") else shown(
                f"the run ended: {end.status}" + (f" ({end.message})" if end.message else ""))
        if change.lost and change.lost != st.lost:
            st.lost = change.lost
            self.notice = shown(change.lost)
            self.notify(self.notice, severity="warning", timeout=8)
        self._show_branch()

    def _show_branch(self) -> None:
        """A file's run and its fork (branch B) side by side: B opens beside the run shown when that run has one (at
        start, after `p`, or in a followed file once B's header is written), and goes when it has none."""
        if len(self.sources) > 1 and not isinstance(self.sources[1], BranchSource):
            return  # two files side by side
        src = self.source
        branch = src.run.branches[-1] if src.run is not None and src.run.branches else None
        if branch is None:
            if len(self.states) > 1:
                self.states = self.states[:1]
                self.branch_focus = 0
                self._titles()
            return
        if len(self.sources) == 1:
            self.sources.append(BranchSource(src))
        if len(self.states) == 1 or self.states[1].run is not branch.header:
            self.states = [self.state, RunState(None, self.sources[1].label)]
            self._open_run(1)
            at = branch.header.forked_at
            self.notice = (f"{shown(self.state.label) or 'the run'} was forked at step "
                           f"{at if isinstance(at, int) else 0:,}: its fork is B")
        self._align()  # B's snapshots are written just after A's: show B's as it arrives

    def _play(self) -> None:
        """Playback at the recorded pace (times `pace`): the cursor goes to the last snapshot whose elapsed
        time the replay clock has passed (read from the index: a damaged snapshot is passed over like another)."""
        run, pos = self.source.run, self.state.position
        if self.paused or self.kind != "file" or run is None or pos is None or pos[0] >= run.n_snapshots:
            self._play_from = None
            return
        i, n = pos
        elapsed = run.snapshot_elapsed
        now = time.monotonic()
        if self._play_from is None:
            self._play_from = (now, float(elapsed[i]))
            return
        t0, e0 = self._play_from
        j = max(int(elapsed.searchsorted(e0 + (now - t0) * self.pace, side="right")) - 1, i)
        if j != i:
            self._seek_index(j)
        if j >= n - 1 and not self.source.follow:
            self.paused = True
            self.notice = "the end of the run: home goes back to the first snapshot"

    # ------------------------------------------------------------------------------------------ actions
    @property
    def wanted(self) -> RunConfig:
        """The configuration the person asked for: a pending one, else what runs. Keys build on it, so quick
        presses (b, s, b) each count even before the trainer acknowledged the one before. During a fork: B's."""
        return self.pending or self.target.config

    def _restart(self, cfg: RunConfig) -> None:
        cfg = cfg.validate()
        running = self.target.config
        changed = changes(running, cfg) if running is not None else ""
        if self.to_b:  # A and B start again together, from the same seed: the comparison stays fair
            self.source.send(Restart(cfg.to_dict(), branch="B"))
            self.pending = cfg
            self.notice = (f"restarting A and B from seed {self.state.config.seed}: B = "
                           f"{cfg.describe()}" + (f" ({changed})" if changed else "") + " …")
            return
        self.source.send(Restart(cfg.to_dict()))
        self.pending = cfg
        self.notice = (f"restarting: {changed} …" if changed else
                       f"restarting with the same configuration, fresh weights: {cfg.describe()} …")

    def action_unavailable(self, label: str, needs: str) -> None:
        what = {"file": f"a replay of {self.source.label}", "stream": "a stream of records"}.get(self.kind, "")
        self.notify(f"{label}: needs {needs}; this is {what}", severity="warning", timeout=4)

    def action_activation(self, step: int) -> None:
        cfg = self.wanted
        new = next_choice(cfg.activation, ACTIVATIONS, int(step))
        self.source.send(SetActivation(new, branch="B" if self.to_b else None))
        self.pending = cfg.replace(activation=new)
        when = "at the next restart (r): the run has ended" if self.ended else "(live, weights kept)"
        self.notice = ("B: " if self.to_b else "") + f"activation → {new} {when}"
        self.notify(self.notice, timeout=3)

    def action_init(self) -> None:
        cfg = self.wanted
        self._restart(cfg.replace(init=next_choice(cfg.init, INITS, 1)))

    def action_batchnorm(self) -> None:
        cfg = self.wanted
        self._restart(cfg.replace(batchnorm=not cfg.batchnorm))

    def action_skip(self) -> None:
        cfg = self.wanted
        self._restart(cfg.replace(skip=not cfg.skip))

    def action_depth(self, step: int) -> None:
        cfg = self.wanted
        depth = min(max(cfg.depth + int(step), 1), MAX_DEPTH)
        if depth == cfg.depth:
            self.notify(f"depth stays {depth} (1..{MAX_DEPTH})", timeout=2)
            return
        self._restart(cfg.replace(depth=depth))

    def action_restart(self) -> None:
        self._restart(self.wanted)

    def action_lower_lr(self) -> None:
        cfg = self.wanted
        if self.to_b:  # B's learning rate changes at once, its weights kept
            self.source.send(SetLR(cfg.lr / 10, branch="B"))
            self.pending = cfg.replace(lr=cfg.lr / 10)
            when = "at the next restart (r): the run has ended" if self.ended else "(live, weights kept)"
            self.notice = f"B: lr {cfg.lr:g} → {cfg.lr / 10:g} {when}"
            return
        self._restart(cfg.replace(lr=cfg.lr / 10))

    def action_fork(self) -> None:
        """Fork the run (B copies A, and the recipe keys change B), or end the fork keeping the focused branch."""
        if self.forked and self.state.end is not None:
            self.notify("f: the run has ended with its fork; r starts A and B again", severity="warning", timeout=4)
            return
        if self.to_b:  # (f f: the fork asked for is not here yet, and ends keeping A)
            self.ending_fork = keep = "AB"[self.branch_focus] if self.forked else "A"
            self.source.send(Fork(False, keep=keep))
            self.fork_pending = False
            if keep == "A":  # a change asked of B, not yet acknowledged, goes with B
                self.pending = None
            self.notice = f"ending the fork: keeping {keep} …"
            return
        if self.state.run is None or self.state.end is not None:
            self.notify("f forks a running run: " + ("r starts it again first" if self.state.end else
                                                    "wait for it to start"), severity="warning", timeout=4)
            return
        self.source.send(Fork(True))
        self.pending = None
        self.fork_pending = True
        self.notice = "forking: B copies A (weights, optimiser state, step, data order) …"

    def action_focus(self) -> None:
        """Two runs (a fork, or a replay of two): switch the one in focus, which the gradient histograms show and
        which `f` keeps when it ends a fork."""
        if not self.compare:
            self.notify("o switches between A and B when two runs are shown (f forks a live run; vgtui replay A B)",
                        timeout=3)
            return
        self.branch_focus = 1 - self.branch_focus
        tag = "AB"[self.branch_focus]
        self.notice = f"focus on {tag}: the histograms show {tag}" + (
            f"; f ends the fork keeping {tag}" if self.forked else "")
        self._titles()
        self._frame(force=True)

    def action_pause(self) -> None:
        if self.kind == "file" and self.paused and self._at_end() and not self.source.follow:
            self._seek_index(0)  # play again from the start
        if self.kind == "trainer":  # "pausing…" at once; "paused" when the trainer acknowledges it (a StatusRecord)
            wanted = not (self.paused if self.pause_wanted is None else self.pause_wanted)
            self.pause_wanted = wanted
            self.source.send(Pause(wanted))
            return
        self.paused = not self.paused

    def action_step(self) -> None:
        if not self.paused:
            self.source.send(Pause(True))
        self.source.send(StepOnce())

    def action_speed(self, step: int) -> None:
        if self.kind == "file":
            i = min(max(PACES.index(self.pace) - int(step), 0), len(PACES) - 1)
            self.pace = PACES[i]
            self._play_from = None
            self.notice = f"replay at {self.pace:g}x the recorded pace"
            return
        i = SPEED_CAPS.index(self.cap) if self.cap in SPEED_CAPS else 0
        i = min(max(i + int(step), 0), len(SPEED_CAPS) - 1)
        self.cap = SPEED_CAPS[i]
        self.source.send(SetSpeedCap(self.cap))
        self.notice = f"speed cap: {self.cap:g} steps/s" if self.cap else "speed cap off: full speed"

    def action_seek(self, delta: int) -> None:
        pos = self.state.position
        if pos is not None:
            self.paused = True
            self.notice = ""
            self._seek_index(pos[0] + int(delta))
            self._status_now()

    def action_seek_to(self, index: int) -> None:
        if self.source.run is None:
            return
        n = self.source.run.n_snapshots
        self.notice = ""
        self.paused = int(index) == 0 or not self.source.follow
        self._seek_index(n - 1 if int(index) < 0 else int(index))
        self._status_now()

    def action_next_run(self) -> None:
        src = self.source
        if len(src.runs) < 2:
            self.notify(f"{src.label} holds one run", timeout=3)
            return
        src.select((src.run_number % len(src.runs)) + 1)
        self._open_run(0)
        self._show_branch()
        self.notice = f"run {src.run_number} of {len(src.runs)}"

    def action_metric(self) -> None:
        self.metric = next_choice(self.metric, CURVE_KEYS, 1)

    def action_log(self) -> None:
        self.log = not self.log

    def action_next_view(self) -> None:
        self.view = next_choice(self.view, VIEWS, 1)

    def action_export(self) -> None:
        if not self.source.metrics_path:
            self.notify("e: no metrics file behind this run (start vgtui with --metrics PATH)", severity="warning",
                        timeout=5)
            return
        if self.kind == "file" and self.source.run is None:  # following a file that holds no run yet
            self.notify("e: no run in the file yet: nothing to export", severity="warning", timeout=5)
            return
        self.notice = "writing the CSV…"
        self._export()

    @work(thread=True, group="export")
    def _export(self) -> None:
        """The run on screen as CSV (vgtui.core.csvfile.write_csv_new), beside its metrics file, or in the screenshot
        folder when that one is not writable: run.csv, or run-2.csv for the second run of a file with several.
        Nothing is ever overwritten (the metrics file itself, a CSV already there, a link): the first free name
        of run-2.csv, run-3.csv... is taken instead, and said."""
        import re

        from vgtui.core.metrics import MetricsIndex
        from vgtui.core.csvfile import write_csv_new

        path = self.source.metrics_path
        damaged: list[str] = []

        def out_path(number: int, count: int) -> str:
            stem = os.path.splitext(os.path.basename(path))[0] + (f"-{number}" if count > 1 else "")
            folder = os.path.dirname(os.path.abspath(path))
            return os.path.join(folder if os.access(folder, os.W_OK) else self.screenshot_dir, stem + ".csv")

        try:
            if self.kind == "file":
                wanted = out_path(self.source.run_number, len(self.source.runs))
                out, rows = write_csv_new(self.source.run, wanted, on_damaged=damaged.append)
            else:  # the trainer's file: its latest run is the one on screen
                with MetricsIndex(path) as index:
                    wanted = out_path(len(index.runs), len(index.runs))
                    out, rows = write_csv_new(index.runs[-1], wanted, on_damaged=damaged.append)
        except Exception as e:  # noqa: BLE001 - a file that cannot be exported is a notice, never a crash
            why = e.strerror if isinstance(e, OSError) and e.strerror else (
                e if isinstance(e, ValueError) else f"{type(e).__name__}: {e}")
            self.app.call_from_thread(self.notify, f"e: could not write the CSV: {why}", severity="error")
            return
        said = f"CSV written: {out} ({rows:,} rows"
        if out != wanted:
            said += f"; {os.path.basename(wanted)} exists: left as it is"
        if damaged:
            lines = ", ".join(m.group(1) for d in damaged[:5] if (m := re.search(r"line (\d+)", d)))
            said += (f"; {len(damaged):,} damaged snapshot{'s' * (len(damaged) != 1)} skipped: line "
                     f"{lines}{'…' if len(damaged) > 5 else ''}")
        said += ")"
        self.app.call_from_thread(setattr, self, "notice", said)
        if out != wanted or damaged:
            self.app.call_from_thread(self.notify, said, severity="warning", timeout=8)

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
        self.app.push_screen(HelpScreen(self.kind))

    def action_quit(self, status: int = 0) -> None:
        self.app.close_sources(timeout=1.5)  # type: ignore[attr-defined]
        self.app.exit(int(status))
