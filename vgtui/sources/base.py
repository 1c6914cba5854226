"""What the viewer reads from: a source of records that may also take commands.

A source yields records (`get`) and, where it can, takes commands (`send`): vgtui's own trainer takes them all,
a recorded file none. This module imports neither torch nor textual.
"""

from __future__ import annotations

from vgtui.core.config import RunConfig
from vgtui.core.records import Command, Record


class Backend:
    """Common interface (see the module docstring)."""

    config: RunConfig

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
