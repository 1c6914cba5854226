"""vgtui's own trainer as a source: a stream of records that takes commands.

The UI drives a backend; it never imports torch. Two kinds, one interface:

- `ProcessBackend(config)`: the trainer in a child process (so the UI process never imports torch, and the UI's
  pure-Python rendering cannot stall training through the GIL). This is what `vgtui` uses.
- `ThreadBackend(config)`: the trainer in a thread of this process (tests).

    backend.start()                    # again after the trainer died: a new one, same metrics file
    backend.send(SetActivation("tanh"))
    rec = backend.get(timeout=0.1)     # a Record, or None when none came in time
    backend.close("quit")              # stops the trainer within 2 s, whatever it is doing; the end record is written

Both are `TrainerSource`s (vgtui.sources.base) and run the trainer with hold=True: a run that ends waits for a
Restart or a Stop. A trainer that fails to start (bad data, say) yields an EndRecord(status="failed") with the
message, and nothing else. A trainer whose loop raises past its own handling writes, on its way out, the end
records its run lacks (cause "error", with the traceback); one that dies without a word (a killed process) cannot,
so the viewer asks the source: `death()` says how it died, `ensure_end` writes the end record for it.

The metrics file belongs to the run, not to one process: the backend opens and locks it (`MetricsWriter`) and
hands the open file to the trainer, which writes every record; when the trainer cannot (it died, it is stopped
with SIGSTOP, it is stuck in a long step past the deadline), the backend writes the end record itself. A trainer
restarted after its process died appends to the same file under the same lock.

Trainers are spawned from a thread made before the viewer lowers its priority (`_Launcher`), so a restarted one
runs at the priority the first had. The child process never outlives its viewer: it reads its commands from a pipe whose other end only the viewer
holds, so when the viewer dies (any signal, SIGKILL included) the child reads EOF, ends the run with its end record
("the viewer process went away") and exits. SIGTERM and SIGHUP to the child end the run the same way.

This module imports neither torch nor textual at import time.
"""

from __future__ import annotations

import dataclasses

import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import traceback
from multiprocessing import reduction
from typing import Any

from vgtui.core.config import RunConfig
from vgtui.core.records import (Command, EndRecord, EventRecord, NoticeRecord, Record, RunRecord, Snapshot,
                                StatusRecord, Stop)
from vgtui.core.writer import MetricsWriteError, MetricsWriter, last_record_type
from vgtui.sources.base import TrainerSource

STOP_WAIT_S = 0.8  # after Stop: the trainer ends within a step, normally in milliseconds
TERM_WAIT_S = 0.5  # after SIGTERM: a long step is cut at its next Python bytecode
KILL_WAIT_S = 0.3  # after SIGKILL: a stopped or stuck trainer


def _failed(e: BaseException) -> EndRecord:
    """A trainer that could not start: a refusal (a ValueError: no CUDA, missing data) says only its message."""
    data = sys.modules.get("vgtui.engine.data")  # loaded if the error can be its DataError (no torch import here)
    refusal = isinstance(e, ValueError) or (data is not None and isinstance(e, data.DataError))
    message = str(e) if refusal else f"{type(e).__name__}: {e}"
    return EndRecord(status="failed", steps=0, elapsed_s=0.0, message=message, traceback=traceback.format_exc(),
                     cause="refused" if refusal else "error")


def _file_sink(writer: MetricsWriter | None, notify) -> Any:
    """The metrics file as a sink: a failed write (a full disk) is rolled back by the writer; the viewer is told
    once, and training goes on (the writer then only tries the end record)."""

    def write(rec: Record) -> None:
        if writer is None:
            return
        try:
            writer.write(rec)
        except MetricsWriteError as e:
            if not isinstance(rec, EndRecord):
                notify(NoticeRecord(f"{e.reason}: the metrics file is no longer written ({writer.path}); "
                                    "training goes on", level="error", step=getattr(rec, "step", 0)))

    return write


class _RunFile:
    """The run's metrics file on the viewer's side: the lock, what the trainer reported last, and the end record
    written for the trainer when it cannot write it itself."""

    def __init__(self, path: str | None, overwrite: bool = False):
        self.path = path
        self.overwrite = overwrite
        self.writer: MetricsWriter | None = None
        self.last_step = 0
        self.t0 = time.monotonic()
        self.ended = True  # no run started yet
        self.began = False  # a run header came from this trainer (else it was refused before its first run)
        self.branch_open: list[str] = []  # the ids of a fork's branches that have begun and not ended, in order

    def open(self) -> None:
        if self.path and self.writer is None:
            self.writer = MetricsWriter(self.path, overwrite=self.overwrite)

    def seen(self, rec: Record) -> None:
        branch = getattr(rec, "branch", None)
        if branch is not None:  # a fork's branch: begun or ended; it moves in step with the run
            if isinstance(rec, (RunRecord, EndRecord)):
                self.branch_open = [b for b in self.branch_open if b != branch]
                if isinstance(rec, RunRecord):
                    self.branch_open.append(branch)
            return
        if isinstance(rec, RunRecord):
            self.ended, self.branch_open, self.began = False, [], True
            self.t0, self.last_step = time.monotonic(), rec.forked_at or 0
        elif isinstance(rec, (Snapshot, EventRecord, StatusRecord)):
            self.last_step = max(self.last_step, rec.step)
        elif isinstance(rec, EndRecord):
            self.ended = True
            self.last_step = rec.steps

    def ensure_end(self, status: str, message: str, cause: str = "") -> EndRecord | None:
        """Write an end record for the trainer if its run has none (the trainer is gone: nobody else writes);
        `cause`: its END_CAUSES cause ("killed", "trainer-died"; "" for the status's own)."""
        if self.writer is None or self.writer.closed:
            return None
        last = last_record_type(self.writer.path)
        if last in (None, "end"):
            return None  # no run in the file, or it ended (the trainer wrote it though we never read it)
        end = EndRecord(status=status, steps=self.last_step, elapsed_s=time.monotonic() - self.t0,
                        message=message + " (this end record was written by vgtui's viewer)", cause=cause)
        opens = self.branch_open
        ended = last[len("end@"):] if last.startswith("end@") else None
        if ended in opens:  # the trainer ends its branches in order, then the run: those up to it have ended
            opens = opens[opens.index(ended) + 1:]
        try:
            for b in opens:  # the branches' first, as the trainer does
                self.writer.write(dataclasses.replace(end, branch=b))
            self.writer.write(end)
        except MetricsWriteError:
            return None
        self.branch_open = []
        self.ended = True
        return end

    def missing_ends(self, status: str, message: str, cause: str = "", tb: str | None = None) -> list[EndRecord]:
        """The end records the run lacks by what this tracker has seen (the branches' first, as the trainer ends
        them), [] when it ended; from then on it counts as ended. For the trainer's own thread, which sees every
        record before it is written."""
        if self.ended:
            return []
        end = EndRecord(status=status, steps=self.last_step, elapsed_s=time.monotonic() - self.t0, message=message,
                        traceback=tb, cause=cause)
        ends = [*(dataclasses.replace(end, branch=b) for b in self.branch_open), end]
        self.ended, self.branch_open = True, []
        return ends

    def close(self) -> None:
        """Release the file; one this run created and never wrote to (the trainer refused to start) is removed."""
        if self.writer is not None:
            self.writer.close()
            try:
                if self.writer.created and self.writer.path.stat().st_size == 0:
                    self.writer.path.unlink()
            except OSError:
                pass


def _died(run: _RunFile, e: BaseException, write, tell) -> None:
    """The trainer's loop raised past its own handling (an exception in a step it ends with its own failed end
    record; this is one in its bookkeeping, or a BaseException): called in the `except` on the trainer's own
    thread, once its loop is gone, so nobody else writes. Writes the end records the run lacks (`write`, the file)
    and tells the viewer (`tell`). A trainer that never began a run was refused (bad data, no CUDA): one failed end
    record says why, to the viewer only (no run in the file to end)."""
    if not run.began:
        tell(_failed(e))
        return
    tb = traceback.format_exc()
    for end in run.missing_ends("failed", f"the trainer stopped on {type(e).__name__}: {e}", "error", tb):
        write(end)
        tell(end)


class ThreadBackend(TrainerSource):
    """The trainer in a thread of this process (tests, screenshots). It dies when its loop raises past its own
    handling: it then writes the end record its run lacks itself, and `death()` names the exception."""

    def __init__(self, config: RunConfig, metrics_path: str | None = None, data: Any = None):
        self.config = config
        self.metrics_path = metrics_path
        self.data = data
        self._records: "queue.Queue[Record]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self._file = _RunFile(metrics_path)
        self.trainer = None
        self._death = ""  # why the thread ended, once it has

    def start(self, config: RunConfig | None = None) -> None:
        from vgtui.engine.trainer import Trainer

        self.config = config or self.config
        self._file.open()
        self._file.began = False  # this trainer's own first run is still to come
        self._death = ""
        from vgtui.engine.trainer import progress_at_most

        # the tracker first, on the trainer's thread: it has seen every record the file holds when the loop dies
        sinks = [self._file.seen, progress_at_most(_file_sink(self._file.writer, self._records.put)),
                 self._records.put]
        self.trainer = Trainer(self.config, sinks, data=self.data, hold=True)
        self._thread = threading.Thread(target=self._main, name="vgtui-trainer", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.trainer.run()
            self._death = "the trainer thread ended (its run was stopped)"
        except BaseException as e:  # noqa: BLE001 - reported to the UI, never lost
            self._death = f"the trainer thread stopped on {type(e).__name__}: {e}"
            _died(self._file, e, _file_sink(self._file.writer, self._records.put), self._records.put)

    def send(self, cmd: Command) -> None:
        if self.trainer is not None:
            self.trainer.send(cmd)

    def get(self, timeout: float | None = None) -> Record | None:
        try:
            rec = self._records.get(timeout=timeout)
        except queue.Empty:
            return None
        return rec

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def death(self) -> str:
        """Why the trainer thread ended, in words (after it ended)."""
        if self.alive:
            return "the trainer thread is still running"
        return self._death or "the trainer thread was never started"

    def ensure_end(self, status: str, message: str, cause: str = "") -> EndRecord | None:
        return self._file.ensure_end(status, message, cause)

    def close(self, message: str = "quit", timeout: float = 2.0, cause: str = "quit") -> None:
        self.send(Stop(message, cause))
        if self._thread is not None:
            self._thread.join(timeout)
        self._file.close()


class _InheritedFd:
    """An open file descriptor handed to the child process (the metrics file, with its lock)."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        return _rebuild_fd, (reduction.DupFd(self.fd),)


def _rebuild_fd(dup) -> int:
    return dup.detach()


def _child_main(config: dict, metrics_path: str | None, metrics_fd: int | None, commands, conn) -> None:
    """Entry point of the trainer process: run the trainer, send every record down the pipe."""
    from vgtui import signals

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C belongs to the viewer, which stops us with a Stop
    viewer_gone = threading.Event()
    trainer = None
    asked: list[Stop] = []  # the Stop the viewer sent: a SIGTERM after it cuts a long step short

    def on_signal(signum, frame):  # SIGTERM, SIGHUP: end the run now, with its end record (once)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        text = f"{asked[0].message} (the step in progress was cut short)" if asked else None
        raise signals.Interrupted(signum, text, cause=asked[0].cause if asked else None)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    def to_viewer(rec: Record) -> None:
        if viewer_gone.is_set():
            return
        try:
            conn.send(rec)
        except (OSError, EOFError, ValueError):  # the viewer died: finish the run with its end record, then exit
            viewer_gone.set()
            if trainer is not None:
                trainer.send(Stop("the viewer process went away", "viewer-gone"))

    writer = MetricsWriter(metrics_path, fd=metrics_fd) if metrics_fd is not None else None
    run = _RunFile(metrics_path)  # what the trainer wrote, tracked on its own side: for `_died`
    run.writer = writer
    raw_sink = _file_sink(writer, to_viewer)
    try:
        from vgtui.engine.trainer import Trainer

        from vgtui.engine.trainer import progress_at_most

        file_sink = progress_at_most(raw_sink)  # progress records: at most 1 a second
        trainer = Trainer(RunConfig.from_dict(config), [run.seen, file_sink, to_viewer], hold=True)

        def pump() -> None:  # commands from the viewer -> the trainer's own thread-safe queue
            while True:
                try:
                    cmd = commands.recv()
                except (EOFError, OSError):  # only the viewer holds the other end: it is gone
                    viewer_gone.set()
                    trainer.send(Stop("the viewer process went away", "viewer-gone"))
                    return
                if isinstance(cmd, Stop):
                    asked.append(cmd)
                trainer.send(cmd)
                if isinstance(cmd, Stop):
                    return

        threading.Thread(target=pump, name="vgtui-commands", daemon=True).start()
        trainer.run()
    except KeyboardInterrupt:  # SIGTERM / SIGHUP: the trainer wrote the end record if a run was going
        pass
    except BaseException as e:  # noqa: BLE001
        _died(run, e, raw_sink, to_viewer)
    finally:
        if metrics_fd is not None:
            os.close(metrics_fd)  # the viewer's copy keeps the lock
        try:
            conn.close()
        except OSError:
            pass


def _context():
    """spawn: measured with bench/tui_cost.py, a trainer forked from a forkserver trained at 0.83 of headless speed
    inside the TUI (5 pairs), a spawned one at 1.04 (3 pairs). `VGTUI_START_METHOD` overrides it, for measurements."""
    method = os.environ.get("VGTUI_START_METHOD", "spawn")
    return mp.get_context(method if method in mp.get_all_start_methods() else "spawn")


class _Launcher:
    """Starts the trainer processes from one thread made before the viewer lowers its own priority. On Linux a
    nice value belongs to a thread and a child inherits the one of the thread that forks it, so a trainer
    restarted later (after one died) runs at the priority the first one had, not at the viewer's."""

    def __init__(self) -> None:
        self._jobs: "queue.Queue[tuple[Any, threading.Event, list]]" = queue.Queue()
        threading.Thread(target=self._run, name="vgtui-launcher", daemon=True).start()

    def _run(self) -> None:
        while True:
            proc, done, error = self._jobs.get()
            try:
                proc.start()
            except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
                error.append(e)
            done.set()

    def start(self, proc) -> None:
        done, error = threading.Event(), []
        self._jobs.put((proc, done, error))
        done.wait()
        if error:
            raise error[0]


class ProcessBackend(TrainerSource):
    """The trainer in a child process (what `vgtui` runs). A child that dies without a word (SIGKILL, out of
    memory) cannot write its end record: `death()` says how it died and `ensure_end` writes the record for it."""

    def __init__(self, config: RunConfig, metrics_path: str | None = None, overwrite: bool = False):
        self.config = config
        self.metrics_path = metrics_path
        self._ctx = _context()
        self._launcher = _Launcher()  # made now: before the viewer lowers its priority (see run_tui)
        self._proc = None
        self._file = _RunFile(metrics_path, overwrite)
        self._outbox: "queue.Queue[Command | None]" = queue.Queue()
        self._cmd_w = None
        self._conn = None
        self.stopped_by_viewer: str | None = None  # how close() had to stop the trainer, if it had to

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, config: RunConfig | None = None) -> None:
        """Start a trainer (again, after one died: with `config`, the configuration the viewer shows)."""
        self.config = config or self.config
        self._file.open()
        cmd_r, self._cmd_w = self._ctx.Pipe(duplex=False)
        self._conn, child_conn = self._ctx.Pipe(duplex=False)
        fd = _InheritedFd(self._file.writer.fd) if self._file.writer else None
        self._proc = self._ctx.Process(target=_child_main, name="vgtui-trainer", daemon=True,
                                       args=(self.config.to_dict(), self.metrics_path, fd, cmd_r, child_conn))
        self._launcher.start(self._proc)
        child_conn.close()
        cmd_r.close()
        self._outbox = queue.Queue()
        threading.Thread(target=self._deliver, args=(self._outbox, self._cmd_w), name="vgtui-send",
                         daemon=True).start()

    @staticmethod
    def _deliver(outbox: "queue.Queue[Command | None]", conn) -> None:
        """Commands go through this thread: a trainer that stopped reading (SIGSTOP) fills the pipe, and then only
        this thread waits, never the UI."""
        while (cmd := outbox.get()) is not None:
            try:
                conn.send(cmd)
            except (OSError, ValueError):
                return

    def send(self, cmd: Command) -> None:
        if self._proc is not None:
            self._outbox.put(cmd)

    def get(self, timeout: float | None = None) -> Record | None:
        if self._conn is None:  # nothing more will come
            if timeout:
                time.sleep(timeout)
            return None
        try:
            if self._conn.poll(timeout):
                rec = self._conn.recv()
                self._file.seen(rec)
                return rec
        except Exception:  # noqa: BLE001 - EOF (the trainer exited), or a message torn by a signal: it is over
            self._conn = None
        return None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def death(self) -> str:
        """Why the trainer process ended, in words (after it ended)."""
        code = self._proc.exitcode if self._proc is not None else None
        if code is None:
            return "the trainer process is still running"
        if code < 0:
            return f"the trainer process was killed by {signal.Signals(-code).name}"
        return f"the trainer process exited with status {code}"

    def ensure_end(self, status: str, message: str, cause: str = "") -> EndRecord | None:
        return self._file.ensure_end(status, message, cause)

    def _drain_until_exit(self, seconds: float) -> None:
        """Wait for the trainer to exit, reading what it still sends (a trainer blocked on a full pipe would never
        see its Stop)."""
        deadline = time.monotonic() + seconds
        while self._proc.is_alive() and (left := deadline - time.monotonic()) > 0:
            if self._conn is None:
                self._proc.join(left)
            else:
                self.get(timeout=min(left, 0.05))

    def close(self, message: str = "quit", timeout: float = 2.0, cause: str = "quit") -> None:
        """Stop the trainer within `timeout` seconds whatever it is doing: Stop (it ends within a step), then
        SIGTERM (a long step is cut), then SIGKILL (a stopped or stuck trainer); the end record is written by the
        trainer, or here when it could not."""
        if self._proc is None:
            return
        self.send(Stop(message, cause))
        scale = timeout / (STOP_WAIT_S + TERM_WAIT_S + KILL_WAIT_S + 0.2)
        self._drain_until_exit(STOP_WAIT_S * scale)
        if self._proc.is_alive():
            self.stopped_by_viewer = "SIGTERM"
            self._proc.terminate()
            self._drain_until_exit(TERM_WAIT_S * scale)
        if self._proc.is_alive():
            self.stopped_by_viewer = "SIGKILL"
            self._proc.kill()
            self._proc.join(KILL_WAIT_S * scale)
        if self.stopped_by_viewer == "SIGKILL":
            self.ensure_end("interrupted", f"{message}: the trainer did not answer (stopped, or stuck in a step), "
                                           "so it was killed", cause="killed")
        elif not self._file.ended and self._proc.exitcode not in (0, None):
            self.ensure_end("interrupted", f"{message}: {self.death()}", cause="killed")
        self._outbox.put(None)
        for c in (self._cmd_w, self._conn):
            try:
                if c is not None:
                    c.close()
            except OSError:
                pass
        self._file.close()
        self._proc = None
