"""Running the comparison and collecting what the table shows: each configuration with each seed, one after
another on the same data; a Collector boils one run's records down to a Result; the Results of one configuration
make a Row. Stopped by a signal (or the table's reader gone), what finished is kept: the running configuration's
finished seeds as a partial row. The engine and torch are imported only when the runs start.
"""

from __future__ import annotations

import math
import os
import re
import select
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

from vgtui.core.config import RunConfig
from vgtui.core.summary import N_CLASSES, RunSummary, median_finite


# ---------------------------------------------------------------------------------------------- results
@dataclass
class Result:
    """One configuration run with one seed, boiled down to what the table shows."""

    label: str
    seed: int
    status: str = "running"
    ratio: float = math.nan  # median over snapshots of fc1/fc_last weight-gradient norm
    diagnosis: str = ""  # the run's verdict's badge (diagnosis.judge_run, as headless, replay and the UI say it)
    verdict_line: str = ""  # and its line: the layer and the reason, or the learning verdict's
    worst_layer: str = ""  # the layer the line names ("" when it names none: a healthy run, a learning verdict)
    regimes: list[str] = field(default_factory=list)  # each layer's regime (diagnosis.REGIMES), input to output
    factor: float = math.nan  # median over snapshots of the geometric mean of the per-layer gradient factors
    deriv_mean: float = math.nan  # median over snapshots of the hidden layers' mean |act'(z)| (the derivative probe)
    saturated: list[float] = field(default_factory=list)  # % per hidden layer, at the last snapshot
    dead: list[float] = field(default_factory=list)
    layer_ratio: list[float] = field(default_factory=list)  # each layer's median grad norm over the last's
    act_mean: list[float] = field(default_factory=list)  # per hidden layer, at the first snapshot (step 1)
    act_std: list[float] = field(default_factory=list)
    act_mean_end: list[float] = field(default_factory=list)  # at the last snapshot
    act_std_end: list[float] = field(default_factory=list)
    pre_drift: float = math.nan  # largest move of the pre-activation percentiles, in units of their first spread
    pre_last: list[tuple[float, float, float]] = field(default_factory=list)  # p15, p50, p85 per hidden layer
    train_acc: float = math.nan
    test_acc: float = math.nan
    steps: int = 0
    steps_per_s: float = math.nan


class Collector:
    """A trainer sink that keeps what the table needs from one run's records: the run's summary (RunSummary), and
    what only the table shows (per-layer ratios, activation statistics, pre-activation drift)."""

    def __init__(self, result: Result, n_classes: int = N_CLASSES):
        self.r = result
        self.summary = RunSummary(n_classes)
        self.norms: list[list[float]] = []
        self.pre_first: list[tuple[float, float, float]] | None = None
        self.drift = 0.0
        self.factors: list[float] = []  # each snapshot's geometric-mean per-layer factor
        self.derivs: list[float] = []  # each snapshot's mean over the hidden layers of mean |act'(z)|

    def __call__(self, rec) -> None:
        from vgtui.core.records import EndRecord, EpochRecord, Snapshot

        self.summary.add(rec)
        if isinstance(rec, Snapshot):
            if self.summary.snapshots == 1:
                hidden = [l for l in rec.layers if l.is_hidden]
                self.r.act_mean, self.r.act_std = [l.act_mean for l in hidden], [l.act_std for l in hidden]
            self.norms.append([l.grad_norm for l in rec.layers])
            self.factors.append(snapshot_factor(rec))
            self.derivs.append(snapshot_deriv(rec))
            self._pre(rec)
        elif isinstance(rec, EpochRecord):
            self.r.train_acc, self.r.test_acc = rec.train_acc, rec.test_acc
        elif isinstance(rec, EndRecord):
            self._end(rec)

    def _pre(self, snap) -> None:
        pre = [(l.pre_p15, l.pre_p50, l.pre_p85) for l in snap.layers if l.pre_p50 is not None]
        if not pre:
            return
        if self.pre_first is None:
            self.pre_first = pre
        for first, now in zip(self.pre_first, pre):
            spread = max(first[2] - first[0], 1e-12)
            self.drift = max(self.drift, max(abs(a - b) for a, b in zip(now, first)) / spread)
        self.r.pre_last = pre

    def _end(self, rec) -> None:
        self._finish(rec.status, rec.steps)

    def finish_unended(self) -> None:
        """A run read from a file that holds no end record (killed, or still being written): the row of what it
        has, its status "unfinished", its steps the last snapshot's."""
        if self.summary.end is None:
            self._finish("unfinished", self.summary.last_step or 0)

    def _finish(self, status: str, steps: int) -> None:
        r, s = self.r, self.summary
        snap = s.last
        r.status, r.steps = status, steps
        r.steps_per_s, r.ratio = s.steps_per_s, s.ratio
        if s.snapshots or s.diverged:
            v = s.verdict
            r.diagnosis, r.verdict_line, r.worst_layer = v.badge, v.line, worst_layer(v)
            r.regimes = [lv.regime for lv in v.layers]
        r.factor, r.deriv_mean = median_finite(self.factors), median_finite(self.derivs)
        if snap is not None:
            hidden = [l for l in snap.layers if l.is_hidden]
            r.saturated = [100 * (l.saturated_frac or 0.0) for l in hidden]
            r.dead = [100 * (l.dead_frac or 0.0) for l in hidden]
            r.act_mean_end, r.act_std_end = [l.act_mean for l in hidden], [l.act_std for l in hidden]
            last = [n[-1] for n in self.norms]
            r.layer_ratio = [median_finite([n[i] / b if b else math.nan for n, b in zip(self.norms, last)])
                             for i in range(len(snap.layers))]
        r.pre_drift = self.drift if self.pre_first is not None else math.nan


def snapshot_factor(snap) -> float:
    """The geometric mean of one snapshot's per-layer gradient factors (diagnosis.layer_factors: |dL/dz| at a layer
    over the one above it), the "each layer multiplies the gradient by about ..." of explain_factors; NaN when the
    snapshot has none (a file without the gradients they need)."""
    from vgtui.core.diagnosis import layer_factors

    fs = [f.factor for f in layer_factors(snap) if f.factor > 0 and math.isfinite(f.factor)]
    return math.exp(statistics.fmean(math.log(f) for f in fs)) if fs else math.nan


def snapshot_deriv(snap) -> float:
    """The mean over the hidden layers of the derivative probe's mean |act'(z)| (NaN where none was probed)."""
    d = [l.deriv_mean for l in snap.layers if l.is_hidden and l.deriv_mean is not None and math.isfinite(l.deriv_mean)]
    return statistics.fmean(d) if d else math.nan


def worst_layer(verdict) -> str:
    """The layer a RunVerdict's line names ("fc1: gets 1/10,000 of fc6's gradient"; "...; worst layer fc3: 60% of
    its units dead"), "" when it names none (a healthy run, a learning verdict, gradients small everywhere)."""
    for lv in verdict.layers:
        if lv.regime not in ("healthy", "frozen") and f"{lv.name}: {lv.reason}" in verdict.line:
            return lv.name
    return ""


@dataclass
class Row:
    """One configuration's results, one per seed that finished: a row of the table."""

    label: str
    results: list[Result]
    planned: int = 0  # seeds this configuration was to run; more than len(results): a partial row (stopped)

    @property
    def partial(self) -> bool:
        return len(self.results) < self.planned

    def med_list(self, attr: str) -> list[float]:
        """The median over the seeds of a per-layer list of the results (`saturated`, `act_std`, ...), by layer."""
        lists = [getattr(r, attr) for r in self.results if getattr(r, attr)]
        return [median_finite(list(col)) for col in zip(*lists)] if lists else []


# ---------------------------------------------------------------------------------------------- progress
class Progress:
    """A bar for the configuration running and one for the whole comparison, redrawn in place on a terminal (at
    most 5 times a second); elsewhere one line per finished configuration."""

    def __init__(self, out: TextIO, total_steps: int, n_runs: int):
        self.out, self.total, self.n_runs = out, max(total_steps, 1), n_runs
        self.tty = out.isatty()
        self.done_steps = 0
        self.current, self.index, self.run_total = "", 0, 1
        self._drawn = 0.0

    def start(self, name: str, index: int, run_total: int) -> None:
        self.current, self.index, self.run_total = name, index, max(run_total, 1)
        self._draw(0, force=True)

    def step(self, step: int) -> None:
        self._draw(step)

    def finish(self, res: Result) -> None:
        self.done_steps += self.run_total
        msg = (f"[{self.index}/{self.n_runs}] {res.label} (seed {res.seed}): {res.status}, fc1/last "
               f"{res.ratio:.1e}, test acc {res.test_acc:.2f}, {res.steps_per_s:.0f} steps/s")
        self.out.write(("\r\033[K" if self.tty else "") + msg + "\n")
        self.out.flush()

    def _draw(self, step: int, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._drawn < 0.2:
            return
        self._drawn = now
        from vgtui.commands.headless import bar

        overall = (self.done_steps + step) / self.total
        self.out.write(f"\r\033[K[{self.index}/{self.n_runs}] {self.current:<22} {bar(step / self.run_total, 16)} "
                       f"{step}/{self.run_total}   all {bar(overall, 16)} {overall:4.0%}")
        self.out.flush()


# ---------------------------------------------------------------------------------------------- the runs
def metrics_path(directory: str, name: str, seed: int, seeds: int) -> str:
    """DIR/relu+kaiming.jsonl, or DIR/relu+kaiming.seed1.jsonl with several seeds."""
    stem = name if seeds == 1 else f"{name}.seed{seed}"
    return os.path.join(directory, re.sub(r"[^A-Za-z0-9+._-]", "_", stem) + ".jsonl")


def check_metrics_dir(directory: str, labels: list[str], seeds: int, seed: int) -> str | None:
    """Why the comparison could not write its metrics files in `directory` (made if missing), or None: each
    configuration's file for each seed `seed`..`seed`+`seeds`-1 (the names run_all writes) is checked as `--metrics`
    checks its file (a directory, FIFO or device at that name, a file that is not a vgtui metrics file, one another
    run holds locked, a folder that refuses writes), before any configuration trains."""
    from vgtui.core.writer import MetricsPathError, check_writable

    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        return f"--metrics-dir {directory}: cannot make that folder ({e.strerror or e})"
    for name in labels:
        for s in range(seeds):
            path = metrics_path(directory, name, seed + s, seeds)
            try:
                check_writable(path)
            except MetricsPathError as e:
                return (f"--metrics-dir {directory}: {path}: {_why(e)}; compare writes one file per configuration "
                        "there: move that away, or choose another --metrics-dir")
    return None


def _why(e: Exception) -> str:
    """A MetricsPathError's reason without --metrics's own advice (--overwrite, a file name), which compare's
    options do not have: '--metrics P: is a FIFO; the metrics ...' -> 'is a FIFO'."""
    return str(e).split(": ", 1)[-1].split("; ")[0]


def _stdout_gone(fd: int = 1) -> bool:
    """True when standard output is a pipe whose reader has gone (`| head -1` has exited): nobody will read the
    table."""
    try:
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLNVAL) for _, ev in poll.poll(0))
    except (OSError, ValueError):
        return False


def run_all(configs: list[tuple[str, RunConfig]], seeds: int, metrics_dir: str | None,
            err: TextIO) -> tuple[list[Row] | None, int]:
    """Run every configuration with every seed (configurations first, so a Ctrl+C leaves whole rows for the first
    ones); returns the rows of what finished and the exit status (None rows: refused before anything ran).

    Stopped (a signal, or the table's reader gone): the rows of what finished, the running configuration's
    finished seeds as a partial row. A metrics file that cannot be opened or written mid-way: one line, then the
    rows of what finished (exit 4). A configuration whose training fails: a row marked failed, the others go on.
    Progress on `err` never stops the comparison: a broken standard error is ignored, unless standard output went
    with it (`2>&1 | head -1`), which ends the comparison like a SIGPIPE would (141)."""
    from vgtui import signals as sig
    from vgtui.core.writer import MetricsPathError, MetricsWriteError, MetricsWriter
    from vgtui.engine.data import DataError, load_dataset, resolve_device
    from vgtui.engine.trainer import Trainer, progress_at_most
    from vgtui.commands.headless import _SafeOut

    def err_closed(e: OSError) -> None:
        if _stdout_gone():
            raise sig.Interrupted(text="standard output was closed (broken pipe)", status=sig.BROKEN_PIPE_STATUS,
                                  cause="stdout-closed")

    err = _SafeOut(err, err_closed)  # type: ignore[assignment]
    first = configs[0][1]
    try:
        if metrics_dir:
            os.makedirs(metrics_dir, exist_ok=True)
        device, _ = resolve_device(first.device)
        if first.dataset != "mnist-5k":
            err.write(f"loading {first.dataset} from {first.data_dir}\n")
        data = load_dataset(first.dataset, first.data_dir, first.offline, device)
    except (DataError, ValueError, OSError) as e:
        err.write(f"vgtui compare: error: {e}\n")
        return None, 2
    if data.notice:
        err.write(f"notice: {data.notice}\n")
    steps_each = []
    for _, cfg in configs:
        spe = max(1, len(data.x_train) // cfg.batch_size)
        steps_each.append(min(spe * cfg.epochs, cfg.max_steps) if cfg.max_steps else spe * cfg.epochs)
    progress = Progress(err, sum(steps_each) * seeds, len(configs) * seeds)
    rows: list[Row] = []
    status = 0
    k = 0
    row: Row | None = None
    res: Result | None = None
    with sig.raising():
        try:
            for (name, cfg), steps in zip(configs, steps_each):
                results = []
                row = Row(name, results, planned=seeds)
                for s in range(seeds):
                    k += 1
                    res = Result(name, cfg.seed + s)
                    collector = Collector(res)
                    progress.start(name, k, steps)
                    writer = None
                    writer_path = metrics_path(metrics_dir, name, cfg.seed + s, seeds) if metrics_dir else ""
                    try:
                        if metrics_dir:
                            writer = MetricsWriter(writer_path)
                        sinks: list[Callable] = [collector, _progress_sink(progress)]
                        if writer:
                            sinks.insert(0, progress_at_most(writer.write))
                        Trainer(cfg.replace(seed=cfg.seed + s), sinks, data=data).run()
                    except (MetricsWriteError, MetricsPathError) as e:  # a full disk; a file that turned bad
                        what = e if isinstance(e, MetricsWriteError) else f"its metrics file {writer_path}: {_why(e)}"
                        err.write(f"\nvgtui compare: error: {name} (seed {cfg.seed + s}): {what}; stopped there, "
                                  "the table of what finished:\n")
                        status = 4
                    except Exception as e:  # noqa: BLE001 - a failed configuration is a row, the others go on
                        res.status, res.diagnosis = "failed", f"FAILED: {type(e).__name__}"
                        err.write(f"vgtui compare: {name}: training failed: {type(e).__name__}: {e}\n")
                    finally:
                        if writer:
                            writer.close()
                    if status == 4:
                        break
                    results.append(res)  # before its progress line: a signal after that line keeps it
                    progress.finish(res)
                rows.append(row)
                if status == 4:
                    break
        except KeyboardInterrupt as e:
            sig.ignore_after_first()
            if row is not None and res is not None and res.status not in ("running", "interrupted") and \
                    status != 4 and all(r is not res for r in row.results):
                row.results.append(res)  # it had finished when the signal came, its line not yet printed
            if row is not None and all(r is not row for r in rows):
                rows.append(row)  # the running configuration's finished seeds: a partial row
            err.write(f"\nvgtui compare: {getattr(e, 'message', 'interrupted')}; the table of what finished:\n")
            status = sig.status_of(e)
    rows = [r for r in rows if r.results]
    return rows, status


def _progress_sink(progress: Progress) -> Callable:
    from vgtui.core.records import ProgressRecord, Snapshot

    def sink(rec) -> None:
        if isinstance(rec, (ProgressRecord, Snapshot)):
            progress.step(rec.step)

    return sink
