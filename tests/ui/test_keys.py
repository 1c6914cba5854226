"""Every key, pressed on the real app over real training (a ThreadBackend on a small config): its effect on
the engine and on the screen."""

from __future__ import annotations

import json

import pytest
from textual.widgets import ContentSwitcher

from .conftest import SMALL, status_text, text_of, wait_for
from vgtui.ui.screens import FailureScreen, HelpScreen
from vgtui.ui.widgets import GradientBars, PlotextPanel


def metrics_records(backend):
    with open(backend.metrics_path) as f:
        return [json.loads(line) for line in f if line.strip()]


async def started(pilot, app, runs=1):
    await wait_for(pilot, lambda: app.state.runs >= runs and app.state.snap is not None, what="a snapshot")


async def test_activation_keys_swap_live_and_record_an_event(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("a")
        assert "tanh" in status_text(app)  # at once, before the trainer answers
        await wait_for(pilot, lambda: backend.trainer.config.activation == "tanh", what="tanh in the trainer")
        await wait_for(pilot, lambda: any(e["type"] == "event" for e in metrics_records(backend)), what="event")
        ev = [e for e in metrics_records(backend) if e["type"] == "event"]
        assert ev[-1]["set"] == {"activation": "tanh"}
        assert app.state.runs == 1  # live: no restart, weights kept
        await wait_for(pilot, lambda: app.state.snap.activation == "tanh", what="a tanh snapshot")
        assert "activation → tanh" in status_text(app)
        await pilot.press("A")
        await wait_for(pilot, lambda: backend.trainer.config.activation == "sigmoid", what="back to sigmoid")
        assert "sigmoid" in status_text(app)


async def test_restart_keys_change_the_configuration(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        expected = [("i", "init", "xavier", "init xavier"), ("b", "batchnorm", True, "bn on"),
                    ("s", "skip", True, "skip on"), ("plus", "depth", 4, "4×64"), ("minus", "depth", 3, "3×64")]
        for n, (key, field, value, shown) in enumerate(expected, start=2):
            await pilot.press(key)
            assert shown in status_text(app)  # at once
            await wait_for(pilot, lambda: app.state.runs >= n and app.state.snap is not None, what=f"run {n}")
            assert app.state.run.config[field] == value
            assert backend.trainer.config.to_dict()[field] == value
            assert shown in status_text(app)
            assert "restarted" in status_text(app)
        assert app.state.layers == ("fc1", "fc2", "fc3", "fc4")
        ends = [e for e in metrics_records(backend) if e["type"] == "end"]
        assert ends[0]["message"] == "restarted: sigmoid + xavier"
        runs = [e for e in metrics_records(backend) if e["type"] == "run"]
        assert len(runs) == 6
        await pilot.press("r")
        await wait_for(pilot, lambda: app.state.runs >= 7, what="the restart")
        assert app.state.run.config == runs[-1]["config"]


async def test_pause_step_and_speed_cap(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("space")
        assert "paused" in status_text(app)
        await wait_for(pilot, lambda: backend.trainer.paused, what="the trainer to pause")
        await pilot.pause(0.3)
        step = backend.trainer.step
        await pilot.pause(0.3)
        assert backend.trainer.step == step
        await pilot.press("n")
        await wait_for(pilot, lambda: backend.trainer.step == step + 1, what="one step")
        await pilot.pause(0.3)
        assert backend.trainer.step == step + 1
        await wait_for(pilot, lambda: app.state.step == step + 1, what="the step's snapshot on screen")
        assert f"step {step + 1}/" in status_text(app)
        await pilot.press("space")
        await wait_for(pilot, lambda: backend.trainer.step > step + 5, what="training to resume")
        assert "running" in status_text(app)
        await pilot.press("left_square_bracket")
        await wait_for(pilot, lambda: backend.trainer.speed_cap == 200.0, what="a cap of 200 steps/s")
        assert "cap 200/s" in status_text(app)
        await pilot.press("left_square_bracket", "left_square_bracket")
        await wait_for(pilot, lambda: backend.trainer.speed_cap == 50.0, what="a cap of 50 steps/s")
        await pilot.press("right_square_bracket", "right_square_bracket", "right_square_bracket")
        await wait_for(pilot, lambda: backend.trainer.speed_cap is None, what="no cap")
        assert "cap 50/s" not in status_text(app) and "full speed" in status_text(app)


async def test_view_keys_metric_scale_tab_help(make_app, tmp_path):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        bars = app.query_one(GradientBars)
        app._frame(force=True)
        assert "grad norm" in str(bars.border_title)
        assert "1e-8" in text_of(bars) and "log, fixed decades" in str(bars.border_subtitle)
        await pilot.press("m")
        assert "mean |grad|" in str(bars.border_title)
        await pilot.press("m", "m")
        assert "update:data" in str(bars.border_title)
        await pilot.press("m")
        assert "grad norm" in str(bars.border_title)
        await pilot.press("l")
        assert "linear" in str(bars.border_subtitle) and "1e-8" not in text_of(bars)
        flow = app.query_one("#flow", PlotextPanel)
        assert "linear" in str(flow.border_title)
        await pilot.press("l")
        assert "log" in str(flow.border_title)

        switcher = app.query_one("#views", ContentSwitcher)
        await pilot.press("tab")
        assert switcher.current == "histograms"
        await pilot.pause(0.2)
        assert app.query_one("#hist-grid", PlotextPanel).renders >= 1
        assert "fc1" in text_of(app.query_one("#hist-grid", PlotextPanel))
        await pilot.press("tab")
        assert switcher.current == "layers"
        assert "fc3" in text_of(app.query_one("#table"))
        await pilot.press("tab")
        assert switcher.current == "overview"

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

        await pilot.press("ctrl+s")
        svgs = list(tmp_path.glob("vgtui_*.svg"))
        assert len(svgs) == 1 and svgs[0].read_text().startswith("<svg")
        assert "screenshot saved" in status_text(app) and svgs[0].name in app.opts.notice


async def test_command_palette_runs_vgtui_commands(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"toggle batchnorm")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.state.runs >= 2 and app.state.run.config["batchnorm"], what="batchnorm")


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_quit_keys_exit_0_and_stop_training(make_app, key):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press(key)
        await pilot.pause(0.1)
    assert app.return_code == 0
    assert not backend.alive
    assert metrics_records(backend)[-1]["type"] == "end"


async def test_trainer_exception_offers_restart_or_quit(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)

        def boom(trainer):
            raise RuntimeError("CUDA out of memory (simulated)")

        backend.trainer.on_step = boom
        await wait_for(pilot, lambda: isinstance(app.screen, FailureScreen), what="the failure screen")
        assert app.screen.end.status == "failed"
        assert "CUDA out of memory" in app.screen.message
        assert "RuntimeError" in (app.screen.end.traceback or "")
        assert metrics_records(backend)[-1]["status"] == "failed"
        backend.trainer.on_step = None
        await pilot.press("r")
        await wait_for(pilot, lambda: app.state.runs >= 2 and app.state.snap is not None, what="the restart")
        assert not isinstance(app.screen, FailureScreen)
        backend.trainer.on_step = boom
        await wait_for(pilot, lambda: isinstance(app.screen, FailureScreen), what="the failure screen again")
        await pilot.press("q")
        await pilot.pause(0.1)
    assert app.return_code == 0


async def test_divergence_halts_and_names_the_layer(make_app):
    app, backend = make_app(SMALL.replace(activation="relu", init="kaiming", lr=5.0, probe_every=1))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.state.end is not None, what="divergence")
        end = app.state.end
        assert end.status == "diverged"
        status = status_text(app)
        assert "DIVERGED" in status and "lower --lr" in status
        if end.layer:
            assert end.layer in status
            bars = text_of(app.query_one(GradientBars))
            assert end.layer in bars
        assert app.opts.paused
        await pilot.press("r")
        await wait_for(pilot, lambda: app.state.runs >= 2, what="the restart")
