"""The gradient panel: one bar per layer (or per group of layers), on fixed decades or linear."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from rich.console import Console, Group
from rich.text import Text

from vgtui.core.diagnosis import REGIMES, ratio_words
from vgtui.ui import charts, colours
from vgtui.ui.colours import REGIME_STYLE
from vgtui.ui.state import TAGS, bar_metric
from vgtui.ui.widgets.base import Panel, RunView, abbreviate, label_width, layer_style


@dataclass(frozen=True)
class BarRow:
    """One bar of the gradient panel: a layer of one run (or, with one run and more layers than rows, a group of
    consecutive layers under one module prefix, drawn from its smallest `low` to its largest `value`)."""

    name: str  # the layer's name, or the group's (`layer3.* ×4`)
    value: float | None
    regime: str
    style: str  # the label's style (the layer's colour)
    bad: bool  # non-finite first here (the diverged run's layer)
    run: int | None = None  # the run it belongs to (0 = A, 1 = B) when two runs share the panel, else None
    group: bool = False
    low: float | None = None  # a group's smallest finite value

    @property
    def label(self) -> str:
        return self.name if self.run is None else f"{self.name} {TAGS[self.run]}"


EIGHTHS = " ▏▎▍▌▋▊▉"


def hbar(length: float) -> str:
    """A bar `length` cells long, to the eighth of a cell."""
    full = int(length)
    rest = int((length - full) * 8)
    return "█" * full + (EIGHTHS[rest] if rest else "")






def prefix(name: str, depth: int) -> str:
    """The module prefix of `name` at `depth` dotted parts (`layer3.1.conv2`, 1 -> `layer3`)."""
    parts = name.split(".")
    return ".".join(parts[:depth]) if len(parts) > depth else name


def group_rows(rows: list[BarRow], room: int) -> list[BarRow]:
    """Rows (one per layer) grouped by module prefix into at most `room` rows, as finely as fits: consecutive
    layers under the same prefix (`layer3.*`) become one row whose bar spans the group's min..max and whose
    regime is its worst. A group of one stays the layer. Returns the rows unchanged when they fit, and the
    coarsest grouping when none fits."""
    if len(rows) <= room:
        return rows
    deepest = max(r.name.count(".") for r in rows)
    grouped = rows
    for depth in range(deepest, 0, -1):
        runs: list[tuple[str, list[BarRow]]] = []
        for r in rows:
            p = prefix(r.name, depth)
            if runs and runs[-1][0] == p:
                runs[-1][1].append(r)
            else:
                runs.append((p, [r]))
        grouped = [members[0] if len(members) == 1 else group_row(p, members) for p, members in runs]
        if len(grouped) <= room:
            return grouped
    return grouped


WORST = tuple(reversed(REGIMES))  # a group's regime is its worst layer's (vgtui.core.diagnosis.REGIMES, best first)


def group_row(p: str, members: list[BarRow]) -> BarRow:
    """One row for a group of layers: its max, min, worst regime, first layer's style, any non-finite."""
    vals = [m.value for m in members if m.value is not None]
    finite = [v for v in vals if math.isfinite(v)]
    hi = max(vals, key=lambda v: (not math.isfinite(v), v)) if vals else None
    lo = min(finite) if finite else None
    worst = min((m.regime for m in members), key=lambda r: WORST.index(r) if r in WORST else len(WORST))
    return BarRow(f"{p}.* ×{len(members)}", hi, worst, members[0].style, any(m.bad for m in members),
                  run=members[0].run, group=True, low=lo)


def elide_rows(lines: list[Text], names: tuple[str, ...] | list[str], room: int, label_w: int) -> list[Text]:
    """One row per layer in `room` rows: the first layers, a row that names the hidden ones, the last layer (the
    output layer, which the diagnosis compares against, is never dropped)."""
    if room < 3:
        return lines[:room]
    keep = room - 2
    hidden = names[keep:len(lines) - 1]
    more = Text(no_wrap=True, overflow="crop", style=colours.style(colours.AXIS, bold=True))
    more.append(f"{'⋮':>{label_w}} {len(hidden)} more: {hidden[0]}…{hidden[-1]} (tab: layer table)")
    return [*lines[:keep], more, lines[-1]]




def gap_words(first: str, v_first: float | None, last: str, v_last: float | None, what: str = "gradient") -> str:
    """The gap between the first and the output layer, in words: "fc1 gets 1/10,000 of fc6's gradient"."""
    if v_first is None or v_last is None or not math.isfinite(v_first) or not math.isfinite(v_last) or v_last <= 0:
        return ""
    w = ratio_words(v_first / v_last)
    return f"{first} gets {w} of {last}'s {what}" if w.startswith("1/") else f"{first} gets {w} {last}'s {what}"


def relative_rows(rows: list[BarRow]) -> list[BarRow]:
    """Each run's rows over its output layer's value (its last row): the output layer reads 1."""
    out = []
    for run in sorted({r.run for r in rows}, key=lambda x: -1 if x is None else x):
        mine = [r for r in rows if r.run == run]
        base = mine[-1].value if mine else None
        ok = base is not None and math.isfinite(base) and base > 0
        for r in mine:
            out.append(replace(r, value=r.value / base if ok and r.value is not None else None,
                               low=r.low / base if ok and r.low is not None else None))
    order = {id(r): i for i, r in enumerate(rows)}
    keyed = {(r.name, r.run): r for r in out}
    return [keyed[(r.name, r.run)] for r in sorted(rows, key=lambda r: order[id(r)])]


MAX_INTERLEAVED = 4  # up to this many runs: a bar per run and layer, interleaved by layer; more: `GradientBars.ends`
REL_LO, REL_HI = -6, 1  # the relative bars' fixed decades: 1e-6 to 10 times the output layer's value


def legend(width: int, regimes: set[str] = frozenset()) -> Text:
    """One line: what the bar colours mean (regimes, and nothing else): those on the bars, and at least the
    vanishing/healthy pair."""
    t = Text(no_wrap=True, overflow="crop")
    for name in (r for r in REGIMES if r in regimes | {"vanishing", "healthy"}):
        t.append("■", style=REGIME_STYLE[name]).append(f" {name} ", style="dim")
    t.append("◂ below the axis", style="dim")
    return t


class GradientBars(Panel):
    """One bar per layer on a log axis with the metric's fixed decades (or linear, scaled to the largest).

    Drawn with Rich rather than plotext: plotext 6.1's horizontal bars land one row off their tick labels
    whenever the canvas rows are not one per bar (tried: 4 bars on 8 and 12 rows), and this panel needs one
    exact row per layer with its value, to the eighth of a cell."""

    def key(self, view: RunView) -> object:
        m = view
        cursor = m.table.cursor if len(m.states) > 2 else ""  # many runs: the table's layer is the one shown
        return (m.versions("snap_version"), m.metric, m.log, m.relative, cursor)

    def on_key_changed(self) -> None:
        v = self.view
        m = bar_metric(v.metric)
        if v.relative:
            scale = f"relative to the output layer, 1e{REL_LO}…1e{REL_HI} · x absolute"
        elif v.log:
            scale = f"log 1e{m.lo}…1e{m.hi} · l linear · x relative"
        else:
            scale = "linear, scaled to the largest · l log · x relative"
        n = len(v.states)
        runs = " · A and B" if n == 2 else f" · runs A…{TAGS[n - 1]}" if n > 2 else ""
        self.border_title = f"gradients · {m.label}{runs}"
        self.border_subtitle = scale

    def rows(self, key: str) -> list[BarRow]:
        """A bar per layer, or with two runs one per run and layer, interleaved by layer name (a layer only one
        run has gets its one bar)."""
        states = self.view.states
        per_run = []
        for st in states:
            with st.lock:
                snap, names, end = st.snap, st.layers, st.end
            vals = {l.name: getattr(l, key) for l in snap.layers} if snap else {}
            bad = end.layer if end is not None and end.status == "diverged" else None
            regimes = {v.name: v.regime for v in st.verdict().layers} if snap else {}  # each layer's own verdict
            if bad is not None:
                regimes[bad] = "diverged"
            per_run.append((names, vals, regimes, bad))
        order: list[str] = []
        for names, *_ in per_run:
            order += [n for n in names if n not in order]
        rows = []
        for i, name in enumerate(order):
            for run, (names, vals, regimes, bad) in enumerate(per_run):
                if name not in names:
                    continue
                rows.append(BarRow(name, vals.get(name), regimes.get(name, "healthy"), layer_style(i, len(order)),
                                   name == bad, run=run if len(per_run) > 1 else None))
        return rows

    def build(self, width: int, height: int) -> object:
        view = self.view
        m = bar_metric(view.metric)
        rows = self.rows(m.key)
        log = view.log or view.relative
        if view.relative:  # each run's bars over its output layer's value: the output layer is 1
            m = replace(m, lo=REL_LO, hi=REL_HI, label=f"{m.short} / output layer's")
            rows = relative_rows(rows)
        if len(view.states) == 1:
            top: list[Text] = []
            what = "value" if view.relative else "gradient" if m.key == "grad_norm" else m.short
            words = gap_words(rows[0].name, rows[0].value, rows[-1].name, rows[-1].value, what) if len(rows) > 1 else ""
            st = view.state
            why = st.verdict().factor_line.split(":")[0] if st.snap is not None and st.verdict().factors else ""
            for said, style in ((words, "bold"), (why, "")):  # the gap in words, then why (the factors' sentence)
                need = -(-(len(said) + 1) // max(width, 1))  # rows, wrapped
                if said and height >= len(rows) + len(top) + need + 3:
                    top.extend(Text(f" {said}", style=style).wrap(Console(width=width), width))
            foot = [legend(width, {r.regime for r in rows})] if height >= len(rows) + len(top) + 4 else []
            room = height - len(top) - len(foot)
            rows = group_rows(rows, room - 2 if room >= 8 else room - 1)  # more layers than rows: by module prefix
            return Group(*top, *self.bars(rows, m, log, width, room), *foot)
        if len(rows) + 2 <= height and len(view.states) <= MAX_INTERLEAVED:
            return Group(*self.bars(rows, m, log, width, height))
        half = (width - 1) // 2
        if len(view.states) > 2:  # many runs: each run's first (or the table's) layer and its last, a row per run
            cols = [self.bars(column, m, log, half, height) for column in self.ends(view, rows)]
        else:  # two runs and no room for a row per run and layer: A's bars and B's side by side
            cols = [self.bars([replace(r, run=None) for r in rows if r.run == run], m, log, half, height)
                    for run in (0, 1)]
        lines = []
        for left, right in zip(*cols):
            left = left.copy()
            left.truncate(half, pad=True)
            lines.append(Text(no_wrap=True, overflow="crop").append_text(left).append("│", style=colours.style(colours.RULE))
                         .append_text(right))
        return Group(*lines)

    @staticmethod
    def ends(view: RunView, rows: list[BarRow]) -> tuple[list[BarRow], list[BarRow]]:
        """Two columns of one row per run: its first layer (or the layer under the layer table's cursor, where the
        run has it) and its last (the output layer), the labels in the run's colour (colours.RUN)."""
        left, right = [], []
        for i, st in enumerate(view.states):
            mine = [r for r in rows if r.run == i]
            if not mine:
                continue
            style = colours.style(colours.RUN[i], bold=True)
            picked = next((r for r in mine if r.name == view.table.cursor), mine[0])
            left.append(replace(picked, style=style))
            right.append(replace(mine[-1], style=style))
        return left, right

    @staticmethod
    def bars(rows: list[BarRow], m, log: bool, width: int, height: int) -> list[Text]:
        """The bars of `rows` with their ruler, `height` lines of `width` cells."""
        vals = [r.value for r in rows]
        name_w = label_width([r.label for r in rows], width)
        # grouped rows: min‥max in the value column, where that leaves the bars 16 cells (else the max alone)
        ranged = any(r.group for r in rows) and width - name_w - 18 >= 16
        value_w = 17 if ranged else 11 if m.lo == REL_LO and m.hi == REL_HI else 9  # relative: 1/10,000
        label_w = name_w + value_w
        area = max(width - label_w - 1, 10)
        span = m.hi - m.lo
        finite = [v for v in vals if v is not None and math.isfinite(v)]
        top = max(finite) if finite and max(finite) > 0 else 1.0
        lines: list[Text] = []
        n = len(rows)
        gap = 1 if height >= 2 * n + 2 else 0
        grid = {int(round((p - m.lo) / span * (area - 1))) for p in range(m.lo, m.hi + 1)} if log else set()
        def cells(v: float | None) -> float:
            if v is None:
                return 0.0
            if not math.isfinite(v):
                return float(area)
            if log:
                return 0.0 if v <= 0 else min(max((math.log10(v) - m.lo) / span, 0.0), 1.0) * area
            return min(max(v / top, 0.0), 1.0) * area

        for i, br in enumerate(rows):
            v, r, bad, lo = br.value, br.regime, br.bad, br.low
            row = Text(no_wrap=True, overflow="crop")
            style = colours.style(colours.DIVERGED, bold=True, reverse=True) if bad else br.style
            row.append(f"{abbreviate(br.label, name_w):>{name_w}}", style=style)
            value = f"{charts.fmt(lo)}‥{charts.fmt(v)}" if ranged and lo is not None and lo != v else charts.fmt(v)
            if m.lo == REL_LO and m.hi == REL_HI and v is not None and not br.group:
                value = ratio_words(v)
            row.append(f" {value:<{value_w - 2}} ", style=colours.style(colours.DIVERGED, bold=True) if bad else "")
            length = cells(v)
            if lo is not None:  # a group: solid to its smallest layer, shaded to its largest
                solid = min(int(cells(lo)), int(length))
                bar = "█" * solid + "▒" * (int(length) - solid)
            elif log and v is not None and math.isfinite(v) and (v <= 0 or math.log10(v) < m.lo):
                bar = "◂"  # below the axis's first decade (or zero): a mark, not an empty bar that reads as missing
            elif log and v is not None and math.isfinite(v) and math.log10(v) > m.hi:
                bar = "█" * (area - 1) + "▸"  # past its last decade
            else:
                bar = hbar(length)
            row.append(bar, style=REGIME_STYLE.get(r, ""))
            rest = "".join("┊" if (len(bar) + j) in grid else " " for j in range(area - len(bar)))
            row.append(rest, style=colours.style(colours.RULE))
            lines.append(row)
            if gap and i < n - 1:
                g = Text(" " * label_w, no_wrap=True)
                g.append("".join("┊" if j in grid else " " for j in range(area)), style=colours.style(colours.RULE))
                lines.append(g)
        # ruler
        ruler = Text(" " * label_w, no_wrap=True, overflow="crop", style=colours.style(colours.AXIS))
        labels = Text(" " * label_w, no_wrap=True, overflow="crop", style=colours.style(colours.AXIS))
        if log:
            step = next((k for k in (1, 2, 5, 10) if span / k * 6 <= area), 10)
            marks = {int(round((p - m.lo) / span * (area - 1))): f"1e{p}" for p in range(m.lo, m.hi + 1)
                     if (p - m.lo) % step == 0}
        else:
            marks = {0: "0", (area - 1) // 2: f"{top / 2:.1e}", area - 1: f"{top:.1e}"}
        ruler.append("".join("┴" if j in marks else "─" for j in range(area)))
        lab = [" "] * (area + 8)
        for pos, t in sorted(marks.items()):
            start = max(0, min(pos - len(t) // 2, area - len(t)))
            if all(c == " " for c in lab[max(start - 1, 0):start + len(t)]):
                lab[start:start + len(t)] = list(t)
        labels.append("".join(lab[:area]))
        if gap and len(lines) + 2 > height:  # no room for the spacer rows
            lines = lines[::2]
        if height >= n + 2 or (n > height and height >= 8):  # the layers first, then the ruler
            foot = [ruler, labels]
        else:
            foot = [labels] if height >= n + 1 else []
        room = max(height - len(foot), 1)
        if len(lines) > room:  # more layers than rows: keep the first ones and the output layer, say what is left
            lines = elide_rows(lines, [r.label for r in rows], room, name_w)
        pad = max(height - len(foot) - len(lines), 0)
        return [*lines, *([Text("")] * pad), *foot]
