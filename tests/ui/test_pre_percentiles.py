"""The curves panel's pre-activation percentiles (`m` after the gradient metrics; Ioffe & Szegedy 2015, Figure 1):
the history keeps them, a replay of a real run draws them per hidden layer on a linear axis, two runs side by
side, and an older file without them says so in one line. Real metrics files: one written by vgtui's trainer on
a tiny network, one recorded before the percentiles were probed."""

from __future__ import annotations

import dataclasses
import math

import pytest

from vgtui.core.config import RunConfig
from vgtui.core.metrics import read_metrics
from vgtui.core.records import RecordEncoder, Snapshot
from vgtui.sources.file import FileSource
from vgtui.ui.app import VgtuiApp
from vgtui.ui.charts import NO_PRE
from vgtui.ui.state import PRE_KEYS, History, RunState
from vgtui.ui.widgets import GradientBars, PlotextPanel

from .conftest import shows, status_shows, text_of
from .replay import load

TITLE = "pre-activation z percentiles · linear y (always)"


@pytest.fixture(scope="module")
def run_file(tmp_path_factory, digits):
    """20 steps of a 784-32x2-10 sigmoid network, a snapshot every 5 steps, as vgtui's trainer writes them."""
    from vgtui.core.writer import MetricsWriter
    from vgtui.engine.trainer import Trainer

    path = tmp_path_factory.mktemp("pre") / "small.jsonl"
    cfg = RunConfig(dataset="mnist-5k", depth=2, width=32, epochs=1, max_steps=20, probe_every=5, device="cpu", seed=0)
    writer = MetricsWriter(path)
    assert Trainer(cfg, [writer.write], data=digits).run().status == "completed"
    writer.close()
    return path


def old_file(tmp_path):
    """The recorded sigmoid run (784-1000x5-10), written before the percentiles were probed."""
    path = tmp_path / "old.jsonl"
    enc = RecordEncoder()
    with open(path, "w") as f:
        for r in load("sigmoid"):
            f.write(enc.line(r))
    return path


def replay(*paths) -> VgtuiApp:
    sources = [FileSource(str(p)) for p in paths]
    for s in sources:
        s.open()
    return VgtuiApp(sources, fps=8)


async def to_percentiles(pilot) -> PlotextPanel:
    """Press `m` past the four gradient metrics; the curves panel once it shows the percentiles."""
    flow = pilot.app.main.query_one("#flow", PlotextPanel)
    await pilot.press("m", "m", "m", "m")
    await shows(pilot, flow, TITLE)
    return flow


def test_history_keeps_the_percentiles_nan_where_a_layer_has_none():
    old = next(r for r in load("sigmoid") if isinstance(r, Snapshot))  # no percentiles: all None
    fc1 = dataclasses.replace(old.layers[0], pre_p15=-1.5, pre_p50=0.25, pre_p85=2.0)
    new = dataclasses.replace(old, step=old.step + 10, layers=(fc1, *old.layers[1:]))
    names = tuple(l.name for l in old.layers)
    h = History(names)
    h.add(old)
    h.add(new)
    assert [h.series[k][0][1] for k in PRE_KEYS] == [-1.5, 0.25, 2.0]
    assert all(math.isnan(h.series[k][0][0]) for k in PRE_KEYS)  # None in the older snapshot
    assert all(math.isnan(v) for k in PRE_KEYS for s in h.series[k][1:] for v in s)  # fc2..fc6 have none
    assert h.series["grad_norm"][0] == [old.layers[0].grad_norm, old.layers[0].grad_norm]  # untouched

    st = RunState()
    st.begin(next(r for r in load("sigmoid") if not isinstance(r, Snapshot)))
    st.add_history([old, new])
    steps, layers, bands = st.pre_curves()
    assert steps == [old.step, new.step] and layers == names and len(bands) == len(names)
    assert [b[1] for b in bands[0]] == [-1.5, 0.25, 2.0]
    st.show(old, 0, 2)  # the cursor on the first snapshot: the curves stop there
    steps, _, bands = st.pre_curves()
    assert steps == [old.step] and all(len(s) == 1 for s in bands[0])


async def test_m_shows_each_hidden_layers_percentiles_on_a_linear_axis(run_file):
    snaps = read_metrics(run_file)[0].snapshots
    app = replay(run_file)
    async with app.run_test(size=(120, 40)) as pilot:
        await status_shows(pilot, "snapshot 5 / 5 · step 20")
        bars = app.main.query_one(GradientBars)
        flow = await to_percentiles(pilot)
        shown = text_of(flow)
        assert "━ fc1 ━ fc2 medians" in shown and "fc3" not in shown  # the output layer has none
        assert "update:data" in text_of(bars)  # the bars keep the last gradient metric
        steps, _, bands = app.main.state.pre_curves()
        assert steps == [1, 5, 10, 15, 20]
        for i in (0, 1):
            assert [list(b) for b in bands[i]] == [[getattr(s.layers[i], k) for s in snaps] for k in PRE_KEYS]
            assert all(p15 < p50 < p85 for p15, p50, p85 in zip(*bands[i]))
        assert all(math.isnan(v) for s in bands[2] for v in s)
        assert min(bands[0][0]) < -0.3  # z is signed: fc1's 15th percentile lies below zero ...
        ticks = [float(line.split("┤")[0].strip("│ ")) for line in shown.splitlines() if "┤" in line]
        assert min(ticks) < -0.3 and max(ticks) > 0.3  # ... and the linear axis shows it
        assert app.main.log_axes  # log axes are on (the default), and z is drawn on its linear axis all the same
        await pilot.press("l")
        await status_shows(pilot, "linear axes")
        await pilot.pause(0.3)
        assert text_of(flow) == shown
        await pilot.press("home")  # the curves follow the cursor
        await status_shows(pilot, "snapshot 1 / 5")
        assert app.main.state.pre_curves()[0] == [1]
        await pilot.press("m")  # round to the first gradient metric
        await shows(pilot, flow, "grad norm ‖∇W‖ per layer over steps · linear y")
        await shows(pilot, bars, "grad norm")


async def test_two_runs_show_each_runs_last_hidden_layer(run_file, tmp_path):
    b = tmp_path / "b.jsonl"
    b.write_bytes(run_file.read_bytes())
    app = replay(run_file, b)
    async with app.run_test(size=(120, 40)) as pilot:
        await status_shows(pilot, "B snapshot 5 / 5")
        flow = await to_percentiles(pilot)
        shown = text_of(flow)
        assert "━ A fc2 ━ B fc2 medians" in shown and "last hidden layer" in shown


async def test_a_file_without_percentiles_says_so(run_file, tmp_path):
    old = old_file(tmp_path)
    app = replay(old)
    async with app.run_test(size=(120, 40)) as pilot:
        await status_shows(pilot, "snapshot 12 / 12")
        flow = await to_percentiles(pilot)
        assert NO_PRE in text_of(flow)
        await pilot.press("l")
        await status_shows(pilot, "linear axes")
        assert NO_PRE in text_of(flow)
    app = replay(old, run_file)  # beside a run that has them: that run's alone
    async with app.run_test(size=(120, 40)) as pilot:
        await status_shows(pilot, "B snapshot 5 / 5")
        flow = await to_percentiles(pilot)
        shown = text_of(flow)
        # the legend line: B's last hidden layer, nothing of A
        assert shown.splitlines()[1].split() == ["│", "━", "B", "fc2", "medians", "⠤", "15th", "&", "85th", "│"]
        assert NO_PRE not in shown
