"""Reading the metrics file (JSON Lines, one record per line); `vgtui.core.writer` writes it.

    index = MetricsIndex(path)     # scans the file once: where each line is and what it holds; parses no snapshot
    run = index.runs[-1]           # RunIndex: header, n_snapshots, snapshot_steps, epochs, events, end
    snap = run.snapshot(-1)        # parses that one line (a few recent ones are cached)
    index.refresh()                # indexes the whole lines appended since (following a growing file)

    runs = read_metrics(path)      # everything parsed: [MetricsRun(header, snapshots, epochs, events, end), ...]
    for rec in iter_lines_records(sys.stdin.buffer, "<stdin>"): ...   # a stream, record by record

A file of 10,000 snapshots is tens of megabytes and takes seconds to parse whole, while indexing it takes a
fraction of a second: a viewer indexes, parses what it shows first and the rest when it needs it. Bad files
raise MetricsFileError, a ValueError whose message is one line: the file, what is wrong, what to do.
"""

from __future__ import annotations

import json
import os
import re
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator

import numpy as np

from vgtui import __version__
from vgtui.core.records import (SCHEMA_VERSION, EndRecord, EpochRecord, EventRecord, ProgressRecord, Record, RunRecord,
                                Snapshot, record_from_json)

WHAT_IT_IS = "a vgtui metrics file is the JSON Lines that `vgtui --metrics FILE` writes"
_CHUNK = 1 << 22  # bytes read at a time while indexing
_SNIFF = 8192  # bytes looked at for NUL bytes (a binary file)
_CACHE = 64  # parsed snapshots kept per run (stepping back and forth re-reads none)
# The writer puts "type" first and a snapshot's step, epoch and elapsed time right after it: the index reads them
# from the line's first bytes. A line in any other layout is parsed whole instead.
_SNAPSHOT_PREFIX = re.compile(
    rb'\{"type":"snapshot",(?:"branch":"([A-Z])",)?"step":(\d+),"epoch":(\d+),"elapsed_s":([-+.\deE]+|"[-a-z]+"),')


class MetricsFileError(ValueError):
    """A file or stream that cannot be read as a metrics file. str() is one line naming the file; `reason` says
    which case for code that treats some differently (a follower waits for a "missing" or "empty" file):
    missing, unreadable, directory, empty, binary, not-metrics, newer-schema, damaged."""

    def __init__(self, name: str, message: str, reason: str):
        super().__init__(f"{name}: {message}")
        self.name, self.reason = name, reason


def _not_metrics(name: str, what: str) -> MetricsFileError:
    return MetricsFileError(name, f"{what}: not a vgtui metrics file ({WHAT_IT_IS})", "not-metrics")


class RecordDecoder:
    """Lines of one file or stream to records. It checks what a line holds and says what is wrong in one line:
    the first record must be a run header of a schema this vgtui reads; a snapshot takes the histogram edges it
    leaves out from its run's header."""

    def __init__(self, name: str):
        self.name = name
        self.headers: dict[str | None, RunRecord] = {}  # the latest header of the run (None) and of each branch

    @property
    def header(self) -> RunRecord | None:
        """The latest run header decoded (of the run, not of a branch)."""
        return self.headers.get(None)

    def parse(self, line: bytes | str, lineno: int) -> dict[str, Any]:
        """The JSON object of a line, checked to be a record (a dict with a known "type")."""
        first = self.header is None
        try:
            d = json.loads(line)
        except UnicodeDecodeError as e:
            if first:
                raise MetricsFileError(self.name, f"a binary file, not text: not a vgtui metrics file ({WHAT_IT_IS})",
                                       "binary") from e
            raise self._damaged(lineno, "bytes that are not UTF-8 text") from e
        except ValueError as e:  # JSONDecodeError
            if first:
                raise _not_metrics(self.name, f"line {lineno} is not JSON") from e
            raise self._damaged(lineno, f"not JSON ({e})") from e
        t = d.get("type") if isinstance(d, dict) else None
        if t not in ("run", "snapshot", "epoch", "event", "end", "progress"):
            what = "a JSON object" if isinstance(d, dict) else f"a JSON {type(d).__name__}"
            if first:
                raise _not_metrics(self.name, f"line {lineno} is {what} without a vgtui record type")
            raise self._damaged(lineno, f"{what} without a vgtui record type")
        if first and t != "run":
            raise MetricsFileError(self.name, f"line {lineno} is a {t} record, not a run header: the start of the "
                                   "file is missing (to follow a remote run, send it whole: `tail -n +1 -f FILE`)",
                                   "not-metrics")
        if t == "run" and isinstance(d.get("schema", 1), int) and d.get("schema", 1) > SCHEMA_VERSION:
            raise MetricsFileError(self.name, f"written by vgtui {d.get('version', '?')} with schema {d['schema']}; "
                                   f"this vgtui ({__version__}) reads up to schema {SCHEMA_VERSION}: upgrade vgtui",
                                   "newer-schema")
        return d

    def record(self, d: dict[str, Any], lineno: int, header: RunRecord | None = None) -> Record:
        """The record of a parsed line; a snapshot is read with `header` (default: the latest header of its
        branch)."""
        branch = d.get("branch")
        if header is None and branch is not None and d.get("type") != "run" and branch not in self.headers:
            raise self._damaged(lineno, f"a record of branch {branch} before that branch's run header")
        try:
            rec = record_from_json(d, header or self.headers.get(branch))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise self._damaged(lineno, f"a {d.get('type')} record that cannot be read ({type(e).__name__}: {e})"
                                ) from e
        if isinstance(rec, RunRecord):
            if rec.branch is None:  # a new run: its branches are to come, the previous run's are forgotten
                self.headers = {}
            self.headers[rec.branch] = rec
        return rec

    def decode(self, line: bytes | str, lineno: int) -> Record:
        return self.record(self.parse(line, lineno), lineno)

    def _damaged(self, lineno: int, what: str) -> MetricsFileError:
        return MetricsFileError(self.name, f"line {lineno} is {what}: the file is damaged there (`head -n "
                                f"{lineno - 1}` copies the lines before it)", "damaged")


def _open_checked(path: str | os.PathLike) -> tuple[IO[bytes], str]:
    """Open a metrics file for reading, refusing a missing path, a directory, an empty or binary file."""
    name = os.fspath(path)
    if os.path.isdir(name):
        found = sorted(f for f in os.listdir(name) if f.endswith((".jsonl", ".json")))[:3]
        hint = f"name the file in it ({', '.join(found)})" if found else "name a metrics file (.jsonl)"
        raise MetricsFileError(name, f"is a directory: {hint}", "directory")
    try:
        f = open(name, "rb")
    except FileNotFoundError:
        raise MetricsFileError(name, "no such file: check the path", "missing") from None
    except OSError as e:
        raise MetricsFileError(name, f"cannot be read ({e.strerror or e})", "unreadable") from None
    head = f.read(_SNIFF)
    f.seek(0)
    if not head.strip():
        f.close()
        raise MetricsFileError(name, "the file is empty: no run was written to it yet", "empty")
    if b"\0" in head:
        f.close()
        raise MetricsFileError(name, f"a binary file, not text: not a vgtui metrics file ({WHAT_IT_IS})", "binary")
    return f, name


# ---------------------------------------------------------------------------------------------- the index
class RunIndex:
    """One run of an indexed file: its header, and where each of its snapshots is. The header, epochs, events and
    end record are few and parsed at once; a snapshot is parsed when asked for."""

    def __init__(self, index: "MetricsIndex", header: RunRecord, lineno: int):
        self._index = index
        self.header = header
        self.lineno = lineno  # of the header line
        self.progress: ProgressRecord | None = None  # the latest progress record (at most one a second in a file)
        self.epochs: list[EpochRecord] = []
        self.events: list[EventRecord] = []
        self.end: EndRecord | None = None
        self.branches: list[RunIndex] = []  # forks of this run (branch B), in file order
        self.parent: RunIndex | None = None  # for a branch: the run it forked from
        self._offsets, self._lengths, self._linenos = array("q"), array("q"), array("q")
        self._steps, self._epochs_of, self._elapsed = array("q"), array("q"), array("d")
        self._cache: OrderedDict[int, Snapshot] = OrderedDict()
        self._arrays: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def n_snapshots(self) -> int:
        return len(self._offsets)

    def __len__(self) -> int:
        return len(self._offsets)

    def _add(self, offset: int, length: int, lineno: int, step: int, epoch: int, elapsed: float) -> None:
        self._offsets.append(offset)
        self._lengths.append(length)
        self._linenos.append(lineno)
        self._steps.append(step)
        self._epochs_of.append(epoch)
        self._elapsed.append(elapsed)

    def _columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(self._steps)
        if self._arrays is None or self._arrays[0] != n:  # copies: the arrays keep growing while following
            self._arrays = (n, np.array(self._steps[:n], dtype=np.int64), np.array(self._epochs_of[:n], np.int64),
                            np.array(self._elapsed[:n], dtype=np.float64))
        return self._arrays[1:]

    @property
    def snapshot_steps(self) -> np.ndarray:
        """The step of each snapshot (int64, read at index time: no snapshot is parsed)."""
        return self._columns()[0]

    @property
    def snapshot_epochs(self) -> np.ndarray:
        return self._columns()[1]

    @property
    def snapshot_elapsed(self) -> np.ndarray:
        """Seconds since the run's start of each snapshot (float64): for the position readout and replay pace."""
        return self._columns()[2]

    def snapshot(self, i: int) -> Snapshot:
        """The i-th snapshot (negative counts from the end), parsed from its line."""
        n = len(self._offsets)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"snapshot {i} of {n}")
        with self._index._lock:
            snap = self._cache.get(i)
            if snap is not None:
                self._cache.move_to_end(i)
                return snap
            raw = self._index._read(self._offsets[i], self._lengths[i])
        dec = self._index._decoder
        snap = dec.record(dec.parse(raw, self._linenos[i]), self._linenos[i], self.header)
        if not isinstance(snap, Snapshot):  # the line changed under us: the file was rewritten
            raise dec._damaged(self._linenos[i], "no longer the snapshot indexed there")
        with self._index._lock:
            self._cache[i] = snap
            while len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        return snap

    def iter_snapshots(self, start: int = 0, stop: int | None = None) -> Iterator[Snapshot]:
        """Snapshots start..stop-1 (stop: those indexed when the iteration starts)."""
        stop = len(self._offsets) if stop is None else min(stop, len(self._offsets))
        for i in range(start, stop):
            yield self.snapshot(i)

    def index_of_step(self, step: int) -> int:
        """The index of the last snapshot at or before `step` (0 if none is)."""
        return max(int(np.searchsorted(self.snapshot_steps, step, side="right")) - 1, 0)


class MetricsIndex:
    """A metrics file, indexed: one RunIndex per run header, in file order. The file is scanned once, line by
    line, reading only each line's first bytes for a snapshot; `refresh()` indexes what was appended since.

    A last line without a newline that is not JSON (a writer killed mid-write) is left out and said in `notice`;
    while following, such a line is waited for instead. Raises MetricsFileError for a bad file."""

    def __init__(self, path: str | os.PathLike):
        self._f, self.name = _open_checked(path)
        self.path = self.name
        self._lock = threading.RLock()
        self._reset()
        try:
            self._scan()
        except MetricsFileError:
            self.close()
            raise
        if not self.runs:  # nothing but an incomplete first line: a header being written, or not a metrics file
            self.close()
            if not self._tail.lstrip().startswith(b'{"type":"run"'):
                self._decoder.parse(self._tail, 1)  # raises: the line is not JSON
            raise MetricsFileError(self.name, "holds no whole record yet (its first line is incomplete)", "empty")
        if self._tail:
            self.notice = (f"the last line is incomplete (the writer was killed mid-write); showing the "
                           f"{self._n_records:,} whole records before it")

    def _reset(self) -> None:
        st = os.fstat(self._f.fileno())
        self._ino = (st.st_dev, st.st_ino)
        self.runs: list[RunIndex] = []
        self.notice: str | None = None
        self._decoder = RecordDecoder(self.name)
        self._scanned = 0  # where the first line not yet indexed starts
        self._lineno = 0  # lines indexed (blank ones included)
        self._n_records = 0
        self._tail = b""  # an incomplete last line
        self._branch_runs: dict[str, RunIndex] = {}  # the current run's open branch of each name

    # ------------------------------------------------------------------ reading
    def _read(self, offset: int, length: int) -> bytes:
        with self._lock:
            self._f.seek(offset)
            return self._f.read(length)

    def _scan(self) -> bool:
        """Index the whole lines from where the last scan stopped; True if any record was added."""
        with self._lock:
            before = self._n_records
            self._f.seek(self._scanned)
            buf, base = b"", self._scanned
            while chunk := self._f.read(_CHUNK):
                buf += chunk
                start = 0
                while (nl := buf.find(b"\n", start)) >= 0:
                    self._line(buf, start, nl, base + start)
                    start = nl + 1
                buf, base = buf[start:], base + start
            self._scanned = base
            self._tail = buf if buf.strip() else b""
            if self._tail:
                try:  # a last line that lacks only its newline is whole
                    json.loads(self._tail)
                except ValueError:
                    pass
                else:
                    self._line(buf, 0, len(buf), base)
                    self._scanned, self._tail = base + len(buf), b""
            return self._n_records > before

    def _line(self, buf: bytes, start: int, end: int, offset: int) -> None:
        self._lineno += 1
        lineno = self._lineno
        if not buf[start:end].strip():
            return
        self._n_records += 1
        m = _SNAPSHOT_PREFIX.match(buf, start, end) if self.runs else None
        if m:
            el = m.group(4)
            self._run_of(m.group(1) and m.group(1).decode(), lineno)._add(
                offset, end - start, lineno, int(m.group(2)), int(m.group(3)), float(el.strip(b'"')))
            return
        line = buf[start:end]
        d = self._decoder.parse(line, lineno)
        if d["type"] == "snapshot":  # a snapshot in another layout: parsed once here for its step
            run = self._run_of(d.get("branch"), lineno)
            snap = self._decoder.record(d, lineno, run.header)
            run._add(offset, end - start, lineno, snap.step, snap.epoch, snap.elapsed_s)
            return
        rec = self._decoder.record(d, lineno)
        if isinstance(rec, RunRecord):
            if rec.branch is None:
                self.runs.append(RunIndex(self, rec, lineno))
                self._branch_runs = {}
            else:  # a fork: filed under the run it forked from
                parent = self._run_of(None, lineno)
                branch = self._branch_runs[rec.branch] = RunIndex(self, rec, lineno)
                branch.parent = parent
                parent.branches.append(branch)
            return
        run = self._run_of(rec.branch, lineno)
        if isinstance(rec, EpochRecord):
            run.epochs.append(rec)
        elif isinstance(rec, EventRecord):
            run.events.append(rec)
        elif isinstance(rec, EndRecord):
            run.end = rec
        elif isinstance(rec, ProgressRecord):
            run.progress = rec

    def _run_of(self, branch: str | None, lineno: int) -> RunIndex:
        """The run a record belongs to: the latest run, or its open branch of that name."""
        if branch is None:
            if not self.runs:
                raise self._decoder._damaged(lineno, "a record before any run header")
            return self.runs[-1]
        run = self._branch_runs.get(branch)
        if run is None:
            raise self._decoder._damaged(lineno, f"a record of branch {branch} before that branch's run header")
        return run

    def refresh(self) -> bool:
        """Index the whole lines appended since the last scan (a new run header starts a new RunIndex); True if
        anything new. A file truncated or replaced (a new run written over it) is indexed again from its start."""
        with self._lock:
            try:
                st = os.stat(self.name)
            except OSError:
                return False  # gone for now: keep what was read
            if (st.st_dev, st.st_ino) != self._ino or st.st_size < self._scanned:
                try:
                    f, _ = _open_checked(self.name)
                except MetricsFileError:
                    return False  # an empty new file: wait for its header
                self._f.close()
                self._f = f
                self._reset()
                self._scan()
                return True
            if st.st_size == self._scanned + len(self._tail):
                return False
            new = self._scan()
            if not self._tail:
                self.notice = None
            return new

    @property
    def n_records(self) -> int:
        return self._n_records

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "MetricsIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- streams
def iter_lines_records(lines: Iterable[bytes | str], name: str = "<stdin>", strict: bool = False) -> Iterator[Record]:
    """Records of a stream of lines (a file object, standard input), in order, as the lines arrive. A last line
    without a newline that is not a record (a writer killed mid-write) ends the stream quietly unless strict.
    Raises MetricsFileError for input that is not a metrics stream."""
    dec = RecordDecoder(name)
    lineno = 0
    pending: tuple[bytes | str, int] | None = None  # the last line, without a newline: torn, or whole
    try:
        for line in lines:
            lineno += 1
            if not line.strip():
                continue
            if (b"\0" if isinstance(line, bytes) else "\0") in line:
                raise MetricsFileError(name, f"a binary {'file' if dec.header is None else 'line ' + str(lineno)}, "
                                       f"not text: not a vgtui metrics file ({WHAT_IT_IS})", "binary")
            if not line.endswith(b"\n" if isinstance(line, bytes) else "\n"):
                pending = (line, lineno)
                continue
            yield dec.decode(line, lineno)
    except UnicodeDecodeError as e:  # a text-mode stream of bytes that are not UTF-8
        raise MetricsFileError(name, f"a binary file, not text: not a vgtui metrics file ({WHAT_IT_IS})",
                               "binary") from e
    if pending is not None:
        try:
            yield dec.decode(*pending)
        except MetricsFileError:
            if strict or dec.header is None:
                raise
    elif dec.header is None:
        raise MetricsFileError(name, "the stream is empty: no run header came", "empty")


def iter_records(path: str | os.PathLike, strict: bool = False) -> Iterator[Record]:
    """Records of a file in order. A torn last line (a run killed mid-write) is skipped unless strict."""
    f, name = _open_checked(path)
    with f:
        yield from iter_lines_records(f, name, strict)


@dataclass
class MetricsRun:
    """One run of a metrics file, parsed whole: from a run header to its end record (absent if it was killed)."""

    header: RunRecord
    snapshots: list[Snapshot] = field(default_factory=list)
    epochs: list[EpochRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    end: EndRecord | None = None
    branches: list["MetricsRun"] = field(default_factory=list)  # its forks (branch B), each a run of its own


def _parsed(r: RunIndex) -> MetricsRun:
    return MetricsRun(r.header, list(r.iter_snapshots()), list(r.epochs), list(r.events), r.end,
                      [_parsed(b) for b in r.branches])


def read_metrics(path: str | os.PathLike) -> list[MetricsRun]:
    """Every run of the file with every record parsed (seconds for 10,000 snapshots: a viewer uses MetricsIndex).
    A fork's branch is under the run it forked from (`MetricsRun.branches`), not in the list."""
    with MetricsIndex(path) as index:
        return [_parsed(r) for r in index.runs]
