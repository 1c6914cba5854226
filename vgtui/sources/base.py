"""What the viewer reads from: a source of records that may also take commands.

A source yields records (`get`) and says which commands it takes (`commands`): vgtui's own trainer takes them all,
a recorded file none. Its `kind` says what the viewer can do with it, and so which keys the screen offers
(`vgtui.ui.keymap`): "trainer" (a live run that takes commands), "file" (a metrics file, moved through in time,
perhaps still growing) or "stream" (records that arrive once, e.g. standard input). This module imports neither
torch nor textual.
"""

from __future__ import annotations

from typing import ClassVar

from vgtui.core.config import RunConfig
from vgtui.core.records import Command, Fork, Pause, Record, Restart, SetActivation, SetLR, SetSpeedCap, StepOnce, Stop

SOURCE_KINDS = ("trainer", "file", "stream")
TRAINER_COMMANDS: frozenset[type] = frozenset({Pause, StepOnce, SetActivation, SetLR, SetSpeedCap, Restart, Stop, Fork})


class Source:
    """Common interface (see the module docstring)."""

    kind: ClassVar[str] = "trainer"
    commands: ClassVar[frozenset[type]] = frozenset()
    config: RunConfig | None = None
    metrics_path: str | None = None  # the metrics file behind the run on screen, when there is one
    label: str = ""  # what the status line calls the source (a file name), "" for vgtui's own trainer
    why: str = ""  # why the source stopped, when it knows (a stream's end)

    def takes(self, command: type) -> bool:
        return command in self.commands

    def start(self) -> None:
        raise NotImplementedError

    def send(self, cmd: Command) -> None:
        raise NotImplementedError

    def get(self, timeout: float | None = None) -> Record | None:
        raise NotImplementedError

    def close(self, timeout: float = 2.0) -> None:
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        raise NotImplementedError


Backend = Source  # the trainer's sources still say Backend (vgtui.sources.trainer)
