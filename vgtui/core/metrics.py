"""Reading the metrics file (JSON Lines, one record per line); `vgtui.core.writer` writes it.

    runs = read_metrics(path)        # [MetricsRun(header, snapshots, epochs, events, end), ...] one per run header
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Iterator

from vgtui.core.records import (EndRecord, EpochRecord, EventRecord, Record, RunRecord, Snapshot,
                                  record_from_json)


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
