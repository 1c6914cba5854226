"""What the UI knows about the run: every record folded into one plain object (no Textual, no torch).

A live source's worker thread calls `RunState.apply(record)` for every record it yields; a file source's
worker fills the history and the screen moves the cursor (`show`). The UI thread reads the state under `lock`
when it redraws. Each kind of data has its own version counter, so a panel redraws only
when the data it shows changed.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from dataclasses import dataclass

from vgtui.core.config import RunConfig
from vgtui.core.diagnosis import RECENT, RunVerdict, judge_run
from vgtui.core.records import (UNSAFE_RANGES, EndRecord, EpochRecord, EventRecord, ProgressRecord, Record, RunRecord,
                                Snapshot, SpikeRecord)

# The runs on one screen, by position (at most MAX_RUNS): the run itself (A), then its fork's branches (a branch
# record's id, vgtui.core.records.BRANCHES, is its tag: `run_index`), or the files of `vgtui replay a b c ...` in
# the order given. Independent of the engine's branch ids; each has its colour (vgtui.ui.colours.RUN).
TAGS: tuple[str, ...] = tuple("ABCDEFGH")
MAX_RUNS = len(TAGS)


def run_index(branch: str | None) -> int:
    """The position on screen of a record's run: 0 for the run itself (no branch id), a branch's by its id."""
    return 0 if branch is None else TAGS.index(branch)


@dataclass(frozen=True)
class Metric:
    """A per-layer gradient metric the gradient panel can show, with its fixed log10 range (decades)."""

    key: str  # LayerStats attribute
    label: str  # for titles
    short: str
    lo: int  # log10 of the left end of the axis
    hi: int  # log10 of the right end


METRICS: tuple[Metric, ...] = (
    Metric("grad_norm", "grad norm ‖∇W‖", "‖∇W‖", -8, 2),
    Metric("grad_mean_abs", "mean |grad|", "mean|∇W|", -11, -1),
    Metric("grad_data_ratio", "grad:data  std(∇W)/std(W)", "grad:data", -8, 2),
    Metric("update_data_ratio", "update:data  std(ΔW)/std(W)", "update:data", -10, 0),
)
METRIC_KEYS = tuple(m.key for m in METRICS)

# The curves panel's last choice after the gradient metrics (`m`): each hidden layer's pre-activation percentiles
# over steps, as in Ioffe & Szegedy 2015, Figure 1. Not a gradient metric: the bars go on showing one (bar_metric).
PRE = "pre_percentiles"
PRE_KEYS = ("pre_p15", "pre_p50", "pre_p85")  # LayerStats attributes
# Then the user's own metrics that have no place on the loss chart, each on an axis of its own (vgtui.watch's
# metrics=; charts.user_metrics): offered by `m` only to a run that has some.
USER = "user_metrics"
CURVE_KEYS = (*METRIC_KEYS, PRE, USER)  # what `m` cycles through
# More per-layer series the history keeps, for a layer's own history (the layer table's enter): its saturated
# fraction and its activation's mean |derivative| (LayerStats attributes; nan where a snapshot has none)
LAYER_KEYS = ("saturated_frac", "deriv_mean")


def metric(key: str) -> Metric:
    for m in METRICS:
        if m.key == key:
            return m
    raise KeyError(key)


def bar_metric(key: str) -> Metric:
    """The gradient metric the bars show while the curves show `key`: the same one, or while the curves show the
    pre-activation percentiles the last gradient metric of the cycle (the one `m` came from), so the bars keep
    what they showed."""
    return METRICS[-1] if key in (PRE, USER) else metric(key)



HISTORY_POINTS = 2048  # the curves' points at most (a panel is at most a few hundred cells wide)
USER_METRICS_SHOWN = 32  # a snapshot's own metrics (vgtui.watch's metrics=) kept and drawn at most; the rest are counted

# Control characters (C0, DEL, C1) as visible text: a metrics file is data from another machine, and a
# string from it must never reach the terminal as a control sequence (ESC ] 0 ; ... BEL retitles the window).
# The set is the reader's (vgtui.core.records.UNSAFE_RANGES: C0, DEL, C1, the bidirectional marks, overrides and
# isolates, the line separators, lone surrogates); here ESC and BEL read as symbols and a tab as a space.
_CONTROL = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for a, b in UNSAFE_RANGES for c in range(a, b + 1)}
_CONTROL.update({0x1B: "␛", 0x07: "␇", 0x09: " "})
SEGMENT_CONTROL = {c: v for c, v in _CONTROL.items() if c != 0x0A}  # drawn lines: their own newlines stay


def shown(value: object) -> str:
    """`value` as text to draw: control characters made visible (ESC as ␛, others as \\xNN)."""
    s = value if isinstance(value, str) else str(value)
    return s.translate(_CONTROL) if not s.isprintable() else s


def number(v: object) -> float:
    """A value from a file as a float to draw (nan for what is not a number)."""
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return math.nan


class History:
    """The curves' data, bounded: at most `cap` points per series. When full, every other point is dropped and
    from then on only every `stride`-th snapshot is kept, so following a week-long run costs the UI the same
    memory as an hour of it (every snapshot stays on disk)."""

    def __init__(self, names: tuple[str, ...], cap: int = HISTORY_POINTS):
        self.names = names
        self.cap = cap
        self.stride = 1
        self.seen = 0
        self.steps: list[int] = []
        self.elapsed: list[float] = []  # each point's Snapshot.elapsed_s (the curves' wall-time axis)
        self.loss: list[float] = []
        self.series: dict[str, list[list[float]]] = {k: [[] for _ in names] for k in (*METRIC_KEYS, *PRE_KEYS, *LAYER_KEYS)}
        self.user: dict[str, list[float]] = {}  # the user's metrics (Snapshot.metrics), nan where a snapshot lacks one

    def add(self, snap: Snapshot) -> None:
        self.seen += 1
        if (self.seen - 1) % self.stride:
            return
        by_name = {l.name: l for l in snap.layers}
        self.steps.append(snap.step)
        self.elapsed.append(snap.elapsed_s)
        self.loss.append(snap.loss_avg)
        for k, series in self.series.items():
            for i, name in enumerate(self.names):
                v = getattr(by_name[name], k) if name in by_name else None
                series[i].append(math.nan if v is None else v)  # None: the output layer's percentiles, old files
        metrics = snap.metrics or {}
        for k in metrics:  # the first USER_METRICS_SHOWN names seen; the rest are not folded (the status counts them)
            if len(self.user) >= USER_METRICS_SHOWN:
                break
            self.user.setdefault(k, [math.nan] * (len(self.steps) - 1))
        for k, vals in self.user.items():
            vals.append(number(metrics.get(k, math.nan)))
        if len(self.steps) >= self.cap:
            self._halve()

    def plan(self, n: int) -> None:
        """Before the first point: take the stride that adding `n` snapshots one by one would end with, so that the
        fill of a recorded run parses only the snapshots it keeps (`keeps`) and ends with the same points."""
        if self.seen == 0:
            while -(-n // self.stride) >= self.cap:
                self.stride *= 2

    def keeps(self, position: int) -> bool:
        """Whether the snapshot at `position` (0-based: the next one `add` or `skip` counts) is kept."""
        return position % self.stride == 0

    def skip(self) -> None:
        """A snapshot counted and not kept (left unparsed because `keeps` said no, or a damaged one)."""
        self.seen += 1

    def _halve(self) -> None:
        self.stride *= 2
        self.steps, self.loss, self.elapsed = self.steps[::2], self.loss[::2], self.elapsed[::2]
        self.series = {k: [s[::2] for s in v] for k, v in self.series.items()}
        self.user = {k: v[::2] for k, v in self.user.items()}

    def upto(self, step: int | None) -> int:
        """How many points lie at or before `step` (all when None)."""
        if step is None:
            return len(self.steps)
        return bisect.bisect_right(self.steps, step)


class RunState:
    """One run as the screen shows it. A live source folds every record in (`apply`); a file source moves a
    cursor (`show`) over a run whose curves it fills in the background (`add_history`)."""

    def __init__(self, config: RunConfig | None = None, label: str = ""):
        self.lock = threading.RLock()
        self.config = config
        self.label = label  # the file's name, "" for vgtui's own trainer
        self.layers: tuple[str, ...] = tuple(f"fc{i}" for i in range(1, config.depth + 2)) if config else ()
        self.run: RunRecord | None = None
        self.runs = 0  # RunRecords seen
        self.snap: Snapshot | None = None
        self.end: EndRecord | None = None
        self.epochs: list[EpochRecord] = []
        self.events: list[tuple[int, str]] = []  # (step, text) of live changes in this run
        self.history = History(self.layers)
        self.keep_trace = False  # keep the previous run's curves at a restart (self.trace)
        self.trace: History | None = None
        self.position: tuple[int, int] | None = None  # (index, count) of the snapshot shown, in a file
        self.run_of: tuple[int, int] | None = None  # (number, count) of the run shown, in a file of several
        self.upto: int | None = None  # the curves stop at this step (a file's cursor); None: everything
        self.lost = ""  # why a followed writer seems gone
        self.damaged = ""  # why the snapshot under a file's cursor cannot be shown (a damaged line), else ""
        self.progress: ProgressRecord | None = None  # the trainer's latest tick between snapshots
        # what the verdict reads (vgtui.core.diagnosis.judge_run): the last RECENT snapshots up to the one shown, the
        # run's first (the preflight) and how many there are up to the one shown
        self.recent: deque[Snapshot] = deque(maxlen=RECENT)
        self.first: Snapshot | None = None
        self.count = 0
        self._verdict: tuple[tuple, RunVerdict] | None = None
        self.spikes: list[SpikeRecord] = []  # the flight recorder's loss spikes of this run (issue 18), in step order
        self.spike_version = 0
        self.snap_version = 0
        self.epoch_version = 0
        self.run_version = 0
        self.progress_version = 0

    # --------------------------------------------------------------------------------------- folding records
    def apply(self, rec: Record) -> None:
        with self.lock:
            if isinstance(rec, Snapshot):
                self.snap = rec
                self.recent.append(rec)
                self.first = self.first or rec
                self.count += 1
                if tuple(l.name for l in rec.layers) != self.layers:  # layers unknown until now
                    self.layers = tuple(l.name for l in rec.layers)
                    self.history = History(self.layers)
                self.history.add(rec)
                self.snap_version += 1
            elif isinstance(rec, EpochRecord):
                self.epochs.append(rec)
                self.epoch_version += 1
            elif isinstance(rec, ProgressRecord):
                self.progress = rec
                self.progress_version += 1
            elif isinstance(rec, RunRecord):
                self.begin(rec)
            elif isinstance(rec, EventRecord):
                self._event(rec)
                self.run_version += 1
                self.snap_version += 1
            elif isinstance(rec, EndRecord):
                self.end = rec
                self.run_version += 1
                self.snap_version += 1
            elif isinstance(rec, SpikeRecord):
                self.spikes.append(rec)
                self.spike_version += 1
                self.snap_version += 1  # the loss curve marks it

    def begin(self, rec: RunRecord, epochs: list[EpochRecord] = (), events: list[EventRecord] = ()) -> None:
        """A new run: its header, and what a file already holds of its epochs and live changes."""
        with self.lock:
            self.run = rec
            self.runs += 1
            if rec.config is not None:
                self.config = RunConfig.from_dict(rec.config)
            self.layers = rec.layer_names
            self.snap, self.end, self.lost, self.progress, self.damaged = None, None, "", None, ""
            self.recent, self.first, self.count = deque(maxlen=RECENT), None, 0
            self.epochs, self.events = list(epochs), []
            self.spikes = []
            self.spike_version += 1
            for ev in events:
                self._event(ev)
            if self.keep_trace:  # the run before this restart, drawn faint under the new one (a lesson's)
                self.trace = self.history if len(self.history.steps) >= 2 else self.trace
            self.history = History(self.layers)
            self.position, self.upto = None, None
            self.run_version += 1
            self.snap_version += 1
            self.epoch_version += 1

    def carry_on(self, other: "RunState", step: int) -> None:
        """The kept branch of a fork goes on as this run (its new header just begun, at `step`): B's last snapshot,
        progress, epochs, live changes and curves, so the screen shows where B is, not an empty run at step 0. Where
        B's last word (a probe, a tick) is older than `step`, the run is said to be at `step`, with that loss."""
        with other.lock:
            snap, progress, epochs, events, history = (other.snap, other.progress, list(other.epochs),
                                                       list(other.events), other.history)
            recent, first, count = deque(other.recent, maxlen=RECENT), other.first, other.count
        last = progress if progress is not None and (snap is None or progress.step > snap.step) else snap
        if last is not None and step > last.step:
            spe = self.run.steps_per_epoch if self.run is not None and self.run.steps_per_epoch else 0
            progress = ProgressRecord(step=step, epoch=(step - 1) // spe + 1 if spe else last.epoch,
                                      elapsed_s=last.elapsed_s, steps_per_s=0.0,
                                      loss=last.loss if isinstance(last, ProgressRecord) else last.loss_avg)
        with self.lock:
            self.snap, self.progress, self.epochs, self.events = snap, progress, epochs, events
            self.recent, self.first, self.count = recent, first, count
            if history.names == self.layers:
                self.history = history
            self.snap_version += 1
            self.epoch_version += 1
            self.progress_version += 1

    def _event(self, rec: EventRecord) -> None:
        if "activation" in rec.set and self.config is not None:
            self.config = self.config.replace(activation=rec.set["activation"])
        self.events.append((rec.step, ", ".join(f"{k} {v}" for k, v in rec.set.items())))

    def show(self, snap: Snapshot, index: int, count: int, end: EndRecord | None = None,
             recent: tuple[Snapshot, ...] = (), first: Snapshot | None = None) -> None:
        """A file's cursor: the snapshot at `index` of `count`; `end` when it is the run's last. `recent`: the
        snapshots before it that the verdict reads (at most RECENT - 1, oldest first), `first`: the run's first."""
        with self.lock:
            self.snap, self.position, self.upto, self.end = snap, (index, count), snap.step, end
            self.recent = deque((*recent, snap), maxlen=RECENT)
            self.first, self.count = first or (recent[0] if recent else snap), index + 1
            self.damaged = ""
            self.snap_version += 1

    def show_damaged(self, why: str, index: int, count: int, step: int | None, end: EndRecord | None = None) -> None:
        """A file's cursor on a snapshot whose line cannot be read: no snapshot is shown, the position is, and
        the curves stop at the step the index read for it (`step`, None when not known)."""
        with self.lock:
            self.snap, self.position, self.end, self.damaged = None, (index, count), end, why
            self.upto = step if step is not None else self.upto
            self.snap_version += 1

    def add_history(self, snaps) -> None:
        """Snapshots in file order, None for one not parsed (History.keeps) or damaged: each counts a position."""
        with self.lock:
            for s in snaps:
                if s is None:
                    self.history.skip()
                else:
                    self.history.add(s)
            self.snap_version += 1

    def plan_history(self, n: int) -> None:
        with self.lock:
            self.history.plan(n)

    def sync_spikes(self, spikes: list[SpikeRecord]) -> None:
        """A file's spikes as its index holds them (RunIndex.spikes: they grow as a followed file does)."""
        with self.lock:
            if len(spikes) != len(self.spikes):
                self.spikes = list(spikes)
                self.spike_version += 1
                self.snap_version += 1

    def visible_spikes(self) -> list[SpikeRecord]:
        """The spikes up to the cursor (all of them live), in step order."""
        with self.lock:
            return sorted((s for s in self.spikes if self.upto is None or s.step <= self.upto), key=lambda s: s.step)

    def add_epochs(self, epochs: list[EpochRecord]) -> None:
        with self.lock:
            self.epochs.extend(epochs)
            self.epoch_version += 1

    # --------------------------------------------------------------------------------------- derived views
    @property
    def step(self) -> int:
        return self.snap.step if self.snap else 0

    def live_progress(self) -> ProgressRecord | None:
        """The latest progress tick when it is newer than the snapshot shown (a live run between snapshots)."""
        p = self.progress
        if p is None or self.position is not None or (self.snap is not None and p.step <= self.snap.step):
            return None
        return p

    @property
    def total_steps(self) -> int:
        return self.run.total_steps if self.run else 0

    def curves(self, metric_key: str | None = None) -> tuple[list[int], list[float], list[list[float]]]:
        """The history up to the cursor: steps, loss, and one series per layer of `metric_key`."""
        with self.lock:
            h = self.history
            n = h.upto(self.upto)
            series = [s[:n] for s in h.series[metric_key]] if metric_key else []
            return h.steps[:n], h.loss[:n], series

    def layer_curves(self, name: str, keys) -> tuple[list[int], dict[str, list[float]]]:
        """One layer's history up to the cursor: steps, and its series of each of `keys` (History.series' keys);
        empty series for a layer the history does not hold."""
        with self.lock:
            h = self.history
            n = h.upto(self.upto)
            i = h.names.index(name) if name in h.names else None
            return h.steps[:n], {k: (h.series[k][i][:n] if i is not None else []) for k in keys}

    def pre_curves(self) -> tuple[list[int], tuple[str, ...], list[tuple[list[float], list[float], list[float]]]]:
        """The history up to the cursor: steps, the layers, and each layer's (p15, p50, p85) pre-activation
        series (nan where it has none)."""
        with self.lock:
            h = self.history
            n = h.upto(self.upto)
            return h.steps[:n], h.names, [tuple(h.series[k][i][:n] for k in PRE_KEYS) for i in range(len(h.names))]

    def times(self) -> list[float]:
        """Each point of `curves()`'s seconds since the run started (Snapshot.elapsed_s): the wall-time axis."""
        with self.lock:
            return self.history.elapsed[:self.history.upto(self.upto)]

    @property
    def axes(self) -> dict[str, str] | None:
        """Where the run said its metrics go (vgtui.watch(axes=...): the header's `axes`), or None."""
        return getattr(self.run, "axes", None) if self.run is not None else None

    def user_curves(self) -> dict[str, list[float]]:
        """The user's metrics (vgtui.watch's metrics=) up to the cursor, aligned with `curves()`'s steps."""
        with self.lock:
            n = self.history.upto(self.upto)
            return {k: v[:n] for k, v in self.history.user.items()}

    def visible_epochs(self) -> list[EpochRecord]:
        with self.lock:
            return [e for e in self.epochs if self.upto is None or e.step <= self.upto]

    def visible_events(self) -> list[tuple[int, str]]:
        with self.lock:
            return [e for e in self.events if self.upto is None or e[0] <= self.upto]

    def verdict(self) -> RunVerdict:
        """The run's verdict at the snapshot shown (vgtui.core.diagnosis.judge_run: every layer judged, the factors,
        the preflight, learning), computed once per snapshot. A run of another source (vgtui.watch) is judged
        without a chance level: no learning verdict from its loss, no loss-at-init line."""
        with self.lock:
            key = (self.snap_version, self.epoch_version)
            if self._verdict is not None and self._verdict[0] == key:
                return self._verdict[1]
            ours = self.run is not None and self.run.config is not None
            losses = self.curves()[1] if ours else []
            epochs = self.visible_epochs()
            acc = epochs[-1].test_acc if epochs and ours else None
            recent, first, count, end, layers = list(self.recent), self.first, self.count, self.end, self.layers
        cause = end.cause if end is not None else None
        v = judge_run(layers, recent, losses, 10 if ours else None, acc, first=first, count=count, end_cause=cause)
        with self.lock:
            self._verdict = (key, v)
        return v
