"""The lesson panel: beside the charts, a lesson's step (its text, the question with a key per answer), what the run
is doing, and the reveal computed from the run's numbers (vgtui.core.lesson). Everything from the lesson file is
shown as text (never read as markup; control characters are refused by the parser)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from vgtui.core.lesson import ANSWER_KEYS, Reveal, Step


@dataclass(frozen=True)
class LessonView:
    """What the panel shows: the lesson's title, the step (its number and how many), the phase ("ask", "run",
    "reveal", "done"), the class's answer, the run's progress and the reveal."""

    title: str
    step: Step
    index: int
    count: int
    phase: str
    answer: int | None = None
    progress: str = ""
    reveal: Reveal | None = None


class LessonPanel(Static):
    DEFAULT_CSS = """
    LessonPanel {
        dock: right;
        width: 32;
        height: 100%;
        border: round $accent;
        padding: 0 1;
        overflow-y: auto;
    }
    """

    def show(self, v: LessonView) -> None:
        self.border_title = Text(f"lesson {v.index + 1}/{v.count}")
        self.border_subtitle = Text(v.title)
        s = v.step
        t = Text()
        t.append(s.title + "\n", style="bold")
        if s.text and v.phase in ("ask", "run"):  # after the run, the reveal takes its place
            t.append(s.text + "\n")
        if s.question:
            t.append("\n" + s.question + "\n", style="bold")
            for i, a in enumerate(s.answers):
                chosen = v.answer == i + 1
                right = v.reveal is not None and v.reveal.right == i + 1
                style = "reverse" if chosen else ""
                mark = " ✓" if right else ""
                t.append(f" {ANSWER_KEYS[i]} ", style="bold reverse" if not chosen else "bold")
                t.append(f" {a}{mark}\n", style=style + (" green" if right else ""))
        t.append("\n")
        if v.phase == "ask":
            if s.question:
                t.append("1-" + ANSWER_KEYS[len(s.answers) - 1] + ": the class's answer, then it runs\n", style="dim")
                t.append("enter: run without an answer\n", style="dim")
            else:
                t.append(f"enter: run{f' {s.run:,} steps' if s.run else ''}\n", style="dim")
        elif v.phase == "run":
            t.append(v.progress + "\n", style="bold")
        elif v.phase in ("reveal", "done"):
            if v.progress:
                t.append(v.progress + "\n", style="dim")
            if v.reveal is not None:
                for i, line in enumerate(v.reveal.lines):
                    style = "bold" if i == 0 else ("green" if "✓" in line else "red" if "✗" in line else "")
                    t.append(line + "\n", style=style)
            t.append("\n")
            if v.phase == "done":
                t.append("the lesson is over: space trains on, q quits\n", style="bold")
            else:
                t.append("enter: next step · backspace: this step again · space: train on\n", style="dim")
        self.update(t)
        if v.phase in ("reveal", "done"):
            self.call_after_refresh(self.scroll_end, animate=False)
