"""Every key, pressed on the real app over real training (a ThreadBackend on a small config): its effect on
the engine and on the screen."""

from __future__ import annotations

import pytest
from textual.widgets import ContentSwitcher

from .conftest import SMALL, metrics_records, shows, status_shows, text_of, wait_for
from vgtui.ui.screens import FailureScreen, HelpScreen
from vgtui.ui.widgets import GradientBars, PlotextPanel


async def started(pilot, app, runs=1):
    await wait_for(pilot, lambda: app.main.state.runs >= runs and app.main.state.snap is not None, what="a snapshot")


async def test_activation_keys_swap_live_and_record_an_event(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("a")
        await status_shows(pilot, "tanh", timeout=0.5)  # at once, before the trainer answers
        await wait_for(pilot, lambda: backend.trainer.config.activation == "tanh", what="tanh in the trainer")
        await wait_for(pilot, lambda: any(e["type"] == "event" for e in metrics_records(backend)), what="event")
        ev = [e for e in metrics_records(backend) if e["type"] == "event"]
        assert ev[-1]["set"] == {"activation": "tanh"}
        assert app.main.state.runs == 1  # live: no restart, weights kept
        await wait_for(pilot, lambda: app.main.state.snap.activation == "tanh", what="a tanh snapshot")
        await status_shows(pilot, "activation → tanh")
        await pilot.press("A")
        await wait_for(pilot, lambda: backend.trainer.config.activation == "sigmoid", what="back to sigmoid")
        await status_shows(pilot, "sigmoid")


async def test_restart_keys_change_the_configuration(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        expected = [("i", "init", "xavier", "init xavier"), ("b", "batchnorm", True, "bn on"),
                    ("s", "skip", True, "skip on"), ("plus", "depth", 4, "4×64"), ("minus", "depth", 3, "3×64")]
        for n, (key, field, value, shown) in enumerate(expected, start=2):
            await pilot.press(key)
            await status_shows(pilot, shown, timeout=0.5)  # at once
            await wait_for(pilot, lambda: app.main.state.runs >= n and app.main.state.snap is not None, what=f"run {n}")
            assert app.main.state.run.config[field] == value
            assert backend.trainer.config.to_dict()[field] == value
            await status_shows(pilot, shown)
            await status_shows(pilot, "restarted")
        assert app.main.state.layers == ("fc1", "fc2", "fc3", "fc4")
        ends = [e for e in metrics_records(backend) if e["type"] == "end"]
        assert ends[0]["message"] == "restarted: sigmoid + xavier"
        runs = [e for e in metrics_records(backend) if e["type"] == "run"]
        assert len(runs) == 6
        await pilot.press("r")
        await wait_for(pilot, lambda: app.main.state.runs >= 7, what="the restart")
        assert app.main.state.run.config == runs[-1]["config"]


async def test_pause_step_and_speed_cap(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("space")
        await status_shows(pilot, "paused", timeout=0.5)
        await wait_for(pilot, lambda: backend.trainer.paused, what="the trainer to pause")
        await pilot.pause(0.3)
        step = backend.trainer.step
        await pilot.pause(0.3)
        assert backend.trainer.step == step
        await pilot.press("n")
        await wait_for(pilot, lambda: backend.trainer.step == step + 1, what="one step")
        await pilot.pause(0.3)
        assert backend.trainer.step == step + 1
        await wait_for(pilot, lambda: app.main.state.step == step + 1, what="the step's snapshot on screen")
        await status_shows(pilot, f"step {step + 1}/")
        await pilot.press("space")
        await wait_for(pilot, lambda: backend.trainer.step > step + 5, what="training to resume")
        await status_shows(pilot, "running")
        await pilot.press("left_square_bracket")
        await wait_for(pilot, lambda: backend.trainer.speed_cap == 200.0, what="a cap of 200 steps/s")
        await status_shows(pilot, "cap 200/s")
        await pilot.press("left_square_bracket", "left_square_bracket")
        await wait_for(pilot, lambda: backend.trainer.speed_cap == 50.0, what="a cap of 50 steps/s")
        await pilot.press("right_square_bracket", "right_square_bracket", "right_square_bracket")
        await wait_for(pilot, lambda: backend.trainer.speed_cap is None, what="no cap")
        assert "cap 50/s" not in await status_shows(pilot, "full speed")


async def test_view_keys_metric_scale_tab_help(make_app, tmp_path):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        bars = app.main.query_one(GradientBars)
        shown = await shows(pilot, bars, "grad norm")
        assert "log 1e-8…1e2 · l linear · x relative" in shown  # the caption offers the other scales
        await pilot.press("m")
        await shows(pilot, bars, "mean |grad|", timeout=0.5)
        await pilot.press("m", "m")
        await shows(pilot, bars, "update:data", timeout=0.5)
        flow = app.main.query_one("#flow", PlotextPanel)
        await pilot.press("m")  # the curves' last choice: the pre-activation percentiles; the bars keep update:data
        await shows(pilot, flow, "pre-activation z percentiles", timeout=0.5)
        assert "━ fc1 ━ fc2 ━ fc3 medians" in await shows(pilot, flow, "medians") and "update:data" in text_of(bars)
        await pilot.press("m")
        await shows(pilot, bars, "grad norm", timeout=0.5)
        await pilot.press("l")
        assert "1e-8" not in await shows(pilot, bars, "linear", timeout=0.5)
        await shows(pilot, flow, "linear y")
        await pilot.press("l")
        await shows(pilot, flow, "log y")

        switcher = app.main.query_one("#views", ContentSwitcher)
        await pilot.press("tab")
        assert switcher.current == "histograms"
        await shows(pilot, app.main.query_one("#hist-grid", PlotextPanel), "fc1")
        await pilot.press("tab")
        assert switcher.current == "layers"
        await shows(pilot, app.main.query_one("#table"), "fc3")
        await pilot.press("tab")
        assert switcher.current == "why"
        await shows(pilot, app.main.query_one("#why-panel"), "each layer multiplies the gradient")
        await pilot.press("tab")
        assert switcher.current == "overview"

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "activation" in text_of(app.screen.query_one("#help-keys"))
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

        await pilot.press("ctrl+s")
        svgs = list(tmp_path.glob("vgtui_*.svg"))
        assert len(svgs) == 1 and svgs[0].read_text().startswith("<svg")
        await status_shows(pilot, "screenshot saved")
        assert svgs[0].name in app.main.notice


async def test_command_palette_runs_vgtui_commands(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"toggle batchnorm")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.main.state.runs >= 2 and app.main.state.run.config["batchnorm"], what="batchnorm")


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
        await wait_for(pilot, lambda: app.main.state.runs >= 2 and app.main.state.snap is not None, what="the restart")
        assert not isinstance(app.screen, FailureScreen)
        backend.trainer.on_step = boom
        await wait_for(pilot, lambda: isinstance(app.screen, FailureScreen), what="the failure screen again")
        await pilot.press("q")
        await pilot.pause(0.1)
    assert app.return_code == 0


async def test_divergence_halts_and_names_the_layer(make_app):
    app, backend = make_app(SMALL.replace(activation="relu", init="kaiming", lr=5.0, probe_every=1))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.main.state.end is not None, what="divergence")
        end = app.main.state.end
        assert end.status == "diverged"
        status = await status_shows(pilot, "DIVERGED")
        assert "lower --lr" in status
        # seeded, a check at every step (probe_every 1): at lr 5 the loss passes 100x chance at step 2, before any
        # value is non-finite: it exploded, and the layer whose weights grew most is named
        assert end.message.startswith("exploded") and end.steps == 2 and end.layer == "fc4"
        assert "exploded" in status
        # the state has the end record as soon as it is read; the screen's RunEnded handler (which pauses) runs on
        # the message queue after it: under load the status line can say DIVERGED a moment before that
        await wait_for(pilot, lambda: app.main.paused, what="the pause after the divergence")
        await pilot.press("r")
        await wait_for(pilot, lambda: app.main.state.runs >= 2, what="the restart")


async def test_the_screen_keeps_textuals_logger_and_can_focus_a_widget():
    """The screen's log/linear option must not shadow Textual's `self.log` (the logger that `set_focus` calls): a
    focusable widget on the screen takes the focus, and `l` still switches the axes."""
    from textual.widgets import Input

    from .test_screen import replay_app, settle

    app = replay_app("sigmoid")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.main
        screen.log.info("a line for Textual's log")  # the logger, not a bool
        box = Input(id="probe-input")
        await screen.mount(box)
        screen.set_focus(box)
        await pilot.pause(0.1)
        assert screen.focused is box
        box.remove()
        await pilot.pause(0.1)
        await pilot.press("l")
        assert screen.log_axes is False
