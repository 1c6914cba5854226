"""The "why" view: the mechanism behind the bars. Going down from the output layer, each layer multiplies the
back-propagated gradient by a factor (its norm at the layer over its norm at the layer above), which splits into
the part the activation's derivative explains (its mean |φ'(z)| over the batch; at most 0.25 for the sigmoid) and
the part the weights add. The product of the factors from the output down to the first layer is the gap the bars
show; the panel puts it beside the measured first/last weight-gradient ratio, and says it in one sentence.
"""

from __future__ import annotations

import math

from rich.console import Group
from rich.table import Table
from rich.text import Text

from vgtui.core.diagnosis import factors_product, ratio_words
from vgtui.ui import charts
from vgtui.ui.colours import REGIME_STYLE
from vgtui.ui.state import RunState
from vgtui.ui.widgets.base import Panel, RunView, layer_style, no_snapshot

SPARK_W = 12  # cells of the derivative histogram (|φ'(z)| over [0, its maximum])


class WhyPanel(Panel):
    """One row per layer, output layer first: the gradient at it, its factor = derivative × weights, the
    derivative's histogram, its verdict; then the product against the measured ratio, the sentence, the preflight."""

    def key(self, view: RunView) -> object:
        return (view.focused.snap_version, view.branch_focus)

    def on_key_changed(self) -> None:
        self.border_title = "why · each layer multiplies the gradient by a factor = its activation's derivative × its weights"

    def build(self, width: int, height: int) -> object:
        s = self.view.focused
        if s.snap is None:
            return no_snapshot(s)
        return Group(*self.lines(s, width, height))

    @staticmethod
    def lines(s: RunState, width: int, height: int) -> list[object]:
        with s.lock:
            snap = s.snap
        v = s.verdict()
        layers = list(snap.layers)
        n = len(layers)
        factors = {f.name: f for f in v.factors}
        judged = {j.name: j for j in v.layers}
        t = Table(box=None, header_style="bold", pad_edge=False, expand=False)
        for h, just in (("layer", "left"), ("‖∂L/∂z‖", "right"), ("factor", "right"), ("= mean|φ'|", "right"),
                        ("× weights", "right"), ("φ' over [0, max]", "left"), ("verdict", "left")):
            t.add_column(h, justify=just, no_wrap=True)
        foot_lines = 4
        room = max(height - 1 - foot_lines, 3)
        order = list(reversed(range(n)))  # the output layer first: the way the gradient goes
        if len(order) > room:  # the output layer, then the first layers (the ones that learn least)
            order = order[:1] + order[-(room - 2):]
        shown_rows = 0
        for i in order:
            l = layers[i]
            f = factors.get(l.name)
            g = l.pre_grad_norm if getattr(l, "pre_grad_norm", None) is not None else l.out_grad_norm
            dmax = l.deriv_max
            deriv = "-"
            if f is not None and f.deriv is not None:
                deriv = f"{f.deriv:.3f}" + (f" ≤{f.deriv_max:g}" if f.deriv_max else "")
            elif l.deriv_mean is not None:
                deriv = f"({l.deriv_mean:.3f}" + (f" ≤{dmax:g})" if dmax else ")")
            hist = charts.spark(l.deriv_hist, SPARK_W) if l.deriv_hist is not None else ""
            j = judged.get(l.name)
            t.add_row(Text(l.name, style=layer_style(i, n)), charts.fmt(g).strip(),
                      "output" if i == n - 1 else "-" if f is None else f"×{f.factor:.3g}", deriv,
                      "-" if f is None else f"×{f.weights:.3g}", Text(hist, style=REGIME_STYLE["healthy"]),
                      Text(j.regime if j is not None else "", style=REGIME_STYLE.get(j.regime, "") if j else ""))
            shown_rows += 1
            if len(order) < n and i == n - 1:
                t.add_row(Text(f"… {n - len(order)} layers (the layer table has them all)", style="dim"),
                          "", "", "", "", "", "")
        out: list[object] = [t]
        product = factors_product(v.factors)
        measured = snap.ratio("grad_norm") if n > 1 else math.nan
        if v.factors and math.isfinite(product):
            top, bottom = layers[-1].name, v.factors[0].name if v.factors else layers[0].name
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append(f"product {top} → {bottom}: {ratio_words(product)} ({product:.1e})", style="bold")
            if math.isfinite(measured) and measured > 0:
                line.append(f" · measured {layers[0].name}/{top} weight-gradient ratio: {ratio_words(measured)} "
                            f"({measured:.1e})")
            out.append(line)
        out.append(Text(v.factor_line, no_wrap=False, style="" if v.factors else "dim"))
        if v.preflight is not None:
            out.append(Text(f"at the start: {v.preflight.text}", style="dim", no_wrap=True, overflow="ellipsis"))
        return out
