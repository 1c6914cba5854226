"""The replay screen: a recorded metrics file (or two side by side) under a cursor, read where it lies.

A worker fills the curves' (bounded) history in the background, the cursor keys parse one snapshot each, playback
moves the cursor at the recorded pace (times `pace`), and a timer follows a growing file (`vgtui follow FILE`). A
file's fork (its branch's records) opens beside the run it forked from, as a second run aligned by step.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

from textual import work
from textual.reactive import reactive
from textual.worker import get_current_worker

from vgtui.core.diagnosis import RECENT
from vgtui.core.metrics import MetricsFileError
from vgtui.core.records import Snapshot
from vgtui.sources.base import RecordedSource
from vgtui.sources.file import BranchSource
from vgtui.ui.screens.base import RunScreen
from vgtui.ui.state import MAX_RUNS, TAGS, RunState, shown

def last_fork(run) -> list:
    """The branches of `run`'s last fork (RunIndex each), in the order of their ids on screen (TAGS): the branches
    forked at the step its last branch was, one per id (a fork of k branches writes k headers; an earlier fork's
    branches are not shown)."""
    if run is None or not run.branches:
        return []
    at = run.branches[-1].header.forked_at
    last: dict[str, object] = {}
    for b in run.branches:
        if b.header.forked_at == at and b.header.branch in TAGS[1:]:
            last[b.header.branch] = b
    return [last[t] for t in TAGS[1:MAX_RUNS] if t in last]


PACES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)  # a replay's speed against the recorded pace
FOLLOW_POLL_S = 0.25  # how often a followed file is checked for new lines


class ReplayScreen(RunScreen):
    KIND = "file"
    REPLAY = True

    pace: reactive[float] = reactive(1.0, init=False)  # a replay's speed

    def __init__(self, sources: list[RecordedSource], fps: float = 2.0, screenshot_dir: str | None = None) -> None:
        super().__init__(sources, fps, screenshot_dir)
        self._play_from: tuple[float, float] | None = None  # (monotonic, elapsed_s) when play started

    def view_options(self) -> dict:
        return {"follow": bool(self.source.follow), "pace": self.pace}

    def what_this_is(self) -> str:
        return f"a replay of {self.source.label}"

    def watch_pace(self) -> None:
        self._status_now()

    def start(self) -> None:
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

    # ------------------------------------------------------------------------------------------ the cursor
    def _open_run(self, i: int) -> None:
        """Show source i's chosen run: the header at once, the cursor on its last snapshot, and the curves'
        history filled in the background."""
        src, st = self.sources[i], self.states[i]
        run = src.run
        if run is None:
            return
        st.begin(run.header, run.epochs, run.events)
        st.sync_spikes(getattr(run, "spikes", []))
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
            # the snapshots the verdict reads: RunIndex keeps the last 64 parsed, so a step of the cursor parses one
            recent = tuple(s for k in range(max(index - RECENT + 1, 0), index) if (s := self._snapshot(run, k)[0]))
            st.show(snap, index, n, end, recent, self._snapshot(run, 0)[0] if index else snap)
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
        # the history of a long run keeps every 2nd, 4th... snapshot (History): parse only those (10,000 snapshots of
        # the seed's network: 1,250 parsed, the curves drawn 8 times sooner, the same points)
        st.plan_history(run.n_snapshots)
        while not worker.is_cancelled and st.run is run.header and st.runs == runs:
            n = run.n_snapshots
            if done < n:
                stop = min(done + 50, n)
                history = st.history  # this thread is its only writer: its stride only grows
                snaps = [self._snapshot(run, k)[0] if history.keeps(k) else None for k in range(done, stop)]
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
        st.sync_spikes(getattr(src.run, "spikes", []))
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
        """A file's run and its last fork side by side: each branch of that fork (B, C, D... by the ids its records
        carry: vgtui.ui.state.run_index) opens beside the run shown when that run has one (at start, after `p`, or
        in a followed file once the branch's header is written), and they go when it has none."""
        if len(self.sources) > 1 and not isinstance(self.sources[1], BranchSource):
            return  # files side by side
        src = self.source
        fork = last_fork(src.run)
        if not fork:
            if len(self.states) > 1:
                self.states, self.sources = self.states[:1], self.sources[:1]
                self.branch_focus = 0
                self._titles()
            return
        if [st.run for st in self.states[1:]] != [b.header for b in fork]:
            self.sources = [src, *(BranchSource(src, b.header.branch) for b in fork)]
            self.states = [self.state, *(RunState(None, s.label) for s in self.sources[1:])]
            self.branch_focus = min(self.branch_focus, len(self.states) - 1)
            for i in range(1, len(self.states)):
                self._open_run(i)
            at = fork[0].header.forked_at
            tags = [TAGS[i] for i in range(1, len(self.states))]
            said = f"its fork is {tags[0]}" if len(tags) == 1 else f"its branches are {', '.join(tags)}"
            self.notice = (f"{shown(self.state.label) or 'the run'} was forked at step "
                           f"{at if isinstance(at, int) else 0:,}: {said}")
        self._align()  # the branch's snapshots are written just after A's: show them as they arrive

    def _play(self) -> None:
        """Playback at the recorded pace (times `pace`): the cursor goes to the last snapshot whose elapsed
        time the replay clock has passed (read from the index: a damaged snapshot is passed over like another)."""
        run, pos = self.source.run, self.state.position
        if self.paused or run is None or pos is None or pos[0] >= run.n_snapshots:
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

    # ------------------------------------------------------------------------------------------ the keys
    def can_export(self) -> bool:
        if self.source.run is None:  # following a file that holds no run yet
            self.notify("e: no run in the file yet: nothing to export", severity="warning", timeout=5)
            return False
        return True

    @contextlib.contextmanager
    def export_target(self) -> Iterator[tuple[object, int, int]]:
        yield self.source.run, self.source.run_number, len(self.source.runs)

    @contextlib.contextmanager
    def export_targets(self) -> Iterator[list[tuple[str, object, str]]]:
        """Every run shown, one CSV each: each file's run beside its file (a.csv, b.csv...), a file's fork beside
        it with the branch's id (run-B.csv)."""
        out = []
        for tag, src, st in zip(TAGS, self.sources, self.states):
            run = src.run
            if run is None or st.run is not run.header:
                continue
            if isinstance(src, BranchSource):
                parent = src.parent
                path = self.csv_path(src.metrics_path, parent.run_number, len(parent.runs),
                                     f"-{run.header.branch if run.header.branch in TAGS else tag}")
            else:
                path = self.csv_path(src.metrics_path, src.run_number, len(src.runs))
            out.append((tag, run, path))
        yield out

    def action_pause(self) -> None:
        if self.paused and self._at_end() and not self.source.follow:
            self._seek_index(0)  # play again from the start
        self.paused = not self.paused

    def action_speed(self, step: int) -> None:
        i = min(max(PACES.index(self.pace) - int(step), 0), len(PACES) - 1)
        self.pace = PACES[i]
        self._play_from = None
        self.notice = f"replay at {self.pace:g}x the recorded pace"

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
