"""What the UI knows about the run: every record folded into one plain object (no Textual, no torch).

The worker thread calls `RunState.apply(record)` for every record the backend yields, so no snapshot is lost
even when the messages that announce them replace each other in Textual's queue; the UI thread reads the
state under `lock` when it redraws. Each kind of data has its own version counter, so a panel redraws only
when the data it shows changed.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from vgtui.core.config import RunConfig
from vgtui.core.diagnosis import diagnose
from vgtui.core.records import EndRecord, EpochRecord, EventRecord, Record, RunRecord, Snapshot


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


def metric(key: str) -> Metric:
    for m in METRICS:
        if m.key == key:
            return m
    raise KeyError(key)


def layer_names_for(config: RunConfig) -> tuple[str, ...]:
    """fc1..fc{depth+1}: what the engine will report, known before the trainer has even started."""
    return tuple(f"fc{i}" for i in range(1, config.depth + 2))


def regime(value: float, last: float) -> str:
    """A layer's regime from its gradient norm against the last layer's (the diagnosis thresholds)."""
    if not math.isfinite(value) or not math.isfinite(last):
        return "diverged"
    return diagnose(value / last if last else math.inf, [value])


class RunState:
    def __init__(self, config: RunConfig):
        self.lock = threading.RLock()
        self.config = config
        self.layers: tuple[str, ...] = layer_names_for(config)
        self.run: RunRecord | None = None
        self.runs = 0  # RunRecords seen
        self.snap: Snapshot | None = None
        self.end: EndRecord | None = None
        self.epochs: list[EpochRecord] = []
        self.events: list[tuple[int, str]] = []  # (step, text) of live changes in this run
        self.steps: list[int] = []
        self.loss: list[float] = []
        self.series: dict[str, list[list[float]]] = {}
        self.snap_version = 0
        self.epoch_version = 0
        self.run_version = 0
        self._reset_series()

    def _reset_series(self) -> None:
        self.steps, self.loss = [], []
        self.series = {k: [[] for _ in self.layers] for k in METRIC_KEYS}

    # --------------------------------------------------------------------------------------- folding records
    def apply(self, rec: Record) -> None:
        with self.lock:
            if isinstance(rec, Snapshot):
                self.snap = rec
                if tuple(l.name for l in rec.layers) != self.layers:  # layers unknown until now
                    self.layers = tuple(l.name for l in rec.layers)
                    self._reset_series()
                self.steps.append(rec.step)
                self.loss.append(rec.loss_avg)
                for k in METRIC_KEYS:
                    for i, l in enumerate(rec.layers):
                        self.series[k][i].append(getattr(l, k))
                self.snap_version += 1
            elif isinstance(rec, EpochRecord):
                self.epochs.append(rec)
                self.epoch_version += 1
            elif isinstance(rec, RunRecord):
                self.run = rec
                self.runs += 1
                if rec.config is not None:
                    self.config = RunConfig.from_dict(rec.config)
                self.layers = rec.layer_names
                self.snap, self.end = None, None
                self.epochs, self.events = [], []
                self._reset_series()
                self.run_version += 1
                self.snap_version += 1
                self.epoch_version += 1
            elif isinstance(rec, EventRecord):
                if "activation" in rec.set:
                    self.config = self.config.replace(activation=rec.set["activation"])
                text = ", ".join(f"{k} {v}" for k, v in rec.set.items())
                self.events.append((rec.step, text))
                self.run_version += 1
                self.snap_version += 1
            elif isinstance(rec, EndRecord):
                self.end = rec
                self.run_version += 1
                self.snap_version += 1

    # --------------------------------------------------------------------------------------- derived views
    @property
    def step(self) -> int:
        return self.snap.step if self.snap else 0

    @property
    def total_steps(self) -> int:
        return self.run.total_steps if self.run else 0

    def diagnosis(self) -> tuple[str, float] | None:
        """('vanishing'|'healthy'|'exploding'|'diverged', fc1/fc_last grad-norm ratio) or None before data."""
        if self.end is not None and self.end.status == "diverged":
            return "diverged", math.nan
        if self.snap is None:
            return None
        norms = [l.grad_norm for l in self.snap.layers]
        ratio = self.snap.ratio("grad_norm")
        return diagnose(ratio, norms), ratio

    def regimes(self) -> list[str]:
        """Each layer's regime (by its grad norm against the last layer's)."""
        if self.snap is None:
            return ["healthy"] * len(self.layers)
        last = self.snap.layers[-1].grad_norm
        diverged = self.end.layer if self.end is not None and self.end.status == "diverged" else None
        return ["diverged" if l.name == diverged else regime(l.grad_norm, last) for l in self.snap.layers]
