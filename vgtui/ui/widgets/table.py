"""The layer table: every number of every layer, one row each."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text

from vgtui.core.layermatch import select
from vgtui.ui import charts
from vgtui.ui.colours import REGIME_STYLE
from vgtui.ui.state import RunState, TAGS, shown
from vgtui.ui.widgets.base import Panel, RunView, TableView, layer_style, no_snapshot

# The layer table's columns: (header, priority); at a width too small for all of them the highest priority numbers
# go first (the layer and its regime never), so the table stays readable at 80 columns instead of cutting every
# column to "la…".
TABLE_COLUMNS = (("layer", 0), ("regime", 0), ("‖∇W‖", 1), ("mean|∇W|", 6), ("grad:data", 4), ("update:data", 2),
                 ("‖∂L/∂out‖", 5), ("factor", 4), ("mean|φ'|", 4), ("act μ", 5), ("act σ", 6), ("saturated", 3),
                 ("dead", 3), ("why", 7))


SORT_MARK = {False: " ▲", True: " ▼"}  # the sorted column's header: ascending, descending
KEYS_HINT = "↑↓ pgup/pgdn home/end move · enter: history · /: filter · c: sort · C: reverse"


@dataclass(frozen=True)
class Row:
    """One layer's row: its name, its cells (TABLE_COLUMNS' order, as drawn) and the values it sorts by (a string
    or a float; None sorts last either way)."""

    name: str
    cells: list
    values: list


class LayerTable(Panel):
    def key(self, view: RunView) -> object:
        return view.versions("snap_version"), view.table, view.branch_focus if len(view.states) > 2 else 0

    def on_key_changed(self) -> None:
        self.border_title = "layers · the numbers behind the charts"
        self.border_subtitle = KEYS_HINT

    def build(self, width: int, height: int) -> object:
        states = self.view.states
        tv = self.view.table
        if len(states) > 2:  # many runs: the one in focus (`o` moves it), named over its table
            focus = min(self.view.branch_focus, len(states) - 1)
            st = states[focus]
            table, dropped = self.table(st, width, height - 2, tv)
            table = Group(Text(f"{TAGS[focus]} {shown(st.label)} · run {focus + 1} of {len(states)} (o: the next)",
                               style="bold", no_wrap=True, overflow="ellipsis"), table)
        elif len(states) == 1:
            table, dropped = self.table(states[0], width, height - 1, tv)
        else:
            parts = [self.table(st, width, (height - 1 - 2 * len(states)) // len(states), tv) for st in states]
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
        """Each layer's row, every column (TABLE_COLUMNS' order)."""
        return [r.cells for r in LayerTable.rows(s)]

    @staticmethod
    def rows(s: RunState) -> list[Row]:
        """Each layer's row, every column (TABLE_COLUMNS' order): its numbers, its verdict and why
        (vgtui.core.diagnosis), its factor (the back-propagated gradient's norm at it over the one at the layer
        above) and its activation's mean |derivative| (over the derivative's maximum); in the network's order."""
        with s.lock:
            snap = s.snap
        if snap is None:
            return []
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
            reason = j.reason if j is not None else ""
            cells = [Text(shown(l.name), style=layer_style(i, n)), Text(r, style=REGIME_STYLE.get(r, "")),
                     f(l.grad_norm), f(l.grad_mean_abs), f(l.grad_data_ratio), f(l.update_data_ratio),
                     f(l.out_grad_norm), "-" if fa is None else f"×{fa.factor:.3g}", deriv,
                     "-" if l.act_mean is None else f"{l.act_mean:+.3f}",
                     "-" if l.act_std is None else f"{l.act_std:.3f}", f(l.saturated_frac, True),
                     f(l.dead_frac, True), Text(reason, style="dim")]
            values = [l.name, r, l.grad_norm, l.grad_mean_abs, l.grad_data_ratio, l.update_data_ratio,
                      l.out_grad_norm, None if fa is None else fa.factor, d, l.act_mean, l.act_std,
                      l.saturated_frac, l.dead_frac, reason]
            rows.append(Row(l.name, cells, values))
        return rows

    @classmethod
    def arranged(cls, s: RunState, tv: TableView, rows: list[Row] | None = None) -> list[Row]:
        """The rows the table shows: those the filter's patterns match (vgtui.core.layermatch, the patterns
        vgtui.watch(layers=...) takes), sorted by the view's column (the network's order when none). `rows`: the
        run's rows when the caller has them already."""
        rows = cls.rows(s) if rows is None else rows
        keep = set(select([r.name for r in rows], tv.filter))
        rows = [r for r in rows if r.name in keep]
        if 0 <= tv.sort < len(TABLE_COLUMNS):
            j = tv.sort

            def known(r: Row) -> bool:
                v = r.values[j]
                return v is not None and v != "-" and not (isinstance(v, float) and math.isnan(v))

            have = sorted((r for r in rows if known(r)), key=lambda r: r.values[j], reverse=tv.descending)
            rows = have + [r for r in rows if not known(r)]  # what a layer lacks goes last, either way
        return rows

    @classmethod
    def names(cls, s: RunState, tv: TableView) -> list[str]:
        """The layers in the order the table shows them (the screen moves its cursor over these)."""
        return [r.name for r in cls.arranged(s, tv)]

    @classmethod
    def table(cls, s: RunState, width: int = 1000, height: int = 1000,
              tv: TableView = TableView()) -> tuple[object, int]:
        """The table in `width` cells: the columns that fit at their full width (see TABLE_COLUMNS), and how many
        were left out; in `height` lines the header, the rows around the cursor (highlighted) and a line saying
        which rows these are, the sort and the filter."""
        if s.snap is None:
            return no_snapshot(s), 0
        everything = cls.rows(s)
        rows = cls.arranged(s, tv, everything)
        heads = [h + (SORT_MARK[tv.descending] if j == tv.sort else "") for j, (h, _) in enumerate(TABLE_COLUMNS)]
        widths = [min(max(len(h), *(len(str(r.cells[j])) for r in everything)), 60) + 2 for j, h in enumerate(heads)]
        keep = list(range(len(TABLE_COLUMNS)))
        while sum(widths[j] for j in keep) > width + 2:
            keep.remove(max(keep, key=lambda j: (TABLE_COLUMNS[j][1], j)))
        t = Table(expand=True, box=None, header_style="bold", pad_edge=False)
        for j in keep:
            h = TABLE_COLUMNS[j][0]
            t.add_column(heads[j], justify="left" if j < 2 or h == "why" else "right", no_wrap=True,
                         min_width=min(widths[j] - 2, 40))
        room = max(height - 2, 1)
        names = [r.name for r in rows]
        at = names.index(tv.cursor) if tv.cursor in names else 0
        first = max(0, min(at - room // 2, len(rows) - room))
        shown_rows = rows[first:first + room]
        for k, r in enumerate(shown_rows, start=first):
            t.add_row(*(r.cells[j] for j in keep), style="reverse" if k == at else None)
        dropped = len(TABLE_COLUMNS) - len(keep)
        said = []
        if rows:
            said.append(f"rows {first + 1}–{first + len(shown_rows)} of {len(rows)}" if len(shown_rows) < len(rows)
                        else f"{len(rows)} layer{'s' * (len(rows) != 1)}")
        if tv.filter:
            said.append(f"filter {tv.filter!r}: {len(rows)} of {len(everything)} layers" if rows else
                        f"no layer matches {tv.filter!r} (a name or a glob such as layer3.*; / changes it, esc "
                        "clears it)")
        said.append(f"sorted by {TABLE_COLUMNS[tv.sort][0]}{SORT_MARK[tv.descending]}" if tv.sort >= 0
                    else "the network's order")
        line = Text(shown(" · ".join(said)), style="dim", no_wrap=True, overflow="ellipsis")
        return Group(t, line), dropped


def _hidden_columns() -> dict[int, list[str]]:
    """The headers left out when `n` columns are dropped (the same order as LayerTable.table drops them)."""
    order = sorted(range(len(TABLE_COLUMNS)), key=lambda j: (TABLE_COLUMNS[j][1], j), reverse=True)
    return {n: [TABLE_COLUMNS[j][0] for j in order[:n]] for n in range(len(TABLE_COLUMNS) + 1)}


TABLE_HIDDEN = _hidden_columns()
