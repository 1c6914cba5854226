"""The fork in the UI, on the real app over real training (a ThreadBackend): `f` forks (the new branch takes the
focus), a live change goes to B only, a recipe change restarts A and B together, `o` moves the focus, `F` ends the
fork keeping it; and the metrics file holds both branches. Three and four branches: tests/ui/test_fork4.py."""

from __future__ import annotations

from pathlib import Path

from .conftest import metrics_records, status_shows, text_of, wait_for
from .replay import ReplayBackend, load
from vgtui.ui.app import VgtuiApp
from vgtui.ui.widgets import GradientBars


async def forked(pilot, app):
    await wait_for(pilot, lambda: app.main.state.snap is not None, what="a snapshot")
    await pilot.press("f")
    await wait_for(pilot, lambda: app.main.forked and app.main.states[1].snap is not None, what="B's first snapshot")


async def test_fork_then_a_live_change_goes_to_b_only(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await forked(pilot, app)
        a, b = app.main.states
        assert b.run.forked_at >= 1 and b.config == a.config
        screen = await status_shows(pilot, "B fork@")
        assert "A vgtui" in screen
        await status_shows(pilot, "forked at step")
        bars = text_of(app.main.query_one(GradientBars))
        assert "gradients · grad norm ‖∇W‖ · A and B" in bars and "fc1 A" in bars and "fc1 B" in bars
        await pilot.press("a")
        await status_shows(pilot, "B: activation → tanh", timeout=0.5)  # at once
        await wait_for(pilot, lambda: backend.trainer.fork is not None
                       and backend.trainer.fork.config.activation == "tanh", what="tanh in B")
        await wait_for(pilot, lambda: b.snap is not None and b.snap.activation == "tanh", what="a tanh snapshot of B")
        assert backend.trainer.config.activation == "sigmoid" and a.snap.activation == "sigmoid"
        assert a.config.activation == "sigmoid" and b.config.activation == "tanh"
        await status_shows(pilot, "A unchanged")
        ev = [r for r in metrics_records(backend) if r["type"] == "event"]
        assert [r.get("branch") for r in ev] == [None, "B"] and ev[1]["set"] == {"activation": "tanh"}
        assert a.runs == 1  # no restart
        # lr: B at once, weights kept
        await pilot.press("L")
        await wait_for(pilot, lambda: backend.trainer.fork.config.lr == 0.001, what="B's lr")
        assert backend.trainer.config.lr == 0.01 and a.runs == 1


async def test_an_architectural_change_restarts_both_and_f_ends_the_fork_keeping_the_focus(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await forked(pilot, app)
        await pilot.press("b")
        await status_shows(pilot, "restarted A and B from seed 0: B = sigmoid + batchnorm")
        await wait_for(pilot, lambda: app.main.state.runs == 2 and app.main.forked
                       and app.main.states[1].config.batchnorm and app.main.states[1].snap is not None,
                       what="A and B restarted")
        a, b = app.main.states
        assert not a.config.batchnorm and b.run.forked_at == 0
        assert b.snap.step == a.snap.step or abs(b.snap.step - a.snap.step) <= 5
        heads = [(r.get("branch"), r.get("forked_at")) for r in metrics_records(backend) if r["type"] == "run"]
        assert heads[-2:] == [(None, None), ("B", 0)]
        await status_shows(pilot, "bn on")  # B's line
        # the focus (B's since the fork), then F: B is kept and goes on as the run
        assert app.main.focused_state is b
        await pilot.press("F")
        await wait_for(pilot, lambda: not app.main.forked and app.main.state.runs == 3, what="the fork to end")
        assert app.main.state.config.batchnorm and app.main.state.run.forked_at > 0
        await status_shows(pilot, "B goes on as the run")
        ends = [(r.get("branch"), r["status"]) for r in metrics_records(backend) if r["type"] == "end"]
        assert ends[-2:] == [(None, "interrupted"), ("B", "completed")]
        await wait_for(pilot, lambda: app.main.state.snap is not None and app.main.state.snap.step
                       > app.main.state.run.forked_at, what="the run going on")


async def test_o_then_F_keeping_a_ends_b(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await forked(pilot, app)
        await pilot.press("o")
        await status_shows(pilot, "focus on A", timeout=0.5)
        await pilot.press("F")
        await wait_for(pilot, lambda: not app.main.forked, what="the fork to end")
        await status_shows(pilot, "A goes on, B is in the metrics file")
        assert app.main.state.runs == 1 and backend.trainer.fork is None
        end_b = [r for r in metrics_records(backend) if r["type"] == "end" and r.get("branch") == "B"]
        assert len(end_b) == 1 and end_b[0]["message"].endswith("A was kept")
        await pilot.press("o")
        assert app.main.branch_focus == 0  # nothing to focus without a fork


# ---------------------------------------------------------------------------------------------- recorded forks
FORKED = Path(__file__).parent / "fixtures" / "forked.jsonl"  # make_fixture.py: sigmoid, forked at 40, B to relu


async def settle_fork(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.main.forked and app.main.states[1].end is not None
                   and app.main.state.end is not None, what="both branches to their end")
    app.main.notice = ""
    app.clear_notifications()
    await wait_for(pilot, app.main.up_to_date, what="every panel's last frame")
    await pilot.pause(0.1)


def test_fork_screen(snap_compare):
    """A fork as the live UI shows it (the recorded records played as if the trainer sent them): A and B side by
    side, B's ReLU against A's sigmoid, both diagnoses, B's test accuracy against A's."""
    app = VgtuiApp(ReplayBackend(load("forked")), fps=4)
    assert snap_compare(app, terminal_size=(120, 40), run_before=settle_fork)


async def test_the_recorded_fork_plays_live_as_two_runs():
    backend = ReplayBackend(load("forked"))
    app = VgtuiApp(backend, fps=4)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle_fork(pilot)
        a, b = app.main.states
        assert b.run.forked_at == 40 and b.snap.activation == "relu" and a.snap.activation == "sigmoid"
        screen = await status_shows(pilot, "B fork@40")
        assert "test acc A 10.0%  B 19.2%  B−A +9.2 pts" in screen
        assert a.verdict().badge == "VANISHING" and b.verdict().regime == "healthy"
        await pilot.press("f")  # the run has ended with its fork: nothing to end, nothing sent
        await pilot.pause(0.2)
        assert backend.sent == [] and app.main.forked and app.main.ending_fork is None


async def test_replay_of_a_forked_file_shows_the_run_and_its_fork():
    from vgtui.sources.file import FileSource

    src = FileSource(str(FORKED))
    src.open()
    app = VgtuiApp(src, fps=4)  # as `vgtui replay forked.jsonl` opens it: the fork comes beside the run
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(app.main.states) == 2 and app.main.states[1].snap is not None,
                       what="both runs")
        a, b = app.main.states
        assert (a.snap.step, b.snap.step) == (120, 120) and b.label == "fork@40"
        await pilot.press("home")
        await wait_for(pilot, lambda: a.snap.step == 1, what="the first snapshot")
        assert b.snap.step == 50  # B has nothing before its fork: its first snapshot
        for _ in range(6):
            await pilot.press("right")
        await wait_for(pilot, lambda: a.snap.step == 60 and b.snap.step == 60, what="step 60 in both")
        assert b.snap.activation == "relu" and a.snap.activation == "sigmoid"
        await status_shows(pilot, "B fork@40")
        # o: the gradient histograms show the other run
        hist = app.main.query_one("#hist-all")
        assert "run A forked.jsonl (o: the other)" in hist.border_title
        await pilot.press("o")
        assert "run B fork@40" in hist.border_title and app.main.focused_state is b
        await status_shows(pilot, "focus on B: the histograms show B")


async def test_follow_shows_the_fork_when_it_is_written(tmp_path):
    """`vgtui follow` of a file a forked run is writing: B appears beside the run once its header arrives, and
    keeps up with it."""
    from vgtui.sources.file import FileSource

    lines = FORKED.read_text().splitlines(keepends=True)
    first_b = next(i for i, line in enumerate(lines) if '"branch":"B"' in line)
    path = tmp_path / "growing.jsonl"
    path.write_text("".join(lines[:first_b]))
    src = FileSource(str(path), follow=True)
    src.open()
    app = VgtuiApp(src, fps=4)
    async with app.run_test(size=(120, 40)) as pilot:
        await status_shows(pilot, "step 40")
        assert len(app.main.states) == 1
        with open(path, "a") as f:  # B's header, ... A's snapshot at step 50: B's comes on the next line
            f.writelines(lines[first_b:first_b + 8])
        await wait_for(pilot, lambda: len(app.main.states) == 2, what="B beside the run")
        await status_shows(pilot, "B fork@40")
        assert app.main.state.snap.step == 50 and app.main.states[1].snap is None
        with open(path, "a") as f:
            f.write(lines[first_b + 8])  # B's snapshot at step 50, after A's
        await wait_for(pilot, lambda: app.main.states[1].snap is not None and app.main.states[1].snap.step == 50,
                       what="B's first snapshot")
        with open(path, "a") as f:
            f.writelines(lines[first_b + 9:])
        await wait_for(pilot, lambda: app.main.state.snap.step == 120 and app.main.states[1].snap.step == 120,
                       what="both at their last snapshot")
        assert app.main.states[1].snap.activation == "relu"
        await wait_for(pilot, lambda: len(app.main.states[1].history.steps) == 8, what="B's curves")
