"""A source that plays recorded records as if a trainer sent them (no training): deterministic screens of the
live UI for snapshot tests."""

from __future__ import annotations

import json
import queue
from pathlib import Path

from vgtui.sources.base import TRAINER_COMMANDS, LiveSource
from vgtui.core.config import RunConfig
from vgtui.core.records import Command, Record, record_from_json

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> list[Record]:
    with open(FIXTURES / f"{name}.jsonl") as f:
        return [record_from_json(json.loads(line)) for line in f if line.strip()]


class ReplayBackend(LiveSource):
    """Yields the given records once, then nothing; remembers the commands it was sent. A live source with the
    trainer's keys, but no trainer behind it to die (not a TrainerSource)."""

    kind = "trainer"
    commands = TRAINER_COMMANDS

    def __init__(self, records: list[Record], config: RunConfig | None = None):
        run = records[0]
        self.config = config or RunConfig.from_dict(run.config)  # type: ignore[attr-defined]
        self._q: "queue.Queue[Record]" = queue.Queue()
        self._records = records
        self.sent: list[Command] = []
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True
        for r in self._records:
            self._q.put(r)

    def feed(self, rec: Record) -> None:
        self._q.put(rec)

    def send(self, cmd: Command) -> None:
        self.sent.append(cmd)

    def get(self, timeout: float | None = None) -> Record | None:
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self, message: str = "quit", timeout: float = 2.0, cause: str = "quit") -> None:
        self.closed = True

    @property
    def alive(self) -> bool:
        return not self.closed
