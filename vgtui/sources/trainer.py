"""Backends: a trainer running somewhere else, seen as a stream of records and a sink for commands.

The UI drives a backend; it never imports torch. Two kinds, one interface:

- `ProcessBackend(config)`: the trainer in a child process (spawned, so the UI process never imports torch).
  The UI's pure-Python rendering then cannot stall training through the GIL. This is what `vgtui` uses.
- `ThreadBackend(config)`: the trainer in a thread of this process (tests, the library API).

    backend.start()
    backend.send(SetActivation("tanh"))
    rec = backend.get(timeout=0.1)     # a Record, or None when none came in time
    backend.close()                    # asks the trainer to stop, waits (bounded), cleans up

Both run the trainer with hold=True: a run that ends waits for a Restart or a Stop. A trainer that fails to start
(bad data, say) yields an EndRecord(status="failed") with the message, and nothing else.

This module imports neither torch nor textual at import time.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import traceback
from typing import Any

from vgtui.core.config import RunConfig
from vgtui.core.records import Command, EndRecord, Record, Stop
from vgtui.sources.base import TRAINER_COMMANDS, Backend


def _failed(e: BaseException) -> EndRecord:
    return EndRecord(status="failed", steps=0, elapsed_s=0.0, message=f"{type(e).__name__}: {e}",
                     traceback=traceback.format_exc())


class ThreadBackend(Backend):
    commands = TRAINER_COMMANDS

    def __init__(self, config: RunConfig, metrics_path: str | None = None, data: Any = None):
        self.config = config
        self.metrics_path = metrics_path
        self.data = data
        self._records: "queue.Queue[Record]" = queue.Queue()
        self._thread: threading.Thread | None = None
        self.trainer = None

    def start(self) -> None:
        from vgtui.core.writer import MetricsWriter
        from vgtui.engine.trainer import Trainer

        sinks = [self._records.put]
        self._writer = MetricsWriter(self.metrics_path) if self.metrics_path else None
        if self._writer:
            sinks.insert(0, self._writer.write)
        self.trainer = Trainer(self.config, sinks, data=self.data, hold=True)
        self._thread = threading.Thread(target=self._main, name="vgtui-trainer", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.trainer.run()
        except BaseException as e:  # noqa: BLE001 - reported to the UI, never lost
            if self.trainer.last_end is None or self.trainer.last_end.status != "failed":
                self._records.put(_failed(e))
        finally:
            if self._writer:
                self._writer.close()

    def send(self, cmd: Command) -> None:
        if self.trainer is not None:
            self.trainer.send(cmd)

    def get(self, timeout: float | None = None) -> Record | None:
        try:
            return self._records.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 2.0) -> None:
        self.send(Stop())
        if self._thread is not None:
            self._thread.join(timeout)


def _child_main(config: dict, metrics_path: str | None, commands: "mp.Queue", conn) -> None:
    """Entry point of the trainer process: run the trainer, send every record down the pipe."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the UI owns Ctrl+C and stops us with a Stop command
    writer = None
    try:
        from vgtui.core.writer import MetricsWriter
        from vgtui.engine.trainer import Trainer

        sinks = [conn.send]
        if metrics_path:
            writer = MetricsWriter(metrics_path)
            sinks.insert(0, writer.write)
        trainer = Trainer(RunConfig.from_dict(config), sinks, hold=True)

        def pump() -> None:  # commands from the UI process -> the trainer's own thread-safe queue
            while True:
                cmd = commands.get()
                trainer.send(cmd)
                if isinstance(cmd, Stop):
                    return

        threading.Thread(target=pump, name="vgtui-commands", daemon=True).start()
        trainer.run()
    except BaseException as e:  # noqa: BLE001
        try:
            conn.send(_failed(e))
        except Exception:
            pass
    finally:
        if writer:
            writer.close()
        conn.close()


class ProcessBackend(Backend):
    commands = TRAINER_COMMANDS

    def __init__(self, config: RunConfig, metrics_path: str | None = None):
        self.config = config
        self.metrics_path = metrics_path
        self._ctx = mp.get_context("spawn")
        self._proc = None

    def start(self) -> None:
        self._commands = self._ctx.Queue()
        self._conn, child_conn = self._ctx.Pipe(duplex=False)
        self._proc = self._ctx.Process(target=_child_main, name="vgtui-trainer", daemon=True,
                                       args=(self.config.to_dict(), self.metrics_path, self._commands, child_conn))
        self._proc.start()
        child_conn.close()

    def send(self, cmd: Command) -> None:
        if self._proc is not None:
            self._commands.put(cmd)

    def get(self, timeout: float | None = None) -> Record | None:
        try:
            if self._conn.poll(timeout):
                return self._conn.recv()
        except (EOFError, OSError):
            pass
        return None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def close(self, timeout: float = 2.0) -> None:
        if self._proc is None:
            return
        self.send(Stop())
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(1.0)
        self._commands.close()
        self._conn.close()
