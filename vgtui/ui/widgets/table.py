"""The layer table: every number of every layer, one row each."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from vgtui.ui import charts
from vgtui.ui.colours import REGIME_STYLE
from vgtui.ui.state import RunState, TAGS
from vgtui.ui.widgets.base import Panel, RunView, layer_style, no_snapshot

# The layer table's columns: (header, priority); at a width too small for all of them the highest priority numbers
# go first (the layer and its regime never), so the table stays readable at 80 columns instead of cutting every
# column to "la…".
TABLE_COLUMNS = (("layer", 0), ("regime", 0), ("‖∇W‖", 1), ("mean|∇W|", 6), ("grad:data", 4), ("update:data", 2),
                 ("‖∂L/∂out‖", 5), ("factor", 4), ("mean|φ'|", 4), ("act μ", 5), ("act σ", 6), ("saturated", 3),
                 ("dead", 3), ("why", 7))


class LayerTable(Panel):
    def key(self, view: RunView) -> object:
        return view.versions("snap_version")

    def on_key_changed(self) -> None:
        self.border_title = "layers · the numbers behind the charts"

    def build(self, width: int, height: int) -> object:
        states = self.view.states
        if len(states) == 1:
            table, dropped = self.table(states[0], width, height - 1)
        else:
            parts = [self.table(st, width, (height - 1 - 2 * len(states)) // len(states)) for st in states]
            dropped = parts[0][1]
            table = Group(*(Group(Text(f"{tag} {st.label}", style="bold"), t, Text(""))
                            for (t, _), st, tag in zip(parts, states, TAGS)))
        if not dropped:
            return table
        note = Text(f"{dropped} more columns in a wider terminal: {', '.join(TABLE_HIDDEN[dropped])}",
                    style="dim", no_wrap=True, overflow="ellipsis")
        return Group(table, note)

    @staticmethod
    def cells(s: RunState) -> list[list[Text | str]]:
        """Each layer's row, every column (TABLE_COLUMNS' order): its numbers, its verdict and why
        (vgtui.core.diagnosis), its factor (the back-propagated gradient's norm at it over the one at the layer
        above) and its activation's mean |derivative| (over the derivative's maximum)."""
        with s.lock:
            snap = s.snap
        verdict = s.verdict()
        judged = {v.name: v for v in verdict.layers}
        factors = {f.name: f for f in verdict.factors}
        end = s.end
        bad = end.layer if end is not None and end.status == "diverged" else None
        n = len(snap.layers)

        def f(v, pct=False):
            if v is None:
                return "-"
            return f"{v:.0%}" if pct else charts.fmt(v)

        rows = []
        for i, l in enumerate(snap.layers):
            j = judged.get(l.name)
            r = "diverged" if l.name == bad else j.regime if j is not None else "-"
            fa = factors.get(l.name)
            d = getattr(l, "deriv_mean", None)
            dmax = getattr(l, "deriv_max", None)
            deriv = "-" if d is None else f"{d:.3f}" + (f" /{dmax:g}" if dmax else "")
            rows.append([Text(l.name, style=layer_style(i, n)), Text(r, style=REGIME_STYLE.get(r, "")),
                         f(l.grad_norm), f(l.grad_mean_abs), f(l.grad_data_ratio), f(l.update_data_ratio),
                         f(l.out_grad_norm), "-" if fa is None else f"×{fa.factor:.3g}", deriv,
                         "-" if l.act_mean is None else f"{l.act_mean:+.3f}",
                         "-" if l.act_std is None else f"{l.act_std:.3f}", f(l.saturated_frac, True),
                         f(l.dead_frac, True), Text(j.reason if j is not None else "", style="dim")])
        return rows

    @classmethod
    def table(cls, s: RunState, width: int = 1000, height: int = 1000) -> tuple[object, int]:
        """The table in `width` cells: the columns that fit at their full width (see TABLE_COLUMNS), and how many
        were left out; the rows that fit in `height` lines, the last saying how many more there are."""
        if s.snap is None:
            return no_snapshot(s), 0
        rows = cls.cells(s)
        widths = [min(max(len(h), *(len(str(r[j])) for r in rows)), 60) + 2 for j, (h, _) in enumerate(TABLE_COLUMNS)]
        keep = list(range(len(TABLE_COLUMNS)))
        while sum(widths[j] for j in keep) > width + 2:
            keep.remove(max(keep, key=lambda j: (TABLE_COLUMNS[j][1], j)))
        t = Table(expand=True, box=None, header_style="bold", pad_edge=False)
        for j in keep:
            h = TABLE_COLUMNS[j][0]
            t.add_column(h, justify="left" if j < 2 or h == "why" else "right", no_wrap=True,
                         min_width=min(widths[j] - 2, 40))
        room = max(height - 1, 1)
        shown = rows if len(rows) <= room else rows[:room - 1]
        for r in shown:
            t.add_row(*(r[j] for j in keep))
        dropped = len(TABLE_COLUMNS) - len(keep)
        if len(shown) < len(rows):
            more = Text(f"… {len(rows) - len(shown)} more layers: a taller terminal shows them", style="dim",
                        no_wrap=True, overflow="ellipsis")
            return Group(t, more), dropped
        return t, dropped


def _hidden_columns() -> dict[int, list[str]]:
    """The headers left out when `n` columns are dropped (the same order as LayerTable.table drops them)."""
    order = sorted(range(len(TABLE_COLUMNS)), key=lambda j: (TABLE_COLUMNS[j][1], j), reverse=True)
    return {n: [TABLE_COLUMNS[j][0] for j in order[:n]] for n in range(len(TABLE_COLUMNS) + 1)}


TABLE_HIDDEN = _hidden_columns()
