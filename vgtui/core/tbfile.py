"""A metrics file's runs as TensorBoard event files: what `vgtui export FILE --tensorboard DIR` writes.

One folder per run under DIR (run-1, run-2 ... for the file's runs, run-1-B for the fork of run 1), each holding one
event file (events.out.tfevents.<start>.vgtui), readable by TensorBoard (`tensorboard --logdir DIR`) and anything
that reads its event files. What goes in (the tags):

- train/loss, train/loss_avg, train/steps_per_s: each snapshot's, at its step.
- epoch/train_loss, epoch/train_acc, epoch/test_loss, epoch/test_acc: each epoch record's, at its step.
- metrics/NAME: a user's own numbers (`probe.step(metrics=...)`).
- layers/LAYER/NUMBER: every per-layer number a snapshot holds (grad_norm, grad_mean_abs, weight_norm,
  grad_data_ratio, update_data_ratio, out_grad_norm, act_mean, act_std, saturated_frac, dead_frac, pre_p15..p85,
  deriv_mean, deriv_max, pre_grad_norm where present); a number a layer has not (None) is left out, a non-finite
  one is written as it is (nan, inf).
- layers/LAYER/grad_hist_log10_abs: the weight-gradient histogram on vgtui's own axis, log10 |g| (the value axis
  is the base-10 logarithm of |g|, not g: -3 means |g| = 0.001); layers/LAYER/act_hist: the activation's values;
  layers/LAYER/deriv_hist: |act'(z)| / its largest, where the file has it.

The histograms keep their real bin edges (the run header's): bucket_limit is [e0, e1, ..., en, DBL_MAX] with
counts [below, c0, ..., c(n-1), above]. The first bucket (up to the first edge) counts what fell below the range:
`under` plus, for the log10 |g| histogram, the exact zeros (log10 |0| is -inf); the last counts `over`. The proto's
min and max are where TensorBoard starts its first non-empty bucket and ends its last one: the real edges of those
buckets, or one bin width beyond the range for a non-empty edge bucket; `num` is every value counted. `sum` and `sum_squares` are not in a vgtui histogram: they
are taken from the bins' centres (the edge buckets' drawn centres included), an estimate.

Tags: a name from the file (a layer, a metric) has `/` made `.` (a `/` would make a group of its own in
TensorBoard), and two names that then coincide get ~2, ~3; control characters were made visible escapes when the
file was read (records.safe_text); markup is plain text to TensorBoard.

The writer is this module: protobuf and TFRecord framing written by hand (a few varints), so neither TensorFlow nor
the protobuf package is needed; the record checksums (CRC-32C) come from `google-crc32c`, the optional extra
(`pip install 'vgtui[tensorboard]'`). Imports neither torch nor textual.
"""

from __future__ import annotations

import datetime
import math
import os
import shutil
import stat
import struct
import tempfile
from typing import Callable, Iterable

import numpy as np

from vgtui.core.metrics import RunIndex
from vgtui.core.records import Hist, LayerStats

EXTRA = "pip install 'vgtui[tensorboard]'"
EVENT_PREFIX = "events.out.tfevents."
DBL_MAX = 1.7976931348623157e308
SNAPSHOT_SCALARS = (("train/loss", "loss"), ("train/loss_avg", "loss_avg"), ("train/steps_per_s", "steps_per_s"))
EPOCH_SCALARS = (("epoch/train_loss", "train_loss"), ("epoch/train_acc", "train_acc"),
                 ("epoch/test_loss", "test_loss"), ("epoch/test_acc", "test_acc"))
HISTS = (("grad_hist", "grad_hist_log10_abs"), ("act_hist", "act_hist"), ("deriv_hist", "deriv_hist"))


class MissingExtra(RuntimeError):
    """google-crc32c is not installed; the message is the one line that says how to add it."""


def _crc32c() -> Callable[[bytes], int]:
    try:
        import google_crc32c
    except ImportError:
        raise MissingExtra(f"--tensorboard needs the package google-crc32c: {EXTRA}") from None
    return google_crc32c.value


# ---------------------------------------------------------------------------------------------- protobuf, by hand
def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL[n]
    n &= (1 << 64) - 1  # int64 as protobuf writes it: two's complement, ten bytes for a negative
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes_field(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _double(field: int, v: float) -> bytes:
    return _key(field, 1) + struct.pack("<d", v)


_FLOAT_KEY = _key(2, 5)  # Summary.Value.simple_value


def _float32(v: float) -> bytes:
    """v as a little-endian float32 (a finite value beyond float32's range becomes +-inf, as a cast does)."""
    try:
        return struct.pack("<f", v)
    except OverflowError:
        return struct.pack("<f", math.copysign(math.inf, v))


def _packed_doubles(field: int, values: np.ndarray) -> bytes:
    return _bytes_field(field, np.asarray(values, dtype="<f8").tobytes())


_TAGS: dict[str, bytes] = {}  # a tag's encoded field, made once


def _tag(tag: str) -> bytes:
    b = _TAGS.get(tag)
    if b is None:
        if len(_TAGS) > 100_000:
            _TAGS.clear()
        b = _TAGS[tag] = _bytes_field(1, tag.encode("utf-8"))
    return b


def scalar_value(tag: str, v: float) -> bytes:
    """A Summary.Value with simple_value (float32, as TensorBoard keeps scalars)."""
    return _bytes_field(1, _tag(tag) + _FLOAT_KEY + _float32(v))


_EDGES: dict[int, tuple[np.ndarray, np.ndarray, bytes, np.ndarray]] = {}  # per edges array: what it gives, once


def _edges_of(h: Hist) -> tuple[np.ndarray, np.ndarray, bytes]:
    """(the edges as float64, the bins' centres, the encoded bucket_limit field): the run header's edges are one
    array for every histogram of the run, so this is worked out once per run."""
    got = _EDGES.get(id(h.edges))
    if got is None or got[0] is not h.edges:
        if len(_EDGES) > 1000:
            _EDGES.clear()
        edges = np.asarray(h.edges, dtype=np.float64)
        got = _EDGES[id(h.edges)] = (h.edges, edges, _packed_doubles(6, np.concatenate([edges, [DBL_MAX]])),
                                     (edges[:-1] + edges[1:]) / 2)
    return got[1], got[3], got[2]


def histo_parts(h: Hist) -> tuple[float, float, int, float, float, bytes, np.ndarray]:
    """(min, max, num, sum, sum_squares, the encoded bucket_limit, bucket) of a vgtui histogram: see the module
    docstring."""
    edges, mid, limits = _edges_of(h)
    counts = np.asarray(h.counts, dtype=np.float64)
    below, above = h.under + h.zeros, h.over
    buckets = np.concatenate([[below], counts, [above]])
    filled = np.flatnonzero(counts)
    # TensorBoard draws the first non-empty bucket from `min`, the last one up to `max` (data_compat): the edges of
    # those buckets, and for an edge bucket one bin width beyond the range
    if below:
        lo = edges[0] - (edges[1] - edges[0])
    else:
        lo = edges[filled[0]] if len(filled) else (edges[-1] if above else edges[0])
    if above:
        hi = edges[-1] + (edges[-1] - edges[-2])
    else:
        hi = edges[filled[-1] + 1] if len(filled) else (edges[0] if below else edges[-1])
    s = float(np.dot(counts, mid)) + below * (lo + edges[0]) / 2 + above * (edges[-1] + hi) / 2
    ss = float(np.dot(counts, mid * mid)) + below * ((lo + edges[0]) / 2) ** 2 + above * ((edges[-1] + hi) / 2) ** 2
    return float(lo), float(hi), int(h.total), float(s), float(ss), limits, buckets


def histo_value(tag: str, h: Hist) -> bytes:
    """A Summary.Value with a HistogramProto (min 1, max 2, num 3, sum 4, sum_squares 5, bucket_limit 6, bucket 7)."""
    lo, hi, num, s, ss, limits, buckets = histo_parts(h)
    proto = (struct.pack("<BdBdBdBdBd", 0x09, lo, 0x11, hi, 0x19, float(num), 0x21, s, 0x29, ss)
             + limits + _packed_doubles(7, buckets))
    return _bytes_field(1, _tag(tag) + _bytes_field(5, proto))


def event(wall_time: float, step: int, values: Iterable[bytes] = (), file_version: str | None = None) -> bytes:
    """An Event: wall_time 1, step 2, file_version 3, summary 5 (its values)."""
    body = _double(1, wall_time) + _key(2, 0) + _varint(step)
    if file_version is not None:
        return body + _bytes_field(3, file_version.encode())
    return body + _bytes_field(5, b"".join(values))


class EventFile:
    """A TFRecord file of events: for each record, its length (uint64), the masked CRC-32C of the length, the data,
    the masked CRC-32C of the data. Created exclusively (O_EXCL, O_NOFOLLOW): never over anything."""

    def __init__(self, path: str, wall_time: float):
        self._crc = _crc32c()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        self._f = os.fdopen(fd, "wb", buffering=1 << 20)
        self.write(event(wall_time, 0, file_version="brain.Event:2"))

    def _masked(self, data: bytes) -> bytes:
        crc = self._crc(data)
        return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)

    def write(self, data: bytes) -> None:
        length = struct.pack("<Q", len(data))
        self._f.write(length + self._masked(length) + data + self._masked(data))

    def close(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()


# ---------------------------------------------------------------------------------------------- tags and folders
def tag_part(name: str) -> str:
    """A name from the file as one part of a tag: `/` made `.`; empty made `_`."""
    return name.replace("/", ".") or "_"


def unique_parts(names: Iterable[str]) -> dict[str, str]:
    """{name: its tag part}, distinct: a part that two names share gets ~2, ~3 on the later ones."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        if name in out:
            continue
        part, n = tag_part(name), 2
        base = part
        while part in taken:
            part, n = f"{base}~{n}", n + 1
        taken.add(part)
        out[name] = part
    return out


def folders(runs: list[RunIndex]) -> list[tuple[str, RunIndex]]:
    """(folder name, run) for every run of a file and every fork's branch: run-1, run-1-B, run-1-B-2, run-2..."""
    out = []
    for i, run in enumerate(runs, 1):
        out.append((f"run-{i}", run))
        seen: dict[str, int] = {}
        for b in run.branches:
            letter = b.header.branch or "B"
            seen[letter] = seen.get(letter, 0) + 1
            out.append((f"run-{i}-{letter}" + (f"-{seen[letter]}" if seen[letter] > 1 else ""), b))
    return out


def event_files_in(folder: str, limit: int = 1) -> list[str]:
    """Up to `limit` TensorBoard event files under `folder` (links not followed)."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):  # followlinks=False
        found += [os.path.join(root, f) for f in files if f.startswith(EVENT_PREFIX) or ".tfevents." in f]
        if len(found) >= limit:
            break
    return found[:limit]


def check_dir(path: str) -> str | None:
    """Why DIR cannot take the export, or None: a link, something other than a folder, a folder that holds event
    files already (nothing is written over them: name a new or empty folder), or a parent that does not exist."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        return None if os.path.isdir(parent) else f"{path}: folder {parent} does not exist"
    if stat.S_ISLNK(st.st_mode):
        return f"{path}: is a symbolic link; nothing is written through a link: name a folder"
    if not stat.S_ISDIR(st.st_mode):
        from vgtui.core.outfile import kind_of

        return f"{path}: is {kind_of(st.st_mode)}, not a folder"
    found = event_files_in(path)
    if found:
        return (f"{path}: holds TensorBoard event files already ({os.path.relpath(found[0], path)}); nothing is "
                "written over them: name a new or empty folder")
    return None


# ---------------------------------------------------------------------------------------------- the export
def _start_time(run: RunIndex) -> float:
    started = run.header.started
    if started:
        try:
            t = datetime.datetime.fromisoformat(started)
            if t.tzinfo is None:
                t = t.replace(tzinfo=datetime.timezone.utc)
            return t.timestamp()
        except (ValueError, OverflowError):
            pass
    return 0.0


def write_run(run: RunIndex, folder: str, on_damaged: Callable[[str], None] | None = None,
              progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """One run's event file in `folder` (an existing folder); returns (snapshots written, damaged ones skipped)."""
    t0 = _start_time(run)
    t0 = t0 if math.isfinite(t0) else 0.0
    f = EventFile(os.path.join(folder, f"{EVENT_PREFIX}{int(t0)}.vgtui"), t0)
    written = damaged = 0
    try:
        parts = unique_parts(run.header.layer_names)
        metric_parts: dict[str, str] = {}
        total = run.n_snapshots
        def skipped(line: str) -> None:
            nonlocal damaged
            damaged += 1
            on_damaged(line)

        for i, snap in run.readable_snapshots(skipped if on_damaged is not None else None):
            values = [scalar_value(tag, getattr(snap, k)) for tag, k in SNAPSHOT_SCALARS]
            for name, v in (snap.metrics or {}).items():
                if name not in metric_parts:
                    metric_parts.update(unique_parts([*metric_parts, name]))
                values.append(scalar_value(f"metrics/{metric_parts[name]}", v))
            for layer in snap.layers:
                if layer.name not in parts:
                    parts = unique_parts([*parts, layer.name])
                base = f"layers/{parts[layer.name]}/"
                for k in LayerStats._FLOATS:
                    v = getattr(layer, k)
                    if v is not None:
                        values.append(scalar_value(base + k, v))
                for attr, tag in HISTS:
                    h = getattr(layer, attr, None)
                    if h is not None:
                        values.append(histo_value(base + tag, h))
            f.write(event(t0 + snap.elapsed_s, snap.step, values))
            written += 1
            if progress and (i + 1) % 500 == 0:
                progress(i + 1, total)
        for rec in run.epochs:
            f.write(event(t0 + rec.elapsed_s, rec.step,
                          [scalar_value(tag, getattr(rec, k)) for tag, k in EPOCH_SCALARS]))
    finally:
        f.close()
    return written, damaged


def write_tensorboard(runs: list[RunIndex], out_dir: str, on_damaged: Callable[[str], None] | None = None,
                      progress: Callable[[int, int], None] | None = None) -> list[tuple[str, int, int]]:
    """Every run (and fork) of `runs` into its own folder under `out_dir`; returns [(folder, snapshots, damaged)].
    The folders are written in a temporary folder inside `out_dir` (created if absent) and moved into place at the
    end: a failure leaves nothing of this export behind. Raises MissingExtra, ValueError (check_dir's refusal, or
    a folder name taken meanwhile), MetricsFileError or OSError."""
    _crc32c()  # before anything is created
    why = check_dir(out_dir)
    if why is not None:
        raise ValueError(why)
    made = False
    try:
        os.mkdir(out_dir)
        made = True
    except FileExistsError:
        pass
    if not stat.S_ISDIR(os.lstat(out_dir).st_mode):  # replaced by a link meanwhile: nothing through it
        raise ValueError(f"{out_dir}: is no longer a folder; nothing written")
    work = tempfile.mkdtemp(prefix=".vgtui-tensorboard.", dir=out_dir)
    done: list[tuple[str, int, int]] = []
    named = folders(runs)
    moved: list[str] = []
    try:
        for name, run in named:
            if os.path.lexists(os.path.join(out_dir, name)):
                raise ValueError(f"{os.path.join(out_dir, name)}: exists already; name a new or empty folder")
        for name, run in named:
            sub = os.path.join(work, name)
            os.mkdir(sub)
            n, bad = write_run(run, sub, on_damaged, progress)
            done.append((name, n, bad))
        for name, _run in named:
            os.rename(os.path.join(work, name), os.path.join(out_dir, name))  # fails on a non-empty folder there
            moved.append(os.path.join(out_dir, name))
    except BaseException:
        for path in moved:  # this export's own folders, moved already: none is left half an export
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        if made and not os.listdir(out_dir):
            os.rmdir(out_dir)
        raise
    os.rmdir(work)
    return done
