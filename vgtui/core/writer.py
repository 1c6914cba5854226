"""Writing the metrics file: the one thing a user keeps, so it follows one discipline.

- Opened for append, never truncated: a restart or a new run adds a new `run` header after what is there. An
  existing file that is not a vgtui metrics file is refused (`overwrite=True` replaces it: the user said so).
- Locked (`flock`, exclusive, non-blocking) while a run writes to it: a second writer is refused, naming the pid
  that holds it. The lock belongs to the open file, so a trainer child handed the file (`MetricsWriter(fd=...)`)
  shares it with the UI process that opened it, and either may write the end record.
- A record is one `write` of one whole line. A short write (fewer bytes taken than asked: the first sign of a full
  disk) is followed by the rest, so the line is completed, or fails: a write that fails (a full disk, a file-size
  limit) is rolled back to the last whole line and raises `MetricsWriteError`; the writer then stops writing
  records, except an end record, which it tries once more (a rollback may have freed the room it needs).
- Only regular files: a FIFO (which would hang with no reader), a device (/dev/full) or a directory is refused.

    check_writable(path)                 # refuse early, before anything starts (raises MetricsPathError)
    with MetricsWriter(path) as w:       # lock, append
        w.write(record)
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import tempfile
from pathlib import Path

from vgtui.core.outfile import kind_of
from vgtui.core.records import EndRecord, Record, RecordEncoder


class MetricsPathError(ValueError):
    """The metrics path cannot be used (exit status 2): the message names the path and what to do."""


class MetricsWriteError(OSError):
    """A record could not be written (a full disk, say); the file was rolled back to its last whole line.
    `reason` is the system's word for it ("No space left on device")."""

    reason: str = ""


def _opt(path: str | os.PathLike) -> str:
    return f"--metrics {path}"


def holder_pid(path: str | os.PathLike) -> int | None:
    """The pid holding a lock on `path`, from /proc/locks (Linux), or None when unknown or unlocked."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                # "1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF" (with "->" for blocked waiters)
                if "->" in parts or len(parts) < 6:
                    continue
                dev_ino = parts[5].split(":")
                if len(dev_ino) == 3 and int(dev_ino[2]) == st.st_ino:
                    return int(parts[4])
    except (OSError, ValueError):
        pass
    return None


def looks_like_metrics(path: str | os.PathLike) -> bool:
    """True when the file is empty or its first line is a vgtui run header."""
    with open(path, "rb") as f:
        first = f.readline(1 << 20)
    if not first.strip():
        return True
    try:
        d = json.loads(first)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(d, dict) and d.get("type") == "run" and "layers" in d


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> None:
    """Raise MetricsPathError (naming the path) if a run could not write its metrics file there. Opens nothing
    that would block (a FIFO) and leaves nothing behind."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise MetricsPathError(f"{_opt(path)}: cannot use it ({e.strerror or e})") from e
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise MetricsPathError(f"{_opt(path)}: is a directory; give a file name, e.g. {p / 'run.jsonl'}")
        if not stat.S_ISREG(st.st_mode):
            raise MetricsPathError(f"{_opt(path)}: is {kind_of(st.st_mode)}; the metrics file must be a regular file (follow it "
                                   "live from elsewhere with `vgtui follow FILE`)")
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK))
        except OSError as e:
            raise MetricsPathError(f"{_opt(path)}: cannot write there ({e.strerror or e})") from e
        try:
            is_metrics = looks_like_metrics(p)
        except OSError as e:
            raise MetricsPathError(f"{_opt(path)}: cannot read it ({e.strerror or e})") from e
        if not is_metrics and not overwrite:
            raise MetricsPathError(f"{_opt(path)}: exists and is not a vgtui metrics file; choose another path, "
                                   "or pass --overwrite to replace it")
        pid = holder_pid(p)
        if pid is not None and pid != os.getpid():
            raise MetricsPathError(f"{_opt(path)}: another vgtui run (pid {pid}) is writing it; wait for it to end "
                                   "or choose another path")
        return
    parent = p.parent
    if not parent.is_dir():
        raise MetricsPathError(f"{_opt(path)}: folder {parent} does not exist")
    try:  # the real thing: permission bits lie to root, and some file systems (/proc) refuse new files
        tempfile.NamedTemporaryFile(dir=parent, prefix=".vgtui-check-").close()
    except OSError as e:
        raise MetricsPathError(f"{_opt(path)}: cannot write in {parent} ({e.strerror or e})") from e


class MetricsWriter:
    """Appends records to a locked metrics file (see the module docstring).

    `MetricsWriter(path)` opens and locks the file; `MetricsWriter(fd=fd, path=path)` writes through a
    descriptor another process opened and locked (a trainer child shares its UI's lock this way)."""

    def __init__(self, path: str | os.PathLike | None = None, *, fd: int | None = None, overwrite: bool = False):
        self.error: MetricsWriteError | None = None
        self.records = 0  # written by this writer
        self._encoder = RecordEncoder()  # snapshots leave out the histogram edges their run header holds
        self.created = False  # this writer made the file (it did not exist)
        self._torn = False  # a failed write left part of a line that could not be cut off
        if fd is not None:
            self.path = Path(path) if path is not None else None
            self._fd = fd
            self._owns_fd = False
            return
        if path is None:
            raise TypeError("MetricsWriter needs a path or an fd")
        check_writable(path, overwrite=overwrite)
        self.path = Path(path).expanduser()
        self.created = not self.path.exists()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            raise MetricsPathError(f"{_opt(path)}: cannot open it ({e.strerror or e})") from e
        self._owns_fd = True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            pid = holder_pid(self.path)
            os.close(self._fd)
            self._fd = -1
            who = f" (pid {pid})" if pid else ""
            raise MetricsPathError(f"{_opt(path)}: another vgtui run{who} is writing it; wait for it to end or "
                                   "choose another path") from e
        if overwrite and not looks_like_metrics(self.path):
            os.ftruncate(self._fd, 0)  # the user asked for it (--overwrite)

    @property
    def fd(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def write(self, rec: Record) -> None:
        """Append one record as one whole line. Raises MetricsWriteError after rolling a failed write back.
        After a failure only an end record is still tried (once)."""
        if self._fd < 0 or getattr(rec, "ephemeral", False):
            return
        if self.error is not None and not isinstance(rec, EndRecord):
            return
        self._append(self._encoder.line(rec).encode("utf-8"))

    __call__ = write  # a writer is a record sink

    def _append(self, data: bytes) -> None:
        """One line, whole or not at all. A short write (write() taking fewer bytes than asked: the first sign of a
        full disk, or of a file-size limit) is followed by the rest; the line is completed if the rest goes in,
        else the error that stops it (ENOSPC, EFBIG) is raised after the file is cut back to where the line
        began. Were even that cut refused, the next line would start on a line of its own (the torn one is then a
        damaged line, not glued to the end record)."""
        fd = self._fd
        if self._torn:
            data = b"\n" + data
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            done = os.write(fd, data)
            while done < len(data):  # a short write
                n = os.write(fd, memoryview(data)[done:])
                if n <= 0:  # no progress and no error: say what a short write nearly always means
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
            self.records += 1
            self._torn = False
        except OSError as e:
            try:
                os.ftruncate(fd, start)  # back to the last whole line
            except OSError:
                self._torn = True  # the next line starts with a newline (at worst a blank line, which readers skip)
            where = f"the metrics file {self.path}" if self.path else "the metrics file"
            self.error = MetricsWriteError(e.errno, f"cannot write {where}: {e.strerror or e}")
            self.error.reason = e.strerror or str(e)
            raise self.error from e

    def close(self) -> None:
        if self._fd >= 0:
            if self._owns_fd:
                os.close(self._fd)  # also releases the lock (unless a child still holds the same file open)
            self._fd = -1

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def last_record_type(path: str | os.PathLike) -> str | None:
    """The `type` of the file's last whole line, reading only its tail (None if empty or unreadable); a fork's
    branch record reads "end@B", "snapshot@B", ...: the run itself has not ended when its branch has."""
    last = _last_record(path)
    if last is None:
        return None
    return last.get("type") + (f"@{last['branch']}" if last.get("branch") else "")


def _last_record(path: str | os.PathLike) -> dict | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - (1 << 20)))
            tail = f.read()
    except OSError:
        return None
    lines = [l for l in tail.split(b"\n") if l.strip()]
    if not lines:
        return None
    try:
        d = json.loads(lines[-1])
    except ValueError:
        return None
    return d if isinstance(d, dict) and isinstance(d.get("type"), str) else None
