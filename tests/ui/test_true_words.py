"""Issue 14's words on screen that were not true (and issue 13's fork race), each read off the real screen: the
real app over real training (a ThreadBackend), recorded runs replayed, and the real `vgtui` on a pseudo-terminal.

- `a` after the run ended says the change waits for the next restart (nothing trains, no event is written).
- A restart says what changed ("depth 3 → 2"), not only the configuration it runs.
- Ending a fork keeping B shows B where it is (its step, its last probe), and paused when it is.
- The compact header (80x24) still says what the badge's number is (fc1/fc6).
- `?`, then Esc and a key at once (as a terminal sends them when typed fast, or over SSH): the key acts.
- Only accuracies go on the accuracy axis; a user's learning rate (in 0..1) does not.
- `f` then `a` before the trainer answered: the change goes to B, A (the control) stays as it was.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .conftest import SMALL, metrics_records, status_shows, text_of, wait_for
from .ptyrun import Tty
from .replay import ReplayBackend, load
from vgtui.ui.app import VgtuiApp
from vgtui.ui.screens import HelpScreen
from vgtui.ui.widgets import StatusBar

SIGMOID = Path(__file__).parent / "fixtures" / "sigmoid.jsonl"


async def started(pilot, app, runs: int = 1) -> None:
    await wait_for(pilot, lambda: app.main.state.runs >= runs and app.main.state.snap is not None, what="a snapshot")


async def test_a_after_the_run_ended_waits_for_the_next_restart(make_app):
    app, backend = make_app(SMALL.replace(epochs=1, max_steps=10), cap=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.main.state.end is not None, what="the run to end")
        await pilot.press("a")
        shown = await status_shows(pilot, "activation → tanh at the next restart (r): the run has ended", 1.0)
        assert "live" not in shown and "weights kept" not in shown
        await pilot.pause(0.3)
        assert not [r for r in metrics_records(backend) if r["type"] == "event"]  # nothing trained, nothing written
        await pilot.press("r")  # the change applies at the restart
        await wait_for(pilot, lambda: app.main.state.runs == 2, what="the restart")
        assert app.main.state.run.config["activation"] == "tanh"


async def test_a_restart_says_what_changed(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        for n, (key, change) in enumerate([("minus", "depth 3 → 2"), ("i", "init default → xavier"),
                                            ("b", "batchnorm off → on"), ("s", "skip off → on")], start=2):
            await pilot.press(key)
            await status_shows(pilot, change, 1.0)  # at once: "restarting: ..." (or already "restarted: ...")
            await wait_for(pilot, lambda: app.main.state.runs >= n, what=f"run {n}")
            await status_shows(pilot, f"restarted: {change}")
        await pilot.press("r")
        await wait_for(pilot, lambda: app.main.state.runs >= 6, what="run 6")
        await status_shows(pilot, "restarted with the same configuration")


async def test_keeping_b_shows_b_where_it_is(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("f")
        await wait_for(pilot, lambda: app.main.forked and app.main.states[1].snap is not None
                       and app.main.states[1].snap.step > app.main.states[1].run.forked_at, what="B trained")
        await pilot.press("space")  # paused: no snapshot comes after the fork ends, only what the screen kept
        await wait_for(pilot, lambda: backend.trainer.paused and app.main.paused, what="the pause")
        b = app.main.states[1]
        step, epochs = b.snap.step, len(b.epochs)
        await pilot.press("F")  # B, in focus since the fork, is kept
        await wait_for(pilot, lambda: not app.main.forked and app.main.state.runs == 2, what="B kept")
        await pilot.pause(0.3)
        shown = await status_shows(pilot, "B goes on as the run")
        now = backend.trainer.step  # where B is (paused): its last probe may be a few steps before
        assert backend.trainer.paused and now >= step
        assert f"epoch {(now - 1) // 50 + 1}/500  step {now}/" in shown and "step 0/" not in shown, shown
        assert "waiting for the first probe" not in shown and "⏸ paused" in shown and "loss " in shown, shown
        s = app.main.state  # B's last probe, its epochs, its curves
        assert s.snap.step == step and len(s.epochs) == epochs and s.history.steps[-1] == step


async def test_the_compact_header_names_the_ratio():
    app = VgtuiApp(ReplayBackend(load("sigmoid")), fps=4)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.main.state.end is not None, what="the replay to finish")
        shown = await status_shows(pilot, "VANISHING")
        header = shown.splitlines()[0]
        assert "VANISHING fc1/fc6 " in header and len(header) <= 80, header


async def test_a_key_pressed_with_esc_on_the_help_acts():
    app = VgtuiApp(ReplayBackend(load("sigmoid")), fps=4)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.main.state.end is not None, what="the replay to finish")
        for key, log in (("alt+l", False), ("l", True)):  # Esc + l at once; l alone closes the help and acts too
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press(key)
            await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen), 2.0, "the help to close")
            assert app.main.log_axes is log
        await pilot.press("question_mark", "escape")  # Esc alone closes it and does nothing else
        assert not isinstance(app.screen, HelpScreen) and app.main.log_axes is True


def test_esc_and_a_key_at_once_on_a_terminal_close_the_help_and_act():
    """The bytes a terminal sends for Esc then `l` typed within Textual's escape delay (0.1 s), or together over
    SSH: ESC l arrives as one sequence (alt+l)."""
    with Tty(["replay", str(SIGMOID)], size=(120, 40)) as tty:
        tty.wait_text("fc6", 30)
        tty.send(b"?")
        tty.wait_text("vgtui keys", 10)
        tty.send(b"\x1bl")
        tty.wait_text("linear y", 10)  # the curves' title: `l` switched to linear axes
        tty.send(b"q")
        assert tty.wait(15) == 0  # q quits: the help is not open (there it only closes the help)


async def test_a_learning_rate_is_not_drawn_on_the_accuracy_axis(tmp_path):
    """A user's loop gives its accuracy and its learning rate (both in 0..1): the accuracy is drawn on the
    accuracy axis, the learning rate is not (the status line shows both)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    import vgtui
    from vgtui.sources.file import FileSource

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
    for names in (("lr",), ("lr", "acc")):
        path = tmp_path / f"{'-'.join(names)}.jsonl"
        with vgtui.watch(model, metrics=path, every=2, optimizer=opt, quiet=True) as probe:
            for _ in range(20):
                out = model(x)
                loss = F.cross_entropy(out, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                m = {"lr": 0.05, "acc": (out.argmax(1) == y).float().mean()}
                probe.step(loss=loss, metrics={k: m[k] for k in names})
        src = FileSource(str(path))
        src.open()
        app = VgtuiApp(src, fps=4)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.main.state.snap is not None and len(app.main.state.history.steps) == 11,
                           what="the run's curves")
            await wait_for(pilot, app.main.up_to_date, what="every panel drawn")
            status = text_of(app.main.query_one(StatusBar))
            assert "lr 0.05" in status
            loss = text_of(app.main.query_one("#loss"))
            if names == ("lr",):
                assert "•" not in loss, loss  # nothing on the accuracy axis: lr has a chart of its own
                assert "1 more: m → your metrics" in loss.splitlines()[-1], loss
            else:
                assert "• acc" in loss and "lr" not in loss.splitlines()[-1], loss
                assert "•" in "".join(loss.splitlines()[1:-1])  # acc's dots


async def hold_trainer(pilot, backend) -> threading.Event:
    """Hold the trainer thread between two steps (until the returned event is set), so keys pressed now reach it
    together, as a fast hand's would."""
    gate, held = threading.Event(), threading.Event()

    def hold(trainer) -> None:
        held.set()
        gate.wait(10)

    backend.trainer.on_step = hold
    await wait_for(pilot, held.is_set, what="the trainer held")
    return gate


async def test_f_then_a_at_once_changes_b_not_a(make_app):
    """Issue 13: `a` pressed before the trainer answered `f` belongs to B. The trainer is held between two steps
    while both keys are pressed, so it reads the fork and the change together (what a fast hand does)."""
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        gate = await hold_trainer(pilot, backend)
        await pilot.press("f", "a")
        await status_shows(pilot, "B: activation → tanh", 1.0)  # at once, before the trainer answered
        backend.trainer.on_step = None
        gate.set()
        await wait_for(pilot, lambda: app.main.forked and app.main.states[1].config.activation == "tanh",
                       what="tanh in B")
        await wait_for(pilot, lambda: app.main.states[1].snap is not None
                       and app.main.states[1].snap.activation == "tanh", what="a tanh snapshot of B")
        assert backend.trainer.config.activation == "sigmoid" and backend.trainer.fork.config.activation == "tanh"
        a, b = app.main.states
        assert a.config.activation == "sigmoid" and a.snap.activation == "sigmoid" and a.runs == 1
        ev = [(r.get("branch"), r["set"]) for r in metrics_records(backend) if r["type"] == "event"]
        assert ev[-1] == ("B", {"activation": "tanh"}) and not [e for e in ev if "activation" in e[1] and e[0] is None]
        await status_shows(pilot, "A unchanged")


async def test_a_pressed_while_the_fork_ends_keeping_b_changes_the_kept_run(make_app):
    """`F` (end the fork keeping B, in focus), then `a` before the trainer answered: B goes on as the run, with the
    change (the trainer reads the end first, then the change, which is the kept run's)."""
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("f")
        await wait_for(pilot, lambda: app.main.forked and app.main.states[1].snap is not None, what="B")
        gate = await hold_trainer(pilot, backend)
        await pilot.press("F", "a")
        shown = await status_shows(pilot, "activation → tanh (live, weights kept)", 1.0)
        assert "B: activation" not in shown
        backend.trainer.on_step = None
        gate.set()
        await wait_for(pilot, lambda: not app.main.forked and app.main.state.runs == 2, what="B kept")
        await wait_for(pilot, lambda: backend.trainer.config.activation == "tanh", what="tanh in the kept run")
        await wait_for(pilot, lambda: app.main.state.snap.activation == "tanh", what="a tanh snapshot")
        ev = [(r.get("branch"), r["set"]) for r in metrics_records(backend) if r["type"] == "event"]
        assert ev[-1] == (None, {"activation": "tanh"}), ev


async def test_the_epochs_said_are_those_the_run_trains(make_app):
    """--max-steps 60 of epochs of 40 (the config's --epochs 500): 'epoch 1/2', not '/500' (a lesson's step is such a
    run: its config's epochs are a bound it never reaches)."""
    app, backend = make_app(SMALL.replace(max_steps=60))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        shown = await status_shows(pilot, "epoch 1/2  step ")
        assert "/500" not in shown and "step 0/60" not in shown and "/60" in shown
