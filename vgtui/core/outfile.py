"""Writing a file the person named (a CSV export, a screenshot, a downloaded dataset file) without ever losing one.

Every path vgtui writes, other than the metrics file (vgtui/core/writer.py), goes through here:

- The new content is written to a temporary file created exclusively, under an unpredictable name, in the
  target's folder (`tempfile.mkstemp`: O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600), flushed to the disk, then renamed
  into place: the target appears whole or not at all, and a link planted at a guessable name redirects nothing.
- `write_replacing(path, ...)` renames over `path` only when `path` is absent or a regular file: never over a
  symbolic link (neither the link nor what it points to is touched), a device (/dev/null), a FIFO, a socket or a
  folder, and never over one of `inputs`, the files being read (compared by device and inode: a hard link, or
  the same file by another name, is refused as well).
- `write_new(candidates, ...)` never replaces anything: it links the finished file to the first candidate name
  that does not exist yet (`link` fails on an existing name, even a dangling link) and says which one.

    write_replacing("run.csv", lambda f: f.write(b"..."), inputs={identity("run.jsonl")})
    path, _ = write_new(numbered("run.csv"), lambda f: f.write(b"..."))   # run.csv, run-2.csv, run-3.csv...
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from typing import IO, Callable, Iterable, Iterator, Mapping, TypeVar

T = TypeVar("T")
FileId = tuple[int, int]  # (st_dev, st_ino)

_NO_LINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV, errno.EACCES}


class RefusedPath(ValueError):
    """The path is not one vgtui writes (a link, a device, a folder, the input itself); the message names it and
    says why, in one line."""


def kind_of(mode: int) -> str:
    """What a file is, in words ("a character device")."""
    for test, what in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISREG, "a regular file")):
        if test(mode):
            return what
    return "not a regular file"


def identity(path_or_fd: str | os.PathLike | int) -> FileId | None:
    """(device, inode) of a file, following links (what a reader opened), or None when there is none."""
    try:
        st = os.fstat(path_or_fd) if isinstance(path_or_fd, int) else os.stat(path_or_fd)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def check_target(path: str | os.PathLike, inputs: Mapping[FileId, str] | None = None) -> os.stat_result | None:
    """The lstat of `path` when it is a regular file vgtui may replace, None when it does not exist. Raises
    RefusedPath for a symbolic link, anything but a regular file, or one of `inputs` ({(dev, ino): "the metrics
    file"}); OSError when it cannot be looked at."""
    name = os.fspath(path)
    try:
        st = os.lstat(name)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise RefusedPath(f"{name}: is a symbolic link; nothing is written through a link (neither it nor what it "
                          "points to is touched): name a regular file")
    if stat.S_ISDIR(st.st_mode):
        raise RefusedPath(f"{name}: is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise RefusedPath(f"{name}: is {kind_of(st.st_mode)}, not a regular file; only a regular file is replaced")
    what = (inputs or {}).get((st.st_dev, st.st_ino))
    if what is not None:
        extra = " (the same file under another name: a hard link)" if st.st_nlink > 1 else ""
        raise RefusedPath(f"{name}: is {what} itself{extra}; choose another name")
    return st


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _temp(folder: str, name: str) -> tuple[int, str]:
    """An exclusive, unpredictable temporary file in `folder` (mkstemp: O_EXCL, O_NOFOLLOW, mode 0600)."""
    return tempfile.mkstemp(prefix=f".{name[:80]}.", suffix=".part", dir=folder)


def _fill(fd: int, write: Callable[[IO[bytes]], T], mode: int) -> T:
    with os.fdopen(fd, "wb") as f:
        result = write(f)
        f.flush()
        os.fsync(f.fileno())
        os.fchmod(f.fileno(), mode)
    return result


def _drop(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def write_replacing(path: str | os.PathLike, write: Callable[[IO[bytes]], T],
                    inputs: Mapping[FileId, str] | None = None) -> T:
    """Write a file at `path` through `write(binary_file)`, replacing a regular file there (its permissions
    kept), never anything else (see the module docstring). Returns what `write` returned. Raises RefusedPath, or
    OSError (nothing is left behind: the temporary file is removed)."""
    name = os.fspath(path)
    st = check_target(name, inputs)
    mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
    fd, tmp = _temp(os.path.dirname(name) or ".", os.path.basename(name))
    try:
        result = _fill(fd, write, mode)
        check_target(name, inputs)  # again, just before the rename: it may have changed meanwhile
        os.replace(tmp, name)
    finally:
        _drop(tmp)
    return result


def numbered(path: str | os.PathLike, first: int = 2) -> Iterator[str]:
    """path, then path-2, path-3... before the extension (run.csv, run-2.csv, run-3.csv...)."""
    name = os.fspath(path)
    stem, ext = os.path.splitext(name)
    yield name
    n = first
    while True:
        yield f"{stem}-{n}{ext}"
        n += 1


def write_new(candidates: Iterable[str | os.PathLike], write: Callable[[IO[bytes]], T],
              tries: int = 1000) -> tuple[str, T]:
    """Write a file through `write(binary_file)` at the first of `candidates` (names in one folder) that does not
    exist: nothing is ever replaced, not even a dangling link. Returns (the path written, what `write` returned).
    Raises RefusedPath when `tries` names are all taken, or OSError (nothing is left behind)."""
    names = iter(candidates)
    first = os.fspath(next(names))
    fd, tmp = _temp(os.path.dirname(first) or ".", os.path.basename(first))
    try:
        result = _fill(fd, write, 0o666 & ~_umask())
        name = first
        for i in range(tries):
            if i:
                name = os.fspath(next(names))
            try:
                os.link(tmp, name)  # fails on any existing name; never follows one
                return name, result
            except FileExistsError:
                continue
            except OSError as e:  # a file system without hard links: rename, if the name is still free
                if e.errno not in _NO_LINK:
                    raise
                if not os.path.lexists(name):
                    os.rename(tmp, name)
                    return name, result
        raise RefusedPath(f"{first}: it and the next {tries - 1} numbered names exist already; nothing written")
    finally:
        _drop(tmp)
