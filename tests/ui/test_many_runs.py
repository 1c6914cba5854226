"""Many runs on one screen: `vgtui replay` of five recorded files overlays five runs (A to E, each in its colour,
one badge each, a legend), `o` moves the focus among them (the status, the legend, the activations and the layer
table follow it), `e` writes one CSV per run shown, and a ninth file is refused with one line. Real metrics files
(recorded real runs, tests/ui/make_fixture.py), the real app, read from the screen."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys

from vgtui.sources.file import FileSource
from vgtui.ui.app import VgtuiApp

from .conftest import shows, status_shows, text_of, wait_for
from .replay import FIXTURES

FIVE = ("sigmoid", "relu-diverged", "tanh-xavier", "relu-kaiming", "sigmoid-bn")


def five(tmp_path) -> list:
    paths = []
    for name in FIVE:
        p = tmp_path / f"{name}.jsonl"
        shutil.copyfile(FIXTURES / f"{name}.jsonl", p)
        paths.append(p)
    return paths


def replay(paths) -> VgtuiApp:
    sources = [FileSource(str(p)) for p in paths]
    for s in sources:
        s.open()
    return VgtuiApp(sources, fps=8)


async def settle(pilot) -> None:
    """Every run's cursor placed, its curves' history filled, every panel drawn."""
    app = pilot.app
    await wait_for(pilot, lambda: all(st.snap is not None for st in app.main.states), what="every run's snapshot")
    await app.workers.wait_for_complete()
    app.clear_notifications()
    await wait_for(pilot, lambda: all(st.history.seen == src.run.n_snapshots
                                      for st, src in zip(app.main.states, app.main.sources)), what="the history")
    await wait_for(pilot, app.main.up_to_date, what="every panel's last frame")
    await pilot.pause(0.1)


async def test_five_files_overlay_five_runs_and_o_moves_the_focus(tmp_path):
    paths = five(tmp_path)
    app = replay(paths)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        main = app.main
        assert [st.label for st in main.states] == [p.name for p in paths]
        # aligned by step on A's cursor (sigmoid: step 120; relu-diverged ended at step 3)
        assert [st.step for st in main.states] == [120, 3, 120, 120, 120]
        status = text_of(main.query_one("#status"))
        first = status.splitlines()[0]
        for tag in "ABCDE":  # one badge each
            assert f"{tag} " in first
        assert "▸A" in first and "VANISHING" in first and "DIVERGED" in first
        assert "A sigmoid.jsonl" in status.splitlines()[1]
        legend = main.query_one("#loss").border_subtitle
        assert "▸A" in legend and all(f" {t} " in legend for t in "BCDE")
        assert "runs A…E" in text_of(main.query_one("#grads"))
        # with more than four runs: each run's first and last layer, one row per run
        grads = text_of(main.query_one("#grads"))
        for tag in "ABCDE":
            assert f"fc1 {tag}" in grads and f"fc6 {tag}" in grads
        await pilot.press("o", "o")
        await status_shows(pilot, "focus on C (tanh-xavier.jsonl)")
        assert main.branch_focus == 2
        await wait_for(pilot, lambda: "▸C" in main.query_one("#loss").border_subtitle, what="the legend's focus")
        acts = await shows(pilot, main.query_one("#acts"), "C tanh-xavier.jsonl · tanh")
        assert "sigmoid.jsonl" not in acts
        await pilot.press("tab", "tab")
        table = await shows(pilot, main.query_one("#table"), "C tanh-xavier.jsonl · run 3 of 5")
        assert "fc1" in table and "relu-kaiming" not in table
        for _ in range(3):  # E, then round to A
            await pilot.press("o")
        await status_shows(pilot, "focus on A (sigmoid.jsonl)")
        assert "▸A" in text_of(main.query_one("#status")).splitlines()[0]
        # the layer table's cursor picks the layer the bars show beside each run's last
        await pilot.press("down", "down", "tab", "tab")
        grads = await shows(pilot, main.query_one("#grads"), "fc3 E")
        assert all(f"fc3 {tag}" in grads and f"fc6 {tag}" in grads for tag in "ABCDE") and "fc1 A" not in grads


async def test_e_writes_one_csv_per_run_shown_and_overwrites_nothing(tmp_path):
    paths = five(tmp_path)[:3]
    (tmp_path / "tanh-xavier.csv").write_text("mine\n")
    app = replay(paths)
    async with app.run_test(size=(240, 60)) as pilot:
        await settle(pilot)
        # up to four runs, where the rows fit (here 3 x 6 in 25): a bar per run and layer, interleaved by layer
        lines = text_of(app.main.query_one("#grads")).splitlines()
        labels = [" ".join(line.split()[1:3]) for line in lines if line.startswith("│ ") and "e" in line[:20]]
        assert labels[:6] == ["fc1 A", "fc1 B", "fc1 C", "fc2 A", "fc2 B", "fc2 C"]
        await pilot.press("e")
        await status_shows(pilot, f"CSV written, one per run shown (3 of 3) in {tmp_path}: A sigmoid.csv (72 rows)")
        assert app.main.notice.endswith("C tanh-xavier-2.csv (42 rows; tanh-xavier.csv exists: left as it is)")
        await wait_for(pilot, lambda: app._notifications, what="a notification")  # a name not the one wanted
    assert (tmp_path / "tanh-xavier.csv").read_text() == "mine\n"
    rows = {}
    for name in ("sigmoid.csv", "relu-diverged.csv", "tanh-xavier-2.csv"):
        with open(tmp_path / name, newline="") as f:
            rows[name] = len(list(csv.DictReader(f)))
    assert rows == {"sigmoid.csv": 12 * 6, "relu-diverged.csv": 3 * 6, "tanh-xavier-2.csv": 7 * 6}


async def test_eight_runs_of_two_kinds_at_80x24_in_every_view(tmp_path):
    """Eight files, the seed's network beside resnet18 under vgtui.watch (other layers, no known length), at the
    smallest size: every view of every run in focus draws without a failure, each run keeps its badge."""
    names = (*FIVE, "sigmoid-why", "forked", "resnet18")
    paths = []
    for name in names:
        shutil.copyfile(FIXTURES / f"{name}.jsonl", tmp_path / f"{name}.jsonl")
        paths.append(tmp_path / f"{name}.jsonl")
    app = replay(paths)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        main = app.main
        assert len(main.states) == 8 and main.states[7].layers[-1] == "fc"
        first = text_of(main.query_one("#status")).splitlines()[0]
        assert re.findall(r"[▸ ]([A-H])  ?[A-Z…]", first) == list("ABCDEFGH")  # the tag, then its badge
        for focus in range(8):
            for _ in range(4):  # overview, histograms, layer table, why
                await pilot.press("tab")
                await wait_for(pilot, main.up_to_date, what="the view drawn")
            assert main.branch_focus == focus
            await pilot.press("o")
        for panel in main.query("Panel"):
            assert panel.failures == [], (panel.id, panel.failures)


def test_a_ninth_file_is_refused_with_one_line(tmp_path):
    paths = [tmp_path / f"run{i}.jsonl" for i in range(9)]
    for p in paths:
        shutil.copyfile(FIXTURES / "relu-diverged.jsonl", p)
    cmd = [sys.executable, "-m", "vgtui", "replay", *map(str, paths)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.splitlines() == ["vgtui: error: vgtui replay overlays at most 8 files (got 9)"]
    assert out.stdout == ""
    # eight are taken: without a terminal, each file's summary
    out = subprocess.run(cmd[:-1], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for p in paths[:8]:
        assert f"{p}: run 1: " in out.stdout
    assert str(paths[8]) not in out.stdout


def test_five_runs_screen(snap_compare, tmp_path):
    paths = five(tmp_path)

    async def run_before(pilot):
        await settle(pilot)

    assert snap_compare(replay(paths), terminal_size=(120, 40), run_before=run_before)
