"""The one key map: every key of the main screen, what it does and with which sources.

The screen's bindings, the footer, the `?` help screen, the command palette and the README's key table are all
built from `KEYMAP`; `python -m vgtui.ui.keymap --markdown` prints the README table (tests/ui/test_keymap.py fails
when the README's differs). A key whose source kind is not in `Key.sources` is still bound, hidden, to
`unavailable`: a press says in one line why it does nothing here.

The footer is one line and must keep `q quit` and `? help` at every width from 80 columns up (a person on a small
terminal over SSH has to find the way out and the way to the rest). `FOOTER` ranks the keys: the footer shows, in
that order, as many as fit the width (`footer_keys`); the others are in the help screen and the palette.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from textual.binding import Binding

TRAINER = frozenset({"trainer"})
FILE = frozenset({"file"})
TIME = frozenset({"trainer", "file"})  # a trainer's pace or a replay's pace
ANY = frozenset({"trainer", "file", "stream"})
NEEDS = {TRAINER: "a live trainer", FILE: "a metrics file", TIME: "a live trainer or a metrics file"}
WORKS_WITH = {TRAINER: "live trainer", FILE: "replay", TIME: "live trainer, replay", ANY: "any"}


@dataclass(frozen=True)
class Key:
    keys: str  # Textual key names, comma-separated
    action: str  # the screen's action, with its arguments
    label: str  # in the footer
    description: str  # in the help screen, the palette and the README
    sources: frozenset[str] = ANY  # the source kinds it applies to
    help_keys: str | None = None  # how the help and the README write it ("a / A"); None: folded into another row
    display: str | None = None  # how the footer writes it
    show: bool = True  # in the footer
    priority: bool = False
    palette: str | None = None  # the command palette's title (None: not in the palette)
    needs_file: bool = False  # does something only with a metrics file behind the run: not in the footer without
    view: str | None = None  # acts only while this view is shown (the screen's check_action); elsewhere the key
    # goes to its next binding (home / end: a replay's first / last snapshot)

    def applies(self, kind: str) -> bool:
        return kind in self.sources


KEYMAP: tuple[Key, ...] = (
    Key("a", "activation(1)", "activation", "next / previous activation, live: the weights are kept (an event "
        "in the metrics file); after the run has ended, at the next restart", TRAINER, "a / A",
        palette="Next activation"),
    Key("A", "activation(-1)", "prev act", "previous activation, live", TRAINER, show=False,
        palette="Previous activation"),
    Key("i", "init", "init", "next weight init, restart from fresh weights", TRAINER, "i", palette="Next init"),
    Key("b", "batchnorm", "batchnorm", "batchnorm on/off, restart", TRAINER, "b", palette="Toggle batchnorm"),
    Key("s", "skip", "skip", "skip connections on/off, restart", TRAINER, "s", palette="Toggle skip connections"),
    Key("plus,equals_sign", "depth(1)", "depth+", "one hidden layer more / less, restart", TRAINER, "+ / -",
        display="+", palette="Deeper"),
    Key("minus", "depth(-1)", "depth-", "one hidden layer less, restart", TRAINER, display="-",
        palette="Shallower"),
    Key("f", "fork", "fork", "fork the run: a new branch (B, then C, D: up to four runs) starts as an exact copy of "
        "A and trains beside it on the same batches, and takes the focus; a and L then change the run in focus at "
        "once, i b s + - r restart every branch from the same seed, the one in focus changed; the palette's \"Fork "
        "with ...\" adds a branch with one remedy (ReLU, batch norm, Xavier init, skip), every branch from step 0",
        TRAINER, "f", palette="Fork the run: one more branch (B, C, D)"),
    Key("F", "end_fork", "end fork", "end the fork, keeping the run in focus (A: the branches end; a branch: it goes "
        "on as the run)", TRAINER, "F", show=False, palette="End the fork, keeping the run in focus"),
    Key("o", "focus", "focus", "with several runs (a fork, or a replay of up to eight files): the focus to the next "
        "run, A, B, C... (the gradient histograms show it; with more than two runs the activations and the layer "
        "table too, the legend and the status mark it ▸; the recipe keys change it in a fork, F keeps it when it ends "
        "the fork)", ANY, "o", show=False,
        palette="Focus on the next run (A, B, C...)"),
    Key("space", "pause", "pause", "pause / resume training; in a replay, play / pause at the recorded pace",
        TIME, "space", palette="Pause / resume"),
    Key("n", "step", "step", "one training step (pauses first)", TRAINER, "n", palette="One step"),
    Key("left_square_bracket", "speed(1)", "slower", "slower / faster: a steps/s cap while training, the "
        "replay's pace in a replay", TIME, "[ / ]", display="[", palette="Slower"),
    Key("right_square_bracket", "speed(-1)", "faster", "faster", TIME, display="]", palette="Faster"),
    Key("r", "restart", "restart", "restart with the same configuration", TRAINER, "r", palette="Restart"),
    Key("L", "lower_lr", "lr÷10", "restart with the learning rate divided by 10 (after a divergence)", TRAINER,
        "L", show=False, palette="Restart with lr ÷ 10"),
    # the layer table's keys: bound before the replay's home / end, they take precedence while the table is shown
    Key("up", "layer_move(-1)", "up", "layer table: cursor up / down; in a layer's history, the layer above / "
        "below", ANY, "↑ / ↓", show=False, view="layers", palette=None),
    Key("down", "layer_move(1)", "down", "layer table: cursor down", ANY, show=False, view="layers"),
    Key("pageup", "layer_page(-1)", "page up", "layer table: a page up / down", ANY, "pgup / pgdn", show=False,
        view="layers"),
    Key("pagedown", "layer_page(1)", "page down", "layer table: a page down", ANY, show=False, view="layers"),
    Key("home", "layer_edge(0)", "top", "layer table: the first / last row (while the table is shown; elsewhere "
        "a replay's first / last snapshot)", ANY, "home / end", show=False, view="layers"),
    Key("end", "layer_edge(1)", "bottom", "layer table: the last row", ANY, show=False, view="layers"),
    Key("c", "layer_sort", "sort", "layer table: sort by the next column (after the last, the network's order); "
        "the header marks it ▲ ascending / ▼ descending", ANY, "c", show=False, view="layers",
        palette="Sort the layer table by the next column"),
    Key("C", "layer_reverse", "reverse", "layer table: reverse the sort", ANY, "C", show=False, view="layers",
        palette="Reverse the layer table's sort"),
    Key("slash", "layer_filter", "filter", "layer table: filter the layers by name or glob pattern, the patterns "
        "vgtui.watch(layers=...) takes (several: separated by spaces); enter keeps it, esc clears it", ANY, "/",
        show=False, view="layers", palette="Filter the layer table"),
    Key("enter", "layer_open", "history", "layer table: the cursor's layer over steps (its gradient metric, "
        "update:data, saturated fraction, mean |φ'|) and its latest histograms", ANY, "enter", show=False,
        view="layers"),
    Key("escape", "layer_back", "back", "layer table: back from a layer's history; close / clear the filter", ANY,
        "esc", show=False, view="layers"),
    Key("up", "spike_move(-1)", "previous spike", "loss spikes view: the previous / next spike", ANY, "↑ / ↓",
        show=False, view="spikes"),
    Key("down", "spike_move(1)", "next spike", "loss spikes view: the next spike", ANY, show=False, view="spikes"),
    Key("left", "seek(-1)", "back", "one snapshot back / forward", FILE, "← / →", display="←", palette="Back"),
    Key("right", "seek(1)", "fwd", "one snapshot forward", FILE, display="→", palette="Forward"),
    Key("home", "seek_to(0)", "first", "first / last snapshot (the last follows a growing file); in the layer "
        "table, its first / last row", FILE, "home / end", show=False, palette="First snapshot"),
    Key("end", "seek_to(-1)", "last", "last snapshot", FILE, show=False, palette="Last snapshot"),
    Key("p", "next_run", "run", "next run of the file (a file with several runs, e.g. restarts)", FILE, "p",
        palette="Next run of the file"),
    Key("m", "metric", "metric", "gradient metric: grad norm, mean |grad|, grad:data, update:data; then the "
        "curves show the pre-activation percentiles", ANY, "m", palette="Next metric"),
    Key("l", "log", "log/lin", "log / linear axes", ANY, "l", palette="Log / linear axes"),
    Key("tilde", "smooth", "smooth", "curves: smoothing, an exponential moving average of weight off / 0.6 / 0.9 / "
        "0.99 (the raw loss stays faint behind the smoothed one)", ANY, "~", show=False,
        palette="Curves: next smoothing"),
    Key("w", "wall", "wall time", "curves over steps / over wall time (seconds since the run started)", ANY, "w",
        show=False, palette="Curves over steps / wall time"),
    Key("z", "zoom(1)", "zoom in", "curves: zoom in to the last half of the steps shown, again for the last quarter, "
        "...; Z zooms out (the loss panel's title says the range: up to the latest step, or a replay's cursor)", ANY,
        "z / Z", show=False, palette="Curves: zoom in"),
    Key("Z", "zoom(-1)", "zoom out", "curves: zoom out", ANY, show=False, palette="Curves: zoom out"),
    Key("x", "relative", "relative", "gradient bars relative to the output layer (which reads 1): each layer's "
        "share of its gradient, in words (1/10,000)", ANY, "x", palette="Gradient bars relative to the output layer"),
    Key("tab", "next_view", "view", "next view: overview, gradient histograms, layer table, why (derivative × "
        "weights), and the loss spikes once a run has one", ANY, "tab",
        priority=True, palette="Next view"),
    Key("e", "export", "CSV", "write the run on screen as CSV next to its metrics file (several runs, a replay of files or a "
        "live fork: one CSV each), under a new name if that one exists (the paths are shown)", TIME, "e", palette="Export CSV",
        needs_file=True),
    Key("ctrl+s", "screenshot_svg", "SVG", "save an SVG screenshot (the path is shown)", ANY, "ctrl+s",
        priority=True, palette="Save SVG screenshot"),
    Key("question_mark", "help", "help", "the key help screen (esc closes it; another key closes it and acts)", ANY,
        "?", display="?", palette="Key help"),
    Key("q", "quit", "quit", "quit (training stops within 2 s)", ANY, "q / ctrl+c", palette="Quit vgtui"),
    Key("ctrl+c", "quit", "quit", "quit", ANY, show=False, priority=True),
)
VIEW_ACTIONS = {k.action.split("(")[0]: k.view for k in KEYMAP if k.view}  # action -> the view it acts in
EXTRA_HELP = (("ctrl+p", "command palette", ANY),)
# the palette's entries that no key has: (title, what it does, the screen's action, the source kinds)
PALETTE_ONLY: tuple[tuple[str, str, str, frozenset[str]], ...] = tuple(
    (f"Fork with: {name}", f"a new branch with {what}; A and every branch start again from the same seed at step 0 "
     "on the same batches (a fair comparison)", f"fork_with({key!r})", TRAINER)
    for key, name, what in (("relu", "relu", "ReLU"), ("batchnorm", "batch norm", "batch norm"),
                            ("xavier", "xavier", "Xavier init"), ("skip", "skip", "skip connections")))
# the footer's keys, most important first (by their first Textual key name); the footer shows those that fit
FOOTER = ("q", "question_mark", "tab", "space", "a", "f", "left", "right", "m", "l", "b", "s", "i", "plus,equals_sign",
          "minus", "r", "n", "p", "left_square_bracket", "right_square_bracket", "e", "ctrl+s", "x")
PALETTE_CELLS = 14  # what Textual's "^p palette" takes at the footer's right end
ITEM_GAP = 2  # cells between a footer key and its label, and after the label  # Textual's own keys, in the help and the README only


def for_kind(kind: str) -> list[Key]:
    return [k for k in KEYMAP if k.applies(kind)]


def footer_cells(k: Key) -> int:
    """The cells a key takes in Textual's compact footer."""
    shown = k.display or k.keys.split(",")[0].replace("ctrl+", "^")
    return len(shown) + len(k.label) + ITEM_GAP


def footer_keys(kind: str, width: int, metrics_file: bool = True) -> list[Key]:
    """The keys the footer shows at `width` columns, in FOOTER's order: the most important that fit (without a
    metrics file behind the run, none that needs one)."""
    by_keys = {k.keys: k for k in KEYMAP if k.show and k.applies(kind) and (metrics_file or not k.needs_file)}
    room = width - PALETTE_CELLS
    out = []
    for name in FOOTER:
        k = by_keys.get(name)
        if k is not None and footer_cells(k) <= room:
            out.append(k)
            room -= footer_cells(k)
    return out


def bindings(kind: str, width: int = 1000, metrics_file: bool = True) -> list[Binding]:
    """The screen's bindings for a source kind: the keys that apply (those in the footer at `width` columns
    first, in the footer's order), and the others hidden and refused. Without a metrics file behind the run
    (`metrics_file=False`), a key that needs one is bound but hidden: its action says why it does nothing."""
    shown = footer_keys(kind, width, metrics_file)
    out = [Binding(k.keys, k.action, k.label, show=True, key_display=k.display, priority=k.priority)
           for k in shown]
    for k in KEYMAP:
        if k in shown:
            continue
        if k.applies(kind):
            out.append(Binding(k.keys, k.action, k.label, show=False, key_display=k.display,
                               priority=k.priority))
        else:
            out.append(Binding(k.keys, f"unavailable({k.label!r}, {NEEDS[k.sources]!r})", k.label, show=False))
    return out


def help_rows(kind: str | None = None) -> list[tuple[str, str, str]]:
    """(keys, what they do, works with) for the help screen (one kind) or the README (every kind)."""
    rows = [(k.help_keys, k.description, WORKS_WITH[k.sources]) for k in KEYMAP
            if k.help_keys and (kind is None or k.applies(kind))]
    rows[-1:-1] = [(keys, what, WORKS_WITH[src]) for keys, what, src in EXTRA_HELP]
    return rows


def markdown() -> str:
    """The README's key table."""
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| key | what it does | works with |", "|---|---|---|"]
    for keys, what, src in help_rows():
        shown = " / ".join(f"`{k.strip()}`" for k in keys.split(" / "))
        lines.append(f"| {shown} | {cell(what)} | {src} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        print("usage: python -m vgtui.ui.keymap --markdown   (prints the README's key table)", file=sys.stderr)
        raise SystemExit(2)
    print(markdown())
