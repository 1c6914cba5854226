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

Schema 3 adds branches: `f` in the UI forks a live run, and the fork's other networks (branches B, C, D: up to
three beside the run) train in lockstep with the run (branch A). Every record of a branch carries its id
(`"branch": "B"`) right after its type, starting with its own run header (`forked_at`: the step it was copied at);
records without it are the run's own. A reader files a branch's records under the run they forked from
(`RunIndex.branches`, `MetricsRun.branches`). Files with branch B only (older vgtui) read as before.

An end record carries why the run ended as data (`cause`, one of END_CAUSES: "exploded", "hangup", "disk-full",
...), written right after its status; its message is for people only. The schema stays 3: the field is optional
(a record without it, from an older vgtui, is read with a cause derived from its status alone) and older readers,
which refuse a newer schema, ignore a field they do not know.

The derivative probe adds, in the same way (optional, schema still 3): a layer's `deriv_mean`, `deriv_max`,
`deriv_hist` and `pre_grad_norm`, and the header's `deriv_edges` (the derivative histograms' edges, DERIV_EDGES). A
file without them reads as before (the fields are None).

Reading is strict, because a metrics file is data from another machine: `record_from_json` checks every field (its
type; finite numbers where they must be; steps, epochs and counts whole numbers in 0..MAX_STEP; histogram counts
that fit their edges) and makes every string safe to show (`safe_text`: control characters, DEL, C1, bidi controls
and lone surrogates become visible escapes such as `\\x1b`), so that damage is found when a line is read, and no
consumer (the screen, the no-terminal summary, messages, the CSV) gets a string that acts on a terminal.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

SCHEMA_VERSION = 3
# The derivative histograms' fixed bins: |act'(z)| / the activation's largest |act'|, over [0, 1] in 16 bins whose
# edges (multiples of 1/16) are exact in float32 and float64 alike, so a count never depends on the precision.
DERIV_BINS = 16
DERIV_EDGES = np.linspace(0.0, 1.0, DERIV_BINS + 1)
# A snapshot's `device` (CUDA runs): memory the tensors use and the allocator holds, the device's total (bytes),
# and its utilisation over the last sample period (percent, when NVML is there to ask). Each is optional.
DEVICE_FIELDS = ("mem_allocated", "mem_reserved", "mem_total", "util")
BRANCHES = ("B", "C", "D")  # the names a fork's branch records carry; the run itself (branch A) carries none


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


# ---------------------------------------------------------------------------------------------- reading checks
# A metrics file is data from another machine: `record_from_json` checks every field's type and range (a damaged
# record is found when it is read, not when it is drawn) and makes every string it holds safe to show.
MAX_STEP = 2**62  # steps, epochs, counts and sizes read from a file lie in 0..MAX_STEP
# Characters that act on a terminal or reorder the text around them: C0 controls (newline and tab too), DEL, C1
# controls, the bidirectional marks, embeddings, overrides and isolates (U+061C, U+200E/F, U+202A..E,
# U+2066..9), the line and paragraph separators, and lone surrogates (which cannot even be encoded).
UNSAFE_RANGES = ((0x00, 0x1F), (0x7F, 0x9F), (0x061C, 0x061C), (0x200E, 0x200F), (0x2028, 0x202E), (0x2066, 0x2069),
                 (0xD800, 0xDFFF))  # inclusive; the UI draws the same set visible (vgtui.ui.state.shown)
_UNSAFE = re.compile("[" + "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in UNSAFE_RANGES) + "]")


def _escape(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def safe_text(s: str) -> str:
    """`s` with every character that could act on a terminal made visible as an escape (ESC as the four characters
    \\x1b, U+202E as \\u202e); any other text is unchanged. Every string decoded from a metrics file passes here."""
    return _UNSAFE.sub(_escape, s) if _UNSAFE.search(s) else s


def _show(v: Any) -> str:
    """A value quoted in a message: short, and safe to show."""
    r = f"'{v}'" if isinstance(v, str) else repr(v)
    return safe_text(r if len(r) <= 40 else r[:37] + "...")


def _clean(v: Any, what: str = "value", depth: int = 0) -> Any:
    """A JSON value with every string in it (dict keys too) made safe to show."""
    if isinstance(v, str):
        return safe_text(v)
    if depth > 20:
        raise ValueError(f"{what} is nested too deeply")
    if isinstance(v, dict):
        return {safe_text(k): _clean(x, what, depth + 1) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x, what, depth + 1) for x in v]
    return v


def _int(v: Any, what: str, lo: int = 0, hi: int = MAX_STEP) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{what} is {_show(v)}, not a whole number")
    if not lo <= v <= hi:
        raise ValueError(f"{what} is {_show(v)}, outside {lo}..{hi}")
    return v


def _opt_int(v: Any, what: str, lo: int = 0) -> int | None:
    return None if v is None else _int(v, what, lo)


def _float(v: Any, what: str, finite: bool = False) -> float:
    """A number as written by _num: a JSON number, or "nan", "inf", "-inf" (refused where `finite`)."""
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):
        x = float(v)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        x = float(v)  # OverflowError for an integer past float's range
    else:
        raise ValueError(f"{what} is {_show(v)}, not a number")
    if finite and not math.isfinite(x):
        raise ValueError(f"{what} is {_show(v)}, not a finite number")
    return x


def _opt_float(v: Any, what: str, finite: bool = False) -> float | None:
    return None if v is None else _float(v, what, finite)


def _str(v: Any, what: str) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{what} is {_show(v)}, not a string")
    return safe_text(v)


def _opt_str(v: Any, what: str) -> str | None:
    return None if v is None else _str(v, what)


def _dict(v: Any, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError(f"{what} is {_show(v)}, not a JSON object")
    return v


def _list(v: Any, what: str, empty: bool = True) -> list:
    if not isinstance(v, list):
        raise ValueError(f"{what} is {_show(v)}, not a list")
    if not v and not empty:
        raise ValueError(f"{what} is empty")
    return v


def _edges(v: Any, what: str = "edges") -> np.ndarray:
    """Histogram bin edges: at least two finite numbers, increasing."""
    e = np.array([_float(x, what, finite=True) for x in _list(v, what)], dtype=np.float64)
    if len(e) < 2 or not (np.diff(e) > 0).all():
        raise ValueError(f"{what}: {len(e)} edges, not two or more increasing ones")
    return e


def _config(v: Any) -> dict[str, Any] | None:
    """A run's configuration: a JSON object whose known options (RunConfig's) have their type."""
    if v is None:
        return None
    cfg = _clean(_dict(v, "config"), "config")
    from vgtui.core.config import RunConfig  # core: no torch, no textual

    for f in dataclasses.fields(RunConfig):
        if f.name not in cfg:
            continue
        x, what, t = cfg[f.name], f"config.{f.name}", str(f.type)
        if x is None and "None" in t:
            continue
        if t.startswith("bool"):
            if not isinstance(x, bool):
                raise ValueError(f"{what} is {_show(x)}, not true or false")
        elif t.startswith("int"):
            _int(x, what, -2**63, 2**63)
        elif t.startswith("float"):
            _float(x, what, finite=True)
        elif t.startswith("str"):
            _str(x, what)
    return cfg


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
    def from_json(cls, d: dict[str, Any], known_edges: np.ndarray | None = None, what: str = "histogram") -> "Hist":
        """Checked: edges (its own, or `known_edges`) for its counts, counts that are whole numbers >= 0."""
        d = _dict(d, what)
        if d.get("edges") is not None:
            edges = _edges(d["edges"], f"{what}.edges")
        elif known_edges is not None:
            edges = known_edges
        else:
            raise ValueError(f"{what} without edges, and none in the run header")
        listed = _list(d["counts"], f"{what}.counts")
        if not all(type(c) is int and 0 <= c <= MAX_STEP for c in listed):  # noqa: E721 (bool is not a count)
            for c in listed:
                _int(c, f"{what}.counts")  # raises, naming the first bad count
        first = _int(d.get("first", 0), f"{what}.first")
        counts = np.zeros(len(edges) - 1, dtype=np.int64)
        if first + len(listed) > len(counts):
            raise ValueError(f"{what}: {first} + {len(listed)} counts for {len(counts)} bins")
        under, over, zeros = (_int(d.get(k, 0), f"{what}.{k}") for k in ("under", "over", "zeros"))
        if sum(listed) + under + over + zeros > MAX_STEP:
            raise ValueError(f"{what}: more than {MAX_STEP} values counted")
        counts[first:first + len(listed)] = listed
        return cls(edges, counts, under, over, zeros)


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
    grad_hist: Hist | None  # the weight gradients on a log10 |g| axis (over 32,768 weights: a sample, scaled)
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
    # The activation's derivative over the batch (None in files written before it was probed, and for a layer with
    # no activation after it): the mean of |act'(z)|, the largest |act'| the activation has (0.25 for the sigmoid,
    # 1 for tanh and relu), and the histogram of |act'(z)| / deriv_max on DERIV_EDGES (values above 1: `over`)
    deriv_mean: float | None = None
    deriv_max: float | None = None
    deriv_hist: Hist | None = None
    # L2 norm of dLoss/dz, the gradient at the activation's input z (the layer's own output before its activation);
    # out_grad_norm is the gradient after the activation. None for a layer with no activation after it (its
    # out_grad_norm is already the gradient at z) and in older files.
    pre_grad_norm: float | None = None

    _FLOATS = ("grad_norm", "grad_mean_abs", "weight_norm", "grad_data_ratio", "update_data_ratio",
               "out_grad_norm", "act_mean", "act_std", "saturated_frac", "dead_frac", "pre_p15", "pre_p50", "pre_p85",
               "deriv_mean", "deriv_max", "pre_grad_norm")

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
        if self.deriv_hist is not None:
            d["deriv_hist"] = self.deriv_hist.to_json(header.deriv_edges if header else None)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], header: "RunRecord | None" = None) -> "LayerStats":
        d = _dict(d, "a layer")
        name = _str(d["name"], "a layer's name")
        kw: dict[str, Any] = {k: _opt_float(d.get(k), f"layer {name}: {k}") for k in cls._FLOATS}
        act = _opt_str(d.get("activation"), f"layer {name}: activation")
        gh, ah, dh = d.get("grad_hist"), d.get("act_hist"), d.get("deriv_hist")
        return cls(name=name, activation=act,
                   grad_hist=None if gh is None else Hist.from_json(gh, header.grad_edges if header else None,
                                                                    f"layer {name}: grad_hist"),
                   act_hist=None if ah is None else Hist.from_json(ah, header.act_edges_for(act) if header else None,
                                                                   f"layer {name}: act_hist"),
                   deriv_hist=None if dh is None else Hist.from_json(dh, header.deriv_edges if header else None,
                                                                     f"layer {name}: deriv_hist"), **kw)


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
            return cls(safe_text(d))
        d = _dict(d, "a layer")
        return cls(_str(d["name"], "a layer's name"), _str(d.get("kind", "Linear"), "a layer's kind"),
                   _opt_str(d.get("activation"), "a layer's activation"))


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
    deriv_edges: np.ndarray | None = None  # the derivative histograms' bin edges (|act'| / its maximum): DERIV_EDGES
    # where the viewer draws the user's metrics (vgtui.watch(axes=...)): name -> "acc" | "loss" | "log" | "linear"
    # (METRIC_AXES); optional, left out when not said (the viewer then decides by name, never by range alone)
    axes: dict[str, str] | None = None
    type: str = field(default="run", init=False)

    def __post_init__(self) -> None:  # names alone are accepted (and schema-1 headers hold only names)
        object.__setattr__(self, "layers", tuple(l if isinstance(l, LayerInfo) else LayerInfo.from_json(l)
                                                 for l in self.layers))
        if self.grad_edges is not None:
            object.__setattr__(self, "grad_edges", np.asarray(self.grad_edges, dtype=np.float64))
        if self.act_edges is not None:
            object.__setattr__(self, "act_edges", {k: np.asarray(v, dtype=np.float64)
                                                   for k, v in self.act_edges.items()})
        if self.deriv_edges is not None:
            object.__setattr__(self, "deriv_edges", np.asarray(self.deriv_edges, dtype=np.float64))

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(l.name for l in self.layers)

    def act_edges_for(self, activation: str | None) -> np.ndarray | None:
        """The activation histogram's edges for that activation, if the header holds them."""
        return (self.act_edges or {}).get(activation) if activation else None

    def epochs(self, fallback: int) -> int:
        """The epochs this run trains: its config's, or fewer when --max-steps stops it earlier (200 steps of 40 an
        epoch: 5, not the 10 of --epochs); `fallback` where the header does not say."""
        if self.steps_per_epoch <= 0 or self.total_steps <= 0:
            return int(self.config.get("epochs", fallback)) if self.config else fallback
        return -(-self.total_steps // self.steps_per_epoch)


MAX_RANKS = 65536  # a snapshot's `ranks` list: one entry per rank of the job, at most this many


@dataclass(frozen=True, eq=False)
class RankStats:
    """One rank's view at a snapshot of a distributed job (vgtui.watch): its loss on its own micro-batch, its
    probed step's time (forward to optimiser step, host clock), the time since its previous step ended (waiting
    for data, say), a checksum of its replica's probed weights (None where each rank holds a shard: FSDP), and
    why it departs from the others (None when it does not)."""

    rank: int
    loss: float
    step_s: float
    wait_s: float
    checksum: float | None = None
    flag: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = {"rank": self.rank, "loss": _num32(self.loss), "step_s": _num(self.step_s), "wait_s": _num(self.wait_s)}
        if self.checksum is not None:
            d["checksum"] = _num(self.checksum)
        if self.flag:
            d["flag"] = self.flag
        return d

    @classmethod
    def from_json(cls, d: Any) -> "RankStats":
        d = _dict(d, "ranks[]")
        return cls(rank=_int(d["rank"], "rank", 0, MAX_RANKS), loss=_float(d["loss"], "rank loss"),
                   step_s=_float(d.get("step_s", "nan"), "step_s"), wait_s=_float(d.get("wait_s", "nan"), "wait_s"),
                   checksum=_opt_float(d.get("checksum"), "checksum"), flag=_opt_str(d.get("flag"), "flag"))


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
    device: dict[str, float] | None = None  # an accelerator's state at the snapshot (DEVICE_FIELDS); None on a CPU
    ranks: tuple[RankStats, ...] | None = None  # a distributed job's ranks, each one's view (vgtui.watch)
    type: str = field(default="snapshot", init=False)

    def departed(self) -> list[RankStats]:
        """The ranks flagged as departing from the others at this snapshot."""
        return [r for r in self.ranks or () if r.flag]

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
# Why a run ended, as data (`EndRecord.cause`): decisions read this field, never the message, which is for people.
# Each cause belongs to one status; a newer vgtui may add causes (a reader keeps an unknown one as it is).
END_CAUSES: dict[str, str] = {
    "completed": "completed",  # every epoch (or --max-steps) trained
    "diverged": "diverged",  # non-finite loss or gradients (`layer` says where first)
    "exploded": "diverged",  # a training loss far above chance without a NaN
    "error": "failed",  # training raised an exception (`traceback`)
    "refused": "failed",  # the run could not start (no CUDA, missing data, a restart's bad configuration)
    "interrupted": "interrupted",  # Ctrl+C (SIGINT), or a KeyboardInterrupt in the user's own loop (vgtui.watch)
    "terminated": "interrupted",  # SIGTERM
    "hangup": "interrupted",  # SIGHUP: the terminal went away
    "stdout-closed": "interrupted",  # standard output was closed (a broken pipe: `| head`)
    "disk-full": "interrupted",  # the metrics file could not be written any more (a full disk, an I/O error)
    "quit": "interrupted",  # the person quit the viewer
    "viewer-gone": "interrupted",  # the viewer process went away (the trainer's command pipe closed)
    "killed": "interrupted",  # the viewer stopping the run had to kill its trainer (or saw it die); it wrote this
    "trainer-died": "failed",  # the trainer process died without a word (killed, out of memory); the viewer wrote this
    "restarted": "interrupted",  # a restart from the viewer ended the run (a new run header follows)
    "fork-ended": "interrupted",  # the fork ended and this branch was not kept (or the run it came from ended)
    "fork-kept": "completed",  # the fork ended and this branch goes on as the run (under a new run header)
}
_CAUSE_OF_STATUS = {"completed": "completed", "diverged": "diverged", "failed": "error", "interrupted": "interrupted"}
_CAUSE_TEXT = re.compile(r"[a-z][a-z0-9-]{0,39}")


def cause_of_status(status: str) -> str:
    """The cause a record without one (written before causes were recorded) is read with: from its status alone."""
    return _CAUSE_OF_STATUS.get(status, "interrupted")


@dataclass(frozen=True, eq=False)
class EndRecord:
    status: str  # one of END_STATUSES
    steps: int
    elapsed_s: float
    message: str = ""  # for people: decisions read `cause`
    layer: str | None = None  # where divergence was first seen
    traceback: str | None = None  # for status "failed"
    branch: str | None = None
    cause: str = ""  # one of END_CAUSES ("" when made: the status's own, see cause_of_status)
    type: str = field(default="end", init=False)

    def __post_init__(self) -> None:
        if not self.cause:
            object.__setattr__(self, "cause", cause_of_status(self.status))


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


# ---------------------------------------------------------------------------------------------- spikes
SPIKE_KINDS = ("spike", "explosion")  # a finite spike; an explosion: the run then ended diverged
SPIKE_METRICS = ("grad_norm", "update_norm", "step_norm", "weight_norm")  # the flight recorder's per-layer numbers
MAX_SPIKE_WINDOW = 4096  # steps in a spike record's window, at most


@dataclass(frozen=True, eq=False)
class Lead:
    """A layer whose own number (`metric`, one of SPIKE_METRICS) first left its band at `step`: `lead` = the spike's
    step - `step` (> 0: before the loss; 0: at the same step; < 0: after it), `score` its robust score there."""

    layer: str
    metric: str
    step: int
    lead: int
    score: float


@dataclass(frozen=True, eq=False)
class SpikeRecord:
    """The flight recorder's account of a loss spike (vgtui.engine.flight): `step` is where the loss left its band,
    `score` its robust score there ((x - median) / (1.4826 * MAD) over the window before). `steps` and `loss` are
    the window around it (before and after), `series` one value per window step for each metric ("grad_norm",
    "update_norm", "step_norm") and layer, `leaders` the layers ranked by when their own numbers first left their
    band. `kind` "explosion": the loss went non-finite or the run ended diverged right after."""

    step: int
    kind: str
    score: float
    steps: tuple[int, ...]
    loss: tuple[float, ...]
    series: dict[str, dict[str, tuple[float, ...]]]
    leaders: tuple[Lead, ...]
    elapsed_s: float = 0.0
    branch: str | None = None
    type: str = field(default="spike", init=False)

    @property
    def leader(self) -> Lead | None:
        return self.leaders[0] if self.leaders else None

    @property
    def ends_run(self) -> bool:
        """An explosion: the run's end record follows it and says how it ended."""
        return self.kind == "explosion"


def _spike_to_json(rec: SpikeRecord) -> dict[str, Any]:
    return {"type": "spike", "step": rec.step, "kind": rec.kind, "score": _num(rec.score),
            "elapsed_s": _num(rec.elapsed_s), "steps": list(rec.steps), "loss": [_num32(x) for x in rec.loss],
            "series": {m: {layer: [_num32(x) for x in v] for layer, v in by_layer.items()}
                       for m, by_layer in rec.series.items()},
            "leaders": [{"layer": l.layer, "metric": l.metric, "step": l.step, "lead": l.lead, "score": _num(l.score)}
                        for l in rec.leaders]}


def _spike_from_json(d: dict[str, Any]) -> SpikeRecord:
    step = _int(d["step"], "step")
    kind = _str(d["kind"], "kind")
    if kind not in SPIKE_KINDS:
        raise ValueError(f"kind {_show(kind)} is not one of {', '.join(SPIKE_KINDS)}")
    steps = tuple(_int(s, "steps") for s in _list(d["steps"], "steps", empty=False))
    if len(steps) > MAX_SPIKE_WINDOW:
        raise ValueError(f"steps: {len(steps)} steps, more than {MAX_SPIKE_WINDOW}")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError("steps are not increasing")
    if step not in steps:
        raise ValueError(f"step {step} is not in the window's steps")
    n = len(steps)

    def values(v: Any, what: str) -> tuple[float, ...]:
        xs = tuple(_float(x, what) for x in _list(v, what))
        if len(xs) != n:
            raise ValueError(f"{what}: {len(xs)} values for {n} steps")
        return xs

    loss = values(d["loss"], "loss")
    series: dict[str, dict[str, tuple[float, ...]]] = {}
    for m, by_layer in _dict(d.get("series", {}), "series").items():
        m = safe_text(m)
        series[m] = {safe_text(layer): values(v, f"series.{m}.{layer}")
                     for layer, v in _dict(by_layer, f"series.{m}").items()}
    leaders = []
    for i, l in enumerate(_list(d.get("leaders", []), "leaders")):
        l = _dict(l, f"leaders[{i}]")
        lead = Lead(layer=_str(l["layer"], f"leaders[{i}].layer"), metric=_str(l["metric"], f"leaders[{i}].metric"),
                    step=_int(l["step"], f"leaders[{i}].step"), lead=_int(l["lead"], f"leaders[{i}].lead", -MAX_STEP),
                    score=_float(l["score"], f"leaders[{i}].score"))
        if lead.lead != step - lead.step:
            raise ValueError(f"leaders[{i}]: lead {lead.lead} is not step {step} - {lead.step}")
        leaders.append(lead)
    return SpikeRecord(step=step, kind=kind, score=_float(d["score"], "score"), steps=steps, loss=loss,
                       series=series, leaders=tuple(leaders),
                       elapsed_s=_float(d.get("elapsed_s", 0.0), "elapsed_s", finite=True))


Record = Union[RunRecord, Snapshot, EpochRecord, EventRecord, EndRecord, ProgressRecord, SpikeRecord]


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
    if isinstance(rec, SpikeRecord):
        return _spike_to_json(rec)
    if isinstance(rec, Snapshot):
        return {"type": "snapshot", "step": rec.step, "epoch": rec.epoch, "elapsed_s": _num(rec.elapsed_s),
                "loss": _num32(rec.loss), "loss_avg": _num32(rec.loss_avg), "steps_per_s": _num(rec.steps_per_s),
                "activation": rec.activation, "layers": [l.to_json(header) for l in rec.layers],
                **({"metrics": {k: _num(v) for k, v in rec.metrics.items()}} if rec.metrics else {}),
                **({"device": {k: _num(v) for k, v in rec.device.items()}} if rec.device else {}),
                **({"ranks": [r.to_json() for r in rec.ranks]} if rec.ranks else {})}
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
        if rec.deriv_edges is not None:
            d["deriv_edges"] = _float_list(rec.deriv_edges)
        if rec.axes:
            d["axes"] = dict(rec.axes)
        return d
    if isinstance(rec, EpochRecord):
        return {"type": "epoch", "epoch": rec.epoch, "step": rec.step, "train_loss": _num(rec.train_loss),
                "train_acc": _num(rec.train_acc), "test_loss": _num(rec.test_loss),
                "test_acc": _num(rec.test_acc), "elapsed_s": _num(rec.elapsed_s)}
    if isinstance(rec, EventRecord):
        return {"type": "event", "step": rec.step, "elapsed_s": _num(rec.elapsed_s), "set": rec.set}
    if isinstance(rec, EndRecord):
        d = {"type": "end", "status": rec.status, "cause": rec.cause, "steps": rec.steps,
             "elapsed_s": _num(rec.elapsed_s), "message": rec.message}
        if rec.layer:
            d["layer"] = rec.layer
        if rec.traceback:
            d["traceback"] = rec.traceback
        return d
    raise TypeError(f"not a record: {rec!r}")


def record_from_json(d: dict[str, Any], header: RunRecord | None = None) -> Record:
    """The record of a JSON object; a snapshot's histograms without edges take them from the run's `header`
    (its branch's header, for a branch's snapshot). Every field is checked (its type, finite numbers where they
    must be, steps and counts in 0..MAX_STEP, histogram counts that fit their edges) and every string made safe
    to show (`safe_text`). Raises KeyError, TypeError or ValueError for an object that is not a record."""
    rec = _record_from_json(d, header)
    branch = d.get("branch")
    if branch is not None:
        if branch not in BRANCHES:
            raise ValueError(f"unknown branch {_show(branch)}")
        object.__setattr__(rec, "branch", branch)
    return rec


METRIC_AXES = ("acc", "loss", "log", "linear")  # a RunRecord's `axes` values


def _axes(v: Any) -> dict[str, str] | None:
    """A header's `axes`: metric name -> one of METRIC_AXES. An axis this vgtui does not know (a later one's) is left
    out, so that the metric gets the default place and the run still opens; `axes` that is not an object is damage."""
    if v is None:
        return None
    return {safe_text(k): a for k, a in _dict(v, "axes").items() if isinstance(a, str) and a in METRIC_AXES} or None


def _metrics(v: Any) -> dict[str, float] | None:
    if v is None:
        return None
    return {safe_text(k): _float(x, f"metric {k!r}") for k, x in _dict(v, "metrics").items()} or None


def _device(v: Any) -> dict[str, float] | None:
    """A snapshot's device state: the known fields, each a finite number >= 0 (a field this vgtui does not know,
    from a newer one, is left out)."""
    if v is None:
        return None
    d = _dict(v, "device")
    out = {k: _float(d[k], f"device.{k}", finite=True) for k in DEVICE_FIELDS if k in d}
    for k, x in out.items():
        if x < 0:
            raise ValueError(f"device.{k} is negative ({x!r})")
    return out or None


def _record_from_json(d: dict[str, Any], header: RunRecord | None) -> Record:
    t = d.get("type")
    if t == "progress":
        return ProgressRecord(step=_int(d["step"], "step"), epoch=_int(d["epoch"], "epoch"),
                              elapsed_s=_float(d["elapsed_s"], "elapsed_s", finite=True),
                              loss=_float(d["loss"], "loss"),
                              steps_per_s=_float(d.get("steps_per_s", 0.0), "steps_per_s"))
    if t == "snapshot":
        layers = _list(d["layers"], "layers", empty=False)
        return Snapshot(step=_int(d["step"], "step"), epoch=_int(d["epoch"], "epoch"),
                        elapsed_s=_float(d["elapsed_s"], "elapsed_s", finite=True), loss=_float(d["loss"], "loss"),
                        loss_avg=_float(d.get("loss_avg", d["loss"]), "loss_avg"),
                        steps_per_s=_float(d.get("steps_per_s", 0.0), "steps_per_s"),
                        activation=_str(d.get("activation", ""), "activation"),
                        layers=tuple(LayerStats.from_json(l, header) for l in layers),
                        metrics=_metrics(d.get("metrics")), device=_device(d.get("device")),
                        ranks=tuple(RankStats.from_json(r) for r in _list(d["ranks"], "ranks")[:MAX_RANKS]) or None
                        if d.get("ranks") is not None else None)
    if t == "run":
        config = _config(d.get("config"))
        act_edges = d.get("act_edges")
        return RunRecord(layers=tuple(LayerInfo.from_json(l) for l in _list(d["layers"], "layers", empty=False)),
                         device=_str(d.get("device", ""), "device"), version=_str(d.get("version", ""), "version"),
                         config=config, source=_str(d.get("source", "vgtui"), "source"),
                         model=_str(d.get("model", ""), "model"), dataset=_opt_str(d.get("dataset"), "dataset"),
                         device_name=_opt_str(d.get("device_name"), "device_name"),
                         steps_per_epoch=_int(d.get("steps_per_epoch", 0), "steps_per_epoch"),
                         total_steps=_int(d.get("total_steps", 0), "total_steps"),
                         train_size=_int(d.get("train_size", 0), "train_size"),
                         test_size=_int(d.get("test_size", 0), "test_size"),
                         probe_every=_opt_int(d.get("probe_every", (config or {}).get("probe_every")), "probe_every",
                                              1),
                         notice=_opt_str(d.get("notice"), "notice"), started=_opt_str(d.get("started"), "started"),
                         pid=_opt_int(d.get("pid"), "pid"),
                         grad_edges=None if d.get("grad_edges") is None else _edges(d["grad_edges"], "grad_edges"),
                         act_edges={safe_text(k): _edges(v, f"act_edges.{k}")
                                    for k, v in _dict(act_edges, "act_edges").items()} if act_edges else None,
                         schema=_int(d.get("schema", 1), "schema", 1),
                         probe_min_interval_s=_opt_float(d.get("probe_min_interval_s"), "probe_min_interval_s",
                                                         finite=True),
                         forked_at=_opt_int(d.get("forked_at"), "forked_at"),
                         deriv_edges=None if d.get("deriv_edges") is None else _edges(d["deriv_edges"],
                                                                                      "deriv_edges"),
                         axes=_axes(d.get("axes")))
    if t == "epoch":
        return EpochRecord(epoch=_int(d["epoch"], "epoch"), step=_int(d["step"], "step"),
                           **{k: _float(d[k], k) for k in ("train_loss", "train_acc", "test_loss", "test_acc")},
                           elapsed_s=_float(d["elapsed_s"], "elapsed_s", finite=True))
    if t == "event":
        change = _clean(_dict(d["set"], "set"), "set")
        if "activation" in change:
            _str(change["activation"], "set.activation")
        if "lr" in change:
            _float(change["lr"], "set.lr", finite=True)
        return EventRecord(step=_int(d["step"], "step"), set=change,
                           elapsed_s=_float(d.get("elapsed_s", 0.0), "elapsed_s", finite=True))
    if t == "end":
        status = _str(d["status"], "status")
        if status not in END_STATUSES:
            raise ValueError(f"status {_show(status)} is not one of {', '.join(END_STATUSES)}")
        cause = d.get("cause")
        if cause is None:  # written before causes were recorded: from the status, never from the message
            cause = cause_of_status(status)
        elif not isinstance(cause, str) or not _CAUSE_TEXT.fullmatch(cause):
            raise ValueError(f"cause {_show(cause)} is not a cause (a short lower-case word, e.g. 'completed')")
        elif END_CAUSES.get(cause, status) != status:
            raise ValueError(f"cause {_show(cause)} does not go with status {_show(status)}")
        return EndRecord(status=status, steps=_int(d["steps"], "steps"),
                         elapsed_s=_float(d["elapsed_s"], "elapsed_s", finite=True),
                         message=_str(d.get("message", ""), "message"), layer=_opt_str(d.get("layer"), "layer"),
                         traceback=_opt_str(d.get("traceback"), "traceback"), cause=cause)
    if t == "spike":
        return _spike_from_json(d)
    raise ValueError(f"unknown record type {_show(t)}")


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
    """Swap the activation of the running model; its weights are kept. In a fork, `branch` ("B", "C", "D")
    changes that branch only."""

    name: str
    branch: str | None = None


@dataclass(frozen=True)
class SetLR:
    """Set the learning rate of the running optimiser; the weights are kept (in a fork, `branch`'s only)."""

    lr: float
    branch: str | None = None


@dataclass(frozen=True)
class Fork:
    """`on`: a new branch (`branch`, or the next free id of BRANCHES) copied from the run, branch A (weights,
    optimiser state, step, data order), trained in lockstep with it on the same batches. `config`: the branch's
    configuration (a RunConfig.to_dict()), applied at the fork; None: an exact copy. A change of activation or
    learning rate keeps A's weights; a change of the network (init, batchnorm, skip, depth, width, optimiser,
    momentum) starts the branch from that network's fresh weights from the run's seed (at step 0, the network a
    restart would build). What a branch shares with the run (dataset, batch size, seed, steps, device, probe
    cadence) is the run's. A branch beyond D, a taken id or a config that cannot be is refused with a notice.
    Off, without `branch`: end the whole fork, keeping branch `keep` ("A": the run goes on as it was; another id:
    the run goes on from that branch's state, under a new run header). Off with `branch`: drop that branch only
    (the others go on)."""

    on: bool = True
    keep: str = "A"
    config: dict[str, Any] | None = None
    branch: str | None = None


@dataclass(frozen=True)
class SetSpeedCap:
    steps_per_s: float | None  # None: as fast as it goes


@dataclass(frozen=True)
class Restart:
    """Start again from fresh weights with this configuration (as a RunConfig.to_dict()). `branch` None: a plain
    restart (a fork ends). In a fork (or a run that ended forked), `branch` "A".."D": every branch starts again
    from the same seed, each with its own configuration and `branch` with this one, and they stay forked (an id
    not in the fork is added to it)."""

    config: dict[str, Any]
    branch: str | None = None


@dataclass(frozen=True)
class Stop:
    """End the run (status "interrupted" if it had not ended) and return. `message` says why in the end record:
    "quit", "hangup: the terminal went away (SIGHUP)", "the viewer process went away"; `cause` is the end record's
    cause (one of END_CAUSES with status "interrupted": "quit", "hangup", "viewer-gone", "disk-full", ...)."""

    message: str = "stopped"
    cause: str = "quit"


@dataclass(frozen=True)
class Note:
    """Record `set` as an event of the running run at its current step (a lesson's question answered: {"lesson":
    "vanishing", "question": 2, "answer": "b"}); nothing else changes. After the run's end nothing is written (the
    end record stays the run's last)."""

    set: dict[str, Any]


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


Command = Union[Pause, StepOnce, SetActivation, SetLR, SetSpeedCap, Restart, Stop, Fork, Note]
