"""Every rank's view in a distributed job's snapshots, and a job whose ranks do not all call vgtui.watch: one
warning line within the timeout, the probes off, training completed, no hang (jobs: tests/distjobs.py)."""

import os
import re
import subprocess
import sys

import pytest

from distjobs import job, the_run
from vgtui.core.records import Snapshot, record_from_json, to_json
from vgtui.watching import rank_view


def test_a_rank_with_different_data_is_flagged():
    run = the_run(4, "bad-data")  # the last rank's inputs are 30 times larger; after step 3 its replica drifts
    for s in run.snapshots:
        assert [r.rank for r in s.departed()] == [3], (s.step, s.ranks)
        assert "far from the ranks' median" in s.ranks[3].flag
    assert "replica weights differ" not in run.snapshots[1].ranks[3].flag  # steps 1, 2: the same weights
    assert "replica weights differ" in run.snapshots[2].ranks[3].flag  # steps 4, 6: rank 3's replica moved
    assert len({r.checksum for r in run.snapshots[2].ranks[:3]}) == 1
    # an event when rank 3 first departs and when the reason changes
    assert [(e.step, e.set["ranks"].split(":")[0]) for e in run.events] == [(1, "rank 3"), (4, "rank 3")]


def test_the_summary_without_a_terminal_names_the_flagged_rank():
    out, _ = job(4)
    r = subprocess.run([sys.executable, "-m", "vgtui", "replay", str(out / "bad-data-4.jsonl")], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=60, env={**os.environ, "TERM": "dumb"})
    assert r.returncode == 0, r.stderr
    (line,) = [l for l in r.stdout.splitlines() if "ranks: 4 at step 6" in l]
    assert re.search(r"loss by rank 0:\S+ 1:\S+ 2:\S+ 3:\S+ · rank 3: loss \S+ far from", line)
    assert "ranks: step 1: rank 3: loss" in r.stdout


def test_only_rank_0_calls_watch_one_warning_and_training_completes():
    _, out = job(2)
    warned = [l for l in out.splitlines() if l.startswith("warn rank 0:") and "step 0" in l]
    assert len(warned) == 1 and "not every one of the 2 ranks called vgtui.watch" in warned[0]
    assert "within 2 s" in warned[0]
    run = the_run(2, "rank0-only")
    assert run.end.status == "completed" and run.end.steps == 6 and not run.snapshots
    assert [e.set for e in run.events][0]["probes"].startswith("off: LinkError: not every one")


def test_a_rank_that_stops_calling_is_said_and_training_goes_on():
    # rank 1 closes its watch after step 3: rank 0's probed step 4 fails (at once: rank 1 let its group go), then
    # goes on
    _, out = job(2)
    warned = [l for l in out.splitlines() if l.startswith("warn rank 0:") and "probes off from step 4" in l]
    assert len(warned) == 1
    run = the_run(2, "quit")
    assert [s.step for s in run.snapshots] == [1, 2] and run.end.status == "completed" and run.end.steps == 6


def test_every_rank_lets_the_watchs_group_go_at_close():
    """close() lets the watch's own gloo group go at once (its threads joined) rather than at the interpreter's
    exit, where gloo's teardown can abort the process: seen once as a SIGABRT at the end of examples/fsdp_cpu.py
    under torchrun on a loaded machine."""
    _, out = job(2)
    for mode in ("fsdp", "fsdp-keep", "ddp", "sync"):  # the modes whose ranks all keep their link to the end
        said = sorted(line for line in out.splitlines() if f" {mode} link " in line)
        assert said == [f"rank {r} {mode} link released" for r in (0, 1)], out[-2000:]


def test_rank_view_flags():
    import numpy as np

    nan = float("nan")
    row = lambda loss, wait=0.01, check=5.0: [loss, loss, 0.1, wait, check]  # noqa: E731
    assert not any(r.flag for r in rank_view(np.array([row(1.0), row(3.0)])))  # two ranks: neither is odd
    flagged = rank_view(np.array([row(1.0), row(1.1), row(nan), row(0.9, wait=2.0), row(1.0, check=5.5)]))
    assert [r.rank for r in flagged if r.flag] == [2, 3, 4]
    assert "where the others' is finite" in flagged[2].flag and "straggler" in flagged[3].flag
    assert "replica weights differ" in flagged[4].flag


def test_ranks_round_trip_and_old_snapshots_have_none():
    snap = the_run(2, "ddp").snapshots[0]
    back = record_from_json(to_json(snap))
    fields = lambda s: [(r.rank, r.loss, r.step_s, r.wait_s, r.checksum, r.flag) for r in s.ranks]  # noqa: E731
    assert repr(fields(back)) == repr(fields(snap)) and len(snap.ranks) == 2  # repr: nan == nan
    old = {k: v for k, v in to_json(snap).items() if k != "ranks"}
    assert isinstance(record_from_json(old), Snapshot) and record_from_json(old).ranks is None
    with pytest.raises(ValueError):
        record_from_json({**to_json(snap), "ranks": [{"rank": -1, "loss": 1.0}]})


async def test_the_viewer_names_the_rank_that_departs():
    """`vgtui follow` / `replay` of the job's file: the status line counts the ranks and names rank 3, and its
    line under says why (the real Textual app, through Pilot)."""
    from vgtui.sources.file import FileSource
    from vgtui.ui.app import VgtuiApp
    from vgtui.ui.widgets import StatusBar

    from ui.conftest import status_shows, text_of

    out, _ = job(4)
    source = FileSource(str(out / "bad-data-4.jsonl"), follow=True)
    source.open()
    app = VgtuiApp([source], fps=8)
    async with app.run_test(size=(160, 40)) as pilot:
        await status_shows(pilot, "4 ranks · rank 3 departs", timeout=30)
        assert "rank 3: loss" in text_of(pilot.app.main.query_one(StatusBar))
