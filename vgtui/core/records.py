"""What the engine hands out and what it takes in: immutable records and commands.

Records are frozen dataclasses of plain numbers and numpy arrays. They are what the trainer emits, what the
UI draws, and, one JSON object per line, what the metrics file holds (`to_json` / `record_from_json`, or
`RecordEncoder` and the readers of vgtui.core.metrics, which remember the run header so that snapshots can leave
out what it holds).
Commands are what the UI sends to the trainer through its queue. Neither torch nor textual is imported here.

Schema 2 (schema 1 is still read): the run header carries the histogram bin edges once (`grad_edges`, and
`act_edges` keyed by activation, for every activation the run can switch to), and a snapshot's histograms carry
only their counts when their edges are the header's. Probe values are float32 on the device: a value that is
exactly a float32 is written in float32's shortest round-trip form ("0.1", not "0.10000000149011612"), so it
reads back as the same float32; any other float is written in full (no value is ever rounded).

Schema 3 adds branches: `f` in the UI forks a live run, and the fork's second network (branch B) trains in
lockstep with the run (branch A). Every record of branch B carries `"branch": "B"` right after its type, starting
with its own run header (`forked_at`: the step it was copied at); records without it are the run's own. A reader
files B's records under the run they forked from (`RunIndex.branches`, `MetricsRun.branches`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

SCHEMA_VERSION = 3
BRANCHES = ("B",)  # the names a fork's branch records carry; the run itself (branch A) carries none


# ---------------------------------------------------------------------------------------------- JSON helpers
def _num(x: float | int | None) -> Any:
    """JSON has no NaN or infinity: write them as the strings "nan", "inf", "-inf" (the reader undoes it)."""
    if x is None or isinstance(x, (bool, int)):
        return x
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _num32(x: float | int | None) -> Any:
    """Like _num, but a float that is exactly a float32 is written in float32's shortest round-trip form, which
    reads back as the same float32 (the probes' values are float32 on the device: 17 digits would only be noise)."""
    if x is None or isinstance(x, (bool, int)):
        return x
    x = float(x)
    if not math.isfinite(x):
        return _num(x)
    f = np.float32(x)
    return float(str(f)) if f == x else x


def _unnum(x: Any) -> Any:
    if isinstance(x, str):
        return float(x)  # "nan", "inf", "-inf"
    return x


def _float_list(a: np.ndarray) -> list:
    return [_num(v) for v in a.tolist()]


# ---------------------------------------------------------------------------------------------- histograms
@dataclass(frozen=True, eq=False)
class Hist:
    """Counts over fixed bins: `edges` has len(counts)+1 entries. `under`/`over` count values outside the
    range; `zeros` counts exact zeros where the axis is log-scaled (log |g| has no place for them)."""

    edges: np.ndarray
    counts: np.ndarray
    under: int = 0
    over: int = 0
    zeros: int = 0

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + self.under + self.over + self.zeros

    def to_json(self, known_edges: np.ndarray | None = None) -> dict[str, Any]:
        """Compact and lossless: the edges are left out when they equal `known_edges` (the run header's: the reader
        puts them back), zero counts before the first and after the last non-zero one are left out ("first" is
        the bin of the first count listed), and so are zero under/over/zeros."""
        d: dict[str, Any] = {}
        if known_edges is None or not (self.edges is known_edges or np.array_equal(self.edges, known_edges)):
            d["edges"] = _float_list(self.edges)
        counts = np.asarray(self.counts, dtype=np.int64)
        nonzero = np.flatnonzero(counts)
        first, stop = (int(nonzero[0]), int(nonzero[-1]) + 1) if len(nonzero) else (0, 0)
        if first:
            d["first"] = first
        d["counts"] = counts[first:stop].tolist()
        for k in ("under", "over"):
            if getattr(self, k):
                d[k] = int(getattr(self, k))
        d["zeros"] = int(self.zeros)  # always written: exact zeros are news (0 for an activation histogram)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], known_edges: np.ndarray | None = None) -> "Hist":
        if "edges" in d:
            edges = np.array([_unnum(e) for e in d["edges"]], dtype=np.float64)
        elif known_edges is not None:
            edges = known_edges
        else:
            raise ValueError("a histogram without edges, and none in the run header")
        counts = np.zeros(len(edges) - 1, dtype=np.int64)
        first, listed = int(d.get("first", 0)), d["counts"]
        if first < 0 or first + len(listed) > len(counts):
            raise ValueError(f"{first} + {len(listed)} counts for {len(counts)} bins")
        counts[first:first + len(listed)] = listed
        return cls(edges, counts, int(d.get("under", 0)), int(d.get("over", 0)), int(d.get("zeros", 0)))


# ---------------------------------------------------------------------------------------------- records
@dataclass(frozen=True, eq=False)
class LayerStats:
    """One Linear/Conv layer at one snapshot. The activation fields are None for a layer with no activation
    after it (the output layer)."""

    name: str
    grad_norm: float  # L2 norm of the weight gradient
    grad_mean_abs: float  # mean |weight gradient|
    weight_norm: float
    grad_data_ratio: float  # grad.std() / weight.std()
    update_data_ratio: float  # update.std() / w_before.std(); plain SGD: the intended step lr * momentum buffer
    out_grad_norm: float | None  # L2 norm of dLoss/d(layer output), the back-propagated gradient
    grad_hist: Hist | None  # all weight gradients of the layer on a log10 |g| axis
    activation: str | None = None
    act_mean: float | None = None
    act_std: float | None = None
    saturated_frac: float | None = None  # outputs where |act'(z)| < 5% of its largest magnitude
    dead_frac: float | None = None  # units saturated on every example of the batch
    act_hist: Hist | None = None
    # 15th, 50th and 85th percentiles of the activation's input z (the pre-activation) over the batch, as in Ioffe &
    # Szegedy's Figure 1 (None in files written before they were probed)
    pre_p15: float | None = None
    pre_p50: float | None = None
    pre_p85: float | None = None

    _FLOATS = ("grad_norm", "grad_mean_abs", "weight_norm", "grad_data_ratio", "update_data_ratio",
               "out_grad_norm", "act_mean", "act_std", "saturated_frac", "dead_frac", "pre_p15", "pre_p50", "pre_p85")

    @property
    def is_hidden(self) -> bool:
        return self.act_hist is not None

    @property
    def finite(self) -> bool:
        return all(math.isfinite(getattr(self, k)) for k in self._FLOATS if getattr(self, k) is not None)

    def to_json(self, header: "RunRecord | None" = None) -> dict[str, Any]:
        """With the run header, histograms whose edges it holds are written without them."""
        d: dict[str, Any] = {"name": self.name}
        if self.activation is not None:
            d["activation"] = self.activation
        for k in self._FLOATS:
            v = getattr(self, k)
            if v is not None:
                d[k] = _num32(v)
        if self.grad_hist is not None:
            d["grad_hist"] = self.grad_hist.to_json(header.grad_edges if header else None)
        if self.act_hist is not None:
            d["act_hist"] = self.act_hist.to_json(header.act_edges_for(self.activation) if header else None)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], header: "RunRecord | None" = None) -> "LayerStats":
        kw: dict[str, Any] = {k: (None if d.get(k) is None else float(_unnum(d[k]))) for k in cls._FLOATS}
        act = d.get("activation")
        return cls(name=d["name"], activation=act,
                   grad_hist=Hist.from_json(d["grad_hist"], header.grad_edges if header else None)
                   if "grad_hist" in d else None,
                   act_hist=Hist.from_json(d["act_hist"], header.act_edges_for(act) if header else None)
                   if "act_hist" in d else None, **kw)


@dataclass(frozen=True, eq=False)
class LayerInfo:
    """A probed layer as the run header describes it: the model's own name, the module's kind ("Linear",
    "Conv2d"), and the activation that follows it at the start of the run (None for none, e.g. the output)."""

    name: str
    kind: str = "Linear"
    activation: str | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.activation is not None:
            d["activation"] = self.activation
        return d

    @classmethod
    def from_json(cls, d: Any) -> "LayerInfo":
        if isinstance(d, str):  # schema 1: names only
            return cls(d)
        return cls(d["name"], d.get("kind", "Linear"), d.get("activation"))


@dataclass(frozen=True, eq=False)
class RunRecord:
    """First record of a run (and of every restart). It describes any run, not only vgtui's MLP: `source` says
    what produced it ("vgtui" for vgtui's own trainer, "vgtui.watch" for a user's loop), `model` describes the
    network in a few words, `layers` names each probed layer; `config` (vgtui's RunConfig as a dict) is there
    only when vgtui's trainer produced the run. 0 means unknown for the sizes and step counts."""

    layers: tuple[LayerInfo, ...]
    device: str
    version: str
    config: dict[str, Any] | None = None
    source: str = "vgtui"
    model: str = ""
    dataset: str | None = None
    device_name: str | None = None  # e.g. the GPU's name
    steps_per_epoch: int = 0
    total_steps: int = 0
    train_size: int = 0
    test_size: int = 0
    probe_every: int | None = None  # the snapshot cadence in steps (with probe_min_interval_s: at least that far apart)
    notice: str | None = None  # e.g. the fallback to mnist-5k
    started: str | None = None  # wall-clock start, ISO 8601
    pid: int | None = None  # the writing process
    grad_edges: np.ndarray | None = None  # the weight-gradient histograms' bin edges (log10 |g|), fixed per run
    act_edges: dict[str, np.ndarray] | None = None  # the activation histograms' bin edges, per activation
    schema: int = SCHEMA_VERSION
    probe_min_interval_s: float | None = None  # set when the cadence is automatic: snapshots at least this far apart
    branch: str | None = None  # "B": the header of a fork's branch (see BRANCHES); None: the run itself
    forked_at: int | None = None  # the step whose state this run starts from: a branch's fork, or a kept branch
    type: str = field(default="run", init=False)

    def __post_init__(self) -> None:  # names alone are accepted (and schema-1 headers hold only names)
        object.__setattr__(self, "layers", tuple(l if isinstance(l, LayerInfo) else LayerInfo.from_json(l)
                                                 for l in self.layers))
        if self.grad_edges is not None:
            object.__setattr__(self, "grad_edges", np.asarray(self.grad_edges, dtype=np.float64))
        if self.act_edges is not None:
            object.__setattr__(self, "act_edges", {k: np.asarray(v, dtype=np.float64)
                                                   for k, v in self.act_edges.items()})

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(l.name for l in self.layers)

    def act_edges_for(self, activation: str | None) -> np.ndarray | None:
        """The activation histogram's edges for that activation, if the header holds them."""
        return (self.act_edges or {}).get(activation) if activation else None


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The probes at step `step`: gradients of that step's backward pass, before the optimiser applied them."""

    step: int
    epoch: int
    elapsed_s: float
    loss: float  # this step's loss
    loss_avg: float  # mean training loss since the previous snapshot
    steps_per_s: float  # since the previous snapshot (0 when unknown)
    activation: str
    layers: tuple[LayerStats, ...]
    metrics: dict[str, float] | None = None  # the user's own numbers (vgtui.watch's metrics=), e.g. {"acc": 0.9}
    branch: str | None = None
    type: str = field(default="snapshot", init=False)

    def layer(self, name: str) -> LayerStats:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)

    def ratio(self, metric: str = "grad_norm") -> float:
        """First layer's metric over the last layer's: ~1e-4 when gradients vanish."""
        a, b = getattr(self.layers[0], metric), getattr(self.layers[-1], metric)
        return a / b if b else math.inf


@dataclass(frozen=True, eq=False)
class EpochRecord:
    epoch: int
    step: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    elapsed_s: float
    branch: str | None = None
    type: str = field(default="epoch", init=False)


@dataclass(frozen=True, eq=False)
class EventRecord:
    """A live change to the running model, e.g. {"activation": "tanh"}."""

    step: int
    set: dict[str, Any]
    elapsed_s: float = 0.0
    branch: str | None = None
    type: str = field(default="event", init=False)


END_STATUSES = ("completed", "interrupted", "diverged", "failed")


@dataclass(frozen=True, eq=False)
class EndRecord:
    status: str  # one of END_STATUSES
    steps: int
    elapsed_s: float
    message: str = ""
    layer: str | None = None  # where divergence was first seen
    traceback: str | None = None  # for status "failed"
    branch: str | None = None
    type: str = field(default="end", init=False)


# ---------------------------------------------------------------------------------------------- progress
@dataclass(frozen=True, eq=False)
class ProgressRecord:
    """A cheap tick between snapshots (a few a second; in the metrics file at most once a second): where the run
    is and how fast it goes, so counters and the loss move without waiting for the next snapshot."""

    step: int
    epoch: int
    elapsed_s: float
    loss: float  # mean training loss since the previous progress record
    steps_per_s: float  # since the previous progress record (0 when unknown)
    branch: str | None = None
    type: str = field(default="progress", init=False)


def _progress_to_json(rec: ProgressRecord) -> dict[str, Any]:
    return {"type": "progress", "step": rec.step, "epoch": rec.epoch, "elapsed_s": _num(rec.elapsed_s),
            "loss": _num(rec.loss), "steps_per_s": _num(rec.steps_per_s)}


def _progress_from_json(d: dict[str, Any]) -> ProgressRecord:
    return ProgressRecord(step=d["step"], epoch=d["epoch"], elapsed_s=_unnum(d["elapsed_s"]),
                          loss=_unnum(d["loss"]), steps_per_s=_unnum(d.get("steps_per_s", 0.0)))


Record = Union[RunRecord, Snapshot, EpochRecord, EventRecord, EndRecord, ProgressRecord]


def to_json(rec: Record, header: RunRecord | None = None) -> dict[str, Any]:
    """The JSON object of a record, "type" first and then a branch's "branch" (readers index a file by its lines'
    first bytes). With the run's header, a snapshot leaves out the histogram edges that the header holds."""
    d = _to_json(rec, header)
    if getattr(rec, "branch", None):
        d = {"type": d.pop("type"), "branch": rec.branch, **d}
    return d


def _to_json(rec: Record, header: RunRecord | None) -> dict[str, Any]:
    if isinstance(rec, ProgressRecord):
        return _progress_to_json(rec)
    if isinstance(rec, Snapshot):
        return {"type": "snapshot", "step": rec.step, "epoch": rec.epoch, "elapsed_s": _num(rec.elapsed_s),
                "loss": _num32(rec.loss), "loss_avg": _num32(rec.loss_avg), "steps_per_s": _num(rec.steps_per_s),
                "activation": rec.activation, "layers": [l.to_json(header) for l in rec.layers],
                **({"metrics": {k: _num(v) for k, v in rec.metrics.items()}} if rec.metrics else {})}
    if isinstance(rec, RunRecord):
        d = {"type": "run", "schema": rec.schema, "version": rec.version, "source": rec.source}
        for k in ("model", "config", "dataset", "device", "device_name", "steps_per_epoch", "total_steps",
                  "train_size", "test_size", "probe_every", "probe_min_interval_s", "notice", "started", "pid",
                  "forked_at"):
            v = getattr(rec, k)
            if v is not None and v != "":
                d[k] = v
        d["layers"] = [l.to_json() for l in rec.layers]
        if rec.grad_edges is not None:
            d["grad_edges"] = _float_list(rec.grad_edges)
        if rec.act_edges is not None:
            d["act_edges"] = {k: _float_list(v) for k, v in rec.act_edges.items()}
        return d
    if isinstance(rec, EpochRecord):
        return {"type": "epoch", "epoch": rec.epoch, "step": rec.step, "train_loss": _num(rec.train_loss),
                "train_acc": _num(rec.train_acc), "test_loss": _num(rec.test_loss),
                "test_acc": _num(rec.test_acc), "elapsed_s": _num(rec.elapsed_s)}
    if isinstance(rec, EventRecord):
        return {"type": "event", "step": rec.step, "elapsed_s": _num(rec.elapsed_s), "set": rec.set}
    if isinstance(rec, EndRecord):
        d = {"type": "end", "status": rec.status, "steps": rec.steps, "elapsed_s": _num(rec.elapsed_s),
             "message": rec.message}
        if rec.layer:
            d["layer"] = rec.layer
        if rec.traceback:
            d["traceback"] = rec.traceback
        return d
    raise TypeError(f"not a record: {rec!r}")


def record_from_json(d: dict[str, Any], header: RunRecord | None = None) -> Record:
    """The record of a JSON object; a snapshot's histograms without edges take them from the run's `header`
    (its branch's header, for a branch's snapshot). Raises KeyError, TypeError or ValueError for an object that
    is not a record."""
    rec = _record_from_json(d, header)
    branch = d.get("branch")
    if branch is not None:
        if branch not in BRANCHES:
            raise ValueError(f"unknown branch {branch!r}")
        object.__setattr__(rec, "branch", branch)
    return rec


def _record_from_json(d: dict[str, Any], header: RunRecord | None) -> Record:
    t = d.get("type")
    if t == "progress":
        return _progress_from_json(d)
    if t == "snapshot":
        return Snapshot(step=d["step"], epoch=d["epoch"], elapsed_s=_unnum(d["elapsed_s"]), loss=_unnum(d["loss"]),
                        loss_avg=_unnum(d.get("loss_avg", d["loss"])), steps_per_s=_unnum(d.get("steps_per_s", 0.0)),
                        activation=d.get("activation", ""),
                        layers=tuple(LayerStats.from_json(l, header) for l in d["layers"]),
                        metrics={k: _unnum(v) for k, v in d["metrics"].items()} if d.get("metrics") else None)
    if t == "run":
        return RunRecord(layers=tuple(LayerInfo.from_json(l) for l in d["layers"]), device=d.get("device", ""),
                         version=d.get("version", ""), config=d.get("config"), source=d.get("source", "vgtui"),
                         model=d.get("model", ""), dataset=d.get("dataset"), device_name=d.get("device_name"),
                         steps_per_epoch=d.get("steps_per_epoch", 0), total_steps=d.get("total_steps", 0),
                         train_size=d.get("train_size", 0), test_size=d.get("test_size", 0),
                         probe_every=d.get("probe_every", (d.get("config") or {}).get("probe_every")),
                         notice=d.get("notice"), started=d.get("started"), pid=d.get("pid"),
                         grad_edges=_edges(d.get("grad_edges")),
                         act_edges={k: _edges(v) for k, v in d["act_edges"].items()} if d.get("act_edges") else None,
                         schema=d.get("schema", 1), probe_min_interval_s=d.get("probe_min_interval_s"),
                         forked_at=d.get("forked_at"))
    if t == "epoch":
        return EpochRecord(**{k: _unnum(d[k]) for k in ("epoch", "step", "train_loss", "train_acc", "test_loss",
                                                          "test_acc", "elapsed_s")})
    if t == "event":
        return EventRecord(step=d["step"], set=d["set"], elapsed_s=_unnum(d.get("elapsed_s", 0.0)))
    if t == "end":
        return EndRecord(status=d["status"], steps=d["steps"], elapsed_s=_unnum(d["elapsed_s"]),
                         message=d.get("message", ""), layer=d.get("layer"), traceback=d.get("traceback"))
    raise ValueError(f"unknown record type {t!r}")


def _edges(v: list | None) -> np.ndarray | None:
    return None if v is None else np.array([_unnum(e) for e in v], dtype=np.float64)


class RecordEncoder:
    """Records to lines of the metrics file, one run after another: it remembers the latest run header, so that
    snapshots leave out the histogram edges it holds. One encoder per file."""

    def __init__(self) -> None:
        self.headers: dict[str | None, RunRecord] = {}  # the latest header of the run (None) and of each branch

    @property
    def header(self) -> RunRecord | None:
        """The latest run header (not a branch's)."""
        return self.headers.get(None)

    def line(self, rec: Record) -> str:
        branch = getattr(rec, "branch", None)
        if isinstance(rec, RunRecord):
            self.headers[branch] = rec
        return json.dumps(to_json(rec, self.headers.get(branch)), separators=(",", ":"), allow_nan=False) + "\n"


# ---------------------------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Pause:
    paused: bool  # True pauses, False resumes


@dataclass(frozen=True)
class StepOnce:
    """One training step while paused."""


@dataclass(frozen=True)
class SetActivation:
    """Swap the activation of the running model; its weights are kept. In a fork, `branch` "B" changes B only."""

    name: str
    branch: str | None = None


@dataclass(frozen=True)
class SetLR:
    """Set the learning rate of the running optimiser; the weights are kept (a fork's branch B)."""

    lr: float
    branch: str | None = None


@dataclass(frozen=True)
class Fork:
    """`on`: copy the running run into branch B (weights, optimiser state, step, data order), trained in lockstep
    with it on the same batches. Off: end the fork, keeping branch `keep` ("A": the run goes on as it was;
    "B": the run goes on from B's state, under a new run header)."""

    on: bool
    keep: str = "A"


@dataclass(frozen=True)
class SetSpeedCap:
    steps_per_s: float | None  # None: as fast as it goes


@dataclass(frozen=True)
class Restart:
    """Start again from fresh weights with this configuration (as a RunConfig.to_dict()). In a fork, `branch`
    "B": A and B both start again from the same seed, B with this configuration, and stay forked."""

    config: dict[str, Any]
    branch: str | None = None


@dataclass(frozen=True)
class Stop:
    """End the run (status "interrupted" if it had not ended) and return. `message` says why in the end record:
    "quit", "hangup: the terminal went away (SIGHUP)", "the viewer process went away"."""

    message: str = "stopped"


# ---------------------------------------------------------------------------------------------- notices
@dataclass(frozen=True, eq=False)
class NoticeRecord:
    """Something the viewer must show that is not part of the run's data: e.g. the metrics file could not be
    written any more (so this record never reaches the file that failed). `level`: "info", "warning", "error"."""

    message: str
    level: str = "warning"
    step: int = 0
    type: str = field(default="notice", init=False)
    ephemeral = True  # for a live viewer only: the writer skips it


@dataclass(frozen=True, eq=False)
class StatusRecord:
    """The trainer's acknowledgement of a pause or resume: the viewer shows paused/running from these, never
    from the key it sent. Ephemeral, like NoticeRecord."""

    paused: bool
    step: int = 0
    type: str = field(default="status", init=False)
    ephemeral = True


Command = Union[Pause, StepOnce, SetActivation, SetLR, SetSpeedCap, Restart, Stop, Fork]
