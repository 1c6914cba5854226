"""The Textual app: it wires one source (or two files) to the main screen, and closes them on the way out.

`run_tui(config)` trains in a child process and shows it live; `run_viewer(sources)` shows metrics files or
standard input (`vgtui replay`, `vgtui follow`). The screen (a `vgtui.ui.screens.RunScreen` for the source's kind) owns the layout, the
keys and what they do. This module never imports torch: the trainer runs wherever its source puts it (a
spawned child process for `vgtui`, a thread in tests).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Iterable

from textual.app import App, SystemCommand
from textual.screen import Screen

from vgtui.core.config import RunConfig
from vgtui.sources.base import Source, TrainerSource
from vgtui.ui import keymap
from vgtui.ui.state import shown
from vgtui.ui.messages import StartupRefused
from vgtui.ui.screens import RunScreen, screen_for

DEFAULT_FPS = 2.0  # panels change with snapshots (~1/s at the default --probe-every); 2 frames/s keeps up
RESTORE_TERMINAL = "\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l\x1b[?25h\x1b[?1049l"


def ui_nice(env: dict[str, str] = os.environ) -> tuple[int, str | None]:  # type: ignore[assignment]
    """The UI process's niceness after the trainer started ($VGTUI_UI_NICE, default 10), and a warning for a
    value that is not a whole number from 0 to 19 (the default is used then)."""
    raw = env.get("VGTUI_UI_NICE", "10")
    try:
        value = int(raw)
        if 0 <= value <= 19:
            return value, None
    except ValueError:
        pass
    return 10, f"VGTUI_UI_NICE={raw!r} is not a whole number from 0 to 19; using 10"


class VgtuiApp(App[int]):
    CSS_PATH = "vgtui.tcss"
    TITLE = "vgtui"
    ENABLE_COMMAND_PALETTE = True

    def __init__(self, source: Source | list[Source], fps: float = DEFAULT_FPS, screenshot_dir: str | None = None,
                 start_source: bool = True):
        super().__init__()
        self.sources = source if isinstance(source, list) else [source]
        self.source = self.sources[0]
        self.fps = fps
        self.screenshot_dir = screenshot_dir
        self.start_source = start_source
        self.closing_sources = False
        self.exit_message = "quit"  # why the viewer ended the run: the trainer's end record says it
        self.exit_cause = "quit"  # and its cause (vgtui.core.records.END_CAUSES)
        self.startup_error: str | None = None  # the trainer refused to start: said on the terminal after the UI

    def get_default_screen(self) -> Screen:
        if self.start_source:
            for s in self.sources:
                s.start()
        return screen_for(self.sources, fps=self.fps, screenshot_dir=self.screenshot_dir)

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = True) -> None:
        """Every notification as plain text: messages carry strings from metrics files and streams (a layer name,
        an end message), which must never be read as markup nor reach the terminal as control characters."""
        super().notify(shown(message), title=shown(title), severity=severity, timeout=timeout, markup=False)

    @property
    def main(self) -> RunScreen:
        """The run screen (under the help or failure screen when one is open)."""
        return next(s for s in self.screen_stack if isinstance(s, RunScreen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's own, then every key of the key map that works with this source."""
        yield from super().get_system_commands(screen)
        main = self.main
        for k in keymap.for_kind(main.KIND):
            if k.palette:
                keys = k.help_keys or k.display or k.keys
                yield SystemCommand(k.palette, f"{k.description} ({keys})",
                                    lambda action=k.action: self.run_action(action, main))
        for title, what, action, sources in keymap.PALETTE_ONLY:
            if main.KIND in sources:
                yield SystemCommand(title, what, lambda action=action: self.run_action(action, main))

    def close_sources(self, timeout: float = 1.5) -> None:
        """Stop the sources: the trainer within `timeout` whatever it is doing (see ProcessBackend.close), with
        `exit_message` in its end record."""
        if self.closing_sources:
            return
        self.closing_sources = True
        for w in self.workers:
            w.cancel()
        for s in self.sources:
            s.closing = True
        for s in self.sources:
            try:
                if isinstance(s, TrainerSource):
                    s.close(self.exit_message, timeout=timeout, cause=self.exit_cause)
                else:
                    s.close(timeout=timeout)
            except Exception:  # noqa: BLE001 - quitting must not fail
                pass

    def on_startup_refused(self, message: StartupRefused) -> None:
        """The trainer refused to start: the UI goes, and run_app says why on the terminal (exit 2)."""
        self.startup_error = message.message
        self.close_sources(timeout=1.5)
        self.exit(2)

    def on_unmount(self) -> None:
        self.close_sources()


def _exit_anyway(status: int, after: float = 2.0) -> None:
    """If Textual has not left within `after` seconds of a signal, give the terminal back and exit."""
    time.sleep(after)
    try:
        os.write(sys.__stdout__.fileno(), RESTORE_TERMINAL.encode())
    except (OSError, ValueError, AttributeError):
        pass
    os._exit(status)


def run_tui(config: RunConfig, metrics: str | None = None, fps: float = DEFAULT_FPS, overwrite: bool = False) -> int:
    """Train `config` in a child process and show it live; returns the exit status: 0 on q / ctrl+c, 128 + signal
    when a signal ended it (129 SIGHUP: the terminal went away; 143 SIGTERM), 2 when the trainer or the metrics
    file was refused."""
    from vgtui.core.writer import MetricsPathError
    from vgtui.sources.trainer import ProcessBackend

    source = ProcessBackend(config, metrics, overwrite=overwrite)
    # Start the child before Textual takes over stdout/stderr: multiprocessing's helpers pass sys.stderr's file
    # descriptor on, and under Textual that is -1 ("bad value(s) in fds_to_keep"). It also gets torch importing
    # while the UI starts.
    try:
        source.start()
    except MetricsPathError as e:  # another run took the file since the check
        print(f"vgtui: error: {e}", file=sys.stderr)
        return 2
    # Then give the trainer the CPU first: torch's intra-op threads wait for each other at every op, so each
    # time the UI takes a core a trainer with one thread per core stalls as a whole. At a lower priority the UI
    # runs in the trainer's gaps (it needs ~10% of one core; keys still answer within a frame).
    nice, warning = ui_nice()
    if warning:
        print(f"vgtui: warning: {warning}", file=sys.stderr)
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    return run_app(VgtuiApp(source, fps=fps, start_source=False))


def run_app(app: VgtuiApp) -> int:
    """Run the app with one shutdown path for every signal: SIGTERM, SIGHUP (the terminal went away) and a SIGINT
    from kill end the run with its end record first (the terminal may be gone), then leave Textual, which gives
    the terminal back where there still is one."""
    import asyncio

    from vgtui import signals

    got: list[int] = []

    def on_signal(signum: int) -> None:
        if got:
            return
        got.append(signum)
        status = signals.exit_status(signum)
        app.exit_message = signals.message(signum)
        app.exit_cause = signals.cause_of(signum)
        app.close_sources()
        if signum == signal.SIGHUP:  # the terminal is gone: nothing to restore, and Textual would wait on it
            os._exit(status)
        loop = asyncio.events._get_running_loop()
        if loop is not None:
            loop.call_soon_threadsafe(app.exit, status)
        threading.Thread(target=_exit_anyway, args=(status,), daemon=True).start()

    old = signals.calling(on_signal)
    rc, crashed = None, None
    try:
        rc = app.run()
    except Exception as e:  # noqa: BLE001 - e.g. a terminal that went away mid-write: the run still ends properly
        crashed = e
    finally:
        app.close_sources(timeout=1.5)
        for s, h in old.items():
            signal.signal(s, signal.SIG_IGN if got else h)
    if got:
        return signals.exit_status(got[0])
    if app.startup_error:
        print(f"vgtui: error: {app.startup_error}", file=sys.stderr)
        return 2
    if crashed is not None:
        print(f"vgtui: error: the terminal UI stopped: {type(crashed).__name__}: {crashed}", file=sys.stderr)
        return 1
    return int(rc or 0) if app.return_code is None else int(app.return_code)


__all__ = ["DEFAULT_FPS", "VgtuiApp", "run_app", "run_tui"]
