"""`vgtui --headless`: the experiment without the terminal UI, for SSH sessions, CI jobs and scripts.

Prints a progress bar per epoch, a one-line per-layer gradient summary on a log scale at each epoch end, and a
plain-words diagnosis at the end. Exit status: 0 completed, 1 failed, 2 refused input, 3 diverged, 4 the metrics
file could not be written (a full disk), 128 + signal for a signal (130 Ctrl+C, 129 SIGHUP, 143 SIGTERM), 141 when
standard output was closed.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from typing import TextIO

from vgtui import __version__
from vgtui import signals as sig
from vgtui.core.config import RunConfig
from vgtui.core.diagnosis import diagnose, explain, explain_learning, judge_learning
from vgtui.core.records import EndRecord, EpochRecord, ProgressRecord, Record, RunRecord, Snapshot

EXIT = {"completed": 0, "failed": 1, "diverged": 3, "interrupted": 130}  # signals: see vgtui.signals
BLOCKS = "▁▂▃▄▅▆▇█"
N_CLASSES = 10  # every dataset vgtui trains on has 10 classes
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
        self.ratios: list[float] = []
        self.losses: list[float] = []  # each snapshot's mean training loss
        self.accuracy: float | None = None  # the latest epoch's test accuracy
        self._drawn = 0.0
        self._live = False

    def _print(self, line: str) -> None:
        if self._live:
            self.out.write("\r\033[K")
            self._live = False
        self.out.write(line + "\n")
        self.out.flush()

    def __call__(self, rec: Record) -> None:
        if isinstance(rec, RunRecord):
            self.header, self.ratios, self.losses, self.accuracy = rec, [], [], None
            c = rec.config
            arch = f"784-{c['width']}x{c['depth']}-10"
            extras = ", ".join(x for x in (c["init"] + " init", "batchnorm" if c["batchnorm"] else "",
                                           "skip" if c["skip"] else "") if x)
            self._print(f"vgtui {__version__} · {rec.dataset} ({rec.train_size:,} train / {rec.test_size:,} test) · "
                        f"{rec.device} · {arch} {c['activation']}, {extras} · {c['optimizer']} lr {c['lr']:g}"
                        f"{' momentum %g' % c['momentum'] if c['optimizer'] == 'sgd' else ''} · batch "
                        f"{c['batch_size']} · {rec.total_steps:,} steps")
            if rec.notice:
                self._print(f"notice: {rec.notice}")
        elif isinstance(rec, ProgressRecord):
            self.progress(rec)
        elif isinstance(rec, Snapshot):
            self.snap = rec
            self.ratios.append(rec.ratio())
            self.losses.append(rec.loss_avg)
        elif isinstance(rec, EpochRecord):
            self.accuracy = rec.test_acc
            h = self.header
            epochs = h.config["epochs"] if h else rec.epoch
            sps = f"  {self.snap.steps_per_s:.1f} steps/s" if self.snap and self.snap.steps_per_s else ""
            self._print(f"epoch {rec.epoch}/{epochs}  step {rec.step:,}  loss {rec.train_loss:.4f}  train acc "
                        f"{rec.train_acc:.3f}  test loss {rec.test_loss:.4f}  test acc {rec.test_acc:.3f}{sps}")
            if self.snap is not None:
                self._print(grad_summary(self.snap) + f"   (log scale: {BLOCKS[0]} 1e{LOG_LO} .. {BLOCKS[-1]} 1e+{LOG_HI})")
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
        epochs = h.config["epochs"] if h.config else rec.epoch
        self.out.write(f"\r\033[Kepoch {rec.epoch}/{epochs} {bar(done / spe)} {done}/{spe}  loss {rec.loss:.4f}  "
                       f"{rec.steps_per_s:.1f} steps/s")
        self.out.flush()
        self._live = True

    def end(self, rec: EndRecord) -> None:
        h = self.header
        names = list(h.layer_names) if h else ["first", "last"]
        if self.ratios:
            finite = [r for r in self.ratios if math.isfinite(r)]
            ratio = statistics.median(finite) if finite else math.nan
            norms = [l.grad_norm for l in self.snap.layers] if self.snap else []
            verdict = diagnose(ratio, norms)
            if rec.status == "diverged":
                verdict = "exploded" if rec.message.startswith("exploded") else "diverged"
            n = len(self.ratios)
            self._print(f"{names[0]}/{names[-1]} gradient-norm ratio, median of {n} snapshot{'s' if n > 1 else ''}: "
                        f"{ratio:.2e}")
            if verdict in ("diverged", "exploded"):
                self._print(explain(verdict, ratio, names[0], names[-1]))
            else:
                self._print("gradient flow: " + explain(verdict, ratio, names[0], names[-1]))
                learning = judge_learning(self.losses, N_CLASSES, self.accuracy)
                self._print("learning: " + explain_learning(learning, self.losses, N_CLASSES, self.accuracy, verdict))
        label = {"completed": "done", "interrupted": "interrupted", "diverged": "DIVERGED", "failed": "FAILED"}
        self._print(f"{label.get(rec.status, rec.status)}: {rec.message} ({rec.steps:,} steps in {rec.elapsed_s:.1f} s)")


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


def run_headless(config: RunConfig, metrics: str | None = None, out: TextIO = sys.stdout,
                 err: TextIO = sys.stderr, overwrite: bool = False) -> int:
    """Run `config` to the end; return the exit status (see the module docstring). Bad input is refused before
    anything is written; a signal (INT, TERM, HUP) or a closed standard output ends the run within a step, with
    its end record; a metrics file that cannot be written any more (a full disk) stops the run (exit 4)."""
    from vgtui.core.config import check_fits
    from vgtui.core.records import Stop
    from vgtui.core.writer import MetricsWriteError, MetricsWriter, check_writable
    from vgtui.engine.data import DataError
    from vgtui.engine.trainer import Trainer, progress_at_most

    def refuse(msg: str) -> int:
        err.write(f"vgtui: error: {msg}\n")
        return 2

    stopped: list[str] = []  # why the run was stopped from a sink, if it was

    def stop(why: str, status: int) -> None:
        if not stopped:
            stopped.append(why)
            exit_override.append(status)
            trainer.send(Stop(message=why))

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
                                                    sig.BROKEN_PIPE_STATUS))
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
                stop(f"stopped: {e.strerror}", 4)

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
