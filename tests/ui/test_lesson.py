"""Lessons in the UI (issue 17): every built-in lesson walked to its end with the real trainer (a ThreadBackend,
the engine the child process runs), each question answered once wrong and once right (backspace: the step again),
each reveal checked against the run's own numbers read back from the metrics file; the class's answers are events
of that file; SVG snapshots of vanishing's first step at 80x24 and 120x40, before its run.

Short runs: every step's run is scaled by 0.1 (`read_lesson(..., scale=0.1)`, what `vgtui lesson --steps-scale 0.1`
or VGTUI_LESSON_SCALE=0.1 does), which leaves the floor of two snapshots (10 steps at a snapshot every 5)."""

from __future__ import annotations

import json
import statistics

import pytest

from conftest import ROOT

from .conftest import shows, text_of, wait_for
from vgtui.commands.lesson import figures
from vgtui.core.diagnosis import ratio_words
from vgtui.core.lesson import read_lesson
from vgtui.core.records import Pause, record_from_json

SCALE = 0.1


def lesson_app(name: str, digits, tmp_path, scale: float = SCALE):
    from vgtui.sources.trainer import ThreadBackend
    from vgtui.ui.lesson_app import LessonApp

    lesson = read_lesson(str(ROOT / name) if name.endswith(".toml") else name, figures(), scale)
    backend = ThreadBackend(lesson.steps[0].config, str(tmp_path / f"{lesson.name}.jsonl"), data=digits)
    backend.start()
    backend.send(Pause(True))
    return LessonApp(backend, lesson, fps=2, screenshot_dir=str(tmp_path), start_source=False), backend, lesson


def file_runs(path) -> list[dict]:
    """The metrics file's runs: each {"A": [snapshots], "B": [...], "events": [...]} (JSON objects)."""
    runs: list[dict] = []
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            b = d.get("branch") or "A"
            if d["type"] == "run" and b == "A" and d.get("forked_at") is None:
                runs.append({"events": []})
            elif d["type"] == "snapshot":
                runs[-1].setdefault(b, []).append(d)
            elif d["type"] == "event":
                runs[-1]["events"].append(d)
    return runs


def ratio_of(snaps: list[dict], a: str, b: str) -> float:
    """fc_a over fc_b's weight-gradient norm: the median over the last 5 snapshots, computed here from the file."""
    rs = []
    for s in snaps[-5:]:
        g = {l["name"]: l["grad_norm"] for l in s["layers"]}
        rs.append(g[a] / g[b])
    return statistics.median(rs)


def check_against_file(name: str, index: int, screen, path) -> None:
    """The reveal's numbers, recomputed from the metrics file (the step's run: the last run; its snapshots up to
    where the run stopped)."""
    run = file_runs(path)[-1]
    upto = screen.stop_at
    start = screen.start_step
    snaps = {b: [s for s in v if (s["step"] > start or start == 0) and s["step"] <= upto]
             for b, v in run.items() if b != "events"}
    step = screen.step
    what = screen.result.what
    a = snaps["A"]
    last = a[-1]["layers"][-1]["name"]
    if step.fork:  # each branch's loss, as the file has it
        for b in step.branches:
            if f"{b}.loss" in step.reveal or "loss" in step.reveal and b == "A":
                assert f"{snaps[b][-1]['loss_avg']:.2f}" in what, (b, what)
    if name == "vanishing" and index in (0, 2, 3, 4):
        r = ratio_of(a, "fc1", last)
        assert ratio_words(r) in what, (r, what)
        assert screen.result.right == ((1 if r > 0.3 else 2 if r > 0.01 else 3) if index == 0 else
                                       (1 if r > 0.01 else 2))
    if step.right.startswith("argmin([A.loss"):  # the winner by loss, from the file
        losses = [snaps[b][-1]["loss_avg"] for b in step.branches]
        assert screen.result.right == losses.index(min(losses)) + 1
    if "argmax([A.ratio" in step.right:
        rs = [ratio_of(snaps[b], "fc1", last) for b in step.branches]
        if step.right.startswith("argmax"):
            assert screen.result.right == rs.index(max(rs)) + 1
        for r in rs:
            assert ratio_words(r) in what


async def walk(pilot, name: str, lesson, backend) -> list[tuple[int, int, bool]]:
    """Walk the lesson to its end: each question answered first with an answer, then (backspace: again) with the
    other kind (right if the first was wrong, wrong if it was right). Returns (step, answer, correct) for each."""
    screen = pilot.app.main
    panel = screen.query_one("#lesson")
    answered = []
    for i, step in enumerate(lesson.steps):
        await wait_for(pilot, lambda: screen.index == i and not screen.awaiting, 30, f"step {i + 1}'s run")
        await shows(pilot, panel, step.title)
        if i and step.restart and not step.fork and not lesson.steps[i - 1].fork:  # the run before, kept faint
            tr = screen.state.trace
            assert tr is not None and len(tr.steps) >= 2 and tr.steps[-1] >= screen.stop_at_before
        if not step.answers:
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.phase in ("reveal", "done"), 60, "the reveal")
            await pilot.press("enter")
            continue
        first = 1
        for attempt in range(2):
            await pilot.press(str(first))
            await wait_for(pilot, lambda: screen.phase in ("reveal", "done"), 60, f"step {i + 1}'s reveal")
            r = screen.result
            assert r.answer == first and r.right is not None, r.lines
            assert r.correct == (first == r.right)
            shown = text_of(panel)
            assert ("✓ right" if r.correct else "✗ wrong") in " ".join(r.lines)
            assert step.answers[r.right - 1][:20] in shown
            check_against_file(name, i, screen, backend.metrics_path)
            answered.append((i, first, r.correct))
            screen.stop_at_before = screen.stop_at
            if attempt == 0:
                right = r.right
                first = right if not r.correct else (1 if right != 1 else 2)  # the other kind
                await pilot.press("backspace")
                await wait_for(pilot, lambda: screen.phase == "ask" and not screen.awaiting, 30, "the step again")
        await pilot.press("enter")
    assert screen.phase == "done"
    return answered


EXAMPLE = "examples/lessons/my_first_lesson.toml"  # the teacher's example (run from the repository's root)


@pytest.mark.parametrize("name", ["vanishing", "glorot2010", "he2015", "bn2015", EXAMPLE])
async def test_walk_builtin_lesson(name, digits, tmp_path):
    app, backend, lesson = lesson_app(name, digits, tmp_path)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            answered = await walk(pilot, name, lesson, backend)
            # the run does not end under the teacher's feet: paused at the last step's N, it trains on with space
            screen = app.main
            await wait_for(pilot, lambda: screen.paused, 10, "the pause at the lesson's end")
            await shows(pilot, screen.query_one("#lesson"), "the lesson is over")
            if name == "bn2015":  # the help names the lesson's keys first
                await pilot.press("question_mark")
                await wait_for(pilot, lambda: len(app.screen_stack) > 1, 10, "the help")
                await shows(pilot, app.screen.query_one("#help-keys"), "this step again")
                await pilot.press("escape")
            at = screen.tap.latest_step()
            await pilot.press("space")
            await wait_for(pilot, lambda: (screen.tap.latest_step() or 0) > at, 30, "training on")
            assert screen.state.end is None
    finally:
        backend.close(2.0)
    questions = [i for i, s in enumerate(lesson.steps) if s.answers]
    for i in questions:  # each question once right and once wrong (the rerun's numbers kept the right answer)
        assert sorted(c for j, _, c in answered if j == i) == [False, True], (i, answered)
    # the class's answers are events of the metrics file, read back by the reader as they were written
    events = [json.loads(line) for line in open(backend.metrics_path) if '"type":"event"' in line]
    said = [e["set"] for e in events if "lesson" in e["set"]]
    assert [(s["question"], s["answer"]) for s in said] == [(i + 1, k) for i, k, _ in answered]
    assert all(s["lesson"] == lesson.name for s in said)
    back = record_from_json(events[-1])
    assert back.set == events[-1]["set"]


async def settle_first_step(pilot) -> None:
    screen = pilot.app.main
    await wait_for(pilot, lambda: not screen.awaiting and screen.paused, 30, "the first step, paused")
    pilot.app.clear_notifications()
    await wait_for(pilot, screen.up_to_date, what="every panel's frame")
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_vanishing_first_step_snapshot(snap_compare, size, digits, tmp_path):
    app, backend, _ = lesson_app("vanishing", digits, tmp_path)
    try:
        assert snap_compare(app, terminal_size=size, run_before=settle_first_step)
    finally:
        backend.close(2.0)



def test_a_previous_run_is_drawn_faint_under_the_new_one():
    from vgtui.ui import charts

    args = ([0, 10, 20], [2.3, 2.2, 2.0], [], [], [], [], 40, 60, 14)
    plain = charts.loss_curves(*args)
    traced = charts.loss_curves(*args, trace=([0, 10, 20, 30], [2.3, 1.5, 1.0, 0.5]))
    assert plain != traced and f"38;5;{charts.TRACE_COLOUR}m" in traced and f"38;5;{charts.TRACE_COLOUR}m" not in plain


def test_vgtui_lesson_on_a_terminal_with_its_child_process(tmp_path):
    """`vgtui lesson vanishing` as a teacher runs it (the trainer in its child process, a pseudo-terminal): the first
    step waits paused, 3 answers and runs it, the reveal comes, q quits (0); the metrics file holds the answer as an
    event of the first step's run, and ends with the run's end record."""
    from .ptyrun import Tty

    m = tmp_path / "class.jsonl"
    with Tty(["lesson", "vanishing", "--steps-scale", "0.1", "--metrics", str(m)]) as tty:
        tty.wait_text("How much of fc6's gradient")
        tty.wait_text("paused")
        tty.send(b"3")
        tty.wait_text("right: 3)", timeout=90)
        tty.send(b"q")
        assert tty.wait() == 0
    recs = [json.loads(line) for line in m.read_text().splitlines()]
    events = [r["set"] for r in recs if r["type"] == "event"]
    assert {"lesson": "vanishing", "question": 1, "answer": 3, "text": "less than 1/100"} in events
    assert recs[-1]["type"] == "end" and recs[-1]["cause"] == "quit"
    assert [r["type"] for r in recs].count("run") == 1  # the first step trains the run the trainer started with


DIVERGING = """[lesson]
title = "a branch that diverges"
config = { depth = 2, width = 64 }

[[step]]
title = "relu at lr 100 beside sigmoid at lr 0.01"
fork = [{ activation = "relu", init = "kaiming", lr = 100.0 }]
question = "Which has the lower loss?"
answers = ["A", "B"]
right = "argmin([A.loss, B.loss])"
run = 200
reveal = "A {A.loss:.2f}, B {B.badge}"
"""


async def test_a_branch_that_diverges_does_not_hold_the_step(digits, tmp_path):
    """B at lr 100 explodes within a few steps and ends; the step's run still stops at its N (A's), and the reveal
    says A won, from A's numbers, and B's verdict."""
    path = tmp_path / "diverging.toml"
    path.write_text(DIVERGING)
    app, backend, lesson = lesson_app(str(path), digits, tmp_path, scale=1.0)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.main
            await wait_for(pilot, lambda: not screen.awaiting, 30)
            await pilot.press("2")
            await wait_for(pilot, lambda: screen.phase == "done", 60, "the reveal")
            assert "B" in screen.tap.ended and screen.stop_at == 200
            assert screen.result.right == 1 and screen.result.correct is False
            assert "B DIVERGED" in screen.result.what or "B EXPLODING" in screen.result.what, screen.result.what
    finally:
        backend.close(2.0)
