"""The main screen with deterministic data (recorded real runs replayed, no live training): snapshots at 80x24
and 120x40, the small-terminal message, NO_COLOR, and the architecture rule that the UI never imports torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vgtui.ui import charts
from vgtui.ui.app import VgtuiApp
from vgtui.ui.widgets import loss_figure

from .conftest import status_shows, text_of, wait_for
from .replay import ReplayBackend, load


def replay_app(name: str) -> VgtuiApp:
    return VgtuiApp(ReplayBackend(load(name)), fps=4)


async def settle(pilot) -> None:
    """The run to its end on screen: the status says so, and every panel has drawn its last snapshot."""
    app = pilot.app
    await wait_for(pilot, lambda: app.main.state.end is not None, what="the replay to finish")
    await status_shows(pilot, "■ ")
    app.clear_notifications()
    await wait_for(pilot, app.main.up_to_date, what="every panel's last frame")
    await pilot.pause(0.1)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_main_screen_sigmoid(snap_compare, size):
    assert snap_compare(replay_app("sigmoid"), terminal_size=size, run_before=settle)


def test_main_screen_diverged(snap_compare):
    assert snap_compare(replay_app("relu-diverged"), terminal_size=(120, 40), run_before=settle)


def test_histogram_view(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("tab")
        grid = pilot.app.main.query_one("#hist-grid")
        await wait_for(pilot, lambda: grid.renders > 0 and pilot.app.main.up_to_date(), what="the histograms")
        await pilot.pause(0.1)

    assert snap_compare(replay_app("sigmoid"), terminal_size=(120, 40), run_before=run_before)


async def test_reflows_on_resize_and_asks_for_80x24():
    app = replay_app("sigmoid")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        grads = app.main.query_one("#grads")
        wide = grads.size.width
        await pilot.resize_terminal(200, 60)
        await pilot.pause(0.2)
        assert grads.size.width > wide
        assert "fc6" in text_of(grads)
        await pilot.resize_terminal(70, 20)
        await pilot.pause(0.2)
        msg = app.main.query_one("#too-small")
        assert msg.display and "at least 80x24" in str(msg.render())
        assert not app.main.query_one("#views").display
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        assert not app.screen.has_class("too-small")
        await status_shows(pilot, "VANISHING")


async def test_no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = replay_app("sigmoid")
    assert app.no_color
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert "\x1b[" not in loss_figure(app.main.run_view(), 60, 16)
        assert "\x1b[" not in charts.act_hist(app.main.state.snap.layers[0].act_hist, 40, 3, 33, colour=False)


def test_ui_never_imports_torch():
    code = ("import sys; import vgtui.ui.app, vgtui.ui.screens, vgtui.ui.widgets, vgtui.ui.charts, vgtui.ui.screens; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
