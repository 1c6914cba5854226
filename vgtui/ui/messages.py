"""Every message the trainer bridge posts to the app (one module, as in Toolong).

The bridge (a thread worker) folds each record into the app's RunState first, then posts one of these with
`post_message` (thread-safe, never blocks the worker). Snapshots come often, so a newer `Snapshotted` replaces
one still waiting in the queue: the state already holds every point, the message only says "redraw".
"""

from __future__ import annotations

from textual.message import Message

from vgtui.engine.records import EndRecord, EpochRecord, EventRecord, RunRecord, Snapshot


class Snapshotted(Message, bubble=False):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Snapshotted)


class RunStarted(Message, bubble=False):
    def __init__(self, run: RunRecord) -> None:
        super().__init__()
        self.run = run


class EpochEnded(Message, bubble=False):
    def __init__(self, epoch: EpochRecord) -> None:
        super().__init__()
        self.epoch = epoch


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
