"""Every message the trainer bridge posts to the app (one module, as in Toolong).

The bridge (a thread worker) folds each record into the app's RunState first, then posts one of these with
`post_message` (thread-safe, never blocks the worker) for the records the app must react to. Snapshots and epoch
records need no message: the frame timer redraws the panels whose data in RunState changed.
"""

from __future__ import annotations

from textual.message import Message

from vgtui.core.records import EndRecord, EventRecord, NoticeRecord, RunRecord, StatusRecord


class RunStarted(Message, bubble=False):
    def __init__(self, run: RunRecord) -> None:
        super().__init__()
        self.run = run


class LiveChange(Message, bubble=False):
    def __init__(self, event: EventRecord) -> None:
        super().__init__()
        self.event = event


class RunEnded(Message, bubble=False):
    def __init__(self, end: EndRecord) -> None:
        super().__init__()
        self.end = end


class TrainerLost(Message, bubble=False):
    """The backend stopped without saying why (its process died)."""


class Acknowledged(Message, bubble=False):
    """The trainer paused or resumed (the screen shows it from this, not from the key)."""

    def __init__(self, status: StatusRecord) -> None:
        super().__init__()
        self.status = status


class TrainerNotice(Message, bubble=False):
    """Something to show that is not run data: e.g. the metrics file could not be written any more."""

    def __init__(self, notice: NoticeRecord) -> None:
        super().__init__()
        self.notice = notice
