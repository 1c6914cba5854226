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

A metrics file is data from another machine. Once its first line is a run header, a line that cannot be read (not
JSON, not UTF-8, a field of the wrong type, a line over MAX_LINE_BYTES, a record of a run whose header is damaged)
is skipped: the index lists it in `notices` ("line 17: ...") and sums them up in `notice`; a stream yields a
NoticeRecord in its place. Every string read is made safe to show (`vgtui.core.records.safe_text`).
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Callable, Iterator

import numpy as np

from vgtui import __version__
from vgtui.core.outfile import kind_of
from vgtui.core.records import (BRANCHES, MAX_STEP, SCHEMA_VERSION, EndRecord, EpochRecord, EventRecord, NoticeRecord,
                                ProgressRecord, Record, RunRecord, Snapshot, SpikeRecord, record_from_json,
                                safe_text)

WHAT_IT_IS = "a vgtui metrics file is the JSON Lines that `vgtui --metrics FILE` writes"
MAX_LINE_BYTES = 64 << 20  # a longer line is skipped with a notice, never read into memory whole
MAX_NOTICES = 100  # damaged lines listed one by one in MetricsIndex.notices (the rest are only counted)
_CHUNK = 1 << 22  # bytes read at a time while indexing
_STREAM_CHUNK = 1 << 16  # bytes read at a time from a stream (a pipe hands over what it holds)
_SNIFF = 8192  # bytes looked at for NUL bytes (a binary file)
_CACHE = 64  # parsed snapshots kept per run (stepping back and forth re-reads none)
_READ_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError)
# The writer puts "type" first and a snapshot's step, epoch and elapsed time right after it: the index reads them
# from the line's first bytes. A line in any other layout, or whose numbers there are out of range, is parsed whole.
_SNAPSHOT_PREFIX = re.compile(
    rb'\{"type":"snapshot",(?:"branch":"([A-Z])",)?"step":(\d{1,19}),"epoch":(\d{1,19}),"elapsed_s":([-+.\deE]{1,40}),')


_JSON_TYPES = {dict: "object", list: "list", str: "string", int: "number", float: "number", bool: "true or false",
               type(None): "null"}


def _a(word: Any) -> str:
    return "an" if str(word)[:1] in "aeiou" else "a"


def _size(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB" if n >= 1 << 20 else f"{n:,} bytes"


class MetricsFileError(ValueError):
    """A file or stream that cannot be read as a metrics file. str() is one line naming the file (control
    characters made visible); `reason` says which case for code that treats some differently (a follower waits
    for a "missing" or "empty" file): missing, unreadable, not-regular, directory, empty, binary, not-metrics,
    newer-schema, damaged. A damaged line's error also has `lineno` and `detail` (what is wrong with it)."""

    def __init__(self, name: str, message: str, reason: str, lineno: int | None = None, detail: str = ""):
        super().__init__(safe_text(f"{name}: {message}"))
        self.name, self.reason, self.lineno, self.detail = name, reason, lineno, safe_text(detail)


def _not_metrics(name: str, what: str) -> MetricsFileError:
    return MetricsFileError(name, f"{what}: not a vgtui metrics file ({WHAT_IT_IS})", "not-metrics")


class RecordDecoder:
    """Lines of one file or stream to records. It checks what a line holds and says what is wrong in one line:
    the first record must be a run header of a schema this vgtui reads; a snapshot takes the histogram edges it
    leaves out from its run's header. After a damaged run header, the records of that run (or branch) are damaged
    too, up to the next run header that can be read."""

    def __init__(self, name: str):
        self.name = name
        self.headers: dict[str | None, RunRecord] = {}  # the latest header of the run (None) and of each branch
        self.started = False  # a run header was read: from now on a bad line is damaged, not a foreign file
        self.bad_headers: dict[str | None, int] = {}  # the line of the damaged header of the run (None) or a branch

    @property
    def header(self) -> RunRecord | None:
        """The latest run header decoded (of the run, not of a branch)."""
        return self.headers.get(None)

    def parse(self, line: bytes | str | bytearray, lineno: int) -> dict[str, Any]:
        """The JSON object of a line, checked to be a record (a dict with a known "type")."""
        first = not self.started
        try:
            d = json.loads(line)
        except UnicodeDecodeError as e:
            if first:
                raise MetricsFileError(self.name, f"a binary file, not text: not a vgtui metrics file ({WHAT_IT_IS})",
                                       "binary") from e
            raise self._damaged(lineno, "bytes that are not UTF-8 text") from e
        except RecursionError as e:
            if first:
                raise _not_metrics(self.name, f"line {lineno} is JSON nested too deeply") from e
            raise self._damaged(lineno, "JSON nested too deeply") from e
        except ValueError as e:  # JSONDecodeError, or an integer of over 4,300 digits
            if first:
                raise _not_metrics(self.name, f"line {lineno} is not JSON") from e
            raise self._damaged(lineno, f"not JSON ({e})") from e
        t = d.get("type") if isinstance(d, dict) else None
        if t not in ("run", "snapshot", "epoch", "event", "end", "progress", "spike"):
            what = "a JSON " + _JSON_TYPES.get(type(d), "value")
            if first:
                raise _not_metrics(self.name, f"line {lineno} is {what} without a vgtui record type")
            raise self._damaged(lineno, f"{what} without a vgtui record type")
        if first and t != "run":
            raise MetricsFileError(self.name, f"line {lineno} is {_a(t)} {t} record, not a run header: the start of "
                                   "the file is missing (to follow a remote run, send it whole: `tail -n +1 -f FILE`)",
                                   "not-metrics")
        schema = d.get("schema", 1)
        if t == "run" and isinstance(schema, int) and schema > SCHEMA_VERSION:
            if first:
                raise MetricsFileError(self.name, f"written by vgtui {d.get('version', '?')} with schema {schema}; "
                                       f"this vgtui ({__version__}) reads up to schema {SCHEMA_VERSION}: upgrade "
                                       "vgtui", "newer-schema")
            self._bad_header(d, lineno)
            raise self._damaged(lineno, f"a run header of schema {schema} (this vgtui reads up to schema "
                                f"{SCHEMA_VERSION}: upgrade vgtui)")
        return d

    def record(self, d: dict[str, Any], lineno: int, header: RunRecord | None = None) -> Record:
        """The record of a parsed line; a snapshot is read with `header` (default: the latest header of its
        branch, and then the record must not belong to a run whose header was damaged)."""
        branch, t = d.get("branch"), d.get("type")
        if branch is not None and branch not in BRANCHES:
            if t == "run":
                self._bad_header(d, lineno)
            raise self._damaged(lineno, f"a record of an unknown branch ({safe_text(repr(branch))[:40]})")
        if header is None and t != "run":
            self.check_run(branch, lineno)
        try:
            rec = record_from_json(d, header or self.headers.get(branch))
        except _READ_ERRORS as e:
            if t == "run":
                self._bad_header(d, lineno)
            why = f"without its {e}" if isinstance(e, KeyError) else (
                f"that cannot be read ({e})" if isinstance(e, ValueError) else
                f"that cannot be read ({type(e).__name__}: {e})")
            if not self.started:  # the first line: nothing to show without its header
                raise MetricsFileError(self.name, f"line {lineno} is {_a(t)} {t} record {why}: not a vgtui metrics "
                                       "file this vgtui can read", "not-metrics") from e
            raise self._damaged(lineno, f"{_a(t)} {t} record {why}") from e
        if isinstance(rec, RunRecord):
            if rec.branch is None:  # a new run: its branches are to come, the previous run's are forgotten
                self.headers, self.bad_headers = {}, {}
                self.started = True
            self.headers[rec.branch] = rec
            self.bad_headers.pop(rec.branch, None)
        return rec

    def check_run(self, branch: str | None, lineno: int) -> None:
        """Raise MetricsFileError (damaged) for a record of a run or branch without a header that was read."""
        bad = self.bad_headers.get(None, self.bad_headers.get(branch))
        if bad is not None:
            what = "the run" if None in self.bad_headers else f"branch {branch}"
            raise self._damaged(lineno, f"a record of {what} whose header (line {bad}) is damaged")
        if branch is not None and branch not in self.headers:
            raise self._damaged(lineno, f"a record of branch {branch} before that branch's run header")

    def decode(self, line: bytes | str | bytearray, lineno: int) -> Record:
        return self.record(self.parse(line, lineno), lineno)

    def _bad_header(self, d: dict[str, Any], lineno: int) -> None:
        branch = d.get("branch")
        if self.started and (branch is None or branch in BRANCHES):
            self.bad_headers[branch] = lineno

    def _damaged(self, lineno: int, what: str) -> MetricsFileError:
        return MetricsFileError(self.name, f"line {lineno} is {what}: the file is damaged there (`head -n "
                                f"{lineno - 1}` copies the lines before it)", "damaged", lineno, what)


def _kind(mode: int) -> str | None:
    """What a file that is not a regular file is, or None for a regular file."""
    return None if stat.S_ISREG(mode) else kind_of(mode)


def _open_checked(path: str | os.PathLike) -> tuple[IO[bytes], str]:
    """Open a metrics file for reading, refusing a missing path, a directory, anything but a regular file (a FIFO
    would block for ever), an empty or binary file, and a file whose read fails."""
    name = os.fspath(path)
    if os.path.isdir(name):
        try:
            found = sorted(f for f in os.listdir(name) if f.endswith((".jsonl", ".json")))[:3]
        except OSError:
            found = []
        hint = f"name the file in it ({', '.join(found)})" if found else "name a metrics file (.jsonl)"
        raise MetricsFileError(name, f"is a directory: {hint}", "directory")
    try:
        kind = _kind(os.stat(name).st_mode)
        if kind is None:  # O_NONBLOCK: a FIFO put there since the stat is opened without waiting for a writer
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            kind = _kind(os.fstat(fd).st_mode)
            if kind is not None:
                os.close(fd)
    except FileNotFoundError:
        raise MetricsFileError(name, "no such file: check the path", "missing") from None
    except OSError as e:
        raise MetricsFileError(name, f"cannot be read ({e.strerror or e})", "unreadable") from None
    if kind is not None:
        raise MetricsFileError(name, f"is {kind}, not a regular file: name a metrics file (to read a stream, pipe "
                               "it in: `vgtui follow - < FILE`)", "not-regular")
    os.set_blocking(fd, True)
    f = os.fdopen(fd, "rb")
    try:
        head = f.read(_SNIFF)
        f.seek(0)
    except OSError as e:  # /proc/self/mem: EIO; a disk failing
        f.close()
        raise MetricsFileError(name, f"cannot be read ({e.strerror or e})", "unreadable") from None
    if not head.strip():
        f.close()
        raise MetricsFileError(name, "the file is empty: no run was written to it yet", "empty")
    if b"\0" in head.split(b"\n", 1)[0]:  # in the first line: a NUL in a later one is that line's damage
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
        self.spikes: list[SpikeRecord] = []  # the flight recorder's loss spikes, in file order
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
        """The i-th snapshot (negative counts from the end), parsed from its line. Raises MetricsFileError
        (reason "damaged", naming the line) for a line that cannot be read as a snapshot: the index took it from
        its first bytes, and the rest is damaged (or the file was rewritten since)."""
        n = len(self._offsets)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"snapshot {i} of {n}")
        index = self._index
        with index._lock:
            snap = self._cache.get(i)
            if snap is not None:
                self._cache.move_to_end(i)
                return snap
            raw = index._read(self._offsets[i], self._lengths[i])
            dec = index._decoder
        lineno = self._linenos[i]
        snap = dec.record(dec.parse(raw, lineno), lineno, self.header)
        if not isinstance(snap, Snapshot):  # the line changed under us: the file was rewritten
            raise dec._damaged(lineno, "no longer the snapshot indexed there")
        with index._lock:
            self._cache[i] = snap
            while len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        return snap

    def iter_snapshots(self, start: int = 0, stop: int | None = None) -> Iterator[Snapshot]:
        """Snapshots start..stop-1 (stop: those indexed when the iteration starts)."""
        stop = len(self._offsets) if stop is None else min(stop, len(self._offsets))
        for i in range(start, stop):
            yield self.snapshot(i)

    def readable_snapshots(self, on_damaged: Callable[[str], None] | None = None) -> Iterator[tuple[int, Snapshot]]:
        """(index, snapshot) of every snapshot indexed when the iteration starts. A damaged line is skipped and said
        to `on_damaged(one line naming it)`; without `on_damaged` its MetricsFileError is raised (as is any other)."""
        for i in range(len(self._offsets)):
            try:
                snap = self.snapshot(i)
            except MetricsFileError as e:
                if e.reason != "damaged" or on_damaged is None:
                    raise
                on_damaged(str(e))
                continue
            yield i, snap

    def index_of_step(self, step: int) -> int:
        """The index of the last snapshot at or before `step` (0 if none is)."""
        return max(int(np.searchsorted(self.snapshot_steps, step, side="right")) - 1, 0)


class MetricsIndex:
    """A metrics file, indexed: one RunIndex per run header, in file order. The file is scanned once, line by
    line, reading only each line's first bytes for a snapshot; `refresh()` indexes what was appended since.

    A damaged line after the first run header is skipped and listed in `notices` (at most MAX_NOTICES of them;
    `n_damaged` counts them all); a line over `max_line` bytes (MAX_LINE_BYTES) is skipped without being read
    into memory. A last line without a newline that is not JSON (a writer killed mid-write) is left out; while
    following, such a line is waited for instead (its bytes are kept: a line that grows is read once). `notice`
    says all this in one line. Raises MetricsFileError for a file that is not a metrics file."""

    def __init__(self, path: str | os.PathLike, max_line: int | None = None):
        self.max_line = MAX_LINE_BYTES if max_line is None else int(max_line)
        self._f, self.name = _open_checked(path)
        self.path = self.name
        self._lock = threading.RLock()
        self._reset()
        try:
            self._scan()
            if not self.runs:  # nothing but an incomplete first line: a header being written, or not a metrics file
                if self._skipping:
                    raise _not_metrics(self.name, f"line 1 is over {_size(self.max_line)}")
                if not bytes(self._tail).lstrip().startswith(b'{"type":"run"'):
                    self._decoder.parse(bytes(self._tail), 1)  # raises: the line is not JSON
                raise MetricsFileError(self.name, "holds no whole record yet (its first line is incomplete)", "empty")
        except MetricsFileError:
            self.close()
            raise
        if self._tail or self._skipping:
            self._torn = (f"the last line is incomplete (the writer was killed mid-write); showing the "
                          f"{self._n_records:,} whole records before it")

    def _reset(self) -> None:
        st = os.fstat(self._f.fileno())
        self._ino = (st.st_dev, st.st_ino)
        self.runs: list[RunIndex] = []
        self.notices: list[str] = []  # "line 17: not JSON (...)", one per damaged line (the first MAX_NOTICES)
        self.n_damaged = 0  # damaged lines skipped
        self.rereads = 0  # times the followed file was found truncated or replaced, and read again
        self.reread_why = ""  # why it was read again (or why it could not be: a file no longer a metrics file)
        self._torn = ""  # the incomplete last line found on opening
        self._refused: tuple | None = None  # the replacement file last found not to be a metrics file
        self._decoder = RecordDecoder(self.name)
        self._scanned = 0  # where the first line not yet indexed starts
        self._pos = 0  # where the next read starts: the bytes between _scanned and here are _tail (or skipped)
        self._lineno = 0  # lines indexed (blank and damaged ones included)
        self._n_records = 0
        self._tail = bytearray()  # an incomplete last line
        self._tail_tried = -1  # the length of _tail when it was last tried as a whole line (JSON without newline)
        self._skipping = False  # the incomplete last line is over max_line: its bytes are skipped, not kept
        self._eaten = False  # _tail was taken as a whole line without its newline: a newline next is its own
        self._branch_runs: dict[str, RunIndex] = {}  # the current run's open branch of each name

    @property
    def notice(self) -> str | None:
        """What the reader skipped or did, in one line (None: nothing to say)."""
        parts = [p for p in (self.reread_why, self._torn) if p]
        if self.n_damaged:
            n = self.n_damaged
            parts.append(f"{n:,} damaged line{'s' if n != 1 else ''} skipped (first: {self.notices[0]})")
        return "; ".join(parts) or None

    # ------------------------------------------------------------------ reading
    def _read(self, offset: int, length: int) -> bytes:
        with self._lock:
            try:
                self._f.seek(offset)
                return self._f.read(length)
            except OSError as e:
                raise MetricsFileError(self.name, f"cannot be read any more ({e.strerror or e})", "unreadable") from e

    def _scan(self) -> bool:
        """Index the whole lines from where the last scan stopped; True if any record was added or line skipped.
        Reads only what is new: an incomplete last line is kept, and the search for its end goes on from where
        it stopped (a line that grows is read once, however often it is looked at)."""
        with self._lock:
            before = self._n_records + self.n_damaged
            self._f.seek(self._pos)
            while True:
                try:
                    chunk = self._f.read(_CHUNK)
                except OSError as e:
                    raise MetricsFileError(self.name, f"cannot be read ({e.strerror or e})", "unreadable") from e
                if not chunk:
                    break
                self._feed(chunk)
            if self._tail and len(self._tail) != self._tail_tried:
                self._tail_tried = len(self._tail)
                if _last_byte(self._tail) == ord("}") and self._whole(self._tail):  # only the newline missing
                    self._line(self._tail, 0, len(self._tail), self._scanned)
                    self._scanned, self._tail, self._eaten = self._pos, bytearray(), True
            return self._n_records + self.n_damaged > before

    @staticmethod
    def _whole(line: bytearray) -> bool:
        try:
            json.loads(line)
        except (ValueError, RecursionError):
            return False
        return True

    def _feed(self, chunk: bytes) -> None:
        """Index the lines that `chunk` (read at _pos) ends."""
        base, start = self._pos, 0
        self._pos += len(chunk)
        if self._eaten and chunk[:1] == b"\n":
            start, self._scanned = 1, base + 1
        self._eaten = False
        while (nl := chunk.find(b"\n", start)) >= 0:
            if self._skipping:
                self._skip(self._scanned, base + nl - self._scanned)
                self._skipping = False
            elif self._tail:
                if len(self._tail) + nl - start > self.max_line:
                    self._skip(self._scanned, len(self._tail) + nl - start)
                else:
                    self._tail += chunk[start:nl]
                    self._line(self._tail, 0, len(self._tail), self._scanned)
                self._tail, self._tail_tried = bytearray(), -1
            elif nl - start > self.max_line:
                self._skip(base + start, nl - start)
            else:
                self._line(chunk, start, nl, base + start)
            start = nl + 1
            self._scanned = base + start
        if start < len(chunk) and not self._skipping:
            if len(self._tail) + len(chunk) - start > self.max_line:
                self._skipping, self._tail, self._tail_tried = True, bytearray(), -1
            else:
                self._tail += memoryview(chunk)[start:]

    def _skip(self, offset: int, length: int) -> None:
        """A line over max_line bytes: skipped unread."""
        self._lineno += 1
        if not self.runs:
            raise _not_metrics(self.name, f"line {self._lineno} is over {_size(self.max_line)}")
        self._note(self._lineno, f"a line of {length:,} bytes, over the limit of {_size(self.max_line)} (skipped "
                                 "unread)")

    def _note(self, lineno: int, what: str) -> None:
        self.n_damaged += 1
        if len(self.notices) < MAX_NOTICES:
            self.notices.append(safe_text(f"line {lineno}: {what}"))

    def _line(self, buf: bytes | bytearray, start: int, end: int, offset: int) -> None:
        self._lineno += 1
        lineno = self._lineno
        if not buf[start:end].strip():
            return
        if not self.runs:  # the first record: a file that does not start with a run header is refused
            self._index_line(buf, start, end, offset, lineno)
            return
        try:
            self._index_line(buf, start, end, offset, lineno)
        except MetricsFileError as e:
            self._note(lineno, e.detail or str(e))
        except _READ_ERRORS as e:  # a check missed: still only this line's damage
            self._note(lineno, f"a line that cannot be read ({type(e).__name__}: {e})")

    def _index_line(self, buf: bytes | bytearray, start: int, end: int, offset: int, lineno: int) -> None:
        m = _SNAPSHOT_PREFIX.match(buf, start, end) if self.runs else None
        if m and (el := _finite(m.group(4))) is not None and int(m.group(2)) <= MAX_STEP and \
                int(m.group(3)) <= MAX_STEP:
            self._run_of(m.group(1) and m.group(1).decode(), lineno)._add(
                offset, end - start, lineno, int(m.group(2)), int(m.group(3)), el)
            self._n_records += 1
            return
        d = self._decoder.parse(bytes(buf[start:end]), lineno)
        if d["type"] == "snapshot":  # a snapshot in another layout: parsed once here for its step
            run = self._run_of(d.get("branch"), lineno)
            snap = self._decoder.record(d, lineno, run.header)
            run._add(offset, end - start, lineno, snap.step, snap.epoch, snap.elapsed_s)
            self._n_records += 1
            return
        if d["type"] != "run":
            self._run_of(d.get("branch"), lineno)
        rec = self._decoder.record(d, lineno)
        self._n_records += 1
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
        elif isinstance(rec, SpikeRecord):
            run.spikes.append(rec)

    def _run_of(self, branch: Any, lineno: int) -> RunIndex:
        """The run a record belongs to: the latest run, or its open branch of that name."""
        if branch is not None and branch not in BRANCHES:
            raise self._decoder._damaged(lineno, f"a record of an unknown branch ({safe_text(repr(branch))[:40]})")
        self._decoder.check_run(branch, lineno)  # a run or branch whose header was damaged
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
        anything new. A file truncated or replaced (a new run written over it) is indexed again from its start,
        and `notice` says so; one that is no longer a metrics file is said in `notice` and waited on."""
        with self._lock:
            try:
                st = os.stat(self.name)
            except OSError:
                return False  # gone for now: keep what was read
            if (st.st_dev, st.st_ino) != self._ino:
                return self._read_again(st, "the file was replaced")
            if st.st_size < self._pos:
                return self._read_again(st, f"the file was truncated (to {_size(st.st_size)})")
            if st.st_size == self._pos:
                return False
            try:
                new = self._scan()
            except MetricsFileError as e:
                self.reread_why = str(e)
                return True
            if not self._tail and not self._skipping:
                self._torn = ""
            return new

    def _read_again(self, st: os.stat_result, why: str) -> bool:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key == self._refused:
            return False
        try:
            fresh = MetricsIndex(self.name, self.max_line)
        except MetricsFileError as e:
            if e.reason in ("missing", "empty"):
                return False  # a new file still without its header: wait for it
            self._refused = key
            self.reread_why = f"{why}, and is no longer a metrics file ({e}): showing what was read before"
            return True
        old, rereads = self._f, self.rereads + 1
        for k, v in vars(fresh).items():
            if k != "_lock":
                setattr(self, k, v)
        for run in self.runs:
            for r in (run, *run.branches):
                r._index = self
        old.close()
        self.rereads = rereads
        self.reread_why = f"{why}: read again from its start"
        return True

    @property
    def n_records(self) -> int:
        return self._n_records

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "MetricsIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _last_byte(b: bytearray) -> int | None:
    """The last byte that is not white space (without copying what may be a long line)."""
    for i in range(len(b) - 1, max(len(b) - 4096, 0) - 1, -1):
        if b[i] not in b" \t\r\n":
            return b[i]
    return None


def _finite(b: bytes) -> float | None:
    """A number from a line's first bytes, if it is one and finite (else the line is parsed whole)."""
    try:
        x = float(b)
    except ValueError:
        return None
    return x if x - x == 0 else None


# ---------------------------------------------------------------------------------------------- streams
def _bounded_lines(f: IO[bytes], max_line: int) -> Iterator[tuple[bytes | None, int]]:
    """The lines of a binary stream as (line, 0), reading what the stream hands over as it comes; a line over
    max_line bytes as (None, its length), skipped without being kept in memory."""
    read = getattr(f, "read1", None) or f.read
    buf, skipped = bytearray(), 0
    while chunk := read(_STREAM_CHUNK):
        start = 0
        while (nl := chunk.find(b"\n", start)) >= 0:
            if skipped or len(buf) + nl - start > max_line:
                yield None, skipped + len(buf) + nl - start
                skipped = 0
            else:
                buf += chunk[start:nl + 1]
                yield bytes(buf), 0
            buf = bytearray()
            start = nl + 1
        if skipped or len(buf) + len(chunk) - start > max_line:
            skipped += len(buf) + len(chunk) - start
            buf = bytearray()
        else:
            buf += memoryview(chunk)[start:]
    if skipped:
        yield None, skipped
    elif buf:
        yield bytes(buf), 0


def iter_lines_records(lines: Iterable[bytes | str], name: str = "<stdin>", strict: bool = False,
                       max_line: int | None = None) -> Iterator[Record | NoticeRecord]:
    """Records of a stream of lines (a file object, standard input), in order, as the lines arrive. After the
    run header, a damaged line (or one over max_line bytes, MAX_LINE_BYTES: a binary stream's lines are read with
    that bound) yields a NoticeRecord in its place ("<stdin>: line 17: ...: skipped"), unless strict (then it
    raises). A last line without a newline that is not a record (a writer killed mid-write) ends the stream
    quietly unless strict. Raises MetricsFileError for input that is not a metrics stream."""
    max_line = MAX_LINE_BYTES if max_line is None else max_line
    dec = RecordDecoder(name)
    lineno = 0
    pending: tuple[bytes | str, int] | None = None  # the last line, without a newline: torn, or whole
    binary = hasattr(lines, "read") and not isinstance(lines, io.TextIOBase)
    source = _bounded_lines(lines, max_line) if binary else ((line, 0) for line in lines)

    def damaged(e: MetricsFileError) -> NoticeRecord:
        if strict or not dec.started:
            raise e
        return NoticeRecord(f"{safe_text(name)}: line {e.lineno}: {e.detail}: skipped", level="warning")

    try:
        for line, too_long in source:
            lineno += 1
            if line is None or len(line) > max_line + 2:
                if not dec.started:
                    raise _not_metrics(name, f"line {lineno} is over {_size(max_line)}")
                yield damaged(dec._damaged(lineno, f"a line of {too_long or len(line):,} bytes, over the limit of "
                                                   f"{_size(max_line)}"))
                continue
            if not line.strip():
                continue
            if (b"\0" if isinstance(line, bytes) else "\0") in line:
                if not dec.started:
                    raise MetricsFileError(name, f"a binary file, not text: not a vgtui metrics file ({WHAT_IT_IS})",
                                           "binary")
                yield damaged(dec._damaged(lineno, "binary (NUL bytes), not text"))
                continue
            if not line.endswith(b"\n" if isinstance(line, bytes) else "\n"):
                pending = (line, lineno)
                continue
            try:
                rec = dec.decode(line, lineno)
            except MetricsFileError as e:
                if e.reason != "damaged":
                    raise
                yield damaged(e)
                continue
            yield rec
    except UnicodeDecodeError as e:  # a text-mode stream of bytes that are not UTF-8
        raise MetricsFileError(name, f"a binary file, not text: not a vgtui metrics file ({WHAT_IT_IS})",
                               "binary") from e
    except OSError as e:
        raise MetricsFileError(name, f"cannot be read ({e.strerror or e})", "unreadable") from e
    if pending is not None:
        try:
            yield dec.decode(*pending)
        except MetricsFileError:
            if strict or not dec.started:
                raise
    elif not dec.started:
        raise MetricsFileError(name, "the stream is empty: no run header came", "empty")


def iter_records(path: str | os.PathLike, strict: bool = False) -> Iterator[Record | NoticeRecord]:
    """Records of a file in order; a damaged line is a NoticeRecord (see iter_lines_records). A torn last line
    (a run killed mid-write) is skipped unless strict."""
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
    spikes: list[SpikeRecord] = field(default_factory=list)  # the flight recorder's loss spikes


def _parsed(r: RunIndex) -> MetricsRun:
    return MetricsRun(r.header, list(r.iter_snapshots()), list(r.epochs), list(r.events), r.end,
                      [_parsed(b) for b in r.branches], list(r.spikes))


def read_metrics(path: str | os.PathLike) -> list[MetricsRun]:
    """Every run of the file with every record parsed (seconds for 10,000 snapshots: a viewer uses MetricsIndex).
    A fork's branch is under the run it forked from (`MetricsRun.branches`), not in the list. Raises
    MetricsFileError for a damaged snapshot (the index skips the other damaged lines)."""
    with MetricsIndex(path) as index:
        return [_parsed(r) for r in index.runs]
