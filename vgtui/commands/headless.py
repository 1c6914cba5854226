"""`vgtui --headless`: the experiment without the terminal UI, for SSH sessions, CI jobs and scripts.

Prints a progress bar per epoch, a one-line per-layer gradient summary on a log scale at each epoch end, and a
plain-words diagnosis at the end: the gradient-flow and learning verdicts, then every layer judged (the badge and
the layer that decides it), the gradient's factor per layer, and the preflight at step 1. Exit status: 0 completed, 1 failed, 2 refused input, 3 diverged, 4 the metrics
file could not be written (a full disk), 128 + signal for a signal (130 Ctrl+C, 129 SIGHUP, 143 SIGTERM), 141 when
standard output was closed.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TextIO

from vgtui import __version__
from vgtui import signals as sig
from vgtui.core.config import RunConfig
from vgtui.core.diagnosis import explain, explain_learning
from vgtui.core.records import EndRecord, EpochRecord, ProgressRecord, Record, RunRecord, Snapshot, SpikeRecord
from vgtui.core.spikes import spike_words
from vgtui.core.summary import RunSummary

EXIT = {"completed": 0, "failed": 1, "diverged": 3, "interrupted": 130}  # signals: see vgtui.signals
BLOCKS = "▁▂▃▄▅▆▇█"
LOG_LO, LOG_HI = -8, 2  # fixed decades of the summary line: ▁ = 1e-8 or less, █ = 1e2 or more


def spark(value: float) -> str:
    if not math.isfinite(value):
        return "!"
    if value <= 0:
        return BLOCKS[0]
    f = (math.log10(value) - LOG_LO) / (LOG_HI - LOG_LO)
    return BLOCKS[min(len(BLOCKS) - 1, max(0, int(f * len(BLOCKS))))]


def grad_summary(snap: Snapshot) -> str:
    cells = "  ".join(f"{l.name} {spark(l.grad_norm)} {l.grad_norm:.0e}" for l in snap.layers)
    return f"  grad norm  {cells}   {snap.layers[0].name}/{snap.layers[-1].name} {snap.ratio():.1e}"


def epoch_steps(h: RunRecord, epoch: int) -> int:
    """Steps in `epoch` of this run: a whole epoch, or what --max-steps leaves of the last one."""
    spe = max(h.steps_per_epoch, 1)
    if h.total_steps <= 0:
        return spe
    return max(1, min(spe, h.total_steps - (epoch - 1) * spe))


def steps_text(h: RunRecord) -> str:
    """'200 steps', and when --max-steps cuts the run short, in how many epochs: '200 steps (--max-steps: 5
    epochs of 40 steps, not 10)', '190 steps (--max-steps: 4 epochs of 40 steps and 30 of a 5th, not 10)'."""
    c, spe, total = h.config or {}, h.steps_per_epoch, h.total_steps
    text = f"{total:,} steps"
    if not c.get("max_steps") or spe <= 0 or total >= spe * int(c.get("epochs", 0)):
        return text
    whole, rest = divmod(total, spe)
    if whole == 0:
        return text + f" (--max-steps: {total} of the first epoch's {spe:,})"
    part = f"{whole} epoch{'s' if whole > 1 else ''} of {spe:,} steps" + (f" and {rest} of a {_nth(whole + 1)}"
                                                                          if rest else "")
    return text + f" (--max-steps: {part}, not {c['epochs']})"


def _nth(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def bar(frac: float, width: int = 24) -> str:
    n = int(round(max(0.0, min(1.0, frac)) * width))
    return "█" * n + "░" * (width - n)


class Reporter:
    """Turns records into lines on `out`. On a terminal the progress bar redraws in place from the trainer's
    progress records (a few a second); elsewhere (logs, CI) only each epoch's closing line is printed."""

    def __init__(self, out: TextIO = sys.stdout, tty: bool | None = None):
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.header: RunRecord | None = None
        self.snap: Snapshot | None = None
        self.summary = RunSummary()  # the run so far: its closing lines come from it
        self._drawn = 0.0
        self._live = False

    def _print(self, line: str) -> None:
        if self._live:
            self.out.write("\r\033[K")
            self._live = False
        self.out.write(line + "\n")
        self.out.flush()

    def __call__(self, rec: Record) -> None:
        self.summary.add(rec)
        if isinstance(rec, RunRecord):
            self.header = rec
            c = rec.config
            arch = RunConfig.from_dict(c).shape_text()
            extras = ", ".join(x for x in (c["init"] + " init", "batchnorm" if c["batchnorm"] else "",
                                           "skip" if c["skip"] else "") if x)
            self._print(f"vgtui {__version__} · {rec.dataset} ({rec.train_size:,} train / {rec.test_size:,} test) · "
                        f"{rec.device} · {arch} {c['activation']}, {extras} · {c['optimizer']} lr {c['lr']:g}"
                        f"{' momentum %g' % c['momentum'] if c['optimizer'] == 'sgd' else ''} · batch "
                        f"{c['batch_size']} · {steps_text(rec)}")
            if rec.notice:
                self._print(f"notice: {rec.notice}")
        elif isinstance(rec, ProgressRecord):
            self.progress(rec)
        elif isinstance(rec, Snapshot):
            self.snap = rec
        elif isinstance(rec, EpochRecord):
            h = self.header
            epochs = h.epochs(rec.epoch) if h is not None else rec.epoch
            n = epoch_steps(h, rec.epoch) if h else 0
            part = f" ({n} of {h.steps_per_epoch} steps)" if h and n < h.steps_per_epoch else ""
            sps = f"  {self.snap.steps_per_s:.1f} steps/s" if self.snap and self.snap.steps_per_s else ""
            self._print(f"epoch {rec.epoch}/{epochs}{part}  step {rec.step:,}  loss {rec.train_loss:.4f}  train acc "
                        f"{rec.train_acc:.3f}  test loss {rec.test_loss:.4f}  test acc {rec.test_acc:.3f}{sps}")
            if self.snap is not None:
                self._print(grad_summary(self.snap) + f"   (log scale: {BLOCKS[0]} 1e{LOG_LO} .. {BLOCKS[-1]} 1e+{LOG_HI})")
        elif isinstance(rec, SpikeRecord):
            self._print(f"spike: {spike_words(rec)}")
        elif isinstance(rec, EndRecord):
            self.end(rec)

    def progress(self, rec: ProgressRecord) -> None:
        """Redraw the progress bar on a terminal, at most 5 times a second."""
        h = self.header
        if not self.tty or h is None:
            return
        now = time.monotonic()
        if now - self._drawn < 0.2:
            return
        self._drawn = now
        spe = max(h.steps_per_epoch, 1)
        done = rec.step - (rec.epoch - 1) * spe
        n = epoch_steps(h, rec.epoch)
        self.out.write(f"\r\033[Kepoch {rec.epoch}/{h.epochs(rec.epoch)} {bar(done / n)} {done}/{n}  "
                       f"loss {rec.loss:.4f}  {rec.steps_per_s:.1f} steps/s")
        self.out.flush()
        self._live = True

    def end(self, rec: EndRecord) -> None:
        h = self.header
        names = list(h.layer_names) if h else ["first", "last"]
        s = self.summary
        if s.snapshots:
            ratio, verdict, n = s.ratio, s.flow, s.snapshots  # flow: "exploded" from the end record's cause
            self._print(f"{names[0]}/{names[-1]} gradient-norm ratio, median of {n} snapshot{'s' if n > 1 else ''}: "
                        f"{ratio:.2e}")
            if verdict in ("diverged", "exploded"):
                self._print(explain(verdict, ratio, names[0], names[-1]))
            self.verdict_lines()  # every layer judged (a first/last ratio alone can say healthy while all are tiny)
            if verdict not in ("diverged", "exploded"):
                self._print("learning: " + explain_learning(s.learning, s.losses, s.n_classes, s.accuracy, verdict))
        for line in s.spike_lines():  # the flight recorder: how many loss spikes, which layer led each
            self._print(line)
        label = {"completed": "done", "interrupted": "interrupted", "diverged": "DIVERGED", "failed": "FAILED"}
        self._print(f"{label.get(rec.status, rec.status)}: {rec.message} ({rec.steps:,} steps in {rec.elapsed_s:.1f} s)")


    def verdict_lines(self) -> None:
        """Every layer judged (diagnosis.judge_run, through the summary): the badge and the line naming the layer
        and the reason, the factors' sentence, and the preflight at the first snapshot."""
        v = self.summary.verdict
        self._print(f"layers: {v.badge}: {v.line}")
        if v.factor_line:
            self._print(f"factors: {v.factor_line}")
        if v.preflight is not None:
            self._print(f"preflight: {v.preflight.text}")


class _SafeOut:
    """Standard output that may close under us (`vgtui --headless | head -1`): the first failed write ends the run
    like a signal would (end record "standard output was closed", exit 141) and nothing more is printed."""

    def __init__(self, out: TextIO, on_closed):
        self.out, self.on_closed, self.closed = out, on_closed, False

    def write(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.out.write(text)
        except (BrokenPipeError, OSError) as e:
            self._close(e)

    def flush(self) -> None:
        if self.closed:
            return
        try:
            self.out.flush()
        except (BrokenPipeError, OSError) as e:
            self._close(e)

    def isatty(self) -> bool:
        try:
            return self.out.isatty()
        except (OSError, ValueError):
            return False

    def _close(self, e: OSError) -> None:
        self.closed = True
        try:  # keep the interpreter's own flush at exit from raising again
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, self.out.fileno())
            os.close(fd)
        except (OSError, ValueError, AttributeError):
            pass
        self.on_closed(e)


def run_headless(config: RunConfig, metrics: str | None = None, out: TextIO | None = None,
                 err: TextIO | None = None, overwrite: bool = False) -> int:
    """Run `config` to the end; return the exit status (see the module docstring). Bad input is refused before
    anything is written; a signal (INT, TERM, HUP) or a standard output closed during the run ends the run within
    a step, with its end record; a metrics file that cannot be written any more (a full disk) stops the run
    (exit 4). A standard output already closed when vgtui started (`>&-`, as some daemons start programs) is no
    reason to stop: the report goes to standard error, said in one line. A standard error that breaks is
    ignored (nothing more goes there)."""
    from vgtui.cli import closed_at_start

    if out is None:
        out = sys.stdout
        if closed_at_start("stdout") and not closed_at_start("stderr"):
            out = sys.stderr
            out.write("vgtui: standard output is closed: the report goes to standard error\n")
    err = _SafeOut(sys.stderr if err is None else err, lambda e: None)  # type: ignore[assignment]
    from vgtui.core.config import check_fits
    from vgtui.core.records import Stop
    from vgtui.core.writer import MetricsWriteError, MetricsWriter, check_writable
    from vgtui.engine.data import DataError
    from vgtui.engine.trainer import Trainer, progress_at_most

    def refuse(msg: str) -> int:
        err.write(f"vgtui: error: {msg}\n")
        return 2

    stopped: list[str] = []  # why the run was stopped from a sink, if it was

    def stop(why: str, status: int, cause: str) -> None:
        if not stopped:
            stopped.append(why)
            exit_override.append(status)
            trainer.send(Stop(message=why, cause=cause))

    exit_override: list[int] = []
    with sig.raising():
        try:
            if metrics:
                check_writable(metrics, overwrite=overwrite)
            check_fits(config)
            if config.dataset != "mnist-5k":
                where = "" if config.offline else " (downloading it there if it is missing)"
                err.write(f"loading {config.dataset} from {config.data_dir}{where}\n")
                err.flush()
            safe_out = _SafeOut(out, lambda e: stop("standard output was closed (broken pipe)",
                                                    sig.BROKEN_PIPE_STATUS,
                                                    "stdout-closed"))
            reporter = Reporter(safe_out)  # type: ignore[arg-type]
            trainer = Trainer(config)
            trainer.prepare()
            writer = MetricsWriter(metrics, overwrite=overwrite) if metrics else None
        except (DataError, ValueError) as e:  # MetricsPathError and ConfigError are ValueErrors
            return refuse(str(e))
        except KeyboardInterrupt as e:  # during start-up (a download, say): nothing was written yet
            err.write(f"vgtui: {getattr(e, 'message', 'interrupted')}\n")
            return sig.status_of(e)

        def to_file(rec) -> None:
            try:
                writer.write(rec)
            except MetricsWriteError as e:
                stop(f"stopped: {e.strerror}", 4, "disk-full")

        trainer.sinks = ([progress_at_most(to_file)] if writer else []) + [reporter]
        try:
            end = trainer.run()
            status = exit_override[0] if exit_override else EXIT.get(end.status, 1)
        except KeyboardInterrupt as e:
            status = sig.status_of(e)
        except Exception as e:  # noqa: BLE001 - the end record (status "failed", with the traceback) is written
            import traceback

            kept = f"; the traceback is in {writer.path}" if writer and writer.error is None else ""
            err.write(f"vgtui: error: training failed: {type(e).__name__}: {e}{kept}\n")
            if not kept:
                traceback.print_exc(file=err)
            status = 1
        finally:
            sig.ignore_after_first()
            if writer:
                writer.close()
        if writer is not None and writer.error is not None:
            err.write(f"vgtui: error: {writer.error.strerror}; training stopped at step {trainer.step:,} "
                      f"({'the end record was written' if _ends_with_end(writer.path) else 'no end record'}). "
                      "Free some space, or choose another --metrics path.\n")
            status = 4
        elif writer is not None and not safe_out.closed:
            safe_out.write(f"metrics: {writer.path}\n")
        return status


def _ends_with_end(path) -> bool:
    from vgtui.core.writer import last_record_type

    return last_record_type(path) == "end"
