"""`e` (CSV) and `ctrl+s` (SVG) in the real app, through Pilot: nothing is ever overwritten.

`e` on a metrics file named `*.csv` once wrote its CSV over the metrics file itself (in a replay, and live, where
the rest of the run then went to a deleted file), and replaced a person's own run.csv without a word. Now `e`
takes the first free name of run.csv, run-2.csv, run-3.csv... and says it on screen; ctrl+s does the same within
a second. The footer offers `e` only when there is a metrics file behind the run."""

from __future__ import annotations

import csv
import hashlib
import os
import time

from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from vgtui.core.metrics import MetricsIndex
from vgtui.sources.file import FileSource
from vgtui.core.records import Pause, SetSpeedCap
from vgtui.sources.trainer import ThreadBackend
from vgtui.ui.app import VgtuiApp

from .conftest import SMALL, status_shows, text_of, wait_for
from .replay import FIXTURES


WIDE = (240, 40)  # the status line shows the whole notice, pytest's long tmp_path included


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def replay(path) -> VgtuiApp:
    source = FileSource(str(path))
    source.open()
    return VgtuiApp([source], fps=8)


def csv_rows(path) -> int:
    with open(path, newline="") as f:
        return len(list(csv.reader(f))) - 1


async def test_e_on_a_metrics_file_named_csv_never_writes_over_it(tmp_path):
    src = tmp_path / "run.csv"
    src.write_bytes((FIXTURES / "sigmoid.jsonl").read_bytes())
    before, inode = digest(src), os.stat(src).st_ino
    app = replay(src)
    async with app.run_test(size=WIDE) as pilot:
        await status_shows(pilot, "snapshot 12 / 12")
        await pilot.press("e")
        await status_shows(pilot, f"CSV written: {tmp_path / 'run-2.csv'} (72 rows; run.csv exists: left as it is)")
        await wait_for(pilot, lambda: app._notifications, what="a notification")
        assert "run-2.csv" in list(app._notifications)[-1].message
    assert digest(src) == before and os.stat(src).st_ino == inode
    assert csv_rows(tmp_path / "run-2.csv") == 72


async def test_e_beside_a_persons_own_csv_picks_a_new_name_each_time(tmp_path):
    src = tmp_path / "run.jsonl"
    src.write_bytes((FIXTURES / "sigmoid.jsonl").read_bytes())
    mine = tmp_path / "run.csv"
    mine.write_text("my own notes\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "run-2.csv").symlink_to(victim)  # a link is a name taken too: never followed, never replaced
    app = replay(src)
    async with app.run_test(size=WIDE) as pilot:
        await status_shows(pilot, "snapshot 12 / 12")
        await pilot.press("e")
        await status_shows(pilot, f"CSV written: {tmp_path / 'run-3.csv'} (72 rows; run.csv exists: left as it is)")
        await pilot.press("e")
        await status_shows(pilot, f"CSV written: {tmp_path / 'run-4.csv'} (72 rows; run.csv exists")
    assert mine.read_text() == "my own notes\n" and victim.read_text() == "precious\n"
    assert (tmp_path / "run-2.csv").is_symlink() and csv_rows(tmp_path / "run-3.csv") == 72
    assert digest(tmp_path / "run-3.csv") == digest(tmp_path / "run-4.csv")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


async def test_e_live_on_a_metrics_file_named_csv_keeps_the_run_recording(digits, tmp_path):
    """Live: the trainer appends to live.csv; `e` writes live-2.csv, and the run goes on into the same file."""
    path = tmp_path / "live.csv"
    backend = ThreadBackend(SMALL.replace(epochs=2, max_steps=60), str(path), data=digits)
    backend.start()
    backend.send(SetSpeedCap(40.0))
    app = VgtuiApp(backend, fps=8, screenshot_dir=str(tmp_path), start_source=False)
    try:
        async with app.run_test(size=WIDE) as pilot:
            await wait_for(pilot, lambda: app.main.state.snap is not None, timeout=30, what="a snapshot")
            inode = os.stat(path).st_ino
            # paused while `e` writes: the run's end would clear the notice the test reads (60 steps at 40/s end
            # in 1.5 s, sooner than a loaded machine writes the CSV); it goes on into the same file after
            backend.send(Pause(True))
            await wait_for(pilot, lambda: app.main.paused, what="the pause")
            await pilot.press("e")
            await status_shows(pilot, f"CSV written: {tmp_path / 'live-2.csv'}", timeout=15)
            assert "live.csv exists: left as it is" in app.main.notice
            backend.send(Pause(False))
            await wait_for(pilot, lambda: app.main.state.end is not None, timeout=60, what="the run's end")
    finally:
        backend.close(2.0)
    assert os.stat(path).st_ino == inode
    (run,) = MetricsIndex(path).runs
    assert run.end is not None and run.end.status == "completed" and int(run.snapshot_steps[-1]) == 60
    with open(tmp_path / "live-2.csv", newline="") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps and max(steps) < 60  # written while the run went on, into the same live.csv, to its end


async def test_e_names_the_damaged_lines_it_skipped(tmp_path):
    lines = (FIXTURES / "sigmoid.jsonl").read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:-40] + b"\xff\n"  # snapshot 2 (step 20): cut, invalid UTF-8
    src = tmp_path / "run.jsonl"
    src.write_bytes(b"".join(lines))
    app = replay(src)
    async with app.run_test(size=WIDE) as pilot:
        await status_shows(pilot, "snapshot 12 / 12")
        await pilot.press("e")
        await status_shows(pilot, f"CSV written: {tmp_path / 'run.csv'} (66 rows; 1 damaged snapshot skipped: line 3)")
    assert csv_rows(tmp_path / "run.csv") == 66


async def test_e_before_a_followed_file_holds_a_run_says_so(tmp_path):
    source = FileSource(str(tmp_path / "later.jsonl"), follow=True)
    source.open()
    app = VgtuiApp([source], fps=8)
    async with app.run_test(size=WIDE) as pilot:
        await status_shows(pilot, "waiting for")
        await pilot.press("e")
        await wait_for(pilot, lambda: app._notifications, what="a notification")
        assert list(app._notifications)[-1].message == "e: no run in the file yet: nothing to export"
        assert app.is_running
    assert os.listdir(tmp_path) == []


def footer_text(app) -> str:
    """The footer's keys as drawn ("q quit ? help tab view ...")."""
    return " ".join(text_of(k) for k in app.main.query_one(Footer).query(FooterKey))


async def test_footer_offers_e_only_with_a_metrics_file(make_app):
    for metrics in (False, True):
        app, backend = make_app(metrics=metrics)
        async with app.run_test(size=(200, 40)) as pilot:
            await wait_for(pilot, lambda: app.main.state.snap is not None, timeout=30, what="a snapshot")
            await wait_for(pilot, lambda: "^s SVG" in footer_text(app), what="the footer drawn")
            footer = footer_text(app)
            assert "q quit" in footer and "f fork" in footer, footer
            assert ("e CSV" in footer) == metrics, footer
            if not metrics:  # still bound: a press says why in one line
                await pilot.press("e")
                await wait_for(pilot, lambda: app._notifications, what="a notification")
                assert "no metrics file behind this run" in list(app._notifications)[-1].message
            await pilot.press("q")


async def test_ctrl_s_never_overwrites_nor_follows_a_link(tmp_path):
    """Screenshots are named by the second: a second one within it, or a link planted at the coming names, gets
    the next free name (-2), and the link's target is untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    now = time.time()
    planted = [tmp_path / time.strftime("vgtui_%Y%m%d_%H%M%S.svg", time.localtime(now + s)) for s in range(0, 30)]
    for p in planted:
        p.symlink_to(victim)
    src = tmp_path / "run.jsonl"
    src.write_bytes((FIXTURES / "sigmoid.jsonl").read_bytes())
    source = FileSource(str(src))
    source.open()
    app = VgtuiApp([source], fps=8, screenshot_dir=str(tmp_path))
    async with app.run_test(size=WIDE) as pilot:
        await status_shows(pilot, "snapshot 12 / 12")
        await pilot.press("ctrl+s")
        await status_shows(pilot, "screenshot saved")
        first = app.main.notice.split("screenshot saved: ", 1)[1]
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.main.notice.split("saved: ", 1)[-1] != first, what="a second screenshot")
        second = app.main.notice.split("screenshot saved: ", 1)[1]
    assert victim.read_text() == "precious\n" and all(p.is_symlink() for p in planted)
    for shot in (first, second):
        assert shot.endswith("-2.svg") or shot.endswith("-3.svg"), shot
        assert not os.path.islink(shot) and open(shot).read().startswith("<svg")
    assert first != second

