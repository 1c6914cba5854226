"""`vgtui compare FILE...`: the comparison's table from metrics files already written (nothing trains, torch is
never imported). Each run of each file goes through the same Collector as a run compare trains (the records the
file holds are the ones the trainer handed the collector: the progress records the file thins out are not read by
it), so a file written by `vgtui compare --metrics-dir DIR` gives the row the run printed: the same text row, the
same verdict; in JSON and CSV the same numbers to float32 precision (the file holds the probes' values as the
float32s they were on the device, in their shortest form, and the medians and ratios are computed from those).

- A word is a file when it ends in `.jsonl` or holds a path separator; any other word is a SPEC. Files and SPECs
  are not mixed in one command (refused in one line: train with --metrics-dir, then compare the files).
- A file with several runs (a restart, a kept fork) gives one row per run, `(run K)` after its label; a fork's
  branch is a row of its own, `(run K, branch B from step S)`.
- A row's label is the SPEC its configuration spells (the header's config: activation, init unless PyTorch's, `bn`,
  `skip`, then `depthN`, `widthN`, `batchN`, `lrX`, `momentumX` or the optimizer where the runs compared differ in
  it and this run's value is not the one most of them have), so `relu+kaiming.jsonl` is the row `relu+kaiming` again; a run without vgtui's configuration (a
  `vgtui.watch` run) is labelled by its file's name. Two rows with the same label get their file's name after it (else its path, else `#N`).
- A damaged line is a notice on standard error (the row is made of the rest); a file that is missing, not a
  regular file (a directory, a FIFO, a device) or not a metrics file is refused in one line (exit 2) before the
  table is printed. Every string from a file (or a file name) is shown as text (vgtui.core.records.safe_text).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from dataclasses import dataclass
from typing import Any, TextIO

from vgtui.commands.compare.collect import Collector, Result, Row
from vgtui.core.config import RunConfig
from vgtui.core.outfile import kind_of
from vgtui.core.records import safe_text

SUFFIX = ".jsonl"
# the SPEC's numbered words and the optimizer, named in a label where the runs compared differ in them
_DIFFERING = (("optimizer", "{}"), ("depth", "depth{}"), ("width", "width{}"), ("batch_size", "batch{}"),
              ("lr", "lr{:g}"), ("momentum", "momentum{:g}"))


def is_file_arg(word: str) -> bool:
    """A metrics file rather than a SPEC: it ends in .jsonl or holds a path separator (a SPEC has neither)."""
    return word.endswith(SUFFIX) or "/" in word or os.sep in word


def check_file(path: str) -> str | None:
    """Why `path` cannot be read as a metrics file before it is opened (missing, not a regular file: a FIFO would
    block for ever), or None."""
    shown = safe_text(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{shown}: no such file: check the path"
    except OSError as e:
        return f"{shown}: cannot be read ({e.strerror or e})"
    if not stat.S_ISREG(st.st_mode):
        return f"{shown}: is {kind_of(st.st_mode)}, not a regular file: name a metrics file ({SUFFIX})"
    return None


@dataclass
class FileRun:
    """One run (or a fork's branch) of a file, as its collector saw it."""

    path: str
    number: int  # the run's place in its file, from 1 (as `vgtui replay --run N`)
    runs_in_file: int
    header: Any  # its RunRecord
    collector: Collector
    config: RunConfig | None = None  # vgtui's configuration from the header, None for a vgtui.watch run

    @property
    def branch(self) -> str | None:
        return self.header.branch


def _config(header: Any) -> RunConfig | None:
    """The header's vgtui configuration, checked; None when there is none or it does not hold up."""
    if header.source != "vgtui" or not isinstance(header.config, dict):
        return None
    try:
        return RunConfig.from_dict(header.config).validate()
    except Exception:  # noqa: BLE001 - data from another machine: a field of any type
        return None


def read_file(path: str, notices: list[str]) -> list[FileRun]:
    """Every run and branch of the file through a Collector each; damaged lines appended to `notices`. Raises
    vgtui.core.metrics.MetricsFileError for a file that is not a metrics file."""
    from vgtui.core.metrics import iter_records
    from vgtui.core.records import NoticeRecord, RunRecord

    runs: list[FileRun] = []
    current: dict[str | None, FileRun] = {}
    number = 0
    for rec in iter_records(path):
        if isinstance(rec, NoticeRecord):
            notices.append(rec.message)
            continue
        branch = getattr(rec, "branch", None)
        if isinstance(rec, RunRecord):
            if branch is None:
                number += 1
                current = {}
            cfg = _config(rec)
            seed = cfg.seed if cfg is not None else None  # a watched run has none: null in the JSON's "seeds"
            current[branch] = FileRun(path, number, 0, rec, Collector(Result("", seed)), cfg)  # type: ignore[arg-type]
            runs.append(current[branch])
        run = current.get(branch)
        if run is None:  # the reader refuses a record before its header: never here
            continue
        run.collector(dataclasses.replace(rec, branch=None) if branch is not None else rec)
    for run in runs:
        run.runs_in_file = number
        run.collector.finish_unended()
    return runs


def _spec(cfg: RunConfig, usual: dict[str, Any]) -> str:
    words = [cfg.activation]
    if cfg.init != "default":
        words.append(cfg.init)
    words += [w for w, on in (("bn", cfg.batchnorm), ("skip", cfg.skip)) if on]
    words += [fmt.format(getattr(cfg, key)) for key, fmt in _DIFFERING
              if key in usual and getattr(cfg, key) != usual[key]]
    return "+".join(words)


def _usual(cfgs: list[RunConfig]) -> dict[str, Any]:
    """For each numbered word in which the runs differ, the value most of them have (on a tie vgtui's default if
    it is one of them, else the first run's): a run with another value has the word in its label, as a SPEC that
    departs from the options does (`tanh+xavier+lr0.05` beside `sigmoid`)."""
    default = RunConfig()
    usual = {}
    for key, _ in _DIFFERING:
        values = [getattr(c, key) for c in cfgs]
        if len(set(values)) < 2:
            continue
        most = max(values.count(v) for v in values)
        tied = [v for v in dict.fromkeys(values) if values.count(v) == most]
        usual[key] = getattr(default, key) if getattr(default, key) in tied else tied[0]
    return usual


def label_runs(runs: list[FileRun]) -> list[str]:
    """Each run's row label (see the module's docstring), all different."""
    usual = _usual([r.config for r in runs if r.config is not None])
    labels = []
    for r in runs:
        name = os.path.basename(r.path)
        base = _spec(r.config, usual) if r.config is not None else \
            (name[:-len(SUFFIX)] if name.endswith(SUFFIX) and len(name) > len(SUFFIX) else name)
        where = [f"run {r.number}"] if r.runs_in_file > 1 else []
        if r.branch is not None:
            fork = f" from step {r.header.forked_at}" if r.header.forked_at is not None else ""
            where.append(f"branch {r.branch}{fork}")
        labels.append(safe_text(base + (f" ({', '.join(where)})" if where else "")))
    first = list(labels)
    for where in (lambda r: os.path.basename(r.path), lambda r: r.path):  # the file's name, else its path as given
        counts = {lab: labels.count(lab) for lab in labels}
        labels = [f"{f} [{safe_text(where(r))}]" if counts[lab] > 1 else lab for f, lab, r in zip(first, labels, runs)]
    counts = {lab: labels.count(lab) for lab in labels}
    labels = [f"{lab} #{i + 1}" if counts[lab] > 1 else lab for i, lab in enumerate(labels)]  # one file named twice
    return labels


@dataclass
class FileTable:
    rows: list[Row]
    setup: str
    depth: int  # the deepest run's hidden layers (the per-layer cells' note)


def read_files(paths: list[str], err: TextIO) -> FileTable:
    """The rows of the runs of `paths`, in the order given; each damaged line a notice on `err`."""
    from vgtui.commands.compare.table import setup_line

    runs: list[FileRun] = []
    for path in paths:
        notices: list[str] = []
        runs += read_file(path, notices)
        for n in notices:
            err.write(f"notice: {safe_text(n)}\n")
    rows = []
    for run, lab in zip(runs, label_runs(runs)):
        run.collector.r.label = lab
        rows.append(Row(lab, [run.collector.r], planned=1))
    cfgs = [r.config for r in runs if r.config is not None]
    if cfgs:
        setup = setup_line(cfgs[0].replace(**_usual(cfgs)), cfgs, 1)  # the options most runs share
        seeds = sorted({c.seed for c in cfgs})
        if len(seeds) > 1:
            setup = setup.replace(f"seed {cfgs[0].seed}", f"seeds {', '.join(map(str, seeds))}")
    else:
        setup = ""
    others = [r for r in runs if r.config is None]
    if others:
        models = sorted({safe_text(r.header.model or r.header.source) for r in others})
        setup = "; ".join(s for s in (setup, f"{len(others)} run{'s' * (len(others) > 1)} without vgtui's "
                                      f"configuration ({', '.join(models)})") if s)
    setup = f"{setup}; read from {len(paths)} file{'s' * (len(paths) > 1)}"
    depth = max([c.depth for c in cfgs] + [max(len(r.header.layers) - 1, 0) for r in others] + [0])
    return FileTable(rows, setup, depth)

