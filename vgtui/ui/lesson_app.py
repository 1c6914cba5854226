"""The app of `vgtui lesson`: the live trainer in a child process, shown by the lesson screen."""

from __future__ import annotations

import sys

from textual.screen import Screen

from vgtui.core.lesson import Lesson
from vgtui.core.records import Pause
from vgtui.sources.base import Source
from vgtui.ui.app import DEFAULT_FPS, VgtuiApp, run_app, ui_nice
from vgtui.ui.screens.lesson import LessonScreen


class LessonApp(VgtuiApp):
    def __init__(self, source: Source, lesson: Lesson, **kw):
        super().__init__(source, **kw)
        self.lesson = lesson

    def get_default_screen(self) -> Screen:
        if self.start_source:
            for s in self.sources:
                s.start()
        return LessonScreen(self.sources, self.lesson, fps=self.fps, screenshot_dir=self.screenshot_dir)


def run_lesson(lesson: Lesson, metrics: str | None = None, fps: float = DEFAULT_FPS, overwrite: bool = False) -> int:
    """The lesson in the UI, its trainer in a child process (paused until the first step runs)."""
    import os

    from vgtui.core.writer import MetricsPathError
    from vgtui.sources.trainer import ProcessBackend

    source = ProcessBackend(lesson.steps[0].config, metrics, overwrite=overwrite)
    try:
        source.start()
    except MetricsPathError as e:
        print(f"vgtui lesson: error: {e}", file=sys.stderr)
        return 2
    source.send(Pause(True))  # nothing trains before the class has seen the first step
    nice, _ = ui_nice()
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    return run_app(LessonApp(source, lesson, fps=fps, start_source=False))
