"""What the viewer reads from: the interfaces of its sources, one per way of reading.

- `LiveSource`: records that arrive as a stream. The viewer's bridge folds each one in as it comes (`get`), and
  says the source is gone when `alive` turns false with nothing left to read. `StreamSource` (standard input).
- `TrainerSource(LiveSource)`: vgtui's own trainer, in a thread or a child process: it takes commands (`send`),
  starts again after it died (`start(config)`), says why it died (`death`) and writes the end record its run lacks
  (`ensure_end`), since a dead trainer cannot. `ThreadBackend`, `ProcessBackend` (vgtui.sources.trainer).
- `RecordedSource`: a run read by position from an indexed metrics file, never as a stream: the viewer shows
  `run` (one of `runs`, chosen with `select`), asks for the snapshot it shows, and for a file that is still
  growing asks `poll()` what was appended (a `Change`). `FileSource`, `BranchSource` (vgtui.sources.file).

They are abstract base classes, not Protocols: the viewer decides what to do with a source by `isinstance` on
these types, and a `runtime_checkable` Protocol's isinstance only checks that attributes of those names exist
(duck typing again, and a data attribute such as `follow` is not even that); an ABC is declared by the source
itself and refuses to build one that leaves an abstract method out.

`kind` ("trainer", "stream", "file") stays a class attribute: it picks the key map (vgtui.ui.keymap). This module
imports neither torch nor textual (nor numpy).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from vgtui.core.config import RunConfig
from vgtui.core.records import (Command, EndRecord, EpochRecord, Fork, Pause, Record, Restart, SetActivation, SetLR,
                                SetSpeedCap, StepOnce, Stop)

if TYPE_CHECKING:
    from vgtui.core.metrics import RunIndex

SOURCE_KINDS = ("trainer", "file", "stream")
TRAINER_COMMANDS: frozenset[type] = frozenset({Pause, StepOnce, SetActivation, SetLR, SetSpeedCap, Restart, Stop, Fork})


class Source(ABC):
    """What every source has (see the module docstring)."""

    kind: ClassVar[str] = ""
    commands: ClassVar[frozenset[type]] = frozenset()
    config: RunConfig | None = None
    metrics_path: str | None = None  # the metrics file behind the run on screen, when there is one
    label: str = ""  # what the status line calls the source (a file name), "" for vgtui's own trainer
    why: str = ""  # why the source stopped, when it knows (a stream's end)
    closing: bool = False  # set by whoever closes it (the App, on quit or a signal) first: its end is then no loss

    def takes(self, command: type) -> bool:
        return command in self.commands

    @abstractmethod
    def start(self) -> None:
        """Begin reading (or training)."""

    @abstractmethod
    def close(self, timeout: float = 2.0) -> None:
        """Stop, within `timeout` seconds."""

    @property
    @abstractmethod
    def alive(self) -> bool:
        """Whether more may come."""


class LiveSource(Source):
    """Records as they arrive: `get` returns the next one, or None when none came within `timeout`."""

    kind = "stream"

    @abstractmethod
    def get(self, timeout: float | None = None) -> Record | None:
        ...

    def send(self, cmd: Command) -> None:
        """A command for the producer; a source that takes none refuses it."""
        raise TypeError(f"{self.label or 'this source'} takes no commands ({type(cmd).__name__})")


class TrainerSource(LiveSource):
    """vgtui's own trainer (see the module docstring). `close(message)`: `message` goes in the run's end record."""

    kind = "trainer"
    commands = TRAINER_COMMANDS

    @abstractmethod
    def start(self, config: RunConfig | None = None) -> None:
        """Start a trainer; again after one died, with `config` (the configuration the viewer shows)."""

    @abstractmethod
    def send(self, cmd: Command) -> None:
        ...

    @abstractmethod
    def death(self) -> str:
        """Why the trainer ended, in words, once `alive` is false ("the trainer process was killed by SIGKILL")."""

    @abstractmethod
    def ensure_end(self, status: str, message: str, cause: str = "") -> EndRecord | None:
        """Write the end record the run in the metrics file lacks (its branch B's first), and return it; None when
        the run has one, or there is no file to write. `cause`: one of vgtui.core.records.END_CAUSES."""

    @abstractmethod
    def close(self, message: str = "quit", timeout: float = 2.0, cause: str = "quit") -> None:  # type: ignore[override]
        """Stop the trainer within `timeout` seconds whatever it is doing; `message` and `cause` go in the run's
        end record."""


@dataclass
class Change:
    """What `RecordedSource.poll()` found."""

    new_run: bool = False  # the source now shows another run (the file appeared, a new header, a rewrite)
    new_snapshots: tuple[int, int] | None = None  # (start, stop) indices of the run's new snapshots
    new_epochs: list[EpochRecord] = field(default_factory=list)
    ended: bool = False  # the run's end record arrived
    lost: str = ""  # the writer seems gone without an end record (why, in one line)
    notice: str = ""  # what the reader did since the last poll: damaged lines skipped, the file read again


class RecordedSource(Source):
    """A run read by position from an indexed metrics file; it takes no commands."""

    kind = "file"
    follow: bool = False  # the file may still grow: `poll()` it
    waiting: str = ""  # why there is nothing to show yet (following a file that does not exist yet)

    def start(self) -> None:
        """Nothing to start: the viewer reads the index."""

    @property
    def alive(self) -> bool:
        return True

    @property
    @abstractmethod
    def runs(self) -> list[RunIndex]:
        """The runs the source can show."""

    @property
    @abstractmethod
    def run(self) -> RunIndex | None:
        """The run shown, None before there is one."""

    run_number: int = 0  # 1-based number of the run shown in `runs`; 0 before there is one

    @property
    def notice(self) -> str | None:
        """What the reader skipped or did when it indexed the file (damaged lines), in one line."""
        return None

    @abstractmethod
    def select(self, number: int) -> None:
        """Show run `number` (1-based, clamped)."""

    @abstractmethod
    def poll(self) -> Change:
        """What was appended since the last poll (a followed file)."""


__all__ = ["Change", "LiveSource", "RecordedSource", "SOURCE_KINDS", "Source", "TRAINER_COMMANDS", "TrainerSource"]
