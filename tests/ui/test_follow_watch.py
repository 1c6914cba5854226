"""The follow view on a user's model (issue 10) and on small terminals (issue 8).

- A real `vgtui.watch` run in another thread (a small CNN on random images) is followed live from an empty path:
  its own layer names appear, then new snapshots, then its end.
- torchvision's resnet18 (tests/ui/fixtures/resnet18.jsonl, written by tests/ui/make_fixture.py: 21 Conv/Linear
  layers, some with no activation, no known length, the user's `acc`) followed at 120x40 and 80x24, and its layer
  table at 80x24 (snapshot tests).
- The footer keeps `q` and `?` at 80x24 and 120x40; the help screen fits and scrolls at 80x24.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from vgtui.sources.file import FileSource, StreamSource
from vgtui.ui import keymap
from vgtui.ui.app import VgtuiApp
from vgtui.ui.widgets import BarRow, abbreviate, group_rows

from .conftest import shows, status_shows, text_of, wait_for
from .make_fixture import train_watched

RESNET = Path(__file__).parent / "fixtures" / "resnet18.jsonl"


def screen_lines(app) -> list[str]:
    """The whole screen as the terminal shows it, line by line (every widget composited)."""
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


def follow_app(path) -> VgtuiApp:
    src = FileSource(str(path), follow=True)
    src.open()
    return VgtuiApp([src], fps=8)


def watched_cnn(path: Path, steps: int, go: threading.Event, done: threading.Event, every: int = 2) -> None:
    """A small CNN (Conv, ReLU, pool, Conv, ReLU, Linear) trained with vgtui.watch on random images, slowly
    enough (20 ms a step) for the viewer to see the snapshots come one by one."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("stem", nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2)))
    model.add_module("body", nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Flatten()))
    model.add_module("head", nn.Linear(8 * 3 * 3, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(16, 1, 12, 12), torch.randint(0, 10, (16,))
    go.wait(30)
    try:
        train_watched(model, opt, x, y, path, steps, every, pause=0.02)
    finally:
        done.set()


async def test_follows_a_watched_model_in_another_thread(tmp_path):
    path = tmp_path / "cnn.jsonl"
    go, done = threading.Event(), threading.Event()
    trainer = threading.Thread(target=watched_cnn, args=(path, 60, go, done), daemon=True)
    trainer.start()
    app = follow_app(path)  # the file does not exist yet: the view waits for it
    async with app.run_test(size=(120, 40)) as pilot:
        main = app.main
        await status_shows(pilot, "waiting for")
        go.set()
        grads = main.query_one("#grads")
        for name in ("stem.0", "body.0", "head"):  # the model's own names
            await shows(pilot, grads, name, timeout=20)
        assert main.state.run.source == "vgtui.watch" and main.state.run.total_steps == 0
        first = main.state.position[1]
        await wait_for(pilot, lambda: main.state.position[1] > first, 20, "new snapshots")
        await wait_for(pilot, lambda: main.state.position[1] >= first + 3, 20, "more snapshots")
        status = await status_shows(pilot, "acc ")  # the user's metric, the latest value
        assert "epoch" not in status
        await wait_for(pilot, done.is_set, 30, "the training thread")
        await status_shows(pilot, "■ completed", timeout=10)
        assert main.state.position == (30, 31)  # step 1 and every 2nd step of 60
        await pilot.press("tab", "tab")
        table = main.query_one("#table")
        await shows(pilot, table, "body.0")
    trainer.join(5)


async def test_unknown_length_status_shows_step_rate_and_time():
    """A run with no total (a user's loop) read as a stream: no progress bar and no epochs, but the step, the
    steps/s, the elapsed time and the user's metric."""
    app = VgtuiApp([StreamSource(io.BytesIO(RESNET.read_bytes()), "resnet18")], fps=8)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.main.state.end is not None, what="the stream's end")
        status = await status_shows(pilot, "step 30")
        line2 = status.splitlines()[1]
        assert "2.0 steps/s" in line2 and "00:15" in line2 and "acc 1" in line2
        assert "epoch" not in line2 and "━" not in line2 and "/?" not in line2


async def settle_follow(pilot) -> None:
    app = pilot.app
    await status_shows(pilot, "■ completed")
    await app.workers.wait_for_complete()
    app.clear_notifications()
    await wait_for(pilot, app.main.up_to_date, what="every panel's last frame")
    await pilot.pause(0.1)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_resnet18_follow_screen(snap_compare, size):
    assert snap_compare(follow_app(RESNET), terminal_size=size, run_before=settle_follow)


def test_layer_table_at_80x24(snap_compare):
    async def run_before(pilot):
        await settle_follow(pilot)
        await pilot.press("tab", "tab")
        await wait_for(pilot, lambda: pilot.app.main.query_one("#table").renders > 0 and pilot.app.main.up_to_date(),
                       what="the layer table")
        await pilot.pause(0.1)

    assert snap_compare(follow_app(RESNET), terminal_size=(80, 24), run_before=run_before)


async def test_resnet18_at_80x24_groups_and_keeps_every_layer_reachable():
    app = follow_app(RESNET)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle_follow(pilot)
        grads = text_of(app.main.query_one("#grads"))
        for group in ("layer1.* ×4", "layer2.* ×5", "layer3.* ×5", "layer4.* ×5"):
            assert group in grads
        assert "conv1" in grads and "fc " in grads  # the first and the output layer stay themselves
        acts = text_of(app.main.query_one("#acts"))
        assert "17 of 21 layers have an activation" in acts and "more (tab: the layer table)" in acts
        assert "layer2.0.conv2" not in acts and "…" in acts  # no activation: not there; long names cut
        await pilot.press("tab", "tab")
        table = await shows(pilot, app.main.query_one("#table"), "layer2.0.downsample.0")  # the full name
        header = next(line for line in table.splitlines() if "regime" in line)
        assert "‖∇W‖" in header and "update:data" in header and "saturated" in header and "…" not in header
        assert "more columns in a wider terminal" in table
        await pilot.resize_terminal(230, 50)  # every column, the verdict's reason ("why") last
        table = await shows(pilot, app.main.query_one("#table"), "mean|∇W|")
        assert "more columns" not in table and "layer4.1.conv2" in table and "more layers" not in table


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 50)])
async def test_footer_shows_quit_and_help(size):
    app = follow_app(RESNET)
    async with app.run_test(size=size) as pilot:
        await settle_follow(pilot)
        footer = screen_lines(app)[-1]  # the bottom line of what the terminal shows
        assert footer.startswith("q quit ? help"), footer
        assert "palette" in footer
        if size[0] >= 120:
            assert "m metric" in footer and "l log/lin" in footer


def test_footer_ranks_every_shown_key():
    shown = {k.keys for k in keymap.KEYMAP if k.show}
    assert shown <= set(keymap.FOOTER)
    for kind in ("trainer", "file", "stream"):
        at80 = keymap.footer_keys(kind, 80)
        assert [k.action for k in at80[:2]] == ["quit", "help"]
        assert sum(keymap.footer_cells(k) for k in at80) <= 80 - keymap.PALETTE_CELLS


async def test_help_fits_80x24_and_scrolls():
    app = follow_app(RESNET)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle_follow(pilot)
        await pilot.press("question_mark")
        box = app.screen.query_one("#help-box")
        await wait_for(pilot, lambda: "? shows this screen" in text_of(box), what="the help")
        assert box.outer_size.height <= 24 and box.outer_size.width <= 80
        assert "? or esc closes" in text_of(box)
        assert "non-finite" not in " ".join(screen_lines(app))  # the text is taller than the terminal
        for _ in range(3):
            await pilot.press("pagedown")
        await pilot.pause(0.1)
        assert "non-finite" in " ".join(screen_lines(app))  # the end of the text, reached without a mouse
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: app.screen is app.main, what="the help to close")


def test_grouping_and_abbreviation():
    rows = [BarRow(n, v, "healthy", "", False) for n, v in
            [("conv1", 1.0), ("layer1.0.conv1", 2.0), ("layer1.0.conv2", 3.0), ("layer1.1.conv1", 4.0),
             ("layer2.0.conv1", 5.0), ("fc", 6.0)]]
    assert group_rows(rows, 6) == rows
    fine = group_rows(rows, 5)  # layer1.0.* and layer1.1.conv1 (a group of one stays the layer)
    assert [r.name for r in fine] == ["conv1", "layer1.0.* ×2", "layer1.1.conv1", "layer2.0.conv1", "fc"]
    coarse = group_rows(rows, 4)
    assert [r.name for r in coarse] == ["conv1", "layer1.* ×3", "layer2.0.conv1", "fc"]
    assert coarse[1].value == 4.0 and coarse[1].low == 2.0 and coarse[1].group  # max, then min
    assert not fine[0].group and fine[1].group
    assert abbreviate("layer3.1.conv2", 8) == "…1.conv2" and abbreviate("fc", 8) == "fc"


def test_user_metrics_follow_the_curves():
    """Snapshot.metrics become curves aligned with the steps (nan where a snapshot lacks a name), halved with the
    rest of the bounded history."""
    import dataclasses
    import math

    from vgtui.core.metrics import iter_records
    from vgtui.core.records import Snapshot
    from vgtui.ui.state import History

    snaps = [r for r in iter_records(RESNET) if isinstance(r, Snapshot)]
    h = History(tuple(l.name for l in snaps[0].layers), cap=4)
    h.add(dataclasses.replace(snaps[0], metrics=None))
    for s in snaps[1:3]:
        h.add(s)
    assert math.isnan(h.user["acc"][0]) and h.user["acc"][1:] == [s.metrics["acc"] for s in snaps[1:3]]
    h.add(snaps[3])  # the 4th point halves the history
    assert len(h.user["acc"]) == len(h.steps) == 2
