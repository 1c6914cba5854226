"""Screens over a run screen: the key help (`?`, from the key map) and the trainer failure dialog."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from vgtui.core.records import EndRecord
from vgtui.ui import colours, keymap

class HelpScreen(ModalScreen[None]):
    """The keys that work with this source (`kind`), from the key map. The text wraps to the terminal's width
    and scrolls with the arrow keys where it is taller than the terminal (80x24 over SSH, no mouse).

    Esc, ? and q close it. Any other key closes it and acts on the main screen: a person at a projector presses
    Esc and the next key at once, and a terminal sends the two together (ESC l), which Textual reads as one key
    (alt+l) when they come within its escape delay (0.1 s), or together over SSH. That key is the main screen's
    `l`, not a key of the help."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "close", show=True),
                Binding("up", "scroll(-1)", "scroll", show=False), Binding("down", "scroll(1)", "scroll", show=False),
                Binding("pageup", "scroll(-10)", show=False), Binding("pagedown", "scroll(10)", show=False)]
    OWN_KEYS = frozenset({"escape", "question_mark", "q", "up", "down", "pageup", "pagedown"})

    def __init__(self, kind: str = "trainer", extra: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__()
        self.kind = kind
        self.extra = extra  # (keys, what they do) a screen adds before the key map's (a lesson's keys)

    def compose(self) -> ComposeResult:
        t = Table(box=None, show_header=False, pad_edge=False)
        t.add_column(style=colours.style(colours.RUN_A, bold=True), no_wrap=True)
        t.add_column()
        for keys, what in self.extra:
            t.add_row(keys, what)
        for keys, what, _ in keymap.help_rows(self.kind):
            t.add_row(keys, what)
        with Vertical(id="help-box") as box:
            box.border_title = "vgtui keys · ? shows this screen"
            box.border_subtitle = "? or esc closes · ↑ ↓ scroll · any other key closes it and acts"
            with VerticalScroll(id="help-scroll"):
                yield Static(t, id="help-keys")
                yield Static(Text("Bars: weight-gradient size per layer on a log axis with fixed decades, "
                                  "orange = vanishing (below 1% of the last layer's), green = healthy, "
                                  "magenta = exploding, red = non-finite; a row like layer3.* ×5 is a group of "
                                  "layers, its bar solid to the smallest and shaded to the largest.", style="dim"),
                             id="help-foot")

    def action_dismiss(self, result=None) -> None:  # type: ignore[override]
        self.dismiss(None)

    def on_key(self, event: events.Key) -> None:
        """A key that is not the help's own: close the help, then the main screen gets the key (ESC + key: the key)."""
        key, char = event.key, event.character
        if key.startswith("alt+"):  # Esc and a key together
            key = key[len("alt+"):]
            if key.startswith("shift+") and len(key) == len("shift+") + 1:
                key = key[-1].upper()
            char = key if len(key) == 1 else None
        elif key in self.OWN_KEYS:
            return
        event.stop()
        event.prevent_default()
        self.dismiss(None)
        if key not in ("escape", "question_mark"):
            self.app.call_after_refresh(self.app.post_message, events.Key(key, char))

    def action_scroll(self, lines: int) -> None:
        self.query_one("#help-scroll", VerticalScroll).scroll_relative(y=int(lines), animate=False)


class FailureScreen(ModalScreen[str]):
    """The trainer raised: its message and traceback, and the choice to restart or quit."""

    BINDINGS = [Binding("r", "choose('restart')", "restart"), Binding("q", "choose('quit')", "quit"),
                Binding("escape", "choose('close')", "close")]

    def __init__(self, end: EndRecord | None, message: str | None = None, hint: str = "") -> None:
        super().__init__()
        self.end = end
        self.message = message or (end.message if end else "the trainer stopped")
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(id="failure-box"):
            yield Static(Text("Training failed", style=colours.style(colours.DIVERGED, bold=True)), id="failure-title")
            yield Static(Text(self.message, style="bold"), id="failure-message")
            with VerticalScroll(id="failure-tb"):
                yield Static(Text(self.end.traceback if self.end and self.end.traceback else "(no traceback)",
                                  style="dim"))
            yield Static(Text(f"{self.hint + ' ' if self.hint else ''}Restart from fresh weights (with the "
                              "configuration on screen), or quit."), id="failure-hint")
            with Horizontal(id="failure-buttons"):
                yield Button("Restart (r)", id="restart", variant="primary")
                yield Button("Quit (q)", id="quit", variant="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "close")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
