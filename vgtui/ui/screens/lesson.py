"""The lesson screen: the live trainer's screen (TrainerScreen: every key still works) with a lesson panel beside the
charts, and the lesson's steps driving the trainer (vgtui.core.lesson).

Each step: its setup (a restart with its configuration, or a fork of up to four branches from the same seed, via
Restart and Fork commands), the trainer paused while the class answers (keys 1-4; the answer is an event in the
metrics file: a `Note` command), the run (enter, or the answer's key) until N steps or the step's condition, then
the trainer paused again and the reveal computed from the run's own snapshots. The numbers come from a tap on the
source (every record of every branch, before the screen's bridge folds them), so the panel does not depend on how
many runs the charts can show.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from textual.binding import Binding, BindingsMap

from vgtui.core.lesson import ANSWER_KEYS, Lesson, Numbers, Reveal, reveal, until_met
from vgtui.core.records import (EndRecord, EpochRecord, Fork, Note, Pause, Restart, RunRecord, Snapshot)
from vgtui.sources.base import TrainerSource
from vgtui.ui import keymap
from vgtui.ui.screens.live import TrainerScreen
from vgtui.ui.widgets.lesson import LessonPanel, LessonView

MAX_KEPT = 20_000  # snapshots kept per branch for a step's numbers
LESSON_BINDINGS = [Binding(k, f"answer({i + 1})", f"answer {k}", show=False) for i, k in enumerate(ANSWER_KEYS)] + [
    Binding("enter", "lesson_go", "go on", show=True, key_display="enter"),
    Binding("backspace", "lesson_again", "again", show=False),
]


LESSON_HELP = (("1-4", "lesson: the class's answer to the step's question (an event in the metrics file); the run starts"),
               ("enter", "lesson: run the step without an answer; after the reveal, the next step"),
               ("backspace", "lesson: this step again (its setup and its run)"))


class _Tap:
    """The trainer source, with every record it hands the screen's bridge seen first: each branch's snapshots of
    the current run, its last test accuracy, its configuration."""

    def __init__(self, source: TrainerSource):
        self._source = source
        self.lock = threading.Lock()
        self.snaps: dict[str, list[Snapshot]] = {}
        self.test_acc: dict[str, float] = {}
        self.configs: dict[str, Any] = {}
        self.ended: dict[str, str] = {}  # the branches of this run whose end record came: their end's cause
        self.headers = 0  # A's run headers seen
        self.horizon = 0  # the steps the lesson's run goes to (its header's total_steps for the charts' x axis)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def get(self, timeout: float | None = None):
        rec = self._source.get(timeout=timeout)
        if rec is None:
            return None
        b = getattr(rec, "branch", None) or "A"
        with self.lock:
            if isinstance(rec, RunRecord):
                if b == "A" and rec.forked_at is None:
                    self.snaps, self.test_acc, self.configs, self.ended = {}, {}, {}, {}
                    self.headers += 1
                self.ended.pop(b, None)
                self.snaps[b] = []
                self.test_acc.pop(b, None)
                self.configs[b] = rec.config
            elif isinstance(rec, Snapshot):
                kept = self.snaps.setdefault(b, [])
                kept.append(rec)
                del kept[:-MAX_KEPT]
            elif isinstance(rec, EpochRecord):
                self.test_acc[b] = rec.test_acc
            elif isinstance(rec, EndRecord):
                self.ended[b] = rec.cause
        if isinstance(rec, RunRecord) and self.horizon:  # the charts' x axis: the lesson's steps, not 1000 epochs
            rec = dataclasses.replace(rec, total_steps=self.horizon)
        return rec

    def numbers(self, start: int = 0, upto: int | None = None) -> dict[str, Numbers]:
        """Each branch's numbers over the snapshots from step `start` (exclusive, but the run's first snapshot
        counts when start is 0) to `upto` (inclusive)."""
        from vgtui.core.config import RunConfig

        out = {}
        with self.lock:
            for b in sorted(self.snaps):
                snaps = [s for s in self.snaps[b] if (s.step > start or start == 0) and (upto is None or
                                                                                         s.step <= upto)]
                cfg = self.configs.get(b)
                out[b] = Numbers.of(snaps, RunConfig.from_dict(cfg) if cfg else None, self.test_acc.get(b), start,
                                    self.ended.get(b))
        return out

    def latest_step(self, branch: str = "A") -> int | None:
        with self.lock:
            s = self.snaps.get(branch)
            return s[-1].step if s else None


class LessonScreen(TrainerScreen):
    """The trainer's screen with a lesson beside it."""

    MEANWHILE = "The lesson waits meanwhile; "

    def __init__(self, sources: list[TrainerSource], lesson: Lesson, fps: float = 2.0,
                 screenshot_dir: str | None = None) -> None:
        self.tap = _Tap(sources[0])
        super().__init__([self.tap], fps, screenshot_dir)  # type: ignore[list-item]
        self.lesson = lesson
        self.index = 0
        self.phase = "ask"  # ask, run, reveal, done
        self.awaiting = False  # the step's restart was sent, its run header not yet here
        self.answer: int | None = None
        self.start_step = 0
        self.headers_at_setup = 0  # A's headers seen when the step's restart was sent
        self.stop_at: int | None = None  # the snapshot step where the run stopped (N reached or `until` held)
        self.result: Reveal | None = None
        self.numbers: dict[str, Numbers] = {}
        self._shown: LessonView | None = None
        self._bindings = self._lesson_bindings(1000)
        self.tap.horizon = self.horizon(0)  # before the bridge reads the first header

    def _lesson_bindings(self, width: int) -> BindingsMap:
        return BindingsMap(LESSON_BINDINGS + keymap.bindings(self.KIND, width, metrics_file=self._has_file))

    def compose(self):
        yield from super().compose()
        yield LessonPanel(id="lesson")

    def check_size(self) -> None:
        super().check_size()
        if "lesson_go" not in {b.action for bs in self._bindings.key_to_bindings.values() for b in bs}:
            self._bindings = self._lesson_bindings(self.app.size[0])
            self.refresh_bindings()

    def start(self) -> None:
        super().start()
        self.set_interval(0.1, self._lesson_tick)
        self.enter_step(0, first=True)
        self.call_after_refresh(self._show)

    @property
    def step(self):
        return self.lesson.steps[self.index]

    # ------------------------------------------------------------------------------------------ the steps
    def horizon(self, index: int) -> int:
        """Where the run that step `index` trains in ends: its steps and those of the steps that go on from it."""
        steps = self.lesson.steps
        start = index
        while start > 0 and not steps[start].restart:
            start -= 1
        end = index + 1
        while end < len(steps) and not steps[end].restart:
            end += 1
        return sum(s.run for s in steps[start:end])

    def enter_step(self, index: int, first: bool = False, again: bool = False) -> None:
        """Step `index`: its setup, then the trainer paused for the question."""
        self.index, self.answer, self.result, self.stop_at, self.numbers = index, None, None, None, {}
        step = self.step
        self.phase = "ask"
        self.tap.horizon = self.horizon(index)
        if (step.restart and not (again and not step.restart)) and not (first and not step.fork):
            self.awaiting = True
            # the step's run is the header after those seen; at the first step, the header of the run the trainer
            # started with may still be on its way: the step's is the one after it
            self.headers_at_setup = max(self.tap.headers, 1) if first else self.tap.headers
            self.source.send(Restart(step.config.to_dict()))
            for cfg in step.fork:
                self.source.send(Fork(True, config=cfg.to_dict()))
            self.start_step = 0
        elif first:  # the trainer starts with the first step's configuration: its first run is the step's
            self.start_step = 0
        else:  # the step goes on from where the run is (again: N more steps)
            self.start_step = self.tap.latest_step() or 0
        self.source.send(Pause(True))
        self.notice = f"lesson step {index + 1}/{len(self.lesson.steps)}: {step.title}"
        self._show()

    def run_started(self, run: RunRecord, before) -> None:
        super().run_started(run, before)
        if not self.step.fork and len(self.states) > 1:  # a plain restart ended the fork: one run on screen
            self.states = [self.state]
            self.branch_focus = 0
            self._titles()

    def _lesson_tick(self) -> None:
        if self.awaiting and self.tap.headers > self.headers_at_setup:
            self.awaiting = False
            self._show()
        if self.phase != "run" or self.awaiting:
            return
        step = self.step
        # the slowest branch's latest snapshot (a fork's branches report each step after A); a branch that ended
        # (diverged) no longer counts, and the run ending ends the step with what it has
        ended = self.tap.ended
        steps = [self.tap.latest_step(b) for b in step.branches if b not in ended]
        if ended.get("A") not in (None, "restarted"):
            done, target = True, self.tap.latest_step() or self.start_step
        elif any(x is None for x in steps) or not steps:
            return
        else:
            latest = min(steps)
            target = self.start_step + step.run if step.run else None
            done = target is not None and latest >= target
            if not done and step.until:
                held = until_met(step, self.tap.numbers(self.start_step, latest))
                done, target = (True, latest) if held else (False, target)
        if done:
            nums = self.tap.numbers(self.start_step, target)
            self.source.send(Pause(True))
            self.stop_at = target
            self.numbers = nums
            self.result = reveal(step, nums, self.answer)
            self.phase = "done" if self.index == len(self.lesson.steps) - 1 else "reveal"
            self.notice = (f"lesson step {self.index + 1} ran {target - self.start_step:,} steps: paused; "
                           + ("enter: next step" if self.phase == "reveal" else "the lesson is over"))
        self._show()

    def _show(self) -> None:
        if not self.is_mounted:
            self.call_after_refresh(self._show)
            return
        progress = ""
        latest = self.tap.latest_step()
        if self.phase == "run":
            done = (latest or self.start_step) - self.start_step
            progress = (f"running: step {max(done, 0):,} of {self.step.run:,}" if self.step.run else
                        f"running: step {max(done, 0):,}, until {self.step.until}")
        elif self.phase in ("reveal", "done") and self.stop_at is not None:
            progress = f"ran {self.stop_at - self.start_step:,} steps (the reveal reads them, to step {self.stop_at:,})"
        if self.awaiting:
            progress = "starting …"
        view = LessonView(self.lesson.title, self.step, self.index, len(self.lesson.steps), self.phase, self.answer,
                          progress, self.result)
        if view != self._shown:  # the panel redraws when what it says changed
            self._shown = view
            self.query_one(LessonPanel).show(view)

    # ------------------------------------------------------------------------------------------ the keys
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "answer":
            return self.phase == "ask" and bool(self.step.answers) and 1 <= int(parameters[0]) <= len(
                self.step.answers)
        if action == "lesson_go":
            return self.view != "layers" or not self._table_names()
        return super().check_action(action, parameters)

    def action_answer(self, k: int) -> None:
        """The class's answer: recorded as an event of the run, then the run starts."""
        k = int(k)
        self.answer = k
        self.source.send(Note({"lesson": self.lesson.name, "question": self.index + 1, "answer": k,
                               "text": self.step.answers[k - 1]}))
        self._run()

    def _run(self) -> None:
        if not self.step.run and not self.step.until:
            self.phase = "reveal" if self.index < len(self.lesson.steps) - 1 else "done"
            self.result = reveal(self.step, self.tap.numbers(self.start_step), self.answer)
            self._show()
            return
        if not self.awaiting and self.start_step and not self.step.restart:
            self.start_step = self.tap.latest_step() or 0
        self.phase = "run"
        self.source.send(Pause(False))
        self._show()

    def action_lesson_go(self) -> None:
        if self.phase == "ask":
            self._run()
        elif self.phase == "reveal":
            self.enter_step(self.index + 1)
        elif self.phase == "done":
            self.notify("the lesson is over: space trains on, q quits", timeout=4)

    def action_help(self) -> None:
        from vgtui.ui.screens.dialogs import HelpScreen

        self.app.push_screen(HelpScreen(self.KIND, LESSON_HELP))

    def action_lesson_again(self) -> None:
        if self.phase in ("reveal", "done", "run"):
            self.enter_step(self.index, again=True)
