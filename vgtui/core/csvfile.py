"""A run's snapshots as CSV, one row per snapshot and layer, one column per number: the writer `vgtui export`
and the UI's `e` key share.

    rows = write_csv(run_index_or_path, "run.csv")           # replaces a regular run.csv, refuses anything else
    path, rows = write_csv_new(run_index, "run.csv")         # the UI's `e`: run.csv, or run-2.csv... if it exists

The standard library only: it runs wherever the file was copied to.
"""

from __future__ import annotations

import csv
import io
import math
import os
from typing import IO, Callable

from vgtui.core.metrics import MetricsIndex, RunIndex
from vgtui.core.outfile import FileId, identity, numbered, write_new, write_replacing
from vgtui.core.records import LayerStats

SNAPSHOT_COLUMNS = ("step", "epoch", "elapsed_s", "loss", "loss_avg", "steps_per_s", "activation")
LAYER_COLUMNS = ("layer", "layer_activation", *LayerStats._FLOATS)
COLUMNS = SNAPSHOT_COLUMNS + LAYER_COLUMNS


def _cell(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def inputs_of(source: RunIndex) -> dict[FileId, str]:
    """The metrics file a run is read from, by (device, inode): the file the index holds open, and its name now."""
    index, ids = getattr(source, "_index", None), {}
    f = getattr(index, "_f", None)
    if f is not None and not getattr(f, "closed", True):
        ids[identity(f.fileno())] = "the metrics file"
    if getattr(index, "path", None):
        ids[identity(index.path)] = "the metrics file"
    ids.pop(None, None)
    return ids


def _rows(source: RunIndex, f: IO[str], progress: Callable[[int, int], None] | None,
          on_damaged: Callable[[str], None] | None) -> int:
    """Write the CSV of `source` to the text file `f`; returns the rows written. A damaged snapshot line is
    skipped and said to `on_damaged(one line naming it)`; without `on_damaged` it raises MetricsFileError."""
    w = csv.writer(f)
    w.writerow(COLUMNS)
    rows, total = 0, source.n_snapshots
    for i, snap in source.readable_snapshots(on_damaged):
        head = [snap.step, snap.epoch, snap.elapsed_s, snap.loss, snap.loss_avg, snap.steps_per_s, snap.activation]
        for layer in snap.layers:
            w.writerow([_cell(v) for v in (*head, layer.name, layer.activation,
                                           *(getattr(layer, k) for k in LayerStats._FLOATS))])
            rows += 1
        if progress and (i + 1) % 500 == 0:
            progress(i + 1, total)
    return rows


def _text(write: Callable[[IO[str]], int]) -> Callable[[IO[bytes]], int]:
    """`write(text_file)` as a writer of the binary file vgtui.core.outfile hands over (UTF-8, CSV line ends)."""
    def run(binary: IO[bytes]) -> int:
        f = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        try:
            return write(f)
        finally:
            f.flush()
            f.detach()
    return run


def write_csv(source: RunIndex | str | os.PathLike, out_path: str | os.PathLike, run: int = -1,
              progress: Callable[[int, int], None] | None = None,
              on_damaged: Callable[[str], None] | None = None) -> int:
    """Write the CSV of a run (a RunIndex, or run number `run` of the file at a path: 0-based, negative from the
    end) to `out_path`; returns the rows written. The file appears whole or not at all (written to an exclusive
    temporary file beside it, then renamed), and only a regular file is replaced: a symbolic link, a device, a
    FIFO, a folder or the metrics file itself (by device and inode: a hard link too) is refused (RefusedPath,
    a ValueError). `progress(done, total)` is called every 500 snapshots; `on_damaged(line)` for each damaged
    snapshot skipped (without it, a damaged snapshot raises). Raises MetricsFileError, RefusedPath, IndexError or
    OSError."""
    if not isinstance(source, RunIndex):
        with MetricsIndex(source) as index:
            return write_csv(index.runs[run], out_path, progress=progress, on_damaged=on_damaged)
    return write_replacing(out_path, _text(lambda f: _rows(source, f, progress, on_damaged)), inputs_of(source))


def write_csv_new(source: RunIndex, out_path: str | os.PathLike,
                  progress: Callable[[int, int], None] | None = None,
                  on_damaged: Callable[[str], None] | None = None) -> tuple[str, int]:
    """What the UI's `e` calls: the CSV of a run at `out_path`, or, when that name exists (whatever it is: the
    person's own file, the metrics file itself, a link), at the first free one of out-2.csv, out-3.csv...: nothing
    is ever replaced. Returns (the path written, the rows written)."""
    return write_new(numbered(out_path), _text(lambda f: _rows(source, f, progress, on_damaged)))


def write_csv_stream(source: RunIndex, out: IO[str], progress: Callable[[int, int], None] | None = None,
                     on_damaged: Callable[[str], None] | None = None) -> int:
    """The CSV of a run written to an open text stream (`--csv -`: standard output); returns the rows."""
    return _rows(source, out, progress, on_damaged)
