"""The Textual app: it wires one source (or two files) to the main screen, and closes them on the way out.

`run_tui(config)` trains in a child process and shows it live; `run_viewer(sources)` shows metrics files or
standard input (`vgtui replay`, `vgtui follow`). The screen (`vgtui.ui.viewer.MainScreen`) owns the layout, the
keys and what they do. This module never imports torch: the trainer runs wherever its source puts it (a
spawned child process for `vgtui`, a thread in tests).
"""

from __future__ import annotations

import os
from typing import Iterable

from textual.app import App, SystemCommand
from textual.screen import Screen

from vgtui.core.config import RunConfig
from vgtui.sources.base import Source
from vgtui.ui import keymap
from vgtui.ui.viewer import MainScreen

DEFAULT_FPS = 2.0  # panels change with snapshots (~1/s at the default --probe-every); 2 frames/s keeps up
UI_NICE = int(os.environ.get("VGTUI_UI_NICE", "10"))  # the UI process's niceness after the trainer started


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

    def get_default_screen(self) -> Screen:
        if self.start_source:
            for s in self.sources:
                s.start()
        return MainScreen(self.sources, fps=self.fps, screenshot_dir=self.screenshot_dir)

    @property
    def main(self) -> MainScreen:
        """The main screen (under the help or failure screen when one is open)."""
        return next(s for s in self.screen_stack if isinstance(s, MainScreen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's own, then every key of the key map that works with this source."""
        yield from super().get_system_commands(screen)
        main = self.main
        for k in keymap.for_kind(main.kind):
            if k.palette:
                keys = k.help_keys or k.display or k.keys
                yield SystemCommand(k.palette, f"{k.description} ({keys})",
                                    lambda action=k.action: self.run_action(action, main))

    def close_sources(self, timeout: float = 1.5) -> None:
        if self.closing_sources:
            return
        self.closing_sources = True
        for w in self.workers:
            w.cancel()
        for s in self.sources:
            try:
                s.close(timeout=timeout)
            except Exception:  # noqa: BLE001 - quitting must not fail
                pass

    def on_unmount(self) -> None:
        self.close_sources()


def run_tui(config: RunConfig, metrics: str | None = None, fps: float = DEFAULT_FPS) -> int:
    """Train `config` in a child process and show it live; returns the exit code (0 on q / ctrl+c)."""
    from vgtui.sources.trainer import ProcessBackend

    source = ProcessBackend(config, metrics)
    # Start the child before Textual takes over stdout/stderr: multiprocessing's resource tracker passes
    # sys.stderr's file descriptor to its helper, and under Textual that is -1 ("bad value(s) in fds_to_keep").
    # It also gets torch importing while the UI starts.
    source.start()
    # Then give the trainer the CPU first: torch's intra-op threads wait for each other at every op, so each
    # time the UI takes a core a trainer with one thread per core stalls as a whole. At a lower priority the UI
    # runs in the trainer's gaps (it needs ~10% of one core; keys still answer within a frame).
    if UI_NICE:
        try:
            os.nice(UI_NICE)
        except OSError:
            pass
    return run_app(VgtuiApp(source, fps=fps, start_source=False))


def run_app(app: VgtuiApp) -> int:
    try:
        rc = app.run()
    finally:
        app.close_sources(timeout=1.5)
    return int(rc or 0) if app.return_code is None else int(app.return_code)


__all__ = ["DEFAULT_FPS", "VgtuiApp", "run_app", "run_tui"]
