"""One run's summary: the fold of its records that every end-of-run report shares (no torch, no textual).

`vgtui --headless` prints its closing lines from it, `vgtui compare` fills a table row from it, and `vgtui replay`
without a terminal says what each run of a file holds from it: how many snapshots and up to which step, the median
first/last layer gradient-norm ratio, the verdicts on gradient flow and on learning, and how the run ended.

    summary = RunSummary()
    for rec in records:          # or as a trainer sink: Trainer(config, [summary])
        summary.add(rec)
    summary.ratio, summary.flow, summary.learning, summary.badge
    summary.verdict              # every layer judged: diagnosis.RunVerdict (badge, line, layers, factors, preflight)

A file's run, indexed without reading its snapshots (`MetricsRun`, `RunIndex`): `RunSummary.of_index(run)` (counts,
last step and end record only). Decisions read the end record's `cause`, never its message.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

from vgtui.core.diagnosis import RECENT, RunVerdict, badge, diagnose, judge_learning, judge_run
from vgtui.core.records import EndRecord, EpochRecord, Record, RunRecord, Snapshot, SpikeRecord
from vgtui.core.spikes import spike_words, spikes_summary

N_CLASSES = 10  # every dataset vgtui trains on has 10 classes


def median_finite(xs: Sequence[float]) -> float:
    """The median of the finite values (NaN when there are none)."""
    finite = [x for x in xs if math.isfinite(x)]
    return statistics.median(finite) if finite else math.nan


@dataclass
class RunSummary:
    """What one run (not a fork's branch) boils down to. A new run header starts a new summary."""

    n_classes: int = N_CLASSES
    header: RunRecord | None = None
    snapshots: int = 0
    last_step: int | None = None  # the latest snapshot's step
    last: Snapshot | None = None  # the latest snapshot (None for a summary of an index)
    ratios: list[float] = field(default_factory=list)  # each snapshot's first/last layer gradient-norm ratio
    losses: list[float] = field(default_factory=list)  # each snapshot's mean training loss
    train_acc: float | None = None  # the latest epoch's
    test_acc: float | None = None
    end: EndRecord | None = None
    first: Snapshot | None = None  # the run's first snapshot (the preflight's)
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))  # the last RECENT snapshots
    spikes: list = field(default_factory=list)  # the flight recorder's SpikeRecords, in order

    def add(self, rec: Record) -> None:
        """Fold one record in (a fork's branch records are left out: they are a run of their own)."""
        if getattr(rec, "branch", None) is not None:
            return
        if isinstance(rec, RunRecord):
            self.__init__(n_classes=self.n_classes, header=rec)  # type: ignore[misc]
        elif isinstance(rec, Snapshot):
            self.snapshots += 1
            self.last, self.last_step = rec, rec.step
            if self.first is None:
                self.first = rec
            self.recent.append(rec)
            self.ratios.append(rec.ratio())
            self.losses.append(rec.loss_avg)
        elif isinstance(rec, EpochRecord):
            self.train_acc, self.test_acc = rec.train_acc, rec.test_acc
        elif isinstance(rec, EndRecord):
            self.end = rec
        elif isinstance(rec, SpikeRecord):
            self.spikes.append(rec)

    __call__ = add  # a trainer sink

    @classmethod
    def of_index(cls, run: Any) -> "RunSummary":
        """The summary of an indexed run of a file (`header`, `n_snapshots`, `snapshot_steps`, `end`), without
        reading its snapshots: counts, last step and end only."""
        n = run.n_snapshots
        return cls(header=run.header, snapshots=n, last_step=int(run.snapshot_steps[-1]) if n else None,
                   end=run.end, spikes=list(getattr(run, "spikes", ())))

    # ------------------------------------------------------------------ what it says
    @property
    def ratio(self) -> float:
        """The median (over the snapshots) first/last layer gradient-norm ratio."""
        return median_finite(self.ratios)

    @property
    def accuracy(self) -> float | None:
        """The latest test accuracy, None when unknown (or not a number)."""
        return self.test_acc if self.test_acc is not None and math.isfinite(self.test_acc) else None

    @property
    def diverged(self) -> bool:
        return self.end is not None and self.end.status == "diverged"

    @property
    def flow(self) -> str:
        """The gradient-flow verdict: diagnosis.DIAGNOSES from the median ratio and the latest snapshot's norms, or,
        for a run that ended diverged, "diverged" ("exploded": its loss grew far above chance without a NaN)."""
        if self.diverged:
            return "exploded" if self.end.cause == "exploded" else "diverged"  # type: ignore[union-attr]
        return diagnose(self.ratio, [l.grad_norm for l in self.last.layers] if self.last else [])

    @property
    def learning(self) -> str:
        """The learning verdict (diagnosis.LEARNING) from the snapshots' losses and the latest accuracy."""
        return judge_learning(self.losses, self.n_classes, self.accuracy)

    @property
    def badge(self) -> str:
        """One word for both verdicts (diagnosis.badge; "DIVERGED" for a run that ended diverged), "" before the
        first snapshot."""
        if self.diverged:
            return "DIVERGED"
        if self.last is None:
            return ""
        return badge(diagnose(self.ratio, [l.grad_norm for l in self.last.layers]), self.learning)

    @property
    def verdict(self) -> RunVerdict:
        """Every layer judged (diagnosis.judge_run): the badge, the line naming the layer and the reason, each
        layer's verdict, the factors and the preflight. A run that ended diverged says so (its end record's
        cause). The number of classes is known for vgtui's own runs; for a watched model it is not (None)."""
        h = self.header
        known = h is None or h.source == "vgtui"
        cause = self.end.cause if self.diverged else None  # type: ignore[union-attr]
        return judge_run(h.layers if h else None, list(self.recent), self.losses,
                         self.n_classes if known else None, self.accuracy, first=self.first,
                         count=self.snapshots, end_cause=cause)

    @property
    def what(self) -> str:
        """The model in a few words: the header's model, else the configuration's activation."""
        h = self.header
        return "" if h is None else h.model or (h.config or {}).get("activation", "")

    @property
    def last_text(self) -> str:
        return f"step {self.last_step:,}" if self.last_step is not None else "no snapshot"

    def spike_lines(self, most: int = 5) -> list[str]:
        """The flight recorder's account at the end of a run: 'spikes: 2 loss spikes: fc3 led 1, fc2 led 1' and one
        line per spike (the first `most`); nothing for a run without a flight recorder and no spike."""
        flight = (self.header.config or {}).get("flight") if self.header is not None else None
        if not self.spikes and not flight:
            return []
        lines = [f"spikes: {spikes_summary(self.spikes)}"]
        lines += [f"  {spike_words(s)}" for s in self.spikes[:most]]
        if len(self.spikes) > most:
            lines.append(f"  ... and {len(self.spikes) - most} more (the metrics file has them all)")
        return lines

    @property
    def end_text(self) -> str:
        return self.end.status if self.end is not None else "no end record"

    @property
    def steps_per_s(self) -> float:
        """Steps a second over the whole run, from its end record (NaN before the end)."""
        e = self.end
        return e.steps / e.elapsed_s if e is not None and e.elapsed_s > 0 else math.nan
