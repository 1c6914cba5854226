"""Every message a live source's bridge posts to the screen (one module, as in Toolong).

The bridge (a thread worker) folds each record into the screen's RunState first, then posts one of these with
`post_message` (thread-safe, never blocks the worker) for the records the screen must react to. Snapshots and
epoch records need no message: the frame timer redraws the panels whose data in RunState changed.
"""

from __future__ import annotations

from textual.message import Message

from vgtui.core.records import EndRecord, EventRecord, NoticeRecord, RunRecord, StatusRecord


class RunStarted(Message, bubble=False):
    """A run header: `before` is the configuration that ran until then (live changes included), None at first."""

    def __init__(self, run: RunRecord, before=None) -> None:
        super().__init__()
        self.run = run
        self.before = before


class LiveChange(Message, bubble=False):
    def __init__(self, event: EventRecord) -> None:
        super().__init__()
        self.event = event


class RunEnded(Message, bubble=False):
    def __init__(self, end: EndRecord) -> None:
        super().__init__()
        self.end = end


class SourceLost(Message, bubble=False):
    """The source stopped without an end record (the trainer's process died, standard input closed)."""

    def __init__(self, why: str = "") -> None:
        super().__init__()
        self.why = why


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


class ForkStarted(Message, bubble=False):
    """Branch B's run header arrived: `state` is B's, already holding it; `before`: the previous B's configuration
    (a forked run that restarted), else None."""

    def __init__(self, state, run: RunRecord, before=None) -> None:
        super().__init__()
        self.state = state
        self.run = run
        self.before = before


class ForkEnded(Message, bubble=False):
    """Branch B's end record arrived."""

    def __init__(self, end: EndRecord) -> None:
        super().__init__()
        self.end = end


class StartupRefused(Message):
    """The trainer refused to start (no CUDA, data it cannot read): the App says it on the terminal after the UI and
    exits 2. Posted by the live screen; bubbles to the App."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message
