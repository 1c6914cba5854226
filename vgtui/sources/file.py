"""Sources that read a run someone else wrote: a metrics file (recorded, or still growing) and a stream.

- `FileSource(path, run=None, follow=False)`: a metrics file, indexed (`vgtui.core.metrics.MetricsIndex`), so
  opening a file of 10,000 snapshots parses none of them; the viewer asks for the one it shows. With `follow`,
  `poll()` indexes what was appended since (like `tail -f`): new snapshots, the end record, a new run header (the
  source switches to it), a file that does not exist yet (waited for), a writer gone without an end record.
- `BranchSource(file_source)`: the fork's branch B of the run a FileSource shows (`vgtui replay` puts it beside
  the run), so that a forked run replays as the two runs it was.
- `StreamSource(binary_file, name)`: records as they arrive on a stream (`vgtui follow -` reads standard input),
  folded into the viewer like a live run's.

The first two are `RecordedSource`s, the stream a `LiveSource` (vgtui.sources.base); none takes commands. This
module imports neither torch nor textual.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import IO

from vgtui.core.metrics import MetricsFileError, MetricsIndex, RunIndex, iter_lines_records
from vgtui.core.records import Record
from vgtui.core.writer import holder_pid
from vgtui.sources.base import Change, LiveSource, RecordedSource

QUIET_S = 5.0  # a followed file with nothing new this long gets its writer's pid checked
QUIET_NO_PID_S = 120.0  # without a pid in the header: this long without a line is said


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but is someone else's
        return True
    return True


class FileSource(RecordedSource):
    def __init__(self, path: str, run: int | None = None, follow: bool = False):
        self.path = path
        self.metrics_path = path
        self.label = os.path.basename(path.rstrip("/")) or path
        self.follow = follow
        self.wanted_run = run  # 1-based; None: the last (following: always the latest)
        self.index: MetricsIndex | None = None
        self.run_number = 0  # 1-based, of the run shown; 0 before there is one
        self.waiting = ""  # why there is nothing to show yet (following a file that does not exist yet)
        self._last_change = time.monotonic()

    def open(self) -> None:
        """Index the file. Raises MetricsFileError for a bad file, or for a run number it does not hold; when
        following, a missing or empty file is waited for instead (`waiting` says so)."""
        try:
            self.index = MetricsIndex(self.path)
        except MetricsFileError as e:
            if not (self.follow and e.reason in ("missing", "empty")):
                raise
            self.waiting = (f"waiting for {self.path} to appear…" if e.reason == "missing"
                            else f"waiting for the first run in {self.path}…")
            return
        n = len(self.index.runs)
        if self.wanted_run is not None and not 1 <= self.wanted_run <= n:
            self.index.close()
            raise MetricsFileError(self.path, f"--run {self.wanted_run}: the file holds {n} run"
                                   f"{'s' if n != 1 else ''} (1..{n})", "no-such-run")
        self.run_number = self.wanted_run or n
        self.waiting = ""

    @property
    def runs(self) -> list[RunIndex]:
        return self.index.runs if self.index else []

    @property
    def run(self) -> RunIndex | None:
        return self.runs[self.run_number - 1] if self.run_number else None

    @property
    def notice(self) -> str | None:
        return self.index.notice if self.index else None

    def select(self, number: int) -> None:
        self.run_number = min(max(int(number), 1), len(self.runs))

    def poll(self) -> Change:
        """What was appended since the last poll (a followed file)."""
        if self.index is None:
            self.open()
            if self.index is None:
                return Change()
            self._last_change = time.monotonic()
            return Change(new_run=True)
        run, runs, index = self.run, self.runs, self.index
        first, n_runs = runs[0], len(runs)
        n0, e0, ended0 = run.n_snapshots, len(run.epochs), run.end is not None
        seen = (index.n_damaged, index.rereads, index.reread_why)
        if not index.refresh():
            return Change(lost=self._quiet(run))
        notice = self._news(*seen)
        self._last_change = time.monotonic()
        if self.runs and (self.runs[0] is not first or len(self.runs) > n_runs):  # rewritten, or a new run
            self.run_number = len(self.runs)
            return Change(new_run=True, notice=notice)
        n = run.n_snapshots
        return Change(new_snapshots=(n0, n) if n > n0 else None, new_epochs=run.epochs[e0:],
                      ended=run.end is not None and not ended0, notice=notice)

    def _news(self, damaged: int, rereads: int, why: str) -> str:
        """What the reader did in the last refresh, in one line: the file read again, damaged lines skipped."""
        index, said = self.index, []
        if index.rereads != rereads or index.reread_why != why:
            said.append(index.reread_why)
        k = index.n_damaged - damaged if index.rereads == rereads else index.n_damaged
        if k > 0:
            listed = index.notices[index.n_damaged - k:]
            if k == 1 and listed:
                said.append(f"damaged {listed[0]} (skipped)")
            else:
                said.append(f"{k:,} damaged lines skipped" + (f" (first: {listed[0]})" if listed else ""))
        return "; ".join(s for s in said if s)

    def _quiet(self, run: RunIndex) -> str:
        """Nothing new: is the writer gone? Said once the run has been quiet a while without an end record."""
        if run.end is not None or run is not self.runs[-1]:
            return ""
        quiet = time.monotonic() - self._last_change
        pid = run.header.pid
        last = f"the last snapshot is step {int(run.snapshot_steps[-1]):,}" if run.n_snapshots else "no snapshot"
        if quiet >= QUIET_S and os.path.exists("/proc/locks"):  # Linux: a writer holds the file's lock
            if holder_pid(self.metrics_path) is None:
                who = f"the writer (pid {pid})" if pid is not None else "the writer"
                return f"{who} is gone without an end record: killed? {last}"  # its lock on the file is released
            return ""
        if pid is not None and quiet >= QUIET_S and not pid_alive(pid):
            return f"the writer (pid {pid}) is gone without an end record: killed? {last}"
        if pid is None and quiet >= QUIET_NO_PID_S:
            return f"nothing new for {quiet / 60:.0f} min and no end record: the writer may be gone ({last})"
        return ""

    def close(self, timeout: float = 2.0) -> None:
        if self.index is not None:
            self.index.close()


class BranchSource(RecordedSource):
    """A branch of the run `parent` (a FileSource) shows: its last fork's (of id `branch`, any id when None), when it
    has one. Moves with the parent (`p` to another run shows that run's fork, or none): it is selected and polled
    through its parent."""

    def __init__(self, parent: FileSource, branch: str | None = None):
        self.parent = parent
        self.branch = branch
        self.path = self.metrics_path = parent.path

    @property
    def follow(self) -> bool:
        return self.parent.follow

    @property
    def runs(self) -> list[RunIndex]:
        run = self.parent.run
        if run is None:
            return []
        return [b for b in run.branches if self.branch is None or b.header.branch == self.branch]

    @property
    def run(self) -> RunIndex | None:
        return self.runs[-1] if self.runs else None

    @property
    def run_number(self) -> int:
        return len(self.runs)

    @property
    def label(self) -> str:
        run = self.run
        return f"fork@{run.header.forked_at or 0:,}" if run is not None else "fork"

    def select(self, number: int) -> None:
        """The parent's run decides which fork is shown (`p` selects the parent's run)."""

    def poll(self) -> Change:
        """The parent polls the file; the branch is read from the parent's run."""
        return Change()

    def close(self, timeout: float = 2.0) -> None:
        """The parent closes the file."""


class StreamSource(LiveSource):
    """Records from a binary stream (standard input), read by a thread as they arrive."""

    kind = "stream"

    def __init__(self, stream: IO[bytes], name: str = "<stdin>"):
        self.stream = stream
        self.label = name
        self.why = ""  # why the stream stopped
        self._records: "queue.Queue[Record]" = queue.Queue(maxsize=1000)
        self._thread: threading.Thread | None = None
        self._iter = None
        self._first: list[Record] = []

    def read_header(self) -> None:
        """Read up to the first record (the run header) before the UI starts, so that input that is not a metrics
        stream is refused with a one-line message (MetricsFileError) and exit status 2."""
        self._iter = iter_lines_records(self.stream, self.label)
        self._first.append(next(self._iter))  # raises MetricsFileError (an empty stream included)

    def start(self) -> None:
        if self._iter is None:
            self._iter = iter_lines_records(self.stream, self.label)
        for r in self._first:
            self._records.put(r)
        self._thread = threading.Thread(target=self._main, name="vgtui-stdin", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            for rec in self._iter:
                self._records.put(rec)
            self.why = f"{self.label} closed"
        except MetricsFileError as e:
            self.why = str(e)
        except (OSError, ValueError) as e:
            self.why = f"{self.label}: {e}"

    def get(self, timeout: float | None = None) -> Record | None:
        try:
            return self._records.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 2.0) -> None:
        """The reading thread is a daemon: it ends with the process (a blocked read cannot be interrupted)."""
