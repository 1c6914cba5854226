"""The metrics file: JSON Lines, one record per line, flushed per record (a killed run leaves whole lines).

    with MetricsWriter(path) as w:   # or MetricsWriter.check(path) first, to refuse a bad path early
        w.write(record)
    runs = read_metrics(path)        # [MetricsRun(header, snapshots, epochs, events, end), ...] one per run header
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from vgtui.core.records import (EndRecord, EpochRecord, EventRecord, Record, RunRecord, Snapshot,
                                  record_from_json, to_json)


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


def iter_records(path: str | os.PathLike, strict: bool = False) -> Iterator[Record]:
    """Records in file order. A torn last line (a run killed mid-write) is skipped unless strict."""
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield record_from_json(json.loads(line))
        except (json.JSONDecodeError, KeyError, ValueError) as e:
            if strict or i < len(lines) - 1:
                raise ValueError(f"{path}:{i + 1}: not a vgtui metrics record ({e})") from e


@dataclass
class MetricsRun:
    """One run of a metrics file: from a run header to its end record (absent if the run was killed)."""

    header: RunRecord
    snapshots: list[Snapshot] = field(default_factory=list)
    epochs: list[EpochRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    end: EndRecord | None = None


def read_metrics(path: str | os.PathLike) -> list[MetricsRun]:
    runs: list[MetricsRun] = []
    for rec in iter_records(path):
        if isinstance(rec, RunRecord):
            runs.append(MetricsRun(rec))
            continue
        if not runs:
            raise ValueError(f"{path}: the first record is not a run header")
        run = runs[-1]
        if isinstance(rec, Snapshot):
            run.snapshots.append(rec)
        elif isinstance(rec, EpochRecord):
            run.epochs.append(rec)
        elif isinstance(rec, EventRecord):
            run.events.append(rec)
        elif isinstance(rec, EndRecord):
            run.end = rec
    return runs
