"""Writing the metrics file: JSON Lines, one record per line, flushed per record (a killed run leaves whole lines).

    with MetricsWriter(path) as w:   # check_writable(path) first, to refuse a bad path early
        w.write(record)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from vgtui.core.records import Record, to_json


def check_writable(path: str | os.PathLike) -> None:
    """Raise ValueError (naming the path) if a metrics file could not be written there. Leaves nothing behind:
    it tries the real thing (open for append, or a temporary file beside it), since permission bits lie to root."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"--metrics {path}: is a directory")
    parent = p.parent
    if not parent.is_dir():
        raise ValueError(f"--metrics {path}: folder {parent} does not exist")
    try:
        if p.exists():
            open(p, "a").close()
        else:
            tempfile.NamedTemporaryFile(dir=parent, prefix=".vgtui-check-").close()
    except OSError as e:
        raise ValueError(f"--metrics {path}: cannot write there ({e.strerror or e})") from e


class MetricsWriter:
    def __init__(self, path: str | os.PathLike):
        check_writable(path)
        self.path = Path(path).expanduser()
        self._f = open(self.path, "w", encoding="utf-8")

    def write(self, rec: Record) -> None:
        if self._f.closed:
            return
        self._f.write(json.dumps(to_json(rec), separators=(",", ":"), allow_nan=False) + "\n")
        self._f.flush()

    __call__ = write  # a writer is a record sink

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
