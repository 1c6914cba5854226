"""The live terminal UI: `run_tui(config)` trains in a child process and shows it in a Textual app.

Threads and cost (the budget: training inside the TUI at >= 0.90 of headless speed):
- The trainer runs wherever the Backend puts it: `run_tui` uses a ProcessBackend (a spawned child), so the
  UI's pure-Python work (plotext, Rich, the compositor) cannot stall it through the GIL. Tests pass a
  ThreadBackend. This module never imports torch.
- One thread worker bridges the backend to the app: it folds every record into `RunState` and posts a
  message (`vgtui.ui.messages`); snapshot messages replace queued ones.
- A frame timer runs at most `fps` times a second and asks each visible panel whether its data changed; only
  those re-render. Keys act at once (the status line answers within one frame of the key).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Iterable

from rich.color import Color
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Static
from textual.worker import get_current_worker

from vgtui.sources.base import Backend
from vgtui.core.config import ACTIVATIONS, INITS, RunConfig, next_choice
from vgtui.core.records import (EndRecord, EventRecord, NoticeRecord, Pause, Restart, RunRecord, SetActivation,
                                SetSpeedCap, StatusRecord, StepOnce)
from vgtui.ui import charts
from vgtui.ui.messages import Acknowledged, LiveChange, RunEnded, RunStarted, TrainerLost, TrainerNotice
from vgtui.ui.screens import FailureScreen, HelpScreen
from vgtui.ui.state import METRIC_KEYS, RunState, metric
from vgtui.ui.widgets import ActivationPanel, GradientBars, LayerTable, Panel, PlotextPanel, StatusBar

DEFAULT_FPS = 2.0  # panels change with snapshots (~1/s at the default --probe-every); 2 frames/s keeps up
MIN_SIZE = (80, 24)
SPEED_CAPS: tuple[float | None, ...] = (None, 200.0, 100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5)
VIEWS = ("overview", "histograms", "layers")
VIEW_TITLES = {"overview": "overview", "histograms": "gradient histograms", "layers": "layer table"}
MAX_DEPTH = 20
def ui_nice(env: dict[str, str] = os.environ) -> tuple[int, str | None]:  # type: ignore[assignment]
    """The UI process's niceness after the trainer started ($VGTUI_UI_NICE, default 10), and a warning for a
    value that is not a whole number from 0 to 19 (the default is used then)."""
    raw = env.get("VGTUI_UI_NICE", "10")
    try:
        value = int(raw)
        if 0 <= value <= 19:
            return value, None
    except ValueError:
        pass
    return 10, f"VGTUI_UI_NICE={raw!r} is not a whole number from 0 to 19; using 10"


STALL_S = 5.0  # a running trainer silent for this long (and 3 snapshot intervals) is said to be stalled


def hexc(code: int) -> str:
    """A 256-colour code as #rrggbb (Textual markup does not take color(N))."""
    return Color.from_ansi(code).get_truecolor().hex


@dataclass
class Opts:
    """What the person chose on screen (the UI thread only)."""

    metric: str = "grad_norm"
    log: bool = True
    paused: bool = False
    cap: float | None = None
    notice: str = ""
    view: str = "overview"
    config_version: int = 0


class MainScreen(Screen):
    """The one screen: status, view tabs, the views, the footer (composed by the app, which owns the data)."""

    def compose(self) -> ComposeResult:
        yield from self.app.compose_main()  # type: ignore[attr-defined]

    def on_mount(self) -> None:
        self.app.start_ui()  # type: ignore[attr-defined]

    def on_resize(self) -> None:
        self.app.check_size()  # type: ignore[attr-defined]


class VgtuiApp(App[int]):
    CSS_PATH = "vgtui.tcss"
    TITLE = "vgtui"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("a", "activation(1)", "activation"),
        Binding("A", "activation(-1)", "prev act", show=False),
        Binding("i", "init", "init"),
        Binding("b", "batchnorm", "batchnorm"),
        Binding("s", "skip", "skip"),
        Binding("plus,equals_sign", "depth(1)", "depth+", key_display="+"),
        Binding("minus", "depth(-1)", "depth-", key_display="-"),
        Binding("space", "pause", "pause"),
        Binding("n", "step", "step"),
        Binding("left_square_bracket", "speed(1)", "slower", key_display="["),
        Binding("right_square_bracket", "speed(-1)", "faster", key_display="]"),
        Binding("r", "restart", "restart"),
        Binding("m", "metric", "metric"),
        Binding("l", "log", "log/lin"),
        Binding("tab", "next_view", "view", priority=True),
        Binding("ctrl+s", "screenshot_svg", "SVG", priority=True),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("q", "quit_app", "quit"),
        Binding("ctrl+c", "quit_app", "quit", show=False, priority=True),
    ]

    def __init__(self, backend: Backend, config: RunConfig | None = None, fps: float = DEFAULT_FPS,
                 screenshot_dir: str | None = None, start_backend: bool = True):
        super().__init__()
        self.backend = backend
        self.config = config or backend.config
        self.fps = max(float(fps), 0.2)
        self.state = RunState(self.config)
        self.opts = Opts()
        self.screenshot_dir = screenshot_dir or os.getcwd()
        self.start_backend = start_backend
        self.colour = not self.no_color
        self._closed = False
        self._lost_reported = False
        self.pending: RunConfig | None = None  # what the person asked for that the trainer has not acknowledged
        self.exit_message = "quit"  # why the viewer ended the run: the end record's message
        self.startup_error: str | None = None  # the trainer refused to start: said on the terminal after the UI
        self._last_word = time.monotonic()  # when the trainer last sent anything
        self.stalled = False
        self.frames = 0  # frame timer ticks that redrew something (bench/tests)

    # ------------------------------------------------------------------------------------------ layout
    def get_default_screen(self) -> Screen:
        return MainScreen()

    def compose_main(self) -> ComposeResult:
        s, o = self.state, self.opts
        yield StatusBar(id="status")
        yield Static(id="tabs")
        with ContentSwitcher(initial="overview", id="views"):
            with Grid(id="overview"):
                yield GradientBars(id="grads", classes="panel")
                yield ActivationPanel(id="acts", classes="panel")
                yield PlotextPanel(self._loss_figure, lambda: (s.snap_version, s.epoch_version),
                                   id="loss", classes="panel")
                yield PlotextPanel(self._flow_figure, lambda: (s.snap_version, o.metric, o.log),
                                   id="flow", classes="panel")
            with Vertical(id="histograms"):
                yield PlotextPanel(self._hist_all_figure, lambda: (s.snap_version, o.log), id="hist-all",
                                   classes="panel")
                yield PlotextPanel(self._hist_grid_figure, lambda: (s.snap_version, o.log), id="hist-grid",
                                   classes="panel")
            with Vertical(id="layers"):
                yield LayerTable(id="table", classes="panel")
        yield Static(id="too-small")
        yield Footer(compact=True)

    def start_ui(self) -> None:
        """Once the main screen is mounted: titles, the size check, the backend, the bridge, the frame timer."""
        self._titles()
        self._update_tabs()
        self.check_size()
        if self.start_backend:
            self.backend.start()
        self._bridge()
        self.set_interval(1.0 / self.fps, self._frame)
        self.set_interval(1.0, self.check_stall)
        self._frame()

    def check_size(self) -> None:
        w, h = self.size
        small = w < MIN_SIZE[0] or h < MIN_SIZE[1]
        self.screen.set_class(small, "too-small")
        if small:
            self.query_one("#too-small", Static).update(
                f"The terminal is {w}x{h}.\n\nEnlarge to at least {MIN_SIZE[0]}x{MIN_SIZE[1]}.\n\n"
                "Training goes on meanwhile; q quits.")

    # ------------------------------------------------------------------------------------------ figures
    def _loss_figure(self, w: int, h: int) -> str:
        s = self.state
        with s.lock:
            steps, loss, ep, ev, total = list(s.steps), list(s.loss), list(s.epochs), [e[0] for e in s.events], \
                s.total_steps
        return charts.loss_curves(steps, loss, [e.step for e in ep], [e.train_acc for e in ep],
                                  [e.test_acc for e in ep], ev, total, w, h, self.colour)

    def _flow_figure(self, w: int, h: int) -> str:
        s, o = self.state, self.opts
        with s.lock:
            steps, series, names = list(s.steps), [list(x) for x in s.series[o.metric]], s.layers
            ev, total = [e[0] for e in s.events], s.total_steps
        return charts.layer_lines(steps, series, names, metric(o.metric), o.log, total, ev, w, h, self.colour)

    def _hist_all_figure(self, w: int, h: int) -> str:
        s = self.state
        with s.lock:
            snap = s.snap
        hist = charts.sum_hists([l.grad_hist for l in snap.layers]) if snap else None
        return charts.grad_hist(hist, w, h, self.opts.log, 81, self.colour)

    def _hist_grid_figure(self, w: int, h: int) -> str:
        s = self.state
        with s.lock:
            snap, names = s.snap, s.layers
        hists = [l.grad_hist for l in snap.layers] if snap else [None] * len(names)
        return charts.grad_hist_grid(hists, names, w, h, self.opts.log, self.colour)

    def _titles(self) -> None:
        o = self.opts
        m = metric(o.metric)
        scale = f"log y, fixed decades 1e{m.lo}…1e{m.hi}" if o.log else "linear y"
        loss = self.query_one("#loss", Panel)
        loss.border_title = "loss & accuracy over steps"
        loss.border_subtitle = (f"[{hexc(81)}]━ loss (avg per probe)[/] [{hexc(214)}]● train acc[/] "
                                f"[{hexc(78)}]● test acc[/] [{hexc(177)}]│ live change[/]")
        flow = self.query_one("#flow", Panel)
        flow.border_title = f"{m.label} per layer over steps · {scale}"
        names = self.state.layers
        cols = charts.layer_colours(len(names))
        flow.border_subtitle = " ".join(f"[{hexc(c)}]━{n}[/]" for n, c in zip(names, cols))
        counts = "log counts, fixed decades 1…1e8" if o.log else "linear counts"
        self.query_one("#hist-all", Panel).border_title = (
            f"all weight gradients · x: |g| on a log axis 1e{charts.GRAD_LO}…1e{charts.GRAD_HI} · y: {counts}")
        self.query_one("#hist-grid", Panel).border_title = "per layer: the same axes"

    def _update_tabs(self) -> None:
        parts = []
        for v in VIEWS:
            t = VIEW_TITLES[v]
            parts.append(f"[reverse bold] {t} [/]" if v == self.opts.view else f" [dim]{t}[/] ")
        self.query_one("#tabs", Static).update(" " + "".join(parts) + "  [dim]tab: next view[/]")

    # ------------------------------------------------------------------------------------------ frames
    def _frame(self, force: bool = False) -> None:
        """At most fps times a second: every visible panel whose data changed re-renders (figures at most once
        a second, see Panel.min_interval; `force` skips that, for a key the person just pressed)."""
        if self.screen.has_class("too-small"):
            return
        changed = False
        with self.batch_update():
            for panel in self.query(Panel):
                if panel.display and panel.parent is not None and (
                        panel.parent.display if panel.parent is not None else True):
                    changed |= panel.update_key(force)
        if changed:
            self.frames += 1

    def _now(self) -> None:
        """Answer a key at once: the status line (cheap) redraws now, the rest at the next frame."""
        self.query_one(StatusBar).update_key()

    # ------------------------------------------------------------------------------------------ the bridge
    @work(thread=True, exclusive=True, name="trainer-bridge", group="bridge")
    def _bridge(self) -> None:
        worker = get_current_worker()
        state, backend = self.state, self.backend
        while not worker.is_cancelled:
            rec = backend.get(timeout=0.1)
            if rec is None:
                if not backend.alive and not self._closed:
                    rec = backend.get(timeout=0.05)  # drain what the pipe still holds
                    if rec is None:
                        self.post_message(TrainerLost())
                        return
                else:
                    continue
            self._last_word = time.monotonic()
            if isinstance(rec, StatusRecord):
                self.post_message(Acknowledged(rec))
                continue
            if isinstance(rec, NoticeRecord):
                self.post_message(TrainerNotice(rec))
                continue
            state.apply(rec)  # snapshots and epochs: the frame timer redraws what changed
            if isinstance(rec, RunRecord):
                self.post_message(RunStarted(rec))
            elif isinstance(rec, EventRecord):
                self.post_message(LiveChange(rec))
            elif isinstance(rec, EndRecord):
                self.post_message(RunEnded(rec))

    @on(Acknowledged)
    def _on_ack(self, message: Acknowledged) -> None:
        self.opts.paused = message.status.paused
        self._now()

    @on(TrainerNotice)
    def _on_notice(self, message: TrainerNotice) -> None:
        n = message.notice
        self.opts.notice = n.message
        self.notify(n.message, severity="error" if n.level == "error" else "warning", timeout=15)
        self._now()

    def _acknowledged(self) -> None:
        """A run header or an event arrived: a pending change is done once what runs is what was asked for."""
        if self.pending is not None and self.state.config == self.pending:
            self.pending = None

    @on(RunStarted)
    def _on_run(self, message: RunStarted) -> None:
        self.opts.paused = False  # a new run starts running; a later pause comes with its own acknowledgement
        self._acknowledged()
        self.opts.config_version += 1
        if self.state.runs > 1:
            self.opts.notice = f"restarted: {self.state.config.describe()}"
            self.notify(self.opts.notice, timeout=4)
        elif message.run.notice:
            self.opts.notice = message.run.notice
            self.notify(message.run.notice, severity="warning", timeout=8)
        self._titles()
        self._now()

    @on(LiveChange)
    def _on_event(self, message: LiveChange) -> None:
        ev = message.event
        if "activation" in ev.set:
            self.opts.notice = f"activation → {ev.set['activation']} at step {ev.step} (live, weights kept)"
            self.opts.config_version += 1
        self._acknowledged()
        self._now()

    @on(RunEnded)
    def _on_end(self, message: RunEnded) -> None:
        end = message.end
        if end.status == "failed" and self.state.run is None:  # refused before it started (no CUDA, bad data)
            self.startup_error = end.message
            self.action_quit_app()
            self.exit(2)
            return
        if end.status == "failed":
            self._show_failure(end)
        elif end.status == "diverged":
            self.opts.paused = True
            self.notify(f"Diverged at step {end.steps}, first in {end.layer or 'the loss'}: try a lower lr, "
                        "batchnorm, or a different init. r restarts.", severity="error", timeout=10)
        elif end.status == "completed":
            self.notify(f"run completed: {end.message}. r runs it again.", timeout=6)
        self._now()

    @on(TrainerLost)
    def _on_lost(self, message: TrainerLost) -> None:
        if self._closed or self._lost_reported:
            return
        self._lost_reported = True
        death = getattr(self.backend, "death", lambda: "the trainer ended")()
        written = getattr(self.backend, "ensure_end", lambda *a: None)("failed", death)
        if written is not None:
            self.state.apply(written)
        where = ("vgtui wrote its end record (status failed)." if written is not None else
                 "The metrics file keeps every record it wrote." if getattr(self.backend, "metrics_path", None)
                 else "")
        self._show_failure(None, f"{death[0].upper()}{death[1:]} without a word (killed, or out of memory?).",
                           hint=where)

    def _show_failure(self, end: EndRecord | None, message: str | None = None, hint: str = "") -> None:
        """The failure dialog, once at a time (a second failure updates nothing under an open dialog)."""
        if any(isinstance(sc, FailureScreen) for sc in self.screen_stack):
            return
        if end is not None and getattr(self.backend, "metrics_path", None) and not hint:
            hint = "The metrics file ends with status failed, with the traceback."

        def chosen(choice: str | None) -> None:
            if choice == "restart":
                if not self.backend.alive:  # the process is gone: a new one, with what the screen shows
                    self._lost_reported = False
                    self.backend.start(self.wanted)
                    self._bridge()
                    self.opts.notice = f"restarting: {self.wanted.describe()} …"
                    self._now()
                else:
                    self._restart(self.wanted)
            elif choice == "quit":
                self.action_quit_app()

        self.push_screen(FailureScreen(end, message, hint), chosen)

    # ------------------------------------------------------------------------------------------ actions
    @property
    def wanted(self) -> RunConfig:
        """The configuration the person asked for: a pending one, else what runs. Keys build on it, so quick
        presses (b, s, b) each count even before the trainer acknowledged the one before."""
        return self.pending or self.state.config

    def _set_config(self, cfg: RunConfig) -> None:
        self.pending = cfg
        self.opts.config_version += 1

    def _restart(self, cfg: RunConfig, why: str | None = None) -> None:
        cfg = cfg.validate()
        self.backend.send(Restart(cfg.to_dict()))
        self._set_config(cfg)
        self.opts.notice = f"restarting: {cfg.describe()}" + (f" ({why})" if why else "") + " …"
        self._now()

    def action_activation(self, step: int) -> None:
        cfg = self.wanted
        new = next_choice(cfg.activation, ACTIVATIONS, int(step))
        self.backend.send(SetActivation(new))
        self._set_config(cfg.replace(activation=new))
        self.opts.notice = f"activation → {new} (live, weights kept)"
        self.notify(self.opts.notice, timeout=3)
        self._now()

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
        self._restart(cfg.replace(lr=cfg.lr / 10), why=f"lr {cfg.lr:g} → {cfg.lr / 10:g}")

    def action_pause(self) -> None:
        """The screen says paused or running when the trainer acknowledges it (a StatusRecord), never before."""
        self.backend.send(Pause(not self.opts.paused))
        self.opts.notice = "resuming …" if self.opts.paused else "pausing …"
        self._now()

    def action_step(self) -> None:
        if not self.opts.paused:
            self.backend.send(Pause(True))
        self.backend.send(StepOnce())
        self._now()

    def action_speed(self, step: int) -> None:
        i = SPEED_CAPS.index(self.opts.cap) if self.opts.cap in SPEED_CAPS else 0
        i = min(max(i + int(step), 0), len(SPEED_CAPS) - 1)
        self.opts.cap = SPEED_CAPS[i]
        self.backend.send(SetSpeedCap(self.opts.cap))
        self.opts.notice = f"speed cap: {self.opts.cap:g} steps/s" if self.opts.cap else "speed cap off: full speed"
        self._now()

    def action_metric(self) -> None:
        self.opts.metric = next_choice(self.opts.metric, METRIC_KEYS, 1)
        self._titles()
        self._frame(force=True)

    def action_log(self) -> None:
        self.opts.log = not self.opts.log
        self.opts.notice = "log axes (fixed decades)" if self.opts.log else "linear axes"
        self._titles()
        self._frame(force=True)
        self._now()

    def action_next_view(self) -> None:
        self.opts.view = next_choice(self.opts.view, VIEWS, 1)
        self.query_one("#views", ContentSwitcher).current = self.opts.view
        self._update_tabs()
        self.call_after_refresh(self._frame, True)

    def action_screenshot_svg(self) -> None:
        name = time.strftime("vgtui_%Y%m%d_%H%M%S.svg")
        try:
            path = self.save_screenshot(filename=name, path=self.screenshot_dir)
        except OSError as e:
            self.opts.notice = f"screenshot not saved: {self.screenshot_dir}: {e.strerror or e}"
            self.notify(self.opts.notice, severity="error", timeout=8)
        else:
            self.opts.notice = f"screenshot saved: {path}"
            self.notify(self.opts.notice, timeout=6)
        self._now()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_quit_app(self) -> None:
        self.close_backend()
        self.exit(0)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        cmds = [
            ("Next activation", "Swap the activation live (a)", lambda: self.action_activation(1)),
            ("Previous activation", "Swap the activation live (A)", lambda: self.action_activation(-1)),
            ("Next init", "Restart with the next weight init (i)", self.action_init),
            ("Toggle batchnorm", "Restart with batchnorm on/off (b)", self.action_batchnorm),
            ("Toggle skip connections", "Restart with skip connections on/off (s)", self.action_skip),
            ("Deeper", "Restart with one hidden layer more (+)", lambda: self.action_depth(1)),
            ("Shallower", "Restart with one hidden layer less (-)", lambda: self.action_depth(-1)),
            ("Pause / resume", "Pause or resume training (space)", self.action_pause),
            ("One step", "One training step while paused (n)", self.action_step),
            ("Slower", "Lower the steps/s cap ([)", lambda: self.action_speed(1)),
            ("Faster", "Raise the steps/s cap (])", lambda: self.action_speed(-1)),
            ("Restart", "Restart from fresh weights (r)", self.action_restart),
            ("Restart with lr ÷ 10", "What to try after a divergence", self.action_lower_lr),
            ("Next gradient metric", "grad norm, mean |grad|, grad:data, update:data (m)", self.action_metric),
            ("Log / linear axes", "Toggle the chart scales (l)", self.action_log),
            ("Next view", "overview, gradient histograms, layer table (tab)", self.action_next_view),
            ("Save SVG screenshot", "Into the current folder (ctrl+s)", self.action_screenshot_svg),
            ("Key help", "All the keys (?)", self.action_help),
            ("Quit vgtui", "Stop training and quit (q)", self.action_quit_app),
        ]
        for title, help_text, cb in cmds:
            yield SystemCommand(title, help_text, cb)

    # ------------------------------------------------------------------------------------------ shutdown
    def close_backend(self, message: str | None = None, timeout: float = 1.5) -> None:
        """Stop the trainer (bounded: see ProcessBackend.close) with `message` in its end record."""
        if self._closed:
            return
        self._closed = True
        for w in self.workers:
            if w.group == "bridge":
                w.cancel()
        try:
            self.backend.close(message or self.exit_message, timeout=timeout)
        except Exception:  # noqa: BLE001 - quitting must not fail
            pass

    def check_stall(self) -> None:
        """A running trainer that sends nothing for a while (stopped with SIGSTOP, stuck) is said to be stalled."""
        s = self.state
        expected = 0.0
        if s.snap is not None and s.snap.steps_per_s > 0 and s.run is not None:
            expected = 3 * s.run.config.get("probe_every", 40) / s.snap.steps_per_s if s.run.config else 0.0
        silent = time.monotonic() - self._last_word
        stalled = (not self.opts.paused and s.run is not None and s.end is None and not self._closed
                   and silent > max(STALL_S, expected))
        if stalled != self.stalled:
            self.stalled = stalled
            self.opts.notice = (f"no word from the trainer for {silent:.0f} s (stopped? stuck?); q still quits"
                                if stalled else "the trainer is answering again")
            self._now()

    def on_unmount(self) -> None:
        self.close_backend()


RESTORE_TERMINAL = "\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l\x1b[?25h\x1b[?1049l"


def _exit_anyway(status: int, after: float = 2.0) -> None:
    """If Textual has not left within `after` seconds of a signal, give the terminal back and exit."""
    time.sleep(after)
    try:
        os.write(sys.__stdout__.fileno(), RESTORE_TERMINAL.encode())
    except (OSError, ValueError, AttributeError):
        pass
    os._exit(status)


def run_tui(config: RunConfig, metrics: str | None = None, fps: float = DEFAULT_FPS, overwrite: bool = False) -> int:
    """Train `config` in a child process and show it live; returns the exit status: 0 on q / ctrl+c, 128 + signal
    when a signal ended it (129 SIGHUP: the terminal went away; 143 SIGTERM), 2 when the metrics file is refused."""
    import asyncio

    from vgtui import signals
    from vgtui.core.writer import MetricsPathError
    from vgtui.sources.trainer import ProcessBackend

    backend = ProcessBackend(config, metrics, overwrite=overwrite)
    # Start the child before Textual takes over stdout/stderr: multiprocessing's helpers pass sys.stderr's file
    # descriptor on, and under Textual that is -1 ("bad value(s) in fds_to_keep"). It also gets torch importing
    # while the UI starts.
    try:
        backend.start()
    except MetricsPathError as e:  # another run took the file since the check
        print(f"vgtui: error: {e}", file=sys.stderr)
        return 2
    # Then give the trainer the CPU first: torch's intra-op threads wait for each other at every op, so each
    # time the UI takes a core a trainer with one thread per core stalls as a whole. At a lower priority the UI
    # runs in the trainer's gaps (it needs ~10% of one core; keys still answer within a frame).
    nice, warning = ui_nice()
    if warning:
        print(f"vgtui: warning: {warning}", file=sys.stderr)
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    app = VgtuiApp(backend, config, fps=fps, start_backend=False)
    got: list[int] = []

    def on_signal(signum: int) -> None:
        """SIGTERM, SIGHUP (the terminal went away), SIGINT from kill: end the run with its end record first (the
        terminal may be gone), then leave Textual, which restores the terminal where there still is one."""
        if got:
            return
        got.append(signum)
        status = signals.exit_status(signum)
        app.exit_message = signals.message(signum)
        app.close_backend()
        if signum == signal.SIGHUP:  # the terminal is gone: nothing to restore, and Textual would wait on it
            os._exit(status)
        loop = asyncio.events._get_running_loop()
        if loop is not None:
            loop.call_soon_threadsafe(app.exit, status)
        threading.Thread(target=_exit_anyway, args=(status,), daemon=True).start()

    old = signals.calling(on_signal)
    try:
        rc = app.run()
    except Exception:  # noqa: BLE001 - a terminal that went away mid-write: the run still ends properly
        rc = None
    finally:
        app.close_backend()
        signals.ignore_after_first()
        for s, h in old.items():
            signal.signal(s, h)
    if got:
        return signals.exit_status(got[0])
    if app.startup_error:
        print(f"vgtui: error: {app.startup_error}", file=sys.stderr)
        return 2
    return int(rc or 0) if app.return_code is None else int(app.return_code)


__all__ = ["DEFAULT_FPS", "VgtuiApp", "run_tui"]
