"""The curves (issue 20): smoothing (`~`, an EMA with the raw loss faint behind), a step or wall-time x axis (`w`),
zoom into the latest steps and back (`z` / `Z`), and the user's metrics each on an axis of its own choosing
(vgtui.watch(axes=...)), never on the accuracy axis by value range alone. Real recorded files and a real
vgtui.watch run, the real app at 80x24 and 120x40, read from the screen."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vgtui.core.records import RecordEncoder, record_from_json
from vgtui.sources.file import FileSource
from vgtui.ui import charts
from vgtui.ui.app import VgtuiApp

from .conftest import status_shows, text_of, wait_for
from .replay import FIXTURES, load

SIZES = [(80, 24), (120, 40)]


def write(path, records) -> None:
    enc = RecordEncoder()
    with open(path, "w") as f:
        for r in records:
            f.write(enc.line(r))


def replay(path, follow: bool = False) -> VgtuiApp:
    src = FileSource(str(path), follow=follow)
    src.open()
    return VgtuiApp([src], fps=8)


def loss_title(app) -> str:
    return str(app.main.query_one("#loss").border_title)


def panel(app, name: str) -> str:
    return text_of(app.main.query_one(f"#{name}"))


# ------------------------------------------------------------------------------------------ the pieces, by number
def test_ema_is_debiased_and_skips_what_is_not_finite():
    y = np.array([[0.0, 2.0, math.nan, 2.0], [1.0, 1.0, 1.0, 1.0]])
    s = charts.ema(y, 0.5)
    # 0 -> 0/(1-.5) = 0; then .5*0 + .5*2 = 1 -> 1/(1-.25) = 4/3; nan stays nan; then .5*1 + .5*2 = 1.5 -> 1.5/.875
    assert s[0, 0] == 0.0 and s[0, 1] == pytest.approx(4 / 3) and math.isnan(s[0, 2])
    assert s[0, 3] == pytest.approx(1.5 / 0.875)
    assert s[1] == pytest.approx([1.0] * 4)  # a constant stays itself from the first point (debiased)
    assert charts.ema(y, 0.0) is not None and np.array_equal(charts.ema(y[1], 0.0), y[1])


def test_a_learning_rate_in_0_to_1_is_never_on_the_accuracy_axis():
    lr = list(np.geomspace(0.1, 1e-4, 50))
    assert charts.user_axis("lr", lr) == "own" and charts.own_scale(np.array(lr)) == "log"
    assert charts.user_axis("val_acc", [0.1, 0.5, 0.9]) == "acc"
    assert charts.user_axis("val_acc", [10.0, 50.0]) == "own"  # a percentage: not a fraction, not that axis
    assert charts.user_axis("frac", [0.2, 0.3]) == "own" and charts.own_scale(np.array([0.2, 0.3])) == "linear"
    assert charts.user_axis("lr", lr, {"lr": "loss"}) == "loss"  # said by the run
    assert charts.user_axis("acc", [0.5], {"acc": "linear"}) == "linear"


def test_time_labels_and_ticks():
    assert [charts.duration(s) for s in (0, 45, 90, 754, 7500)] == ["0s", "45s", "1:30", "12:34", "2h05"]
    ticks = charts._range_ticks(600, 1200, 70, False)
    assert ticks[0] >= 600 and ticks[-1] <= 1200 and len(ticks) >= 3
    assert all(t % 60 == 0 for t in charts._range_ticks(0, 600, 70, True))


# ------------------------------------------------------------------------------------------ on screen
@pytest.mark.parametrize("size", SIZES)
async def test_smooth_zoom_and_wall_time_on_a_replay(tmp_path, size):
    path = tmp_path / "sigmoid.jsonl"
    write(path, load("sigmoid"))  # 12 snapshots, steps 10..120, 2.4 s recorded
    app = replay(path)
    async with app.run_test(size=size) as pilot:
        await status_shows(pilot, "snapshot 12 / 12")
        await app.workers.wait_for_complete()
        await wait_for(pilot, app.main.up_to_date, what="the first frame")
        before = panel(app, "loss")
        assert loss_title(app) == "loss & accuracy over steps"
        await pilot.press("tilde", "tilde", "tilde")  # off -> 0.6 -> 0.9 -> 0.99
        assert loss_title(app) == "loss · EMA 0.99" and app.main.smooth == 0.99
        await pilot.press("tilde")
        assert app.main.smooth == 0.0 and "EMA" not in loss_title(app)
        await pilot.press("tilde", "tilde")
        await wait_for(pilot, lambda: panel(app, "loss") != before, what="the smoothed loss drawn")
        await status_shows(pilot, "curves smoothed: exponential moving average, weight 0.9")
        # zoom: the last half of the steps so far (60..120), then the last quarter (90..120); Z back
        await pilot.press("z")
        assert loss_title(app) == "loss · steps 60–120 · EMA 0.9"
        await wait_for(pilot, lambda: "60" in panel(app, "loss").splitlines()[-2] and "120" in panel(app, "loss"),
                       what="x axis from 60 to 120")
        await pilot.press("z")
        assert loss_title(app) == "loss · steps 90–120 · EMA 0.9"
        await pilot.press("Z", "Z")
        assert loss_title(app) == "loss · EMA 0.9"
        await pilot.press("Z")
        await status_shows(pilot, "curves: the whole run is shown")
        # the cursor: zoom ends at the step shown (a replay's cursor), here step 80
        await pilot.press("z")
        for _ in range(4):
            await pilot.press("left")
        await status_shows(pilot, "snapshot 8 / 12 · step 80")
        await wait_for(pilot, lambda: "steps 40–80" in loss_title(app), what="the zoom to follow the cursor")
        await pilot.press("end", "Z")
        # wall time: seconds since the run started on x (the fixture's 12 snapshots span 0.2 s .. 2.4 s)
        await pilot.press("w")
        assert loss_title(app) == "loss · over wall time · EMA 0.9"
        await wait_for(pilot, lambda: "0s" in panel(app, "loss").splitlines()[-2] and "2s" in panel(app, "loss"),
                       what="seconds on the x axis")
        flow_title = str(app.main.query_one("#flow").border_title)
        assert "per layer over wall time" in flow_title
        await pilot.press("z")
        assert loss_title(app) == "loss · time 1.2s–2.4s · EMA 0.9"  # steps 60..120 at their wall times
        assert not app.main.query_one("#loss").failures and not app.main.query_one("#flow").failures


async def test_zoom_follows_a_live_run(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.main.state.step >= 20, timeout=30, what="step 20")
        await pilot.press("z")
        first = app.main.state.step
        await wait_for(pilot, lambda: app.main.state.step >= first + 10, timeout=30, what="10 more steps")
        await wait_for(pilot, lambda: loss_title(app).endswith(f"–{app.main.state.step:,}"), what="the range to move")
        await pilot.press("tilde", "w")
        await wait_for(pilot, lambda: "loss · time " in loss_title(app), what="wall time")
        assert not app.main.query_one("#loss").failures


def watched_with_metrics(path, axes=None) -> None:
    """A real vgtui.watch run of a tiny MLP, 40 steps, a snapshot every 4, with a decaying learning rate, an
    accuracy and a temperature given to probe.step."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    import vgtui

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 8), torch.randint(0, 4, (64,))
    with vgtui.watch(model, metrics=path, every=4, optimizer=opt, quiet=True, axes=axes) as probe:
        for i in range(40):
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            probe.step(loss=loss, metrics={"lr": 0.1 * 0.8 ** i, "acc": (out.argmax(1) == y).float().mean(),
                                           "temp": 1.0 + i / 40})


def test_watch_axes_reach_the_header_and_are_checked(tmp_path):
    path = tmp_path / "run.jsonl"
    watched_with_metrics(path, axes={"temp": "loss"})
    header = json.loads(path.read_text().splitlines()[0])
    assert header["axes"] == {"temp": "loss"}
    assert record_from_json(header).axes == {"temp": "loss"}
    # an axis this vgtui does not know (a later vgtui's): left out, the run still opens; not an object: damage
    assert record_from_json({**header, "axes": {"lr": "sideways", "temp": "log"}}).axes == {"temp": "log"}
    with pytest.raises(ValueError, match="not a JSON object"):
        record_from_json({**header, "axes": ["lr", "log"]})
    import torch

    import vgtui

    with pytest.raises(ValueError, match="axes="):
        vgtui.watch(torch.nn.Linear(2, 2), metrics=tmp_path / "x.jsonl", axes={"lr": "up"})


@pytest.fixture(scope="module")
def unsaid(tmp_path_factory):
    path = tmp_path_factory.mktemp("unsaid") / "run.jsonl"
    watched_with_metrics(path)  # nothing said: acc on the accuracy axis, lr and temp on charts of their own
    return path


@pytest.mark.parametrize("size", SIZES)
async def test_user_metrics_each_on_an_axis_of_its_own(unsaid, size):
    app = replay(unsaid)
    async with app.run_test(size=size) as pilot:
        await status_shows(pilot, "■ completed")
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: "more" in str(app.main.query_one("#loss").border_subtitle), what="the legend")
        sub = str(app.main.query_one("#loss").border_subtitle)
        assert "• acc" in sub and "lr" not in sub and "2 more: m → your metrics" in sub
        for _ in range(6):  # grad norm, mean |grad|, grad:data, update:data, pre-activations, your metrics
            await pilot.press("m")
            if app.main.metric == "user_metrics":
                break
        assert app.main.metric == "user_metrics"
        await wait_for(pilot, lambda: "lr · log" in panel(app, "flow"), what="lr on a log axis of its own")
        flow = panel(app, "flow")
        assert "temp · linear" in flow and "acc ·" not in flow
        assert "1e-1" in flow or "1e-2" in flow  # decades: the rate fell from 0.1 to 1.3e-5
        await pilot.press("m")
        assert app.main.metric == "grad_norm"  # the cycle goes on to the start


async def test_the_run_says_where_a_metric_goes(tmp_path):
    path = tmp_path / "run.jsonl"
    watched_with_metrics(path, axes={"temp": "loss", "acc": "linear"})
    app = replay(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await status_shows(pilot, "■ completed")
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: "more" in str(app.main.query_one("#loss").border_subtitle), what="the legend")
        sub = str(app.main.query_one("#loss").border_subtitle)
        assert "• temp (loss axis)" in sub and "• acc" not in sub and "2 more" in sub
        app.main.metric = "user_metrics"
        await wait_for(pilot, lambda: "acc · linear" in panel(app, "flow"), what="acc on a chart of its own")
        assert "temp ·" not in panel(app, "flow")


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_smoothed_and_zoomed(snap_compare, size):
    """tests/ui/fixtures/spiky.jsonl (a real run, 300 steps, a loss spike at step 201): the last half of its steps,
    the loss smoothed at 0.9 with the raw loss faint behind, the spike's ▲."""

    async def smoothed_zoomed(pilot):
        app = pilot.app
        await status_shows(pilot, "■ completed")
        await app.workers.wait_for_complete()
        await pilot.press("tilde", "tilde", "z")
        assert "loss · steps 150–300 · EMA 0.9" == str(app.main.query_one("#loss").border_title)
        app.clear_notifications()
        await wait_for(pilot, app.main.up_to_date, what="every panel's last frame")
        await pilot.pause(0.1)

    assert snap_compare(replay(FIXTURES / "spiky.jsonl"), terminal_size=size, run_before=smoothed_zoomed)
