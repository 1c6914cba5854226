"""A fork of up to four runs in the UI (issue 17), on the real app over real training (a ThreadBackend): `f` three
times makes B, C and D, each taking the focus; a live change goes to the run in focus only; a fifth run is refused;
`o` cycles A..D; the bars interleave the four runs, the status has a badge each; `F` ends the fork keeping the run in
focus; the palette's "Fork with ..." adds a branch with a remedy, every run from step 0. Engine-level numbers:
tests/test_fork4.py."""

from __future__ import annotations

from vgtui.ui.widgets import GradientBars

from .conftest import metrics_records, status_shows, text_of, wait_for


async def started(pilot, app) -> None:
    await wait_for(pilot, lambda: app.main.state.snap is not None, what="a snapshot")


def live(app) -> list[str]:
    return [st.run.branch or "A" for st in app.main.states if st.run is not None and st.end is None]


async def test_f_three_times_makes_four_runs_side_by_side_and_F_keeps_the_focus(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        m = app.main
        await started(pilot, app)
        for n, bid in ((2, "B"), (3, "C"), (4, "D")):
            await pilot.press("f")
            await wait_for(pilot, lambda: len(m.states) == n and m.states[-1].snap is not None, what=f"{bid}'s snapshot")
            assert m.focus_id == bid and m.states[-1].run.branch == bid  # the new branch takes the focus
        await status_shows(pilot, "forked at step")
        assert [b.id for b in backend.trainer.branches] == [None, "B", "C", "D"]
        # a fifth: refused on the screen, nothing sent
        await pilot.press("f")
        await pilot.pause(0.2)
        assert len(backend.trainer.branches) == 4 and m.fork_pending is None
        # the focus to C (D -> A -> B -> C), then a live change: C's only
        await pilot.press("o", "o", "o")
        assert m.focus_id == "C"
        await pilot.press("a")
        await status_shows(pilot, "C: activation → tanh", timeout=0.5)
        await wait_for(pilot, lambda: backend.trainer.branch("C").config.activation == "tanh", what="tanh in C")
        assert [b.config.activation for b in backend.trainer.branches] == ["sigmoid", "sigmoid", "tanh", "sigmoid"]
        a, b, c, d = m.states
        await wait_for(pilot, lambda: c.snap.activation == "tanh", what="a tanh snapshot of C")
        ev = [(r.get("branch"), r["set"]) for r in metrics_records(backend) if r["type"] == "event"]
        assert ev[-1] == ("C", {"activation": "tanh"})
        # four runs on screen: the bars interleave A..D per layer, the status has one badge each
        bars = text_of(m.query_one(GradientBars))
        assert all(f"fc1 {t}" in bars for t in "ABCD"), bars
        shown = await status_shows(pilot, "▸C")
        assert all(f"{t} " in shown for t in "ABD")
        # F: C goes on as the run; A, B and D end (in the metrics file)
        await pilot.press("F")
        await wait_for(pilot, lambda: not m.forked and m.state.runs == 2, what="the fork to end keeping C")
        await status_shows(pilot, "C goes on as the run")
        assert m.state.config.activation == "tanh" and backend.trainer.branches[0].id is None
        ends = [(r.get("branch"), r["status"], r.get("cause")) for r in metrics_records(backend) if r["type"] == "end"]
        assert sorted(ends, key=str) == sorted([("B", "interrupted", "fork-ended"), ("D", "interrupted", "fork-ended"),
                                                (None, "interrupted", "fork-ended"), ("C", "completed", "fork-kept")],
                                               key=str)


async def test_fork_with_from_the_palette_starts_every_run_again_with_a_remedy_each(make_app):
    """The four-remedies comparison in a few keys: the palette's "Fork with: skip", then batch norm and ReLU (the
    same entries' action): A (plain) and B, C, D each with its remedy, all from step 0 of the same seed on the same
    batches."""
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        m = app.main
        await started(pilot, app)
        titles = [c.title for c in app.get_system_commands(m)]
        assert [t for t in titles if t.startswith("Fork with: ")] == [
            "Fork with: relu", "Fork with: batch norm", "Fork with: xavier", "Fork with: skip"]
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"with: s")  # only the "Fork with: ..." titles have a colon
        await pilot.pause(0.5)
        await pilot.press("enter")
        for n, remedy in ((2, None), (3, "batchnorm"), (4, "relu")):
            if remedy is not None:
                m.action_fork_with(remedy)
            await wait_for(pilot, lambda: len(m.states) == n and m.states[-1].snap is not None and m.state.runs == n,
                           what=f"{remedy or 'skip'}: the restart of {n} runs")
        a, b, c, d = m.states
        assert [st.run.forked_at for st in (b, c, d)] == [0, 0, 0] and m.focus_id == "D"
        assert (b.config.skip, c.config.batchnorm, d.config.activation) == (True, True, "relu")
        assert not (a.config.batchnorm or a.config.skip) and a.config.activation == "sigmoid"
        assert not (b.config.batchnorm or c.config.skip) and b.config.activation == c.config.activation == "sigmoid"
        await status_shows(pilot, "restarted A, B, C and D from seed 0: D = relu")
        heads = [(r.get("branch"), r.get("forked_at")) for r in metrics_records(backend) if r["type"] == "run"]
        assert heads[-4:] == [(None, None), ("B", 0), ("C", 0), ("D", 0)]
        assert live(app) == ["A", "B", "C", "D"]


async def test_a_branch_that_diverges_stays_on_screen_while_the_others_go_on(make_app):
    from vgtui.core.records import SetLR

    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        m = app.main
        await started(pilot, app)
        for n in (2, 3):  # B, C
            await pilot.press("f")
            await wait_for(pilot, lambda: len(m.states) == n and m.states[-1].snap is not None, what=f"run {n}")
        backend.send(SetLR(1e6, branch="B"))  # a learning rate no sigmoid network survives
        await wait_for(pilot, lambda: m.states[1].end is not None, what="B's end")
        shown = await status_shows(pilot, "go on")
        assert m.states[1].end.status == "diverged" and "B diverged at step" in m.notice
        assert "A and C go on" in m.notice, shown
        assert len(m.states) == 3 and live(app) == ["A", "C"] and [b.id for b in backend.trainer.branches] == [None, "C"]
        step = m.states[2].snap.step
        await wait_for(pilot, lambda: m.states[2].snap.step > step and m.state.snap.step > step, what="A and C on")
        # f takes B's place again: a new B, an exact copy of A
        await pilot.press("f")
        await wait_for(pilot, lambda: m.states[1].end is None and m.states[1].snap is not None, what="a new B")
        assert live(app) == ["A", "B", "C"] and m.focus_id == "B"


async def test_e_in_a_fork_of_three_writes_each_run_on_screen(make_app, tmp_path):
    """`e` live in a fork of three runs: one CSV per run on screen (metrics.csv, metrics-B.csv, metrics-C.csv), each
    holding its own run's snapshots (B and C from the step they were forked at)."""
    import csv

    app, backend = make_app()
    async with app.run_test(size=(240, 40)) as pilot:
        m = app.main
        await started(pilot, app)
        for n, bid in ((2, "B"), (3, "C")):
            await pilot.press("f")
            await wait_for(pilot, lambda: len(m.states) == n and m.states[-1].snap is not None, what=f"{bid}'s snapshot")
        await pilot.press("space")  # paused: the files stay as they are while they are read
        await pilot.press("e")
        await status_shows(pilot, "CSV written, one per run shown (3 of 3)", timeout=15)
        forked_at = {st.run.branch: st.run.forked_at for st in m.states[1:]}
    rows = {}
    for tag, name in (("A", "metrics.csv"), ("B", "metrics-B.csv"), ("C", "metrics-C.csv")):
        with open(tmp_path / name, newline="") as f:
            rows[tag] = [int(r["step"]) for r in csv.DictReader(f)]
    assert rows["A"] and min(rows["A"]) == 1
    for tag in "BC":
        assert rows[tag] and min(rows[tag]) > forked_at[tag] - 1, (tag, forked_at, rows[tag][:3])
    assert not (tmp_path / "metrics-D.csv").exists()


async def test_a_restart_keeps_the_run_before_it_as_a_faint_trace(make_app):
    """Issue 17's demo default in the plain UI: `b` restarts with batch norm, and the loss chart keeps the sigmoid run
    before it as a grey trace (colour 240) under the new run's curve, without a fork."""
    from textual.geometry import Region

    from .conftest import SMALL

    app, backend = make_app(SMALL.replace(max_steps=60))  # a step axis of 60: the trace's steps are not one column
    async with app.run_test(size=(120, 40)) as pilot:
        m = app.main

        def trace_cells() -> int:
            w = m.query_one("#loss")
            lines = w.render_lines(Region(0, 0, *w.outer_size))
            return sum(1 for strip in lines for seg in strip
                       if seg.style and seg.style.color and seg.style.color.triplet and seg.style.color.triplet.hex == "#585858" and seg.text.strip())

        await wait_for(pilot, lambda: len(m.state.history.steps) >= 3, what="three snapshots of the first run")
        assert m.state.trace is None and trace_cells() == 0
        before = list(m.state.history.steps)
        await pilot.press("b")
        await wait_for(pilot, lambda: m.state.config.batchnorm and m.state.snap is not None
                       and len(m.state.history.steps) >= 1, what="the restarted run's snapshot")
        assert m.state.trace is not None and m.state.trace.steps[:len(before)] == before
        await wait_for(pilot, lambda: len(m.state.history.steps) >= 4, what="the restarted run's curve")
        await wait_for(pilot, lambda: trace_cells() > 0, what="the grey trace on the loss chart")
