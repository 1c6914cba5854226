"""The status line: what runs (with its verdict), where it is, what it means or what just happened."""

from __future__ import annotations

import math
from itertools import islice

from rich.console import Group
from rich.text import Text

from vgtui.core.diagnosis import EXPLODING_ABOVE, VANISHING_BELOW, RunVerdict
from vgtui.ui import charts, colours
from vgtui.ui.colours import BADGE_STYLE
from vgtui.ui.state import RunState, TAGS, number, shown
from vgtui.ui.widgets.base import Panel, RunView, abbreviate, no_snapshot, run_label


# the badges that name a layer's regime: the badge names that layer
LAYER_BADGES = {"SATURATED": "saturated", "DEAD UNITS": "dead", "STEPS TOO LARGE": "too large"}
# what to try, after the verdict's line (the remedies of the seed's argument)
REMEDY = {"VANISHING": "try relu + kaiming, batchnorm, or skip connections",
          "SATURATED": "try batchnorm, a smaller init, or an activation that does not saturate",
          "DEAD UNITS": "try a lower lr, leaky relu, or kaiming init",
          "STEPS TOO LARGE": "try a lower lr", "EXPLODING": "try a lower lr, batchnorm, or xavier init",
          "LOSS RISING": "try a lower lr", "NOT LEARNING": "try a lower lr, another init, or batchnorm"}
STATUS_METRICS = 6  # the user's own metrics the status line names at most (the rest are counted)


def device_words(dev: dict[str, float]) -> str:
    """A CUDA device's state in a few words: "GPU 3.2/79.2 GiB (reserved 4.0) 87%" (what the snapshot holds)."""
    gib = 2.0 ** 30
    words = "GPU"
    if "mem_allocated" in dev:
        words += f" {dev['mem_allocated'] / gib:.1f}"
        words += f"/{dev['mem_total'] / gib:.1f} GiB" if "mem_total" in dev else " GiB"
    if "mem_reserved" in dev:
        words += f" (reserved {dev['mem_reserved'] / gib:.1f})"
    if "util" in dev:
        words += f" {dev['util']:.0f}%"
    return words


class StatusBar(Panel):
    """Three lines. One run: what runs (and its diagnosis badge), where it is, what it means or what just
    happened. Two runs: one line per run, each with its badge, and a line with both positions. More: a line of
    badges, one per run, then the run in focus (`_many`)."""

    DEFAULT_CSS = """
    StatusBar { height: 3; width: 1fr; }
    """

    def key(self, view: RunView) -> object:
        m = view
        return (m.versions("snap_version", "epoch_version", "run_version", "progress_version"), m.paused,
                m.pause_wanted, m.cap, m.pace, m.notice, m.branch_focus,
                tuple(st.config for st in m.states))

    def build(self, width: int, height: int) -> object:
        m = self.view
        if len(m.states) > 2:
            return self._many(m, width)
        if m.compare:
            a, b = m.states
            line3 = Text(" ", no_wrap=True, overflow="ellipsis")
            if m.forked:
                line3.append_text(self._fork_line(a, b, m))
            elif m.notice:
                line3.append(m.notice, style="italic " + colours.style(colours.EVENT))
            else:
                for tag, st in zip(TAGS, (a, b)):
                    line3.append(f"{tag} ", style="bold")
                    line3.append(position(st) + "   ")
                line3.append_text(self._run_state(a, m))
            return Group(self._what(a, width, f"{TAGS[0]} "), self._what(b, width, f"{TAGS[1]} "), line3)
        s = m.state
        return Group(self._what(s, width), self._where(s, width), self._meaning(s, width))

    def _many(self, m: RunView, width: int) -> Group:
        """More than two runs: one badge each on the first line (each run's tag in its colour, the one in focus
        marked ▸ and reversed), the run in focus on the second (what it is, its full badge), and on the third
        what just happened, else where the run in focus is."""
        states = m.states
        focus = min(m.branch_focus, len(states) - 1)
        slot = max(width // len(states), 4)
        badges = Text(no_wrap=True, overflow="crop")
        for i, (tag, st, code) in enumerate(zip(TAGS, states, colours.RUN)):
            cell = Text(no_wrap=True, overflow="crop")
            mark = "▸" if i == focus else " "
            cell.append(f"{mark}{tag}", style=colours.style(code, bold=True, reverse=i == focus))
            v = st.verdict() if st.snap is not None or st.end is not None else None
            label = v.badge if v is not None else "…"
            cell.append(" ")
            cell.append(f" {label} "[: max(slot - 4, 1)], style=BADGE_STYLE.get(label.lower(), "bold reverse"))
            room = slot - 2 - cell.cell_len
            if room >= 4:  # the file's name, as much as fits
                cell.append(" " + run_label(shown(st.label), room), style=colours.style(code))
            cell.truncate(slot - 1, pad=True)
            badges.append_text(cell).append(" ")
        badges.truncate(width)
        st = states[focus]
        line3 = Text(" ", no_wrap=True, overflow="ellipsis")
        if m.notice:
            line3.append(m.notice, style="italic " + colours.style(colours.EVENT))
        else:
            line3.append(f"{TAGS[focus]} ", style=colours.style(colours.RUN[focus], bold=True))
            line3.append(position(st) if st.position is not None else f"step {st.step:,}")
            hint = f"o: the next of {len(states)} runs" + (f" · F ends the fork keeping {TAGS[focus]}" if m.forked else "")
            line3.append(f"   {hint}   ", style="dim")
            line3.append_text(self._run_state(st, m))
        line3.truncate(width)
        return Group(badges, self._what(st, width, f"{TAGS[focus]} "), line3)

    def _fork_line(self, a: RunState, b: RunState, m: RunView) -> Text:
        """A live fork: where both are, B's accuracy against A's, and the focus."""
        t = Text()
        tick = a.live_progress()
        step = tick.step if tick else a.step
        t.append(f"step {step:,}  ", style="bold")
        ea, eb = a.visible_epochs(), b.visible_epochs()
        if ea and eb:
            d = 100 * (eb[-1].test_acc - ea[-1].test_acc)
            t.append("test acc ", style="dim")
            t.append(f"A {ea[-1].test_acc:.1%}  B {eb[-1].test_acc:.1%}  ", style="bold")
            t.append(f"B−A {d:+.1f} pts  ", style="bold")
        t.append_text(self._run_state(a, m))
        t.append("  ")
        if m.notice:  # what just happened, else how to go on
            t.append(m.notice, style="italic " + colours.style(colours.EVENT))
        else:
            focus = TAGS[m.branch_focus]
            t.append(f"focus {focus} (o) · F ends the fork keeping {focus}", style="dim")
        return t

    def _what(self, s: RunState, width: int, tag: str = "") -> Text:
        """What runs: the file, the model or vgtui's configuration, and the diagnosis badge."""
        with s.lock:
            cfg, run, snap = s.config, s.run, s.snap
            layers = s.layers
        verdict = s.verdict() if snap is not None or s.end is not None else None
        head = [(f"{tag}{s.label or 'vgtui'}", "bold")] if s.label or tag else [("vgtui", "bold")]
        if cfg is not None:
            dataset = run.dataset if run and run.dataset else cfg.dataset
            device = run.device if run else cfg.device
            parts = [(dataset, ""), (device, ""), (cfg.activation, colours.style(colours.RUN_A, bold=True)), (f"init {cfg.init}", ""),
                     (f"bn {'on' if cfg.batchnorm else 'off'}", "bold" if cfg.batchnorm else ""),
                     (f"skip {'on' if cfg.skip else 'off'}", "bold" if cfg.skip else ""),
                     (f"{cfg.depth}×{cfg.width}", ""), (f"{cfg.optimizer} lr {cfg.lr:g}", "")]
        else:  # a run of another producer: what its header says
            parts = [(x, "") for x in (run.model if run else "", run.dataset if run else "", run.device if run else "")
                     if x]
            if snap is not None and snap.activation:
                parts.append((snap.activation, colours.style(colours.RUN_A, bold=True)))
        parts = head + parts
        badge = self._badge(verdict, snap, layers)
        line = join(parts)
        pad = width - line.cell_len - badge.cell_len - 1
        if pad < 1:  # narrow: drop the separators' spaces, a shorter badge, then the last parts
            parts = [(t.replace("init ", "").replace(" lr ", " "), st) for t, st in parts]
            badge = self._badge(verdict, snap, layers, short=True)
            while True:
                line = join(parts, "·")
                pad = width - line.cell_len - badge.cell_len - 1
                if pad >= 1 or len(parts) <= 2:
                    break
                parts.pop()
        line.append(" " * max(pad, 1))
        line.append_text(badge)
        line.truncate(width)
        return line

    def _where(self, s: RunState, width: int) -> Text:
        """Where the run is (segments by priority; the lowest go first when the line is too narrow)."""
        with s.lock:
            cfg, run, snap, epochs, tick = s.config, s.run, s.snap, s.visible_epochs(), s.live_progress()
        step = tick.step if tick else (snap.step if snap else 0)  # progress ticks move it between snapshots
        total = run.total_steps if run else 0
        epoch = tick.epoch if tick else (snap.epoch if snap else (epochs[-1].epoch if epochs else 0))
        segs: list[tuple[int, Text]] = []
        if s.position is not None:
            segs.append((0, Text(position(s))))
        elif not total and run is not None:  # a run of unknown length (a user's loop): no bar, no epochs; the step and the time
            segs.append((0, Text(f"step {step:,}")))
            if snap:
                segs.append((2, Text(clock(snap.elapsed_s))))
        else:
            frac = min(step / total, 1.0) if total else 0.0
            bar_w = 24 if width >= 110 else 10
            filled = int(round(frac * bar_w))
            prog = Text()
            prog.append("━" * filled, style=colours.style(colours.RUN_A))
            prog.append("━" * (bar_w - filled), style=colours.style(colours.RULE))
            prog.append(f" {frac:4.0%}")
            # the epochs it trains: fewer than the config's when --max-steps (a lesson's step) stops it first
            epochs_total = f"/{run.epochs(cfg.epochs) if run is not None else cfg.epochs}" if cfg is not None else ""
            segs += [(0, Text(f"epoch {epoch}{epochs_total}")), (0, Text(f"step {step}/{total or '?'}")), (3, prog)]
        rate = tick.steps_per_s if tick else (snap.steps_per_s if snap else 0.0)
        if rate and (s.position is None or self.view.follow):
            segs.append((4, Text(f"{rate:5.1f} steps/s")))
        if snap is not None and snap.device:  # a CUDA run: the device strip, so that SSH needs no second pane
            segs.append((3, Text(device_words(snap.device))))
        if tick or snap:
            loss = tick.loss if tick else snap.loss_avg
            segs.append((1, Text.assemble(("loss ", "dim"), (f"{loss:.3f}", "bold"))))  # nan, inf too
        metrics = (snap.metrics if snap else None) or {}
        for k, v in islice(metrics.items(), STATUS_METRICS):  # the user's own numbers (metrics=), the first few
            segs.append((2, Text.assemble((f"{shown(k)} ", "dim"), (f"{number(v):.4g}", colours.style(colours.TRAIN_ACC, bold=True)))))
        if len(metrics) > STATUS_METRICS:
            segs.append((1, Text(f"{len(metrics) - STATUS_METRICS:,} more metrics not shown", style="dim")))
        if snap is not None and snap.ranks:  # a distributed job (vgtui.watch on every rank): its ranks, flagged ones
            odd = [r.rank for r in snap.departed()]
            segs.append((1, Text(f"{len(snap.ranks)} ranks" + (f" · rank {', '.join(map(str, odd))} departs"
                                                                 if odd else ""),
                                 style=colours.style(colours.DIVERGED, bold=True) if odd else "dim")))
        if epochs:
            e = epochs[-1]
            segs.append((2, Text.assemble(("train ", "dim"), (f"{e.train_acc:.1%}", colours.style(colours.TRAIN_ACC, bold=True)))))
            segs.append((1, Text.assemble(("test ", "dim"), (f"{e.test_acc:.1%}", colours.style(colours.TEST_ACC, bold=True)))))
        state = self._run_state(s, self.view)
        while True:
            line = join([(seg, "") for _, seg in segs], "  ")
            if line.cell_len + state.cell_len + 2 <= width or len(segs) <= 2:
                break
            segs.pop(max(range(len(segs)), key=lambda k: (segs[k][0], k)))
        line.append(" " * max(width - line.cell_len - state.cell_len - 1, 1))
        line.append_text(state)
        line.truncate(width)
        return line

    def _meaning(self, s: RunState, width: int) -> Text:
        """What it means, or what just happened."""
        m = self.view
        with s.lock:
            run, snap, end, layers = s.run, s.snap, s.end, s.layers
        line = Text(" ", no_wrap=True, overflow="ellipsis")
        live = m.live
        if m.notice:  # what just happened first (cleared when the cursor moves or the run ends)
            line.append(m.notice, style="italic " + colours.style(colours.EVENT))
        elif end is not None and end.status == "diverged":
            line.append(f"DIVERGED at step {end.steps}: ", style=colours.style(colours.DIVERGED, bold=True))
            line.append(f"{end.message}." + (" Press r to restart, i / b / a to change the recipe." if live else ""))
        elif end is not None and end.status == "failed":
            line.append("FAILED: ", style=colours.style(colours.DIVERGED, bold=True))
            line.append(end.message)
        elif snap is not None and layers:
            for r in snap.departed()[:2]:  # a rank of a distributed job that departs from the others
                line.append(f"rank {r.rank}: {shown(r.flag)} · ", style=colours.style(colours.DIVERGED, bold=True))
            v = s.verdict()
            line.append(v.line, style="dim")
            if v.preflight is not None and (v.badge == "TOO EARLY" or v.preflight.too_large):
                line.append(f" · {v.preflight.text}", style="dim")  # the start, while there is little else to say
            if v.badge in REMEDY:
                line.append(f" · {REMEDY[v.badge]}", style="dim")
        elif run is None:
            line.append("starting the trainer…" if live else "waiting for records…", style="dim")
        elif snap is None:
            line.append_text(no_snapshot(s))
        line.truncate(width)
        return line

    @staticmethod
    def _badge(v: RunVerdict | None, snap, layers: tuple[str, ...], short: bool = False) -> Text:
        """The run's badge (vgtui.core.diagnosis.judge_run: the worst of its layers' verdicts and of the learning
        verdict). On gradient flow it also says the first layer's gradient norm over the last's, when that ratio is
        what it says (a gradient small everywhere is said by the line below); on a layer's regime, that layer."""
        if v is None:
            return Text(" … ", style="reverse")
        label, style = v.badge, BADGE_STYLE.get(v.badge.lower(), "bold reverse")
        r = snap.ratio("grad_norm") if snap is not None and len(layers) > 1 else float("nan")
        says_ratio = math.isfinite(r) and (label == "HEALTHY" or (label == "VANISHING" and r < VANISHING_BELOW) or
                                           (label == "EXPLODING" and r > EXPLODING_ABOVE))
        if says_ratio and short:  # still says what the number is: the first layer's gradient norm over the last's
            first, last = (abbreviate(shown(n), 8) for n in (layers[0], layers[-1]))
            return Text(f" {label} {first}/{last} {r:.0e} ", style=style)
        if says_ratio:
            return Text(f" {label} {layers[0]}/{layers[-1]} {r:.1e} ", style=style)
        worst = next((x for x in v.layers if x.regime == LAYER_BADGES.get(label)), None)
        if worst is not None:
            return Text(f" {label} {abbreviate(shown(worst.name), 12 if short else 24)} ", style=style)
        return Text(f" {label} ", style=style)

    @staticmethod
    def _run_state(s: RunState, m: RunView) -> Text:
        end = s.end
        if end is not None and end.status != "interrupted":
            return Text(f"■ {end.status}", style="bold")
        t = Text()
        if m.replay:
            if s.lost:
                return Text("? writer gone", style=colours.style(colours.WARNING, bold=True))
            if m.pace != 1.0:
                t.append(f"{m.pace:g}x  ", style=colours.style(colours.EVENT))
            following = m.follow and s.position is not None and s.position[0] >= s.position[1] - 1
            if following and not m.paused:
                t.append("● following", style="bold")
            else:
                t.append("⏸ paused" if m.paused else "▶ playing", style="bold reverse" if m.paused else "bold")
            return t
        if not m.live:  # a stream (a user's loop, a pipe)
            return Text("● following" if not m.paused else "⏸ paused", style="bold")
        if m.cap:
            t.append(f"cap {m.cap:g}/s  ", style=colours.style(colours.EVENT))
        if m.pause_wanted is not None and m.pause_wanted != m.paused:  # asked, not yet acknowledged
            t.append("⏸ pausing…" if m.pause_wanted else "▶ resuming…", style="italic")
        else:
            t.append("⏸ paused" if m.paused else "▶ running", style="bold reverse" if m.paused else "bold")
        return t


def join(parts: list[tuple[str | Text, str]], sep: str = " · ") -> Text:
    """One status line from (text, style) parts."""
    line = Text(" ", no_wrap=True, overflow="ellipsis")
    for i, (t, st) in enumerate(parts):
        if i:
            line.append(sep, style="dim")
        if isinstance(t, Text):
            line.append_text(t)
        else:
            line.append(t, style=st)
    return line


def clock(seconds: float) -> str:
    """03:12, or 1:03:12 past an hour."""
    if not math.isfinite(seconds):
        return charts.fmt(seconds)
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def position(s: RunState) -> str:
    """The position readout of a file's cursor: "snapshot 112 / 4,000 · step 4,480 · 03:12"."""
    if s.position is not None and s.snap is None and s.damaged:
        i, n = s.position
        run = f"run {s.run_of[0]} / {s.run_of[1]} · " if s.run_of else ""
        return f"{run}snapshot {i + 1:,} / {n:,} · damaged"
    if s.position is None or s.snap is None:
        return "no snapshot yet"
    i, n = s.position
    run = f"run {s.run_of[0]} / {s.run_of[1]} · " if s.run_of else ""
    return f"{run}snapshot {i + 1:,} / {n:,} · step {s.snap.step:,} · {clock(s.snap.elapsed_s)}"
