"""The activation panel: one histogram per hidden layer."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from vgtui.ui import charts, colours
from vgtui.ui.state import RunState, TAGS, number
from vgtui.ui.widgets.base import Panel, RunView, abbreviate, label_width, layer_style, markup, no_snapshot


class ActivationPanel(Panel):
    """Each hidden layer's activation histogram; two runs side by side in two columns."""

    min_interval = 1.0

    def key(self, view: RunView) -> object:
        return view.versions("snap_version"), view.branch_focus if len(view.states) > 2 else 0

    def on_key_changed(self) -> None:
        s = self.view.state
        snap = s.snap
        act = snap.activation if snap else (s.config.activation if s.config else "")
        rng = ""
        hidden = []
        if snap:
            hidden = [l for l in snap.layers if l.is_hidden]
            if hidden and len(hidden[0].act_hist.edges) >= 2:
                e = hidden[0].act_hist.edges
                rng = f" over [{float(e[0]):g}, {float(e[-1]):g}]"
        n = len(self.view.states)
        self.border_title = (f"activations · {markup(act or '')}{rng}" if n == 1 else "activations · A | B" if n == 2
                             else f"activations · run {TAGS[min(self.view.branch_focus, n - 1)]} of A…{TAGS[n - 1]} "
                                  "(o: the next)")
        sub = "per layer: saturated % · dead %"
        if snap and not self.view.compare and len(hidden) < len(snap.layers) - 1:
            # a user's model: layers with no activation module after them (a conv before a residual sum) have no
            # histogram; say so rather than leave a person looking for them (the output layer never has one)
            sub = f"{len(hidden)} of {len(snap.layers)} layers have an activation"
        self.border_subtitle = sub

    def build(self, width: int, height: int) -> object:
        states = self.view.states
        if len(states) == 1:
            return Group(*self.column(states[0], width, height))
        if len(states) > 2:  # many runs: the one in focus (`o` moves it), two columns would not fit
            focus = min(self.view.branch_focus, len(states) - 1)
            return Group(*self.column(states[focus], width, height, TAGS[focus]))
        half = (width - 1) // 2
        cols = [self.column(st, half, height, tag) for st, tag in zip(states, TAGS)]
        lines = []
        for i in range(max(len(c) for c in cols)):
            left = cols[0][i].copy() if i < len(cols[0]) else Text("")
            left.truncate(half, pad=True)
            line = Text(no_wrap=True, overflow="crop").append_text(left).append("│", style=colours.style(colours.RULE))
            if i < len(cols[1]):
                line.append_text(cols[1][i])
            lines.append(line)
        return Group(*lines)

    def column(self, s: RunState, width: int, height: int, tag: str = "") -> list[Text]:
        with s.lock:
            snap, names = s.snap, s.layers
        if snap is None:
            return [no_snapshot(s, tag)]
        hidden = [l for l in snap.layers if l.is_hidden]
        n_all = len(snap.layers)
        if not hidden:
            return [Text("no hidden layers", style="dim")]
        out: list[Text] = []
        if tag:
            out.append(Text(f"{tag} {s.label} · {snap.activation}", style="bold", no_wrap=True, overflow="crop"))
            height -= 1
        per = max(height, 1) // len(hidden)
        regimes = {v.name: v.regime for v in s.verdict().layers}  # a number in a regime's colour only in that regime
        label_w = label_width([l.name for l in hidden], width)
        for i, l in enumerate(hidden[: max(height, 1)]):
            idx = names.index(l.name) if l.name in names else i
            st = layer_style(idx, n_all)
            sat, dead = number(l.saturated_frac or 0.0), number(l.dead_frac or 0.0)
            head = Text(no_wrap=True, overflow="crop")
            head.append(f"{abbreviate(l.name, label_w):<{label_w}} ", style="bold " + st)
            stats = Text(no_wrap=True)
            regime = regimes.get(l.name)
            stats.append(f"sat {sat:4.0%}", style=colours.style(colours.SATURATED, bold=True)
                         if regime == "saturated" else "")
            stats.append(f"  dead {dead:4.0%}", style=colours.style(colours.DEAD, bold=True) if regime == "dead" else "")
            if per >= 3:
                head.append_text(stats)
                if l.deriv_mean is not None:  # the mechanism: the derivative the gradient is multiplied by
                    head.append(f"  φ' {l.deriv_mean:.2f}" + (f"≤{l.deriv_max:g}" if l.deriv_max else ""))
                head.append(f"   μ {number(l.act_mean):+.2f}  σ {number(l.act_std):.2f}", style="dim")
                out.append(head)
                chart = charts.act_hist(l.act_hist, width, per - 1, charts.layer_colours(n_all)[idx],
                                        colour=self.view.colour)
                out.extend(Text.from_ansi(chart, no_wrap=True, overflow="crop", end="").split("\n")[: per - 1])
            else:
                spark_w = max(width - label_w - 1 - stats.cell_len - 1, 4)
                head.append(charts.spark(l.act_hist, spark_w), style=st)
                head.append(" ")
                head.append_text(stats)
                out.append(head)
        if len(hidden) > height:
            out[-1] = Text(f"… {len(hidden) - height + 1} more (tab: the layer table)", style="dim", no_wrap=True,
                           overflow="ellipsis")
        return out
