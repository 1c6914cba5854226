"""Live screens: records as they come from a live source.

- `LiveScreen`: a stream of records (`vgtui follow -`, a user's loop piping vgtui.watch's records): a thread worker
  (the bridge) folds every record into the RunState and posts a message (vgtui.ui.messages) for the records the
  screen reacts to; the frame timer draws the rest.
- `TrainerScreen`: vgtui's own trainer in a child process, which it also commands: pause and step, the speed cap,
  the recipe keys (a live activation or lr change, a restart with fresh weights), the fork (`f`: a branch beside
  the run, B, then C and D, whose records carry their branch id; `F` ends it; the palette's "Fork with ..." adds
  a branch with a remedy), and what it says when the trainer stalls, fails or dies.
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
from vgtui.ui.state import TAGS, RunState, run_index

SPEED_CAPS: tuple[float | None, ...] = (None, 200.0, 100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5)
MAX_DEPTH = 20
STALL_S = 5.0  # a running trainer silent for this long (and 3 snapshot intervals) is said to be stalled
FORK = BRANCHES[0]  # the branch id the first `f` makes (the trainer's first branch)
# the palette's "Fork with ...": a new branch with one remedy, every branch from step 0 on the same batches
REMEDIES: dict[str, tuple[str, dict]] = {
    "relu": ("ReLU", {"activation": "relu"}),
    "batchnorm": ("batch norm", {"batchnorm": True}),
    "xavier": ("Xavier init", {"init": "xavier"}),
    "skip": ("skip connections", {"skip": True}),
}


def and_list(ids: list[str]) -> str:
    """'A and B', 'A, B and C'."""
    return ids[0] if len(ids) == 1 else f"{', '.join(ids[:-1])} and {ids[-1]}"


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
        branches: dict[str, RunState] = {}  # a fork's branches by id (the last state each had)
        kept: str | None = None  # the branch whose end says it goes on as the run
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
            bid = getattr(rec, "branch", None)
            if bid is not None:  # a fork's records go to its branch's state
                if isinstance(rec, RunRecord):
                    before = branches[bid].config if bid in branches else None
                    branches[bid] = RunState(None, f"fork@{rec.forked_at or 0:,}")
                    branches[bid].begin(rec)
                    self.post_message(ForkStarted(branches[bid], rec, before))
                elif bid in branches:
                    branches[bid].apply(rec)
                    if isinstance(rec, EndRecord):
                        if rec.cause == "fork-kept":
                            kept = bid
                        self.post_message(ForkEnded(rec))
                    elif isinstance(rec, EventRecord):
                        self.post_message(LiveChange(rec))
                continue
            before = state.config
            state.apply(rec)  # snapshots and epochs: the frame timer redraws what changed
            if isinstance(rec, RunRecord):
                if rec.forked_at is not None and kept in branches:  # the fork ended keeping a branch: it goes on
                    state.carry_on(branches[kept], rec.forked_at)
                    branches, kept = {}, None
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
        self.ending_fork: str | None = None  # the branch `F` asked the trainer to keep, until the branches' ends come
        self.fork_pending: str | None = None  # the branch `f` forked, its header not yet here: the keys change it
        self.kept: str | None = None  # the branch that went on as the run when the fork ended
        self._restarting: set[str] = set()  # the branches of a fork that restarted, until their headers come
        self._restart_told = False  # the notice already says the latest restart (one line for all the branches)
        self.pending: RunConfig | None = None  # what the person asked the trainer for, not yet acknowledged
        self.stalled = False
        # a restart (`b`, `i`, `r`...) keeps the run before it as a faint trace under the new one's curves: before
        # and after on one chart without a fork first (issue 17's demo defaults)
        self.state.keep_trace = True

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
        """The recipe keys change a branch of the fork (the one in focus, or the one `f` asked for, whose header is
        not here yet), not the run alone; no longer from the `F` that ends the fork (then the change is the kept
        run's, which the trainer runs without a branch by the time it reads the change)."""
        return (self.forked and self.ending_fork is None) or self.fork_pending is not None

    @property
    def ended(self) -> bool:
        """The run has ended (completed, diverged, failed): nothing trains until `r`."""
        end = self.state.end
        return end is not None and end.status != "interrupted"

    @property
    def focus_id(self) -> str:
        """The tag of the run in focus: A, B, C, D."""
        return TAGS[min(self.branch_focus, len(self.states) - 1)]

    @property
    def target(self) -> RunState:
        """The run the recipe keys change: during a fork the one in focus (A too), else the run (while a fork
        ends: the branch it keeps; while a fork is asked for: A, which the branch copies)."""
        if self.ending_fork is not None:
            i = run_index(self.ending_fork)
            return self.states[i] if i < len(self.states) else self.state
        if self.fork_pending is None and self.forked:
            return self.focused_state
        return self.state

    @contextlib.contextmanager
    def export_targets(self) -> Iterator[list[tuple[str, object, str]]]:
        """The run and, in a fork, each branch on screen (the file's latest branch of that id), one CSV each: run.csv
        and run-B.csv, run-C.csv... beside the metrics file."""
        with self.export_target() as (run, number, count):
            path = self.source.metrics_path
            out = [(TAGS[0], run, self.csv_path(path, number, count))]
            for tag in self.fork_ids():
                mine = [b for b in run.branches if b.header is not None and b.header.branch == tag]
                if mine:
                    out.append((tag, mine[-1], self.csv_path(path, number, count, f"-{tag}")))
            yield out

    def fork_ids(self) -> list[str]:
        """The branches on screen beside A."""
        return list(TAGS[1:len(self.states)]) if self.forked else []

    def free_branch(self) -> str | None:
        """The id the next fork takes: the first of BRANCHES with no live branch on screen (an ended one's place is
        taken again)."""
        live = {TAGS[i] for i, st in enumerate(self.states) if i and st.run is not None and st.end is None}
        if self.fork_pending is not None:
            live.add(self.fork_pending)
        return next((b for b in BRANCHES if b not in live), None)

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
        if run.forked_at is None and (self.forked or self.fork_pending):  # a restart: the branches' headers next
            self._restarting = set(self.fork_ids()) | ({self.fork_pending} if self.fork_pending else set())
            self._restart_told = False  # no notice of this restart yet
            self.states = [self.state]
        self._acknowledged()  # first: the words below depend on whether a change is still pending
        super().run_started(run, before)

    def goes_on(self, run: RunRecord) -> bool:
        return run.forked_at is not None  # the fork ended keeping its branch: it goes on as the run

    def new_run_words(self, run: RunRecord, before: RunConfig | None) -> str:
        if run.forked_at is not None:
            return f"the fork ended at step {run.forked_at:,}: {self.kept or FORK} goes on as the run"
        if self.state.runs > 1 and not (self._restarting and self.pending is not None):
            cfg = self.state.config
            self._restart_told = True
            if before is not None and cfg is not None and changes(before, cfg):
                return f"restarted: {changes(before, cfg)} (fresh weights)"
            return f"restarted with the same configuration, fresh weights: {cfg.describe() if cfg else run.model}"
        return ""

    def live_change(self, ev: EventRecord) -> None:
        super().live_change(ev)
        fork = ev.set.get("fork") if ev.branch is None else None
        if isinstance(fork, str) and self.forked and self.ending_fork is None:  # not asked by F: a command's
            if fork == "ended, A kept":  # the last branch dropped: A alone
                self._collapse()
                self.notice = f"the fork ended at step {ev.step:,}: A goes on"
            elif " dropped at step " in fork:  # a branch dropped: it stays on screen, ended, beside the others
                self.notice = f"{fork}; the others go on"
        self._acknowledged()

    @on(ForkStarted)
    def _on_fork(self, message: ForkStarted) -> None:
        bid = message.run.branch or FORK
        i = run_index(bid)
        restarted = bid in self._restarting
        self._restarting.discard(bid)
        asked = bid == self.fork_pending
        if asked:
            self.fork_pending = None
        states = list(self.states)
        while len(states) < i:  # a branch forked before the ones before it (an id asked for): an empty place
            states.append(RunState(None, "(no branch)"))
        states[i:i + 1] = [message.state]
        self.states = states
        if asked or not restarted:  # a new branch: the keys change it now
            self.branch_focus = i
        self._acknowledged()
        changed = changes(message.before, message.state.config) if message.before is not None else ""
        if restarted and (changed or asked or not self._restart_told):
            self._restart_told = True
            ids = and_list(["A", *self.fork_ids(), *sorted(self._restarting)])
            self.notice = (f"restarted {ids} from seed {self.state.config.seed}: "
                           f"{bid} = {message.state.config.describe()}" + (f" ({changed})" if changed else ""))
        elif not restarted:
            differs = changes(self.state.config, message.state.config) if self.state.config is not None else ""
            what = f"A with {differs}" if differs else "A"
            self.notice = (f"forked at step {message.run.forked_at:,}: {bid} = {what}; a L change {bid}, i b s + - r "
                           "restart all; o focus, f forks again, F ends")
        self._titles()
        self._status_now()

    @on(ForkEnded)
    def _on_fork_end(self, message: ForkEnded) -> None:
        end = message.end
        if end.cause == "fork-kept":  # the run goes on from this branch (its new header: _on_run)
            self.kept, self.ending_fork = end.branch, None
            self._collapse()
            return
        if not self.forked:
            return
        open_ = [TAGS[i] for i, st in enumerate(self.states) if i and st.run is not None and st.end is None]
        if self.ending_fork is not None:  # F: every branch ends; keeping A, the run goes on as it was
            if not open_ and self.ending_fork == TAGS[0]:
                ids = self.fork_ids()
                self.ending_fork = None
                self._collapse()
                self.notice = (f"the fork ended at step {end.steps}: A goes on, {and_list(ids)} "
                               f"{'is' if len(ids) < 2 else 'are'} in the metrics file")
            return
        if end.status == "diverged":  # one branch diverged while the run goes on
            who = end.branch or FORK
            if open_:  # what goes on first: the message is long and the status line cuts it
                self.notice = f"{who} diverged at step {end.steps}; {and_list(['A', *open_])} go on ({end.message})"
            else:
                self.notice = f"{who} diverged at step {end.steps} ({end.message}); A goes on alone"
            self.notify(self.notice, severity="error", timeout=8)
            if not open_:
                self._collapse()
            self._titles()
            self._status_now()
        # else: the run ended (or restarted) with its fork, or a branch was dropped (the run's event says so next):
        # every branch stays on screen

    def _collapse(self) -> None:
        """The fork is over: A alone on screen."""
        self.states = [self.state]
        self.branch_focus = 0
        self.pending = None
        self.fork_pending = None
        self._titles()
        self._status_now()

    def run_ended(self, end: EndRecord, again: str = "") -> None:
        if end.status != "interrupted":  # a fork asked for just before the end never comes
            self.fork_pending = None
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
        presses (b, s, b) each count even before the trainer acknowledged the one before. During a fork: the
        focused run's."""
        return self.pending or self.target.config

    def _branch(self) -> str | None:
        """The branch id a recipe command goes to: the focused branch's while the keys change the fork (None: A)."""
        if self.fork_pending is not None:
            return self.fork_pending
        if self.to_b and self.focus_id != TAGS[0]:
            return self.focus_id
        return None

    def _restart(self, cfg: RunConfig) -> None:
        cfg = cfg.validate()
        running = self.target.config
        changed = changes(running, cfg) if running is not None else ""
        if self.to_b:  # every branch starts again, from the same seed: the comparison stays fair
            bid = self._branch() or TAGS[0]
            self.source.send(Restart(cfg.to_dict(), branch=bid))
            self.pending = cfg
            ids = and_list(["A", *sorted({*self.fork_ids(), *([bid] if bid != TAGS[0] else [])})])
            self.notice = (f"restarting {ids} from seed {self.state.config.seed}: {bid} = "
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
        self.notice = (f"{self._branch()}: " if self._branch() else "") + f"activation → {new} {when}"
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
        if self.to_b:  # the focused run's learning rate changes at once, its weights kept
            bid = self._branch()
            self.source.send(SetLR(cfg.lr / 10, branch=bid))
            self.pending = cfg.replace(lr=cfg.lr / 10)
            when = "at the next restart (r): the run has ended" if self.ended else "(live, weights kept)"
            self.notice = f"{bid or TAGS[0]}: lr {cfg.lr:g} → {cfg.lr / 10:g} {when}"
            return
        self._restart(cfg.replace(lr=cfg.lr / 10))

    def _can_fork(self, key: str) -> str | None:
        """The branch id a new fork takes, or None after saying why there is none."""
        if self.state.run is None:
            self.notify(f"{key} forks a running run: wait for it to start", severity="warning", timeout=4)
            return None
        if self.ending_fork is not None or self.fork_pending is not None:
            self.notify(f"{key}: the fork asked for is on its way; a moment", severity="warning", timeout=3)
            return None
        bid = self.free_branch()
        if bid is None:
            self.notify(f"{key}: four runs side by side is the most (A and {and_list(list(BRANCHES))}); F ends the "
                        f"fork keeping {self.focus_id}", severity="warning", timeout=5)
        return bid

    def action_fork(self) -> None:
        """Fork the run: a new branch (B, then C, D) copies A now, trains beside it on the same batches, and takes
        the focus (the recipe keys change it)."""
        if self.state.end is not None:
            again = f"r starts {and_list(['A', *self.fork_ids()])} again" if self.forked else "r starts it again first"
            self.notify(f"f forks a running run: it has ended; {again}", severity="warning", timeout=4)
            return
        bid = self._can_fork("f")
        if bid is None:
            return
        self.source.send(Fork(True, branch=bid))
        self.pending = None
        self.fork_pending = bid
        self.notice = f"forking: {bid} copies A (weights, optimiser state, step, data order) …"

    def action_end_fork(self) -> None:
        """End the fork keeping the run in focus (A: the branches end; a branch: it goes on as the run)."""
        if not self.forked and self.fork_pending is None:
            self.notify("F ends a fork: f forks the run first", severity="warning", timeout=3)
            return
        if self.state.end is not None:
            self.notify(f"F: the run has ended with its fork; r starts {and_list(['A', *self.fork_ids()])} again",
                        severity="warning", timeout=4)
            return
        if self.ending_fork is not None:
            return
        self.ending_fork = keep = self.focus_id if self.forked and self.fork_pending is None else TAGS[0]
        self.source.send(Fork(False, keep=keep))
        self.fork_pending = None
        if keep == TAGS[0]:  # a change asked of a branch, not yet acknowledged, goes with it
            self.pending = None
        self.notice = f"ending the fork: keeping {keep} …"

    def action_fork_with(self, what: str) -> None:
        """A new branch with one remedy (REMEDIES): every branch of the fork starts again from the same seed at step
        0, on the same batches, the new one with A's configuration and that change (a fair comparison)."""
        name, change = REMEDIES[what]
        if self.state.config is None or self.state.run is None:
            self.notify("Fork with: wait for the run to start", severity="warning", timeout=3)
            return
        bid = self._can_fork(f"fork with {name}")
        if bid is None:
            return
        cfg = self.state.config.replace(**change).validate()
        self.source.send(Restart(cfg.to_dict(), branch=bid))
        self.fork_pending = bid
        self.pending = cfg
        self.notice = (f"forking {bid} with {name}: {and_list(['A', *self.fork_ids(), bid])} start again from seed "
                       f"{self.state.config.seed} on the same batches …")

    def action_focus(self) -> None:
        self.pending = None  # a change asked of the run in focus is that run's; the next key builds on the next run's
        super().action_focus()

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
