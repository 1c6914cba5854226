"""The sources' interfaces (vgtui.sources.base): each source is the kind the viewer reads it as, and vgtui's own
trainer, in a thread or in a process, says how it died and leaves its run with an end record. Real trainers: a
thread whose training raises, a process killed with SIGKILL."""

from __future__ import annotations

import io
import json
import os
import signal
import time

import pytest

from vgtui.core.config import RunConfig
from vgtui.core.records import EndRecord, Fork, RunRecord, SetSpeedCap, Snapshot
from vgtui.sources.base import Change, LiveSource, RecordedSource, Source, TrainerSource
from vgtui.sources.file import BranchSource, FileSource, StreamSource
from vgtui.sources.trainer import ProcessBackend, ThreadBackend

CFG = RunConfig(dataset="mnist-5k", depth=3, width=64, epochs=500, probe_every=5, device="cpu", seed=0)


def lines(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]  # a torn line fails the test


def until(source, cond, timeout: float = 60.0) -> list:
    """Read the source until a record meets `cond`; every record read, in order."""
    got, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        r = source.get(0.05)
        if r is not None:
            got.append(r)
            if cond(r):
                return got
    raise AssertionError(f"timed out; last records: {got[-3:]}")


def drain(source, timeout: float = 30.0) -> list:
    """Everything the source still yields, until it is dead and has nothing left."""
    got, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        r = source.get(0.05)
        if r is not None:
            got.append(r)
        elif not source.alive:
            return got
    raise AssertionError("the source is still alive")


def test_each_source_is_the_interface_the_viewer_reads_it_as(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text("")
    f = FileSource(str(m))
    sources = {f: RecordedSource, BranchSource(f): RecordedSource, StreamSource(io.BytesIO(b"")): LiveSource,
               ThreadBackend(CFG): TrainerSource, ProcessBackend(CFG): TrainerSource}
    for s, interface in sources.items():
        assert isinstance(s, interface) and isinstance(s, Source), type(s).__name__
        assert s.kind == interface.kind  # the key map the screen picks
    assert not isinstance(StreamSource(io.BytesIO(b"")), (TrainerSource, RecordedSource))
    assert not isinstance(f, LiveSource)
    # what the viewer calls, declared by the interfaces (not found by hasattr on the instances)
    for name in ("runs", "run", "run_number", "select", "poll", "follow", "waiting", "notice"):
        assert hasattr(RecordedSource, name), name
    for name in ("get", "send", "death", "ensure_end", "start", "close", "alive"):
        assert hasattr(TrainerSource, name), name
    assert isinstance(BranchSource(f).poll(), Change)  # its parent polls the file
    with pytest.raises(TypeError, match="takes no commands"):
        StreamSource(io.BytesIO(b""), "<stdin>").send(SetSpeedCap(1.0))


def test_a_source_that_leaves_part_of_its_interface_out_cannot_be_made():
    class Half(TrainerSource):  # no death, no ensure_end
        def start(self, config=None): ...
        def send(self, cmd): ...
        def get(self, timeout=None): ...
        def close(self, message="quit", timeout=2.0, cause="quit"): ...
        alive = True

    with pytest.raises(TypeError, match="death"):
        Half()

    class NoPoll(RecordedSource):
        runs, run = [], None

        def select(self, number): ...
        def close(self, timeout=2.0): ...

    with pytest.raises(TypeError, match="poll"):
        NoPoll()


class Boom(BaseException):
    """Raised in the trainer's loop past its own handling (it ends a run itself on an Exception in a step)."""


def _kill_thread(b: ThreadBackend) -> None:
    def boom(trainer):
        raise Boom("the trainer's bookkeeping broke")

    b.trainer.on_step = boom


def _kill_process(b: ProcessBackend) -> None:
    os.kill(b.pid, signal.SIGKILL)


@pytest.mark.parametrize("how", ["thread-raises", "process-killed"])
def test_a_trainer_that_dies_mid_fork_says_how_and_its_run_gets_its_end_records(how, digits, tmp_path):
    """Forked (so two end records are missing: B's, then the run's), the trainer dies: the thread by an exception
    its loop does not handle, the process by SIGKILL. The source says how it died, the file ends with B's and the
    run's end records, once, and a restart appends a new run to the same file."""
    m = tmp_path / "m.jsonl"
    b = ThreadBackend(CFG, str(m), data=digits) if how == "thread-raises" else ProcessBackend(CFG, str(m))
    b.start()
    try:
        b.send(SetSpeedCap(50.0))
        until(b, lambda r: isinstance(r, Snapshot))
        b.send(Fork(True))
        seen = until(b, lambda r: isinstance(r, Snapshot) and r.branch == "B")
        assert b.alive and "still running" in b.death()
        (_kill_thread if how == "thread-raises" else _kill_process)(b)
        seen += drain(b)
        assert not b.alive
        last_step = max(r.step for r in seen if isinstance(r, Snapshot))
        if how == "thread-raises":
            assert b.death() == "the trainer thread stopped on Boom: the trainer's bookkeeping broke"
            ends = [r for r in seen if isinstance(r, EndRecord)]  # written by the thread on its way out
            assert [(e.branch, e.status, e.cause) for e in ends] == [("B", "failed", "error"), (None, "failed", "error")]
            assert "Boom" in ends[-1].message and "Boom" in ends[-1].traceback
            assert b.ensure_end("failed", b.death(), "trainer-died") is None  # the run has its end record
        else:
            assert b.death() == "the trainer process was killed by SIGKILL"
            assert not any(isinstance(r, EndRecord) for r in seen)  # it had no chance
            written = b.ensure_end("failed", b.death(), "trainer-died")
            assert written is not None and written.cause == "trainer-died" and written.steps >= last_step
            assert b.ensure_end("failed", b.death(), "trainer-died") is None  # once
        recs = lines(m)
        assert [(r["type"], r.get("branch")) for r in recs[-2:]] == [("end", "B"), ("end", None)]
        assert [r["type"] for r in recs].count("end") == 2 and recs[-1]["status"] == "failed"
        assert recs[-1]["steps"] >= last_step
        assert ("Boom" if how == "thread-raises" else "killed by SIGKILL") in recs[-1]["message"]
        if how == "thread-raises":
            b.trainer.on_step = None
        b.start(CFG.replace(activation="tanh"))  # the failure dialog's restart
        assert b.alive
        until(b, lambda r: isinstance(r, RunRecord))
    finally:
        b.close("quit")
    recs = lines(m)
    runs = [r for r in recs if r["type"] == "run" and not r.get("branch")]
    assert len(runs) == 2 and runs[1]["config"]["activation"] == "tanh"
    assert recs[-1]["type"] == "end" and recs[-1]["message"] == "quit"


def test_a_thread_trainer_refused_at_start_says_why_and_leaves_no_run(tmp_path):
    """A trainer that never began a run (here: a dataset that is not on this machine, offline) yields one failed end
    record that says why, and writes nothing in the file: there is no run to end."""
    m = tmp_path / "m.jsonl"
    b = ThreadBackend(CFG.replace(dataset="fashion-mnist", data_dir=str(tmp_path / "none"), offline=True), str(m))
    b.start()
    got = drain(b)
    b.close()
    assert len(got) == 1 and isinstance(got[0], EndRecord) and got[0].status == "failed" and got[0].steps == 0
    assert got[0].cause == "refused" and "Fashion-MNIST" in got[0].message
    assert "the trainer thread stopped on" in b.death()
    assert not m.exists() or lines(m) == []


async def test_the_viewer_shows_a_thread_trainer_that_died_and_starts_a_new_one(digits, tmp_path):
    """The real app over a thread trainer whose loop raises: the failure dialog with the end record the thread
    wrote, and `r` starts a new trainer (the source is not alive: restarting the dead one would wait forever)."""
    from vgtui.ui.app import VgtuiApp
    from vgtui.ui.screens import FailureScreen

    m = tmp_path / "m.jsonl"
    b = ThreadBackend(CFG, str(m), data=digits)
    b.start()
    b.send(SetSpeedCap(20.0))
    app = VgtuiApp(b, fps=8, start_source=False)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            async def wait(cond, what):
                end = time.monotonic() + 30
                while not cond():
                    assert time.monotonic() < end, f"timed out waiting for {what}"
                    await pilot.pause(0.05)

            await wait(lambda: app.main.state.snap is not None, "a snapshot")
            _kill_thread(b)
            await wait(lambda: isinstance(app.screen, FailureScreen) and not b.alive, "the failure dialog")
            assert app.screen.end.cause == "error" and "Boom" in app.screen.end.message
            await pilot.press("r")
            await wait(lambda: app.main.state.runs >= 2 and app.main.state.snap is not None, "the new trainer")
            assert b.alive and not isinstance(app.screen, FailureScreen)
            await pilot.press("q")
    finally:
        b.close()
    kinds = [(r["type"], r.get("cause")) for r in lines(m) if r["type"] in ("run", "end")]
    assert kinds == [("run", None), ("end", "error"), ("run", None), ("end", "quit")]
