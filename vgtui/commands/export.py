"""`vgtui export FILE --csv OUT.csv`: a run's snapshots as CSV, one row per snapshot and layer, for pandas & co.
`vgtui export FILE --tensorboard DIR`: every run of the file as TensorBoard event files (vgtui.core.tbfile).

The writer itself (write_csv, write_csv_new, write_csv_stream, COLUMNS) is vgtui.core.csvfile, which the UI's `e`
key calls too. Imports neither torch nor textual: it runs wherever the file was copied to.
"""

from __future__ import annotations

import argparse
import io
import os
import stat
import sys
import time
from pathlib import Path

from vgtui.core.csvfile import inputs_of, write_csv, write_csv_stream
from vgtui.core.metrics import MetricsFileError, MetricsIndex
from vgtui.core.outfile import RefusedPath, check_target, identity, kind_of
from vgtui.core.records import BRANCHES

DESCRIPTION = """\
Write the snapshots of a run in a metrics file as CSV: one row per snapshot and layer, one column per number.
Columns: step, epoch, elapsed_s, loss, loss_avg, steps_per_s, activation (the network's at that step), layer,
layer_activation (that layer's; empty for none), then the layer's probes: grad_norm, grad_mean_abs, weight_norm,
grad_data_ratio, update_data_ratio, out_grad_norm, act_mean, act_std, saturated_frac, dead_frac, pre_p15,
pre_p50, pre_p85 (empty where a layer has none). Non-finite values are written nan, inf, -inf. The histograms are not
in the CSV.

--tensorboard DIR writes every run of the file (and each fork) to its own folder, DIR/run-1, DIR/run-2,
DIR/run-1-B..., as TensorBoard event files: the scalars (train/loss, train/loss_avg, train/steps_per_s,
epoch/train_loss..test_acc, metrics/NAME), every per-layer number (layers/LAYER/grad_norm ...), and the gradient,
activation and derivative histograms with their real bin edges. The gradient histogram's value axis is log10 |g|,
as vgtui shows it (tag layers/LAYER/grad_hist_log10_abs); its first bucket (below the first edge) counts the values
under the range and the exact zeros, its last the values over it. A `/` in a layer's name is written `.`.
Needs the extra: pip install 'vgtui[tensorboard]' (google-crc32c; no TensorFlow). See docs/metrics-file.md."""

EPILOG = """\
examples:
  vgtui export run.jsonl --csv run.csv            the last run of the file
  vgtui export run.jsonl --csv first.csv --run 1  its first run (the UI's restarts start new runs)
  vgtui export run.jsonl --csv - | head            to standard output
  vgtui export run.jsonl --tensorboard tb/         every run, then: tensorboard --logdir tb/

then, in Python:  df = pd.read_csv("run.csv")
A damaged snapshot line is skipped, with one line on standard error naming it; the rest is written.
Only a regular file is replaced: a symbolic link, a device, a FIFO or the metrics file itself is refused.
--tensorboard DIR: a new folder, or an existing one (not a link) that holds no event files yet; nothing is replaced.
exit status: 0 written, 2 a bad metrics file, output path or option (or the tensorboard extra missing),
141 standard output closed (--csv -)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vgtui export", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="a metrics file (written by `vgtui --metrics FILE`)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--csv", metavar="OUT.csv",
                   help="the CSV file to write: a regular file there is replaced, a link, device, FIFO or the "
                        "metrics file itself is refused; - writes to standard output")
    out.add_argument("--tensorboard", metavar="DIR",
                     help="a folder to write TensorBoard event files in, one subfolder per run and fork (run-1, "
                          "run-1-B...): created if absent; one holding event files already is refused. "
                          "--run and --branch do not apply: every run is written")
    p.add_argument("--run", type=int, default=None, metavar="N",
                   help="which run of the file, from 1 (default: the last)")
    p.add_argument("--branch", choices=["A", *BRANCHES], default="A",
                   help="of a run forked in the UI (f): the run itself (A, default) or its fork (B; the last one "
                        "if it was forked more than once)")
    return p


def _say(msg: str, end: str = "\n") -> None:
    """A line on standard error, when there is one (`2>&-` closes it: then nothing is said, and nothing fails)."""
    err = sys.stderr
    if err is None:
        return
    try:
        err.write(msg + end)
        err.flush()
    except (OSError, ValueError):
        pass


def _open_index(src: str) -> MetricsIndex | str:
    """The metrics file indexed, or one line saying why it cannot be."""
    try:
        return MetricsIndex(src)
    except MetricsFileError as e:
        return str(e)
    except OSError as e:
        return f"{src}: cannot be read ({e.strerror or e})"


def _check_in(src: Path) -> str | None:
    """Why the metrics file cannot be read as one, before opening it (a FIFO would block for ever), or None."""
    try:
        st = src.stat()
    except OSError:
        return None  # missing, unreadable: MetricsIndex says it in its words
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return (f"{src}: is {kind_of(st.st_mode)}, not a metrics file; export reads a regular file (save a stream "
                "to a file first)")
    return None


def _check_out(out: Path, src: Path) -> str | None:
    """Why the CSV cannot be written at `out`, or None."""
    ids = {i: "the metrics file" for i in (identity(src),) if i is not None}
    try:
        check_target(out, ids)
    except RefusedPath as e:
        return f"--csv {e}"
    except OSError as e:
        return f"--csv {out}: cannot use it ({e.strerror or e})"
    if not out.parent.is_dir():
        return f"--csv {out}: folder {out.parent} does not exist"
    return None


def _stdout_closed() -> bool:
    """Standard output was closed when vgtui started (`>&-`): Python leaves sys.stdout None, or vgtui.cli has put
    /dev/null there (and says so in closed_at_start): a CSV written there would vanish without a word."""
    from vgtui.cli import closed_at_start  # as compare and headless ask it

    return sys.stdout is None or closed_at_start("stdout")


MAX_DAMAGED_SAID = 20  # damaged lines named one by one; more are counted


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.tensorboard is not None:
        return _tensorboard(args)
    to_stdout = args.csv == "-"
    out, src = Path(args.csv).expanduser(), Path(args.file).expanduser()

    def fail(msg: str, status: int = 2) -> int:
        _say(f"vgtui: error: {msg}")
        return status

    if to_stdout and _stdout_closed():
        return fail("--csv -: standard output is closed; name a file to write instead", 141)
    if (why := _check_in(src) or (None if to_stdout else _check_out(out, src))) is not None:
        return fail(why)
    index = _open_index(src)
    if isinstance(index, str):
        return fail(index)
    with index:
        n = len(index.runs)
        if args.run is not None and not 1 <= args.run <= n:
            return fail(f"--run {args.run}: {src} holds {n} run{'s' * (n != 1)} (1..{n})")
        number = args.run or n
        run = index.runs[number - 1]
        if n > 1 and args.run is None:
            _say(f"vgtui export: {src} holds {n} runs; exporting run {n}, the last (--run N for another)")
        if args.branch in BRANCHES:  # a fork's branch, by the id its records carry (the last fork of that id)
            forks = [b for b in run.branches if b.header.branch == args.branch]
            if not forks:
                return fail(f"--branch {args.branch}: run {number} of {src} was never forked (f in the UI forks a run)")
            run = forks[-1]
        elif run.branches:
            fork = run.branches[-1].header
            _say(f"vgtui export: run {number} was forked at step {fork.forked_at or 0:,}; "
                 f"exporting the run itself (--branch {fork.branch} for its fork)")
        for line in getattr(index, "notices", None) or []:  # the damaged lines the index skipped, one by one
            _say(f"vgtui export: skipped a damaged line: {src}: {line}")
        if index.notice:  # all it skipped or did, in one line (a last line cut short, the damaged lines counted)
            _say(f"vgtui export: {src}: {index.notice}")
        live = sys.stderr is not None and sys.stderr.isatty()
        clear = "\r\033[K" if live else ""  # the progress line, before a line of its own
        t0 = time.perf_counter()
        damaged: list[str] = []

        def progress(done: int, total: int) -> None:
            if live:
                _say(f"\rvgtui export: {done:,} / {total:,} snapshots", end="")

        def skipped(line: str) -> None:
            damaged.append(line)
            if len(damaged) <= MAX_DAMAGED_SAID:
                _say(f"{clear}vgtui export: skipped a damaged line: {line}")

        try:
            if to_stdout:
                ids = inputs_of(run)
                if identity(sys.stdout.fileno()) in ids:
                    return fail("--csv -: standard output is the metrics file itself; choose another file")
                sys.stdout.flush()
                stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
                try:
                    rows = write_csv_stream(run, stream, progress=progress, on_damaged=skipped)
                    stream.flush()
                finally:
                    stream.detach()
            else:
                rows = write_csv(run, out, progress=progress, on_damaged=skipped)
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # nothing more reaches the closed pipe, not even at exit
            os.close(devnull)
            return 141
        except MetricsFileError as e:
            return fail(str(e))
        except RefusedPath as e:
            return fail(f"--csv {e}")
        except OSError as e:
            where = "standard output" if to_stdout else out
            return fail(f"--csv {args.csv}: cannot write {where} ({e.strerror or e})")
    if live and run.n_snapshots >= 500:
        _say("\r\033[K", end="")
    if len(damaged) > MAX_DAMAGED_SAID:
        _say(f"vgtui export: ... and {len(damaged) - MAX_DAMAGED_SAID:,} more damaged snapshots skipped")
    layers = len(run.header.layers)
    what = f"run {number}" + (f" (its fork, branch {args.branch})" if args.branch in BRANCHES else "")
    gap = f", {len(damaged):,} damaged snapshot{'s' * (len(damaged) != 1)} skipped" if damaged else ""
    _say(f"vgtui export: {rows:,} rows ({run.n_snapshots - len(damaged):,} snapshots x {layers} layers{gap}) of "
         f"{what} -> {'standard output' if to_stdout else out} in {time.perf_counter() - t0:.1f} s")
    return 0


def _tensorboard(args: argparse.Namespace) -> int:
    """`--tensorboard DIR`: every run and fork of the file, each in its own folder of DIR."""
    from vgtui.core import tbfile  # google-crc32c, when it is there, only now

    src, out = Path(args.file).expanduser(), os.fspath(Path(args.tensorboard).expanduser())

    def fail(msg: str, status: int = 2) -> int:
        _say(f"vgtui: error: {msg}")
        return status

    if args.run is not None or args.branch != "A":
        return fail("--run and --branch choose a run for --csv; --tensorboard writes every run and fork")
    try:
        tbfile._crc32c()
    except tbfile.MissingExtra as e:
        return fail(str(e))
    if (why := _check_in(src)) is not None:
        return fail(why)
    if (why := tbfile.check_dir(out)) is not None:
        return fail(f"--tensorboard {why}")
    index = _open_index(src)
    if isinstance(index, str):
        return fail(index)
    damaged: list[str] = []
    live = sys.stderr is not None and sys.stderr.isatty()
    clear = "\r\033[K" if live else ""  # the progress line, before a line of its own

    def skipped(line: str) -> None:
        damaged.append(line)
        if len(damaged) <= MAX_DAMAGED_SAID:
            _say(f"{clear}vgtui export: skipped a damaged line: {line}")

    def progress(done: int, total: int) -> None:
        if live:
            _say(f"\rvgtui export: {done:,} / {total:,} snapshots", end="")

    t0 = time.perf_counter()
    with index:
        for line in getattr(index, "notices", None) or []:
            _say(f"vgtui export: skipped a damaged line: {src}: {line}")
        if index.notice:
            _say(f"vgtui export: {src}: {index.notice}")
        try:
            done = tbfile.write_tensorboard(index.runs, out, on_damaged=skipped, progress=progress)
        except tbfile.MissingExtra as e:
            return fail(str(e))
        except MetricsFileError as e:
            return fail(str(e))
        except ValueError as e:
            return fail(f"--tensorboard {e}")
        except OSError as e:
            return fail(f"--tensorboard {out}: cannot write ({e.strerror or e})")
    if live and sum(n + bad for _, n, bad in done) >= 500:
        _say("\r\033[K", end="")
    if len(damaged) > MAX_DAMAGED_SAID:
        _say(f"vgtui export: ... and {len(damaged) - MAX_DAMAGED_SAID:,} more damaged snapshots skipped")
    what = ", ".join(f"{name} ({n:,} snapshot{'s' * (n != 1)}{f', {bad:,} damaged skipped' if bad else ''})"
                     for name, n, bad in done)
    _say(f"vgtui export: {what} -> {out} in {time.perf_counter() - t0:.1f} s (tensorboard --logdir {out})")
    return 0
