"""Live screens: records as they come from a live source.

- `LiveScreen`: a stream of records (`vgtui follow -`, a user's loop piping vgtui.watch's records): a thread worker
  (the bridge) folds every record into the RunState and posts a message (vgtui.ui.messages) for the records the
  screen reacts to; the frame timer draws the rest.
- `TrainerScreen`: vgtui's own trainer in a child process, which it also commands: pause and step, the speed cap,
  the recipe keys (a live activation or lr change, a restart with fresh weights), the fork (`f`: a branch B beside
  the run, whose records carry their branch id), and what it says when the trainer stalls, fails or dies.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

from textual import on, work
from textual.reactive import reactive
from textual.worker import get_current_worker

from vgtui.core.config import ACTIVATIONS, INITS, RunConfig, next_choice
from vgtui.core.records import (BRANCHES, EndRecord, EventRecord, Fork, NoticeRecord, Pause, Restart, RunRecord,
                                SetActivation, SetLR, SetSpeedCap, StatusRecord, StepOnce)
from vgtui.sources.base import LiveSource, TrainerSource
from vgtui.ui.messages import (Acknowledged, ForkEnded, ForkStarted, LiveChange, RunEnded, RunStarted, SourceLost,
                               StartupRefused, TrainerNotice)
from vgtui.ui.screens.base import RunScreen
from vgtui.ui.screens.dialogs import FailureScreen
from vgtui.ui.state import TAGS, RunState

SPEED_CAPS: tuple[float | None, ...] = (None, 200.0, 100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5)
MAX_DEPTH = 20
STALL_S = 5.0  # a running trainer silent for this long (and 3 snapshot intervals) is said to be stalled
FORK = BRANCHES[0]  # the branch id `f` makes (the trainer's first branch)


def changes(old: RunConfig, new: RunConfig) -> str:
    """What a restart changes, as a person reads it: 'depth 5 → 2', 'batchnorm off → on, lr 0.01 → 0.001'."""
    def word(v: object) -> str:
        return ("on" if v else "off") if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)

    a, b = old.to_dict(), new.to_dict()
    return ", ".join(f"{k} {word(a.get(k))} → {word(b[k])}" for k in b if k != "seed" and a.get(k) != b[k])


class LiveScreen(RunScreen):
    """Records from a live source, folded as they come; the run's header, changes and end are said."""

    KIND = "stream"

    def __init__(self, sources: list[LiveSource], fps: float = 2.0, screenshot_dir: str | None = None) -> None:
        super().__init__(sources, fps, screenshot_dir)
        self._lost_reported = False
        self._last_word = time.monotonic()  # when the live source last sent anything

    def what_this_is(self) -> str:
        return "a stream of records"

    def start(self) -> None:
        self._bridge()

    def can_export(self) -> bool:
        return True

    @contextlib.contextmanager
    def export_target(self) -> Iterator[tuple[object, int, int]]:
        """The writer's file: its latest run is the one on screen."""
        from vgtui.core.metrics import MetricsIndex

        with MetricsIndex(self.source.metrics_path) as index:
            yield index.runs[-1], len(index.runs), len(index.runs)

    # ------------------------------------------------------------------------------------------ the bridge
    @work(thread=True, exclusive=True, name="source-bridge", group="bridge")
    def _bridge(self) -> None:
        """Fold every record of a live source into the state; post what the screen reacts to. A branch's records
        (their `branch` id) go to the branch's state."""
        worker = get_current_worker()
        state, source = self.state, self.source
        branch: RunState | None = None  # a fork's branch
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
            if getattr(rec, "branch", None) is not None:  # a fork's records go to its branch's state
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

    # The bridge's messages, each handed to a plain method a mode overrides (a handler decorated with @on in two
    # classes would run twice: Textual calls every class's handler along the MRO).
    @on(Acknowledged)
    def _on_ack(self, message: Acknowledged) -> None:
        self.took_status(message.status)

    @on(TrainerNotice)
    def _on_notice(self, message: TrainerNotice) -> None:
        n = message.notice
        self.notice = n.message
        self.notify(n.message, severity="error" if n.level == "error" else "warning", timeout=15)

    @on(RunStarted)
    def _on_run(self, message: RunStarted) -> None:
        self.run_started(message.run, message.before)
        self._titles()
        self._status_now()

    @on(LiveChange)
    def _on_event(self, message: LiveChange) -> None:
        self.live_change(message.event)
        self._status_now()

    @on(RunEnded)
    def _on_end(self, message: RunEnded) -> None:
        self.notice = ""  # the status line now says how the run ended
        self.run_ended(message.end)
        self._status_now()

    @on(SourceLost)
    def _on_lost(self, message: SourceLost) -> None:
        # (alive: a loss posted by the bridge of a trainer since restarted from the failure dialog, handled late)
        if self._lost_reported or self.source.closing or self.source.alive:
            return
        self._lost_reported = True
        self.source_lost(message.why)

    def took_status(self, status: StatusRecord) -> None:
        self.paused = status.paused

    def run_started(self, run: RunRecord, before: RunConfig | None) -> None:
        if not self.goes_on(run):  # a new run starts running; a later pause comes with its own acknowledgement
            self.paused = False
        words = self.new_run_words(run, before)
        if words:
            self.notice = words
            self.notify(words, timeout=4)
        elif run.notice:
            self.notice = run.notice
            self.notify(run.notice, severity="warning", timeout=8)

    def goes_on(self, run: RunRecord) -> bool:
        """Whether this header continues what runs (a kept branch: it runs on as it was, paused or not)."""
        return False

    def new_run_words(self, run: RunRecord, before: RunConfig | None) -> str:
        """What the notice says of a run header ("" for the first one)."""
        if self.state.runs > 1:
            cfg = self.state.config
            return f"a new run started: {cfg.describe() if cfg is not None else run.model}"
        return ""

    def live_change(self, ev: EventRecord) -> None:
        who = f"{ev.branch}: " if ev.branch is not None else ""
        if "activation" in ev.set:
            self.notice = f"{who}activation → {ev.set['activation']} at step {ev.step} (live, weights kept)"
        elif "lr" in ev.set:
            self.notice = f"{who}lr → {ev.set['lr']:g} at step {ev.step} (live, weights kept)"
        if who:
            self.notice += f"; {TAGS[0]} unchanged"

    def run_ended(self, end: EndRecord, again: str = "") -> None:
        if end.status == "diverged":
            self.paused = True
            self.notify(f"Diverged at step {end.steps}, first in {end.layer or 'the loss'}: try a lower lr, "
                        f"batchnorm, or a different init.{again}", severity="error", timeout=10)
        elif end.status == "completed":
            self.notify(f"run completed: {end.message}.{again}", timeout=6)

    def source_lost(self, why: str | None) -> None:
        self.notice = why or "the stream ended"


class TrainerScreen(LiveScreen):
    """vgtui's trainer, live and commanded: the keys change it, `f` forks it."""

    KIND = "trainer"
    LIVE = True
    MEANWHILE = "Training goes on meanwhile; "

    pause_wanted: reactive[bool | None] = reactive(None, init=False)  # asked of the trainer, not yet acknowledged
    cap: reactive[float | None] = reactive(None, init=False)  # the trainer's steps/s cap

    def __init__(self, sources: list[TrainerSource], fps: float = 2.0, screenshot_dir: str | None = None) -> None:
        super().__init__(sources, fps, screenshot_dir)
        self.ending_fork: str | None = None  # the branch `f` asked the trainer to keep, until the branch's end comes
        self.fork_pending = False  # `f` forked, B's header not yet here: the recipe keys already change B
        self.pending: RunConfig | None = None  # what the person asked the trainer for, not yet acknowledged
        self.stalled = False

    def start(self) -> None:
        super().start()
        self.set_interval(1.0, self.check_stall)

    def view_options(self) -> dict:
        return {"pause_wanted": self.pause_wanted, "cap": self.cap}

    def what_this_is(self) -> str:
        return "a live trainer"

    def watch_pause_wanted(self) -> None:
        self._status_now()

    def watch_cap(self) -> None:
        self._status_now()

    @property
    def forked(self) -> bool:
        """A live fork: the trainer's run (A) and its branch, side by side."""
        return len(self.states) > 1

    @property
    def to_b(self) -> bool:
        """The recipe keys change the branch: during a fork, and from the `f` that asked for one (the trainer reads
        the commands in order: the fork first, then the change, which is the branch's); no longer from the `f` that
        ends it (then the change is the kept run's, which the trainer runs without a branch by the time it reads
        the change)."""
        return (self.forked and self.ending_fork is None) or self.fork_pending

    @property
    def ended(self) -> bool:
        """The run has ended (completed, diverged, failed): nothing trains until `r`."""
        end = self.state.end
        return end is not None and end.status != "interrupted"

    @property
    def target(self) -> RunState:
        """The run the recipe keys change: the branch during a fork (A is the control), else the run (while a fork
        ends: the branch it keeps)."""
        if self.forked and (self.ending_fork is None or self.ending_fork == FORK):
            return self.states[1]
        return self.state

    # ------------------------------------------------------------------------------------------ what comes back
    def took_status(self, status: StatusRecord) -> None:
        self.paused = status.paused
        if self.pause_wanted == self.paused:
            self.pause_wanted = None

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
        stalled = (not self.paused and s.run is not None and s.end is None and not self.source.closing
                   and silent > max(STALL_S, expected))
        if stalled != self.stalled:
            self.stalled = stalled
            self.notice = (f"no word from the trainer for {silent:.0f} s (stopped? stuck?); q still quits"
                           if stalled else "the trainer is answering again")

    def run_started(self, run: RunRecord, before: RunConfig | None) -> None:
        self._acknowledged()  # first: the words below depend on whether a change is still pending
        super().run_started(run, before)

    def goes_on(self, run: RunRecord) -> bool:
        return run.forked_at is not None  # the fork ended keeping its branch: it goes on as the run

    def new_run_words(self, run: RunRecord, before: RunConfig | None) -> str:
        if run.forked_at is not None:
            return f"the fork ended at step {run.forked_at:,}: {FORK} goes on as the run"
        if self.state.runs > 1 and not (self.forked and self.pending is not None):
            cfg = self.state.config
            if before is not None and cfg is not None and changes(before, cfg):
                return f"restarted: {changes(before, cfg)} (fresh weights)"
            return f"restarted with the same configuration, fresh weights: {cfg.describe() if cfg else run.model}"
        return ""

    def live_change(self, ev: EventRecord) -> None:
        super().live_change(ev)
        self._acknowledged()

    @on(ForkStarted)
    def _on_fork(self, message: ForkStarted) -> None:
        restarted = self.forked
        self.fork_pending = False
        self.states = [self.state, message.state]
        self._acknowledged()
        if restarted:  # a recipe change restarted A and B: the notice already says so
            changed = changes(message.before, message.state.config) if message.before is not None else ""
            self.notice = (f"restarted A and {FORK} from seed {self.state.config.seed}: "
                           f"{FORK} = {message.state.config.describe()}" + (f" ({changed})" if changed else ""))
        else:
            self.notice = (f"forked at step {message.run.forked_at:,}: {FORK} = A; a L change {FORK}, i b s + - r "
                           "restart both; o focus, f ends")
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
            self.notice = f"{FORK} diverged at step {end.steps} ({end.message}); A goes on alone"
            self.notify(self.notice, severity="error", timeout=8)
        elif kept == TAGS[0]:  # keeping the branch, the run's new header says so (_on_run)
            self.notice = f"the fork ended at step {end.steps}: A goes on, {FORK} is in the metrics file"
        self._titles()
        self._status_now()

    def run_ended(self, end: EndRecord, again: str = "") -> None:
        if end.status != "interrupted":  # a fork asked for just before the end never comes
            self.fork_pending = False
        if end.status == "failed" and self.state.run is None:
            self.post_message(StartupRefused(end.message))  # refused before it started (no CUDA, bad data)
        elif end.status == "failed":
            self._show_failure(end)
        else:
            super().run_ended(end, " r runs it again.")

    def source_lost(self, why: str | None) -> None:
        src = self.source  # it says how it died, and writes the end record its run lacks
        death, written = src.death(), src.ensure_end("failed", src.death(), "trainer-died")
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

    # ------------------------------------------------------------------------------------------ the keys
    @property
    def wanted(self) -> RunConfig:
        """The configuration the person asked for: a pending one, else what runs. Keys build on it, so quick
        presses (b, s, b) each count even before the trainer acknowledged the one before. During a fork: B's."""
        return self.pending or self.target.config

    def _branch(self) -> str | None:
        """The branch id a recipe command goes to: the fork's while the keys change it, else the run's (None)."""
        return FORK if self.to_b else None

    def _restart(self, cfg: RunConfig) -> None:
        cfg = cfg.validate()
        running = self.target.config
        changed = changes(running, cfg) if running is not None else ""
        if self.to_b:  # A and B start again together, from the same seed: the comparison stays fair
            self.source.send(Restart(cfg.to_dict(), branch=FORK))
            self.pending = cfg
            self.notice = (f"restarting A and {FORK} from seed {self.state.config.seed}: {FORK} = "
                           f"{cfg.describe()}" + (f" ({changed})" if changed else "") + " …")
            return
        self.source.send(Restart(cfg.to_dict()))
        self.pending = cfg
        self.notice = (f"restarting: {changed} …" if changed else
                       f"restarting with the same configuration, fresh weights: {cfg.describe()} …")

    def action_activation(self, step: int) -> None:
        cfg = self.wanted
        new = next_choice(cfg.activation, ACTIVATIONS, int(step))
        self.source.send(SetActivation(new, branch=self._branch()))
        self.pending = cfg.replace(activation=new)
        when = "at the next restart (r): the run has ended" if self.ended else "(live, weights kept)"
        self.notice = (f"{FORK}: " if self.to_b else "") + f"activation → {new} {when}"
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
        if self.to_b:  # the branch's learning rate changes at once, its weights kept
            self.source.send(SetLR(cfg.lr / 10, branch=FORK))
            self.pending = cfg.replace(lr=cfg.lr / 10)
            when = "at the next restart (r): the run has ended" if self.ended else "(live, weights kept)"
            self.notice = f"{FORK}: lr {cfg.lr:g} → {cfg.lr / 10:g} {when}"
            return
        self._restart(cfg.replace(lr=cfg.lr / 10))

    def action_fork(self) -> None:
        """Fork the run (B copies A, and the recipe keys change B), or end the fork keeping the focused branch."""
        if self.forked and self.state.end is not None:
            self.notify(f"f: the run has ended with its fork; r starts A and {FORK} again", severity="warning",
                        timeout=4)
            return
        if self.to_b:  # (f f: the fork asked for is not here yet, and ends keeping A)
            self.ending_fork = keep = TAGS[self.branch_focus] if self.forked else TAGS[0]
            self.source.send(Fork(False, keep=keep))
            self.fork_pending = False
            if keep == TAGS[0]:  # a change asked of the branch, not yet acknowledged, goes with it
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
        self.notice = f"forking: {FORK} copies A (weights, optimiser state, step, data order) …"

    def action_pause(self) -> None:
        """"pausing…" at once; "paused" when the trainer acknowledges it (a StatusRecord)."""
        wanted = not (self.paused if self.pause_wanted is None else self.pause_wanted)
        self.pause_wanted = wanted
        self.source.send(Pause(wanted))

    def action_step(self) -> None:
        if not self.paused:
            self.source.send(Pause(True))
        self.source.send(StepOnce())

    def action_speed(self, step: int) -> None:
        i = SPEED_CAPS.index(self.cap) if self.cap in SPEED_CAPS else 0
        i = min(max(i + int(step), 0), len(SPEED_CAPS) - 1)
        self.cap = SPEED_CAPS[i]
        self.source.send(SetSpeedCap(self.cap))
        self.notice = f"speed cap: {self.cap:g} steps/s" if self.cap else "speed cap off: full speed"
