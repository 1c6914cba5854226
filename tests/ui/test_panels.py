"""The panels drawn without a screen or an app: each is handed a RunView (the runs' states and the view options),
built here from the recorded fixtures, the way the screen builds one each frame."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from vgtui.core.records import RunRecord, record_from_json
from vgtui.ui.state import RunState
from vgtui.ui.widgets import GradientBars, RunView, StatusBar

FIXTURES = Path(__file__).parent / "fixtures"


def state(name: str) -> RunState:
    s, header = RunState(), None
    with open(FIXTURES / name) as f:
        for line in f:
            rec = record_from_json(json.loads(line), header)
            header = rec if isinstance(rec, RunRecord) else header
            s.apply(rec)
    return s


def lines(panel, view: RunView, width: int, height: int) -> list[str]:
    panel.view = view
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(panel.build(width, height))
    return console.export_text().splitlines()


def test_bars_of_one_run_and_of_two():
    a, b = state("sigmoid.jsonl"), state("relu-diverged.jsonl")
    one = lines(GradientBars(), RunView((a,)), 80, 14)
    assert [x.split()[:2] for x in one if x.startswith("fc")] == [
        ["fc1", "2.8e-04"], ["fc2", "1.2e-03"], ["fc3", "9.0e-03"], ["fc4", "6.5e-02"], ["fc5", "4.6e-01"],
        ["fc6", "2.9e+00"]]
    bars = GradientBars()
    bars.view = RunView((a, b))
    rows = bars.rows("grad_norm")
    assert [(r.name, r.run, r.label) for r in rows[:3]] == [("fc1", 0, "fc1 A"), ("fc1", 1, "fc1 B"),
                                                              ("fc2", 0, "fc2 A")]
    tall = lines(bars, RunView((a, b), log=False), 80, 30)  # a row per run and layer, each named with its run
    assert [x.split()[:3] for x in tall if x.startswith("fc1")] == [["fc1", "A", "2.8e-04"], ["fc1", "B", "1.4e+11"]]
    tight = lines(bars, RunView((a, b), log=False), 80, 8)  # no room: A's bars | B's bars, names without the run
    left, right = zip(*(x.split("│") for x in tight))
    assert left[0].split()[:2] == ["fc1", "2.8e-04"] and right[0].split()[:2] == ["fc1", "1.4e+11"]
    assert right[5].split()[:2] == ["fc6", "1.6e+11"]


def test_the_status_line_reads_only_its_view():
    a = state("sigmoid.jsonl")
    shown = lines(StatusBar(), RunView((a,), replay=True, paused=True, notice="what just happened"), 100, 3)
    assert "■ completed" in shown[1] and "test 10.0%" in shown[1]
    assert shown[2].strip() == "what just happened"
    assert "sigmoid" in shown[0] and "VANISHING" in shown[0]
