"""A key answers at once: the status line redraws when the key is handled, not at the next frame. The app runs at
0.2 frames a second (a frame every 5 s), so the frame timer cannot be what shows the answer: this test fails when
the screen's immediate status update (`RunScreen._status_now`) does nothing."""

from __future__ import annotations

from .conftest import SMALL, text_of, wait_for
from vgtui.core.records import SetSpeedCap
from vgtui.sources.trainer import ThreadBackend
from vgtui.ui.widgets import StatusBar


async def test_a_key_answers_before_the_next_frame(digits, tmp_path):
    from vgtui.ui.app import VgtuiApp

    backend = ThreadBackend(SMALL, str(tmp_path / "metrics.jsonl"), data=digits)
    backend.start()
    backend.send(SetSpeedCap(20.0))
    app = VgtuiApp(backend, fps=0.2, screenshot_dir=str(tmp_path), start_source=False)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            status = app.main.query_one(StatusBar)
            await wait_for(pilot, lambda: "▶ running" in text_of(status), what="the first frame")
            frames = app.main.frames
            await pilot.press("space")
            now = text_of(status)
            assert "⏸ paus" in now and "▶ running" not in now, now  # "pausing…", or "paused" if already answered
            await pilot.press("left_square_bracket")  # a steps/s cap: its notice, at once too
            now = text_of(status)
            assert "speed cap:" in now and "steps/s" in now, now
            assert app.main.frames == frames  # no frame redrew meanwhile: the answers came with the keys
    finally:
        backend.close(2.0)
