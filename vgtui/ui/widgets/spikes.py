"""The spikes view (issue 18): the flight recorder's loss spikes of the run in focus, one at a time (↑ / ↓).

For the spike shown: its words (vgtui.core.spikes.spike_words: which layer's number left its band first, and how
many steps before the loss), the loss over the recorded window with the spike's step marked, the leader's metric for
every layer over the same window on a log axis (the leading layer bold in the spike colour, the others thin; a │ at
the loss's spike, a ┊ where the leader left its band: the lead time is the gap), and the leaders ranked. Every
string from the file (layer names, metric names) is drawn as text.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from vgtui.core.records import SpikeRecord
from vgtui.core.spikes import METRIC_WORDS, score_number, spike_words
from vgtui.ui import charts, colours
from vgtui.ui.state import RunState, shown
from vgtui.ui.widgets.base import Panel, RunView

NO_SPIKES = ("no loss spikes in this run: the flight recorder writes one when the loss leaves its band (a robust "
             "score over the steps before), naming the layer whose numbers left theirs first")
LEADERS_SHOWN = 5


def chosen(st: RunState, index: int | None) -> tuple[SpikeRecord | None, int, int]:
    """(the spike shown, its index, how many there are): `index` None or past the end: the latest."""
    spikes = st.visible_spikes()
    if not spikes:
        return None, 0, 0
    i = len(spikes) - 1 if index is None else max(0, min(index, len(spikes) - 1))
    return spikes[i], i, len(spikes)


def lead_text(lead: int) -> str:
    if lead > 0:
        return f"{lead:,} step{'s' * (lead != 1)} before"
    if lead == 0:
        return "same step"
    return f"{-lead:,} step{'s' * (lead != -1)} after"


class SpikeView(Panel):
    """One spike of the run in focus (RunView.spike: its index, None for the latest)."""

    min_interval = 0.5

    def key(self, view: RunView) -> object:
        st = view.focused
        return (st.spike_version, st.upto, view.spike, view.branch_focus, view.colour)

    def on_key_changed(self) -> None:
        v = self.view
        if v is None:
            return
        rec, i, n = chosen(v.focused, v.spike)
        self.border_title = (f"loss spike {i + 1} of {n} · step {rec.step:,}" + (" · ↑/↓ another" if n > 1 else "")
                             if rec else "loss spikes")

    def build(self, width: int, height: int) -> object:
        v = self.view
        rec, i, n = chosen(v.focused, v.spike)
        if rec is None:
            later = sorted(s.step for s in v.focused.spikes)
            if later:  # a replay's cursor before the first
                return Text(f"no loss spike up to the step shown; the run's first is at step {later[0]:,} (→ / end)",
                            style="dim")
            return Text(NO_SPIKES, style="dim")
        words = Text(shown(spike_words(rec)), style="bold")
        lead = rec.leader
        metric = lead.metric if lead else next(iter(rec.series), "grad_norm")
        series = rec.series.get(metric, {})
        names = list(series)
        # the leaders ranked, below the charts when there is room (the words name the first three anyway)
        n_lead = min(len(rec.leaders), LEADERS_SHOWN if height >= 28 else 2 if height >= 22 else 0)
        table_rows = n_lead + 1 if n_lead else 0
        room = max(height - 2 - table_rows - 2, 10)  # words (up to 2 lines), two chart titles, the leaders
        loss_h = max(5, room // 3)
        layers_h = max(6, room - loss_h)
        c = v.colour
        loss_title = Text.assemble((f"loss over steps {rec.steps[0]:,}–{rec.steps[-1]:,}", "dim"),
                                   ("  │ ▲ the spike" + (f" (score {score_number(rec.score, 1)})" if rec.score == rec.score else ""),
                                    colours.style(colours.SPIKE)), no_wrap=True, overflow="ellipsis")
        loss = Text.from_ansi(charts.spike_loss(rec.steps, rec.loss, rec.step, width, loss_h, c), no_wrap=True,
                              overflow="crop", end="")
        what = shown(METRIC_WORDS.get(metric, metric))
        layers_title = Text(no_wrap=True, overflow="ellipsis")
        layers_title.append(f"{what} per layer, log y  ", style="dim")
        if lead:
            layers_title.append(f"━ {shown(lead.layer)} led: {lead_text(lead.lead)} the loss", colours.style(colours.SPIKE,
                                                                                                          bold=True))
            if lead.lead:
                layers_title.append("  ┊ it left its band", colours.style(colours.SPIKE))
        layers_title.append("  ⠤ the other layers", style="dim")
        layers = Text.from_ansi(charts.spike_layers(rec.steps, series, names, lead.layer if lead else None,
                                                    lead.step if lead else None, rec.step, width, layers_h, c),
                                no_wrap=True, overflow="crop", end="")
        parts: list = [words, loss_title, loss, layers_title, layers]
        if n_lead:
            t = Table(box=None, padding=(0, 1), show_edge=False, expand=False, header_style="dim")
            for h, justify in (("#", "right"), ("layer", "left"), ("number", "left"), ("left its band", "right"),
                               ("lead", "left"), ("score", "right")):
                t.add_column(h, justify=justify, no_wrap=True)
            for k, l in enumerate(rec.leaders[:LEADERS_SHOWN]):
                style = colours.style(colours.SPIKE, bold=True) if k == 0 else ""
                t.add_row(Text(str(k + 1)), Text(shown(l.layer), style=style),
                          Text(shown(METRIC_WORDS.get(l.metric, l.metric))), Text(f"step {l.step:,}"),
                          Text(lead_text(l.lead)), Text(score_number(l.score, 1)))
            parts.append(t)
        return Group(*parts)
