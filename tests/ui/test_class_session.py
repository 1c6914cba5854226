"""The file a class session leaves: the real trainer driven through the real app's keys (f forks, o F ends the fork
keeping A, then F keeping B, r restarts, a recipe change restarts a fork, q quits while forked), then that
file replayed with `p` through every run and around again (forked runs next to runs without a fork, both ways),
and followed while it grows, chunk by chunk, without an exception."""

from __future__ import annotations

import json

import pytest

from vgtui.sources.file import FileSource
from vgtui.ui.app import VgtuiApp

from .conftest import status_shows, wait_for


async def _fork(pilot, app) -> None:
    await wait_for(pilot, lambda: app.main.state.snap is not None and app.main.state.end is None, what="a snapshot")
    await pilot.press("f")
    await wait_for(pilot, lambda: app.main.forked and app.main.states[1].snap is not None, what="B's first snapshot")


async def _snapshots(pilot, app, k: int = 2) -> None:
    """A few more snapshots of the run (A) on screen."""
    step = app.main.state.step
    await wait_for(pilot, lambda: app.main.state.snap is not None and app.main.state.snap.step >= step + 5 * k,
                   what=f"{k} more snapshots")


@pytest.fixture(scope="module")
def session_file(tmp_path_factory, digits):
    """A recorded lesson: the real trainer (a ThreadBackend) under the real app, keys pressed as a person does."""
    import asyncio

    from vgtui.core.records import SetSpeedCap
    from vgtui.sources.trainer import ThreadBackend

    from .conftest import SMALL

    path = tmp_path_factory.mktemp("class") / "live.jsonl"
    backend = ThreadBackend(SMALL, str(path), data=digits)
    backend.start()
    backend.send(SetSpeedCap(60.0))
    app = VgtuiApp(backend, fps=8, start_source=False)

    async def lesson() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            m = app.main
            await _fork(pilot, app)  # run 1: forked, the fork ended keeping A
            await _snapshots(pilot, app)
            await pilot.press("o", "F")
            await wait_for(pilot, lambda: not m.forked, what="the fork to end keeping A")
            await _snapshots(pilot, app)
            await pilot.press("r")  # run 2: a restart, never forked
            await wait_for(pilot, lambda: m.state.runs == 2 and m.state.snap is not None, what="the restart")
            await _snapshots(pilot, app, 3)
            await pilot.press("r")  # run 3: forked, a restart of both (r while forked), then F: B (in focus) kept
            await wait_for(pilot, lambda: m.state.runs == 3 and m.state.snap is not None, what="the restart")
            await _fork(pilot, app)
            await _snapshots(pilot, app)
            await pilot.press("r")
            await wait_for(pilot, lambda: m.state.runs == 4 and m.forked and m.states[1].snap is not None
                           and m.states[1].run.forked_at == 0, what="A and B restarted")
            await _snapshots(pilot, app)
            await pilot.press("F")  # run 5: B goes on as the run
            await wait_for(pilot, lambda: not m.forked and m.state.runs == 5, what="the fork to end keeping B")
            await _snapshots(pilot, app)
            await _fork(pilot, app)  # forked again, then quit while forked
            await _snapshots(pilot, app)
            await pilot.press("q")

    try:
        asyncio.run(lesson())
    finally:
        backend.close(timeout=5)
    return path


def test_the_session_file_holds_forked_and_unforked_runs(session_file):
    recs = [json.loads(line) for line in session_file.read_text().splitlines() if line.strip()]
    heads = [(r.get("branch"), r.get("forked_at")) for r in recs if r["type"] == "run"]
    runs = [i for i, h in enumerate(heads) if h[0] is None]
    assert len(runs) == 5, heads
    assert heads[1][0] == "B" and heads[1][1] > 0  # run 1 forked
    assert heads[2] == (None, None) and heads[3] == (None, None)  # run 2 without a fork; run 3 before its fork
    assert [h[0] for h in heads[3:]] == [None, "B", None, "B", None, "B"]
    assert heads[6][1] == 0 and heads[7][1] > 0  # run 4: A and B restarted together; run 5: B kept, goes on
    ends = [(r.get("branch"), r["status"]) for r in recs if r["type"] == "end"]
    assert ends[-2:] == [("B", "interrupted"), (None, "interrupted")] or ends[-2:] == [
        (None, "interrupted"), ("B", "interrupted")]  # quit while forked: both ended


def _expected(src: FileSource):
    run = src.run
    branch = run.branches[-1] if run.branches else None
    return run, branch


async def test_replay_p_through_every_run_and_around(session_file):
    src = FileSource(str(session_file))
    src.open()
    n = len(src.runs)
    app = VgtuiApp(src, fps=8)
    async with app.run_test(size=(120, 40)) as pilot:
        m = app.main
        seen = []
        for k in range(2 * n + 1):  # every run twice: forked -> unforked, unforked -> forked, the last -> the first
            run, branch = _expected(src)
            await wait_for(pilot, lambda: m.state.run is run.header and len(m.states) == (2 if branch else 1),
                           what=f"run {src.run_number} ({'forked' if branch else 'no fork'})")
            assert m.state.position == (run.n_snapshots - 1, run.n_snapshots)
            assert m.state.snap.step == int(run.snapshot_steps[-1])
            assert m.state.run_of == (src.run_number, n)
            await status_shows(pilot, "B fork@" if branch else f"run {src.run_number} / {n}")
            if branch is not None:
                b = m.states[1]
                assert b.run is branch.header and b.snap is not None
                assert b.snap.step == int(branch.snapshot_steps[branch.index_of_step(m.state.snap.step)])
                await pilot.press("home", "right")
                assert b.position is not None and b.snap.step <= max(m.state.snap.step, int(branch.snapshot_steps[0]))
                await pilot.press("end")
            else:
                await pilot.press("home", "right", "end")
            seen.append((src.run_number, branch is not None))
            await pilot.press("p")
        assert {r for r, _ in seen} == set(range(1, n + 1))
        assert {f for _, f in seen} == {True, False}
        assert [r for r, _ in seen[:n + 1]] == [n, *range(1, n + 1)]  # p goes on to the next, after the last the first
        for panel in m.query("Panel"):
            assert panel.failures == []


async def test_follow_the_session_file_while_it_grows(session_file, tmp_path):
    """The recorded lines appended in chunks (a chunk may end anywhere: a new run's header, B's header, a fork's
    end): the follower shows the latest run, B beside it exactly while that run has a fork."""
    lines = session_file.read_text().splitlines(keepends=True)
    path = tmp_path / "growing.jsonl"
    path.write_text("".join(lines[:3]))
    src = FileSource(str(path), follow=True)
    src.open()
    app = VgtuiApp(src, fps=8)
    chunk = max(len(lines) // 12, 5)
    async with app.run_test(size=(120, 40)) as pilot:
        m = app.main
        done = 3
        while done < len(lines):
            with open(path, "a") as f:
                f.writelines(lines[done:done + chunk])
            done += chunk
            await wait_for(pilot, lambda: src.index.n_records == min(done, len(lines)), what="the chunk indexed")
            run = src.runs[-1]
            await wait_for(pilot, lambda: m.state.run is run.header and len(m.states) == (2 if run.branches else 1),
                           what="the latest run, with its fork if it has one")
            if run.n_snapshots:
                await wait_for(pilot, lambda: m.state.snap is not None and m.state.snap.step
                               == int(run.snapshot_steps[-1]), what="the last snapshot")
        assert src.run_number == len(src.runs) == 5
        assert len(m.states) == 2  # the session ended forked
        for panel in m.query("Panel"):
            assert panel.failures == []
    with open(path) as f:
        assert f.read() == "".join(lines)
