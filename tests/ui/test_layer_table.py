"""The layer table as a table (issue 20): a cursor, sort by any column, a `/` filter with vgtui.watch's layer
patterns, and `enter` on a layer for its history; on the recorded resnet18 run (tests/ui/fixtures/resnet18.jsonl)
and on a 120-layer MLP trained here with vgtui.watch, at 80x24 and 120x40, followed as a growing file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vgtui.core.layermatch import matches, select
from vgtui.ui.widgets.table import TABLE_COLUMNS

from .conftest import text_of, wait_for
from .make_fixture import train_watched
from .test_follow_watch import RESNET, follow_app, settle_follow

SIZES = [(80, 24), (120, 40)]
COLUMN = {h: j for j, (h, _) in enumerate(TABLE_COLUMNS)}


def last_snapshot(path: Path) -> dict[str, dict]:
    """The file's last snapshot: each layer's numbers by name (read here from the JSON, not through vgtui)."""
    snaps = [d for d in map(json.loads, path.read_text().splitlines()) if d["type"] == "snapshot"]
    return {layer["name"]: layer for layer in snaps[-1]["layers"]}


@pytest.fixture(scope="module")
def deep120(tmp_path_factory) -> Path:
    """A 120-layer tanh MLP (fc1..fc120, width 8) trained 6 steps with vgtui.watch on random data, a snapshot every
    2 steps: a real run with a hundred and more layers."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential()
    for i in range(1, 121):
        model.add_module(f"fc{i}", nn.Linear(16 if i == 1 else 8, 10 if i == 120 else 8))
        if i < 120:
            model.add_module(f"act{i}", nn.Tanh())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path_factory.mktemp("deep") / "deep120.jsonl"
    train_watched(model, opt, torch.randn(32, 16), torch.randint(0, 10, (32,)), path, steps=6, every=2)
    return path


def table_rows(app) -> list[str]:
    """The layer names the table shows, top to bottom (the first cell of each row on screen)."""
    known = set(app.main.state.layers)
    out = []
    for line in text_of(app.main.query_one("#table")).splitlines()[1:-1]:
        cells = line.strip("│ ").split()
        if cells and cells[0] in known:
            out.append(cells[0])
    return out


def cursor_row(app) -> str:
    return app.main.table_view.cursor


async def open_table(pilot) -> None:
    await settle_follow(pilot)
    await pilot.press("tab", "tab")
    await wait_for(pilot, lambda: pilot.app.main.view == "layers" and table_rows(pilot.app), what="the layer table")


async def sort_by(pilot, header: str) -> None:
    while pilot.app.main.table_view.sort != COLUMN[header]:
        await pilot.press("c")
    await wait_for(pilot, lambda: f"{header} ▲" in text_of(pilot.app.main.query_one("#table")), what="▲")


def by(layers: dict[str, dict], key: str, descending: bool) -> list[str]:
    have = [n for n, v in layers.items() if v.get(key) is not None and math.isfinite(v[key])]
    return sorted(have, key=lambda n: layers[n][key], reverse=descending)


def test_the_filter_takes_watch_patterns():
    names = ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer4.1.conv2", "fc"]
    assert select(names, "layer1.*") == ["layer1.0.conv1", "layer1.0.conv2"]
    assert select(names, "fc, *.conv2") == ["layer1.0.conv2", "layer4.1.conv2", "fc"]
    assert select(names, "") == names
    assert select(names, "layer") == []  # a name is a whole name, as vgtui.watch(layers=) takes it
    assert matches("fc12", "fc1?") and not matches("fc1", "fc1?")


@pytest.mark.parametrize("size", SIZES)
async def test_resnet18_sort_filter_enter(size):
    layers = last_snapshot(RESNET)
    app = follow_app(RESNET)
    async with app.run_test(size=size) as pilot:
        await open_table(pilot)
        table = app.main.query_one("#table")
        assert table_rows(app)[:3] == list(layers)[:3]  # the network's order first
        await sort_by(pilot, "‖∇W‖")
        want = by(layers, "grad_norm", False)
        shown = table_rows(app)
        assert shown == want[:len(shown)] and len(shown) >= 8
        await pilot.press("C")
        await wait_for(pilot, lambda: "‖∇W‖ ▼" in text_of(table), what="▼")
        shown = table_rows(app)
        assert shown == by(layers, "grad_norm", True)[:len(shown)]
        await pilot.press("end")  # the last row: scrolled into view, under the cursor
        await wait_for(pilot, lambda: cursor_row(app) == by(layers, "grad_norm", True)[-1],
                       what="the cursor at the end")
        assert table_rows(app)[-1] == cursor_row(app)
        assert app.main.state.position[0] == app.main.state.position[1] - 1  # end moved no snapshot
        await pilot.press("home", "slash", *"layer4.*", "enter")
        want4 = [n for n in by(layers, "grad_norm", True) if n.startswith("layer4.")]
        await wait_for(pilot, lambda: table_rows(app) == want4, what="only layer4.* rows")
        assert "filter 'layer4.*': 5 of 21 layers" in text_of(table)
        await pilot.press("down", "enter")
        hist = app.main.query_one("#layer-history")
        await wait_for(pilot, lambda: hist.display and f"layer {want4[1]}" in text_of(hist)
                       and "gradients now" in text_of(hist), what="the history")
        shown = text_of(hist)
        layer = layers[want4[1]]
        for title in (f"‖∇W‖ {layer['grad_norm']:.1e}", f"update:data {layer['update_data_ratio']:.1e}",
                      "saturated -", "mean|φ'| -", "gradients now", "activations now"):
            assert title in shown, title
        assert "no mean|φ'| for this" in shown  # resnet18.jsonl predates the derivative probe
        assert "no saturated for this" in shown  # a block's conv2: no activation before the sum
        await pilot.press("escape")
        await wait_for(pilot, lambda: table.display and not hist.display, what="back to the table")
        await pilot.press("escape")  # a second esc clears the filter
        await wait_for(pilot, lambda: len(table_rows(app)) > 5, what="every layer again")


@pytest.mark.parametrize("size", SIZES)
async def test_120_layers_sort_filter_enter(deep120, size):
    layers = last_snapshot(deep120)
    assert len(layers) == 120
    app = follow_app(deep120)
    async with app.run_test(size=size) as pilot:
        await open_table(pilot)
        table = app.main.query_one("#table")
        assert table_rows(app)[0] == "fc1" and "rows 1–" in text_of(table) and "of 120" in text_of(table)
        await sort_by(pilot, "update:data")
        await pilot.press("C")
        want = by(layers, "update_data_ratio", True)
        await wait_for(pilot, lambda: table_rows(app) == want[:len(table_rows(app))] and table_rows(app),
                       what="sorted by update:data, descending")
        await pilot.press("pagedown", "pagedown")
        await wait_for(pilot, lambda: cursor_row(app) in table_rows(app) and cursor_row(app) != want[0],
                       what="the cursor paged down, still on screen")
        await pilot.press("end")
        await wait_for(pilot, lambda: table_rows(app)[-1] == want[-1] == cursor_row(app), what="the last row")
        assert "of 120" in text_of(table)
        await pilot.press("slash", *"fc1?", "enter")
        await wait_for(pilot, lambda: sorted(table_rows(app)) == sorted(f"fc{i}" for i in range(10, 20)),
                       what="fc10..fc19")
        assert table_rows(app) == [n for n in want if n in {f"fc{i}" for i in range(10, 20)}]
        await pilot.press("enter")
        hist = app.main.query_one("#layer-history")
        name = cursor_row(app)
        await wait_for(pilot, lambda: hist.display and f"layer {name}" in text_of(hist)
                       and "gradients now" in text_of(hist), what="the history")
        assert f"update:data {layers[name]['update_data_ratio']:.1e}" in text_of(hist)
        steps, series = app.main.state.layer_curves(name, ["update_data_ratio", "deriv_mean", "saturated_frac"])
        assert steps == [1, 2, 4, 6]
        assert series["update_data_ratio"][-1] == pytest.approx(layers[name]["update_data_ratio"])
        assert series["deriv_mean"][-1] == pytest.approx(layers[name]["deriv_mean"])
        await pilot.press("down")  # in the history, the next layer of the table
        await wait_for(pilot, lambda: cursor_row(app) != name and f"layer {cursor_row(app)}" in text_of(hist),
                       what="the next layer's history")


def sorted_filtered(keys: tuple[str, ...]):
    """Pilot steps for a snapshot: the resnet18 run to its end, the layer table, then `keys`, then a drawn frame."""
    async def run_before(pilot):
        await open_table(pilot)
        await pilot.press(*keys)
        await wait_for(pilot, pilot.app.main.up_to_date, what="the last frame")
        await pilot.pause(0.1)

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_sorted_filtered(snap_compare, size):
    """Sorted by ‖∇W‖ descending, filtered to layer2.* and layer3.*, the cursor on the second row."""
    keys = ("c", "c", "c", "C", "slash", *"layer2.* layer3.*", "enter", "down")
    assert snap_compare(follow_app(RESNET), terminal_size=size, run_before=sorted_filtered(keys))


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_layer_history(snap_compare, size):
    """layer1.0.conv2's history (the third row of the network's order)."""
    keys = ("down", "down", "enter")
    assert snap_compare(follow_app(RESNET), terminal_size=size, run_before=sorted_filtered(keys))


async def test_live_trainer_table_keys(make_app):
    """The live UI: the table's keys work while vgtui's own trainer runs (sort, filter, a layer's history); outside
    the table the same keys do nothing to it (c sorts nothing in the overview)."""
    app, backend = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        m = app.main
        await wait_for(pilot, lambda: m.state.snap is not None and len(m.state.history.steps) >= 2, what="snapshots")
        await pilot.press("c")
        assert m.table_view.sort == -1  # the overview: the table's keys are not the overview's
        await pilot.press("tab", "tab")
        await wait_for(pilot, lambda: table_rows(app)[:4] == ["fc1", "fc2", "fc3", "fc4"], what="the table")
        await pilot.press("slash", *"fc[24]", "enter", "enter")
        hist = m.query_one("#layer-history")
        await wait_for(pilot, lambda: "layer fc2 · its history" in text_of(hist) and "gradients now" in text_of(hist),
                       what="fc2's history")
        assert "update:data" in text_of(hist) and "mean|φ'|" in text_of(hist)
        await pilot.press("down")
        await wait_for(pilot, lambda: "layer fc4 · its history" in text_of(hist),
                       what="fc4's history (the filter's next)")
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: table_rows(app)[:4] == ["fc1", "fc2", "fc3", "fc4"], what="every layer again")


async def test_a_hostile_layer_name_is_text_in_the_table_filter_and_history(tmp_path):
    """A layer name from a file with markup and a control sequence: shown as written (ESC as ␛), found by the
    filter, and the history's title (a border title, which Textual reads as markup) shows it literally (the
    reader writes the control characters as \\x1b, \\x07)."""
    hostile = "[bold]conv1\x1b]0;pwned\x07"
    path = tmp_path / "hostile.jsonl"
    text = RESNET.read_text().replace('"conv1"', json.dumps(hostile))
    path.write_text(text)
    app = follow_app(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle_follow(pilot)
        await pilot.press("tab", "tab", "slash", *"[[]bold]*", "enter")
        table = app.main.query_one("#table")
        await wait_for(pilot, lambda: "1 of 21 layers" in text_of(table), what="the filter's one row")
        assert "[bold]conv1\\x1b]0;pwned\\x07" in text_of(table)  # the reader made it visible
        await pilot.press("enter")
        hist = app.main.query_one("#layer-history")
        title = "layer [bold]conv1\\x1b]0;pwned\\x07 · its history"
        await wait_for(pilot, lambda: title in text_of(hist), what="the title")
        assert not app.main.query_one("#layer-history").failures
