"""The viewer on recorded runs: `vgtui replay` (one file, two side by side), `vgtui follow` (a file another thread
writes, a file that appears later, a writer that dies, a new run), standard input, and what a replay does not
offer. Real metrics files written with vgtui's own encoder from recorded real runs; the real app, read from
the screen."""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
import threading
import time

import pytest
from textual.widgets._footer import FooterKey

from vgtui.core.records import EndRecord, RecordEncoder, RunRecord, Snapshot
from vgtui.sources import file as file_source
from vgtui.sources.file import FileSource, StreamSource
from vgtui.ui.app import VgtuiApp
from vgtui.ui.screens import HelpScreen
from vgtui.ui.state import History

from .conftest import shows, status_shows, text_of, wait_for
from .replay import FIXTURES, load


def write(path, records) -> None:
    """A metrics file as vgtui writes it (schema 2, vgtui's own encoder)."""
    enc = RecordEncoder()
    with open(path, "w") as f:
        for r in records:
            f.write(enc.line(r))


def replay(*paths, follow=False, **kw) -> VgtuiApp:
    sources = [FileSource(str(p), follow=follow, **kw) for p in paths]
    for s in sources:
        s.open()
    return VgtuiApp(sources, fps=8)


def renamed(records, old: str, new: str):
    """The records with layer `old` called `new` (a run whose layers differ from another's)."""
    out = []
    for r in records:
        if isinstance(r, RunRecord):
            r = dataclasses.replace(r, layers=tuple(dataclasses.replace(l, name=new) if l.name == old else l
                                                    for l in r.layers))
        elif isinstance(r, Snapshot):
            r = dataclasses.replace(r, layers=tuple(dataclasses.replace(l, name=new) if l.name == old else l
                                                    for l in r.layers))
        out.append(r)
    return out


async def test_replay_moves_through_time_by_snapshot(tmp_path):
    path = tmp_path / "sigmoid.jsonl"
    write(path, load("sigmoid"))
    app = replay(path)
    async with app.run_test(size=(120, 40)) as pilot:
        status = await status_shows(pilot, "snapshot 12 / 12 · step 120 · 00:02")
        assert "■ completed" in status and "VANISHING" in status
        await pilot.press("left")
        await status_shows(pilot, "snapshot 11 / 12 · step 110")
        await pilot.press("home")
        status = await status_shows(pilot, "snapshot 1 / 12 · step 10 · 00:00")
        assert "⏸ paused" in status and "■" not in status  # the end is not reached at snapshot 1
        await pilot.press("right", "right")
        await status_shows(pilot, "snapshot 3 / 12 · step 30")
        await pilot.press("end")
        await status_shows(pilot, "snapshot 12 / 12 · step 120")
        await pilot.press("right")  # past the end: stays
        await status_shows(pilot, "snapshot 12 / 12")
        # space at the end plays from the start, at 8x the recorded pace (2.4 s recorded)
        await pilot.press("right_square_bracket", "right_square_bracket", "right_square_bracket")
        await status_shows(pilot, "8x the recorded pace")
        await pilot.press("space")
        await status_shows(pilot, "snapshot 1 / 12", timeout=2)
        await status_shows(pilot, "snapshot 12 / 12", timeout=10)
        await wait_for(pilot, lambda: app.main.paused, what="the replay to stop at the end")


async def test_replay_offers_no_trainer_keys_and_says_why(tmp_path):
    path = tmp_path / "sigmoid.jsonl"
    write(path, load("sigmoid"))
    app = replay(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await status_shows(pilot, "snapshot 12 / 12")
        await wait_for(pilot, lambda: app.main.query(FooterKey), what="the footer")
        shown = {k.key for k in app.main.query(FooterKey)}
        footer = {k.description for k in app.main.query(FooterKey)}
        assert {"a", "i", "b", "s", "r", "n", "plus"}.isdisjoint(shown)
        assert {"activation", "init", "batchnorm", "skip", "restart", "step", "depth+"}.isdisjoint(footer)
        assert {"left", "right", "space", "e", "m"} <= shown
        for key, label in (("a", "activation"), ("r", "restart"), ("n", "step"), ("plus", "depth+")):
            app.clear_notifications()
            await pilot.press(key)
            await wait_for(pilot, lambda: app._notifications, what="a notification")
            note = list(app._notifications)[-1].message
            assert note == f"{label}: needs a live trainer; this is a replay of sigmoid.jsonl"
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = text_of(app.screen.query_one("#help-keys"))
        assert "one snapshot back / forward" in help_text and "next / previous activation" not in help_text
        await pilot.press("escape")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Forward", "Last snapshot", "Export CSV"} <= titles and "Next activation" not in titles


async def test_two_runs_side_by_side_aligned_by_step(tmp_path):
    a, b = tmp_path / "sigmoid.jsonl", tmp_path / "renamed.jsonl"
    write(a, load("sigmoid"))
    write(b, renamed(load("relu-diverged"), "fc6", "out"))
    app = replay(a, b)
    async with app.run_test(size=(120, 40)) as pilot:
        status = await status_shows(pilot, "A snapshot 12 / 12 · step 120")
        assert "B snapshot 3 / 3 · step 3" in status
        assert "VANISHING" in status and "DIVERGED" in status  # both diagnoses
        lines = text_of(app.main.query_one("#grads")).splitlines()
        labels = [line.split()[1:3] for line in lines if line.startswith("│ ") and "e" in line[:20]]
        assert [" ".join(x) for x in labels[:4]] == ["fc1 A", "fc1 B", "fc2 A", "fc2 B"]
        bars = "\n".join(lines)
        assert "fc6 A" in bars and "out B" in bars and "fc6 B" not in bars  # layers matched by name
        acts = await shows(pilot, app.main.query_one("#acts"), "relu")
        assert "A sigmoid.jsonl" in acts and "B renamed.jsonl" in acts
        loss = app.main.query_one("#loss")
        assert "A sigmoid.jsonl" in text_of(loss) and "B renamed.jsonl" in text_of(loss)
        await pilot.press("home")
        status = await status_shows(pilot, "A snapshot 1 / 12 · step 10")
        assert "B snapshot 3 / 3 · step 3" in status  # B's last snapshot at or before step 10
        await pilot.press("tab", "tab")
        table = await shows(pilot, app.main.query_one("#table"), "B renamed.jsonl")
        assert "A sigmoid.jsonl" in table and "out" in table


async def test_follow_sees_what_another_thread_appends(tmp_path):
    path = tmp_path / "growing.jsonl"
    records = load("sigmoid")
    header, snaps = records[0], [r for r in records if isinstance(r, Snapshot)]
    enc = RecordEncoder()
    f = open(path, "w")
    for r in [header, *snaps[:3]]:
        f.write(enc.line(r))
    f.flush()
    app = replay(path, follow=True)
    done = threading.Event()

    def writer():
        for s in snaps[3:]:
            time.sleep(0.1)
            f.write(enc.line(s))
            f.flush()
        done.wait(10)
        f.write(enc.line(EndRecord("completed", snaps[-1].step, snaps[-1].elapsed_s, "max steps")))
        f.close()

    async with app.run_test(size=(120, 40)) as pilot:
        status = await status_shows(pilot, "step 30")
        assert "● following" in status
        t = threading.Thread(target=writer)
        t.start()
        await status_shows(pilot, "snapshot 12 / 12 · step 120")
        assert "■" not in text_of(app.main.query_one("#status"))
        done.set()
        status = await status_shows(pilot, "■ completed")
        assert "the run ended: completed (max steps)" in status
        t.join()


async def test_follow_waits_for_a_file_then_switches_to_a_new_run(tmp_path):
    path = tmp_path / "later.jsonl"
    app = replay(path, follow=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await status_shows(pilot, f"waiting for {path} to appear")
        write(path, load("sigmoid"))
        await status_shows(pilot, "snapshot 12 / 12 · step 120")
        second = load("relu-diverged")
        with open(path, "a") as f:
            enc = RecordEncoder()
            for r in second:
                f.write(enc.line(r))
        status = await status_shows(pilot, "run 2 / 2 · snapshot 3 / 3 · step 3")
        assert "relu" in status and "DIVERGED" in status


async def test_follow_notices_a_writer_gone_without_an_end(tmp_path, monkeypatch):
    monkeypatch.setattr(file_source, "QUIET_S", 0.3)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    records = load("sigmoid")
    path = tmp_path / "killed.jsonl"
    write(path, [dataclasses.replace(records[0], pid=gone.pid), *[r for r in records if isinstance(r, Snapshot)]])
    app = replay(path, follow=True)
    async with app.run_test(size=(120, 40)) as pilot:
        status = await status_shows(pilot, f"the writer (pid {gone.pid}) is gone without an end record")
        assert "the last snapshot is step 120" in status and "? writer gone" in status


async def test_follow_trusts_the_writers_lock_over_quiet(tmp_path, monkeypatch):
    """A paused writer is quiet but holds the file's lock: not gone. Once its lock is released without an end
    record, the follow view says so."""
    from vgtui.core.writer import MetricsWriter

    monkeypatch.setattr(file_source, "QUIET_S", 0.3)
    records = load("sigmoid")
    path = tmp_path / "paused.jsonl"
    writer = MetricsWriter(path)
    for r in [records[0], *[r for r in records if isinstance(r, Snapshot)]]:
        writer.write(r)
    app = replay(path, follow=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await status_shows(pilot, "snapshot 12 / 12")
        await pilot.pause(1.0)  # quiet for more than QUIET_S, lock held
        assert "gone without an end record" not in await status_shows(pilot, "snapshot 12 / 12")
        writer.close()
        status = await status_shows(pilot, "the writer is gone without an end record")
        assert "the last snapshot is step 120" in status


async def test_truncated_file_shows_the_usable_part_with_a_notice(tmp_path):
    path = tmp_path / "torn.jsonl"
    write(path, load("sigmoid")[:-2])  # up to the snapshot at step 120
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3000])  # its line, cut mid-write
    app = replay(path)
    async with app.run_test(size=(120, 40)) as pilot:
        status = await status_shows(pilot, "the last line is incomplete")
        assert "snapshot 11 / 11 · step 110" in status


async def test_non_finite_numbers_show_as_such(tmp_path):
    records = load("sigmoid")
    snaps = [r for r in records if isinstance(r, Snapshot)]
    last = snaps[-1]
    bad = dataclasses.replace(last, loss_avg=float("inf"), layers=(
        dataclasses.replace(last.layers[0], grad_norm=float("nan")), *last.layers[1:]))
    path = tmp_path / "nan.jsonl"
    write(path, [records[0], *snaps[:-1], bad])
    app = replay(path)
    async with app.run_test(size=(120, 40)) as pilot:
        status = await status_shows(pilot, "loss inf")
        assert "DIVERGED" not in status or "nan" in status
        bars = await shows(pilot, app.main.query_one("#grads"), "nan")
        assert "fc1     nan" in bars


async def test_follow_standard_input(tmp_path):
    r, w = os.pipe()
    source = StreamSource(os.fdopen(r, "rb", buffering=0), "<stdin>")
    app = VgtuiApp(source, fps=8)
    out = os.fdopen(w, "w")
    enc = RecordEncoder()
    async with app.run_test(size=(120, 40)) as pilot:
        records = load("sigmoid")
        for rec in records[:6]:
            out.write(enc.line(rec))
        out.flush()
        await status_shows(pilot, "step 40/120")
        for rec in records[6:]:
            out.write(enc.line(rec))
        out.close()
        status = await status_shows(pilot, "<stdin> closed")
        assert "step 120/120" in status and "■ completed" in status
        await pilot.press("a")
        await wait_for(pilot, lambda: app._notifications, what="a notification")
        assert "needs a live trainer; this is a stream of records" in list(app._notifications)[-1].message


async def test_export_key_writes_the_csv_of_the_run_on_screen(tmp_path):
    path = tmp_path / "two.jsonl"
    write(path, [*load("sigmoid"), *load("relu-diverged")])
    app = replay(path)
    async with app.run_test(size=(120, 40)) as pilot:
        await status_shows(pilot, "run 2 / 2 · snapshot 3 / 3")
        await pilot.press("e")
        out = tmp_path / "two-2.csv"
        status = await status_shows(pilot, f"CSV written: {out} (18 rows)")
        assert "relu" in status
        # and as a toast, which outlives the status line (a live run's next snapshot replaces that)
        await wait_for(pilot, lambda: app._notifications, what="a notification")
        toast = list(app._notifications)[-1]
        assert toast.message == f"CSV written: {out} (18 rows)" and toast.severity == "information"
        with open(out, newline="") as f:
            rows = list(csv.DictReader(f))
        assert [(r["step"], r["layer"]) for r in rows[:2]] == [("1", "fc1"), ("1", "fc2")]
        assert len(rows) == 3 * 6
        await pilot.press("p")
        await status_shows(pilot, "run 1 / 2 · snapshot 12 / 12")
        await pilot.press("e")
        await status_shows(pilot, f"CSV written: {tmp_path / 'two-1.csv'} (72 rows)")


def test_history_stays_bounded():
    snap = next(r for r in load("sigmoid") if isinstance(r, Snapshot))
    h = History(tuple(l.name for l in snap.layers), cap=256)
    for i in range(100_000):
        h.add(dataclasses.replace(snap, step=i))
    assert 128 <= len(h.steps) < 256
    assert all(len(s) == len(h.steps) for series in h.series.values() for s in series)
    assert h.steps == sorted(h.steps) and h.steps[0] == 0 and h.steps[-1] > 99_000


def test_a_planned_history_parses_only_what_it_keeps_and_ends_the_same():
    """A recorded run's fill parses only the snapshots the bounded history keeps (History.plan / keeps), and ends with
    the points adding every snapshot one by one gives, for runs shorter and longer than the cap."""
    snap = next(r for r in load("sigmoid") if isinstance(r, Snapshot))
    names = tuple(l.name for l in snap.layers)
    for n in (10, 255, 256, 257, 1000, 5000):
        full, planned = History(names, cap=256), History(names, cap=256)
        for i in range(n):
            full.add(dataclasses.replace(snap, step=i))
        planned.plan(n)
        parsed = [i for i in range(n) if planned.keeps(i)]
        for i in range(n):
            if planned.keeps(i):
                planned.add(dataclasses.replace(snap, step=i))
            else:
                planned.skip()
        assert planned.steps == full.steps and planned.stride == full.stride, n
        assert len(parsed) == len(full.steps), n  # nothing parsed that is then dropped
        assert len(parsed) < n or n < 256


def test_replay_never_imports_torch(tmp_path):
    path = tmp_path / "sigmoid.jsonl"
    write(path, load("sigmoid"))
    code = f"""
import asyncio, sys
from vgtui.commands.replay import replay_main
from vgtui.sources.file import FileSource
from vgtui.ui.app import VgtuiApp
async def main():
    s = FileSource({str(path)!r}); s.open()
    app = VgtuiApp([s])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
        await pilot.press("left", "home", "e")
        await pilot.pause(0.5)
asyncio.run(main())
print(sorted(m for m in ("torch", "vgtui.engine", "vgtui.sources.trainer") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(FIXTURES.parent.parent.parent))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_replay_screen(snap_compare, tmp_path, size):
    path = tmp_path / "sigmoid.jsonl"
    write(path, load("sigmoid"))

    async def run_before(pilot):
        await pilot.press("left", "left")
        await settle(pilot, "snapshot 10 / 12")

    assert snap_compare(replay(path), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_two_runs_screen(snap_compare, tmp_path, size):
    a, b = tmp_path / "sigmoid.jsonl", tmp_path / "relu-diverged.jsonl"
    write(a, load("sigmoid"))
    write(b, load("relu-diverged"))

    async def run_before(pilot):
        await settle(pilot, "B snapshot 3 / 3")

    assert snap_compare(replay(a, b), terminal_size=size, run_before=run_before)


async def settle(pilot, text: str) -> None:
    """The screen at rest: `text` in the status, the curves' history filled, every panel drawn."""
    app = pilot.app
    await status_shows(pilot, text)
    await app.workers.wait_for_complete()
    app.clear_notifications()
    await wait_for(pilot, lambda: all(st.history.seen == src.run.n_snapshots
                                      for st, src in zip(app.main.states, app.main.sources)), what="the history")
    await wait_for(pilot, app.main.up_to_date, what="every panel's last frame")
    await pilot.pause(0.1)


async def test_a_cuda_runs_device_strip_is_on_the_status_line(tmp_path):
    """A snapshot with `device` (as a CUDA run writes it) shows the strip; the file as written on a CPU does not."""
    dev = {"mem_allocated": 3.4e9, "mem_reserved": 4.25e9, "mem_total": 85.0e9, "util": 87.0}
    records = [dataclasses.replace(r, device=dev) if isinstance(r, Snapshot) else r for r in load("sigmoid")]
    path = tmp_path / "cuda.jsonl"
    write(path, records)
    app = replay(path)
    async with app.run_test(size=(160, 40)) as pilot:
        await status_shows(pilot, "GPU 3.2/79.2 GiB (reserved 4.0) 87%")
    plain = tmp_path / "cpu.jsonl"
    write(plain, load("sigmoid"))
    app = replay(plain)
    async with app.run_test(size=(160, 40)) as pilot:
        text = await status_shows(pilot, "loss")
        assert "GPU" not in text
