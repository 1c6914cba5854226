"""One shutdown path for every signal: what each one means, the exit status it gives, and a guard that turns the
first one into an exception and ignores the rest (a second Ctrl+C must not tear the clean-up that writes the end
record). Standard library only: the UI, the headless run and the trainer's child process all use it.

Exit statuses follow the convention 128 + signal: 130 SIGINT (Ctrl+C), 129 SIGHUP (the terminal went away, as when
an SSH connection drops), 143 SIGTERM; 141 when standard output was closed (a broken pipe, as with `| head`).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
BROKEN_PIPE_STATUS = 128 + signal.SIGPIPE

MESSAGES = {
    signal.SIGINT: "interrupted by Ctrl+C (SIGINT)",
    signal.SIGTERM: "terminated (SIGTERM)",
    signal.SIGHUP: "hangup: the terminal went away (SIGHUP)",
}


# The end record's cause for each (vgtui.core.records.END_CAUSES)
CAUSES = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hangup"}


def message(signum: int) -> str:
    return MESSAGES.get(signum, f"stopped by signal {signal.Signals(signum).name}")


def cause_of(signum: int) -> str:
    """The end record's cause for a signal."""
    return CAUSES.get(signum, "interrupted")


def exit_status(signum: int) -> int:
    return 128 + int(signum)


class Interrupted(KeyboardInterrupt):
    """A signal (or a closed output) that ends the run: `message` goes in the end record, `status` is the exit
    status. A KeyboardInterrupt, so everything that cleans up after Ctrl+C cleans up after these too."""

    def __init__(self, signum: int | None = None, text: str | None = None, status: int | None = None,
                 cause: str | None = None):
        self.signum = signum
        self.message = text or (message(signum) if signum is not None else "interrupted")
        self.cause = cause or (cause_of(signum) if signum is not None else "interrupted")
        self.status = status if status is not None else (exit_status(signum) if signum is not None else 130)
        super().__init__(self.message)


def status_of(exc: BaseException) -> int:
    return getattr(exc, "status", 130)


_ACTIVE: list[list[int]] = []  # the signals each raising() now active has seen, innermost last


@contextmanager
def raising(signals: tuple[int, ...] = HANDLED) -> Iterator[list[int]]:
    """While inside: the first of `signals` raises Interrupted (in the main thread, between bytecodes); any later
    one is only recorded in the yielded list, so the clean-up it interrupts can finish. The old handlers come
    back on leaving, unless a signal came: then they stay ignored while the process exits. The exception can be
    lost in a library that takes it for another (see `pending`): the trainer checks `pending()` between steps."""
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield seen
        return

    def handler(signum, frame):
        seen.append(signum)
        if len(seen) == 1:
            raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in signals}
    _ACTIVE.append(seen)
    try:
        yield seen
    finally:  # after a signal the process is ending: a later one must not interrupt its exit (atexit, flushes)
        for i in reversed(range(len(_ACTIVE))):  # this list itself, not an equal one (remove() compares values)
            if _ACTIVE[i] is seen:
                del _ACTIVE[i]
                break
        for s, h in old.items():
            signal.signal(s, signal.SIG_IGN if seen else h)


def pending() -> int | None:
    """The first signal the innermost active raising() has seen, or None. Its Interrupted normally ends what was
    running at once; but a library can swallow it. Seen with torch 2.14 (a Ctrl+C 1.4 s after `vgtui --headless`
    started, 1 time in 90): the first optimiser imports torch._dynamo, which imports triton; the signal's exception,
    raised while triton's compiled module loaded, came back as an ImportError, which torch's has_triton_package()
    took for "no triton", and the run went on to its end with exit status 0. So the trainer checks this between
    steps and raises the Interrupted again."""
    return _ACTIVE[-1][0] if _ACTIVE and _ACTIVE[-1] else None


def ignore_after_first(signals: tuple[int, ...] = HANDLED) -> None:
    """From now on these signals are ignored (during the last clean-up before exit)."""
    if threading.current_thread() is threading.main_thread():
        for s in signals:
            signal.signal(s, signal.SIG_IGN)


def calling(fn: Callable[[int], None], signals: tuple[int, ...] = HANDLED) -> dict[int, object]:
    """Install `fn(signum)` as the handler of `signals`; returns the old handlers."""
    return {s: signal.signal(s, lambda signum, frame: fn(signum)) for s in signals}
