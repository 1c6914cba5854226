"""The screens: a run screen for each kind of source, and the dialogs over them.

- base.py: `RunScreen`, what every mode has (layout, view options, frame timer, the common keys)
- live.py: `LiveScreen` (a stream of records) and `TrainerScreen` (vgtui's trainer, commanded; the fork)
- replay.py: `ReplayScreen` (a recorded file under a cursor, played, followed)
- dialogs.py: the key help and the trainer failure dialog
"""

from __future__ import annotations

from vgtui.sources.base import Source
from vgtui.ui.screens.base import RunScreen
from vgtui.ui.screens.dialogs import FailureScreen, HelpScreen
from vgtui.ui.screens.live import LiveScreen, TrainerScreen
from vgtui.ui.screens.replay import ReplayScreen

# the screen for a source's kind (the key map's kinds: vgtui.ui.keymap)
SCREENS: dict[str, type[RunScreen]] = {s.KIND: s for s in (TrainerScreen, LiveScreen, ReplayScreen)}


def screen_for(sources: list[Source], fps: float = 2.0, screenshot_dir: str | None = None) -> RunScreen:
    """The run screen that shows these sources (the first one's kind chooses)."""
    return SCREENS[sources[0].kind](sources, fps=fps, screenshot_dir=screenshot_dir)


__all__ = ["FailureScreen", "HelpScreen", "LiveScreen", "ReplayScreen", "RunScreen", "SCREENS", "TrainerScreen",
           "screen_for"]
