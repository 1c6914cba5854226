"""The UI's faults: the real `vgtui` on a real pty (signals, a terminal that goes away, a trainer that is killed or
stopped), and the real app through Pilot (dialogs, acknowledged state, screenshots, deep networks). The promise: the
UI never stops answering `q`, the trainer never outlives it, and the metrics file ends with how the run ended."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from conftest import pid_alive

from .conftest import SMALL, process_app, shows, status_shows, wait_for
from .replay import ReplayBackend, load
from .ptyrun import Tty
from vgtui.core.records import EndRecord
from vgtui.ui.screens import FailureScreen
from vgtui.ui.widgets import GradientBars

TUI = ["--dataset", "mnist-5k", "--depth", "3", "--width", "64", "--epochs", "500"]  # the default cadence


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_file(path: Path, kind: str, timeout: float = 60.0) -> list[dict]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            recs = [json.loads(l) for l in path.read_text().splitlines() if l.endswith("}")]
            if any(r["type"] == kind for r in recs):
                return recs
        time.sleep(0.05)
    raise AssertionError(f"no {kind} record in {path} after {timeout} s")


def training(tty: Tty, m: Path) -> int:
    """Wait until the TUI trains (a snapshot in the file, the layers on screen); the trainer's pid."""
    trainer = wait_file(m, "snapshot")[0]["pid"]
    tty.wait_text("fc1")
    return trainer


def gone_within(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------------------------------- the real TUI on a pty
@pytest.mark.parametrize("how, status, words", [
    ("hangup", 129, "hangup: the terminal went away"),
    ("SIGTERM", 143, "terminated (SIGTERM)"),
    # the session leader died: the kernel hangs up its terminal's process group, or the child reads EOF first
    ("SIGKILL", 137, ("the viewer process went away", "hangup: the terminal went away")),
])
def test_the_ui_dying_ends_the_run_and_leaves_no_trainer(how, status, words, tmp_path):
    m = tmp_path / "m.jsonl"
    with Tty([*TUI, "--metrics", str(m)]) as tty:
        trainer = training(tty, m)
        if how == "hangup":
            tty.hang_up()  # tmux kill-session, a dropped SSH connection
        else:
            os.kill(tty.pid, getattr(signal, how))
        assert tty.wait(10) == status
        assert gone_within(trainer, 10)
        end = records(m)[-1]
        assert end["type"] == "end" and end["status"] == "interrupted" and end["message"].startswith(words), end
        if how == "SIGTERM":  # the terminal is given back: alternate screen left, mouse reporting off
            tail = bytes(tty.out[-4000:])
            assert b"\x1b[?1049l" in tail and b"\x1b[?1000l" in tail


def test_q_while_the_trainer_is_stopped_quits_within_2s(tmp_path):
    m = tmp_path / "m.jsonl"
    with Tty([*TUI, "--metrics", str(m)]) as tty:
        trainer = training(tty, m)
        os.kill(trainer, signal.SIGSTOP)
        t0 = time.monotonic()
        tty.send(b"q")
        assert tty.wait(10) == 0
        assert time.monotonic() - t0 < 2.5  # 2 s for the trainer, the rest is Textual restoring the terminal
        assert gone_within(trainer, 5)
        end = records(m)[-1]
        assert end["type"] == "end" and "did not answer" in end["message"]


def test_q_right_at_start_up_quits_and_leaves_whole_lines(tmp_path):
    m = tmp_path / "m.jsonl"
    with Tty([*TUI, "--metrics", str(m)]) as tty:
        tty.wait_text("fc1", timeout=30)  # the screen is up; the trainer is still importing torch
        t0 = time.monotonic()
        tty.send(b"q")
        assert tty.wait(10) == 0
        assert time.monotonic() - t0 < 2.5
        if m.exists():  # nothing, or whole records ending with the end record
            recs = records(m)
            assert recs == [] or recs[-1]["type"] == "end"


def test_an_unavailable_device_is_refused_with_one_line_and_no_file(tmp_path):
    import torch

    device = "mps" if torch.cuda.is_available() else "cuda"
    m = tmp_path / "m.jsonl"
    with Tty([*TUI, "--device", device, "--metrics", str(m)]) as tty:
        assert tty.wait(60) == 2
        assert f"vgtui: error: --device {device}: no" in tty.text
        assert "Traceback" not in tty.text and "Training failed" not in tty.text
        assert not m.exists()


def test_a_bad_ui_nice_is_a_warning_not_a_traceback(tmp_path):
    m = tmp_path / "m.jsonl"
    with Tty([*TUI, "--metrics", str(m)], env={"VGTUI_UI_NICE": "lots"}) as tty:
        wait_file(m, "snapshot")
        tty.send(b"q")
        assert tty.wait(10) == 0
        assert "VGTUI_UI_NICE='lots' is not a whole number" in tty.text and "Traceback" not in tty.text


# ------------------------------------------------------------------------------------------- Pilot, a real trainer
async def test_restart_after_the_trainer_was_killed_keeps_the_file_and_the_live_config(tmp_path):
    m = tmp_path / "m.jsonl"
    app, backend = process_app(SMALL, str(m))
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.main.state.snap is not None, timeout=60, what="a snapshot")
            await pilot.press("a")
            await wait_for(pilot, lambda: app.main.state.config.activation == "tanh", what="the live change")
            size = m.stat().st_size
            os.kill(backend.pid, signal.SIGKILL)
            await wait_for(pilot, lambda: isinstance(app.screen, FailureScreen), what="the failure dialog")
            dialog = app.screen
            assert "killed by SIGKILL" in dialog.message and "vgtui wrote its end record" in dialog.hint
            await pilot.press("r")
            await wait_for(pilot, lambda: app.main.state.runs >= 2 and app.main.state.snap is not None, timeout=60,
                           what="the new trainer")
            assert app.main.state.config.activation == "tanh"
            await status_shows(pilot, "running")
            assert sum(isinstance(s, FailureScreen) for s in app.screen_stack) == 0
            await pilot.press("q")
    finally:
        app.close_sources()
    recs = records(m)
    assert m.stat().st_size > size  # appended, never truncated
    kinds = [r["type"] for r in recs]
    assert kinds.count("run") == 2 and kinds[-1] == "end"
    assert recs[kinds.index("end")]["status"] == "failed"
    assert [r for r in recs if r["type"] == "run"][1]["config"]["activation"] == "tanh"


async def test_a_stopped_trainer_is_shown_as_stalled(tmp_path):
    app, backend = process_app(SMALL.replace(probe_every=None), str(tmp_path / "m.jsonl"))  # the default cadence
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.main.state.snap is not None, timeout=60, what="a snapshot")
            await pilot.pause(1.5)  # the stall check has run with snapshots in hand
            assert app.is_running
            os.kill(backend.pid, signal.SIGSTOP)
            await status_shows(pilot, "no word from the trainer", timeout=40)  # 3 snapshot intervals: longer on a busy machine
            os.kill(backend.pid, signal.SIGCONT)
            await status_shows(pilot, "answering again", timeout=15)
            await pilot.press("q")
    finally:
        app.close_sources()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
async def test_a_full_disk_in_the_ui_is_a_notice_and_training_goes_on(make_app, tmp_path):
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(disk)], check=True)
    try:
        from vgtui.sources.trainer import ThreadBackend
        from vgtui.ui.app import VgtuiApp

        backend = ThreadBackend(SMALL.replace(probe_every=1), str(disk / "m.jsonl"))
        backend.start()
        app = VgtuiApp(backend, fps=8, start_source=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await status_shows(pilot, "No space left on device", timeout=60)
            step = app.main.state.step
            await wait_for(pilot, lambda: app.main.state.step > step + 20, what="training to go on")
            await pilot.press("q")
        backend.close()
        for line in (disk / "m.jsonl").read_text().splitlines():
            json.loads(line)  # whole lines only
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# ------------------------------------------------------------------------------------------- Pilot, the screen's state
async def test_one_failure_dialog_at_a_time_and_it_says_what_is_true():
    recs = load("sigmoid")
    backend = ReplayBackend(recs[:5])
    from vgtui.ui.app import VgtuiApp

    app = VgtuiApp(backend, fps=8)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.main.state.snap is not None, what="the records")
        for i in range(2):
            backend.feed(EndRecord(status="failed", steps=10 + i, elapsed_s=1.0, message=f"boom {i}",
                                   traceback="Traceback ..."))
        await wait_for(pilot, lambda: isinstance(app.screen, FailureScreen), what="the dialog")
        await pilot.pause(0.3)
        assert sum(isinstance(s, FailureScreen) for s in app.screen_stack) == 1
        assert "boom 0" in app.screen.message
        assert "ends with status failed" not in app.screen.hint  # this source writes no metrics file


async def test_pause_shows_what_the_trainer_acknowledged_after_a_quick_restart(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.main.state.snap is not None, what="a snapshot")
        await pilot.press("r", "space")
        await wait_for(pilot, lambda: app.main.state.runs >= 2, what="the restart")
        await wait_for(pilot, lambda: backend.trainer.paused and app.main.paused, what="the acknowledged pause")
        await pilot.pause(0.3)
        assert app.main.paused and backend.trainer.paused
        await status_shows(pilot, "paused")


async def test_quick_restart_keys_are_never_lost(make_app):
    app, backend = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.main.state.snap is not None, what="a snapshot")
        await pilot.press("b", "s", "b")
        await wait_for(pilot, lambda: app.main.pending is None and app.main.state.run.config["skip"], timeout=30,
                       what="the last configuration")
        assert not app.main.state.config.batchnorm and app.main.state.config.skip
        assert backend.trainer.config.skip and not backend.trainer.config.batchnorm


async def test_a_screenshot_that_cannot_be_written_is_a_notice(make_app, tmp_path):
    app, backend = make_app()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    app.screenshot_dir = str(blocker)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.main.state.snap is not None, what="a snapshot")
        await pilot.press("ctrl+s")
        await status_shows(pilot, "screenshot not saved")
        assert app.is_running
        await pilot.press("q")
    assert app.return_code == 0


async def test_a_deep_network_keeps_its_output_layer_and_says_what_is_hidden(make_app):
    app, backend = make_app(SMALL.replace(depth=20, width=16))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.main.state.snap is not None, timeout=30, what="a snapshot")
        bars = await shows(pilot, app.main.query_one(GradientBars), "more: fc")
        assert "fc21" in bars and "fc1 " in bars
