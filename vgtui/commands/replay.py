"""`vgtui replay` and `vgtui follow`: the viewer on metrics files or standard input (no training, no torch).

Parsing and opening the files happen before the UI starts, so a bad file is refused with one line on stderr
(`vgtui: error: ...`) and exit status 2. Without a terminal, a replay prints what the file holds instead, and each
run's verdict as `vgtui --headless` ends with it (the badge and its line, the factors, the preflight).
"""

from __future__ import annotations

import argparse
import os
import sys

from vgtui.core.metrics import MetricsFileError

MAX_FILES = 8  # the runs one screen tells apart (vgtui.ui.state.TAGS, A to H, each in its colour)
DEFAULT_FPS = 4.0  # a replay moves with the keys: a frame every 250 ms keeps up with a held key

EPILOG = """\
keys: left / right one snapshot, home / end, space plays at the recorded pace ([ / ] slower / faster),
p the next run of the file, e writes each run shown as CSV, o the next run in focus, ? all the keys.

examples:
  vgtui replay run.jsonl                 the recorded run, at its last snapshot
  vgtui replay run.jsonl --run 2         the second run of the file (a restart in the UI starts a new run)
  vgtui replay a.jsonl b.jsonl           two runs side by side, aligned by step
  vgtui replay runs/*.jsonl              up to eight runs overlaid (A, B, C...: o moves the focus among them)
  vgtui replay forked.jsonl              a run forked in the UI (f): the run (A) and its fork (B) side by side
  vgtui follow run.jsonl                 a run still being written, like tail -f (also: replay --follow)
  ssh box tail -n +1 -f run.jsonl | vgtui follow -     a remote run over SSH, from standard input

exit status: 0 on q, 2 for a bad file or bad arguments."""


def build_parser(prog: str, follow: bool) -> argparse.ArgumentParser:
    what = ("Follow a metrics file that is still being written (or standard input, `-`), like tail -f."
            if follow else "Replay a recorded metrics file in the terminal UI; several files (up to eight) overlaid.")
    p = argparse.ArgumentParser(prog=prog, description=what, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if follow:
        p.add_argument("file", metavar="FILE", help="the metrics file, or - for standard input")
    else:
        p.add_argument("files", nargs="+", metavar="FILE", help="one metrics file, or up to eight to compare")
        p.add_argument("--follow", action="store_true", help="keep up with a file still being written")
    p.add_argument("--run", type=int, default=None, metavar="N",
                   help="which run of the file to show, from 1 (default: the last)")
    p.add_argument("--fps", type=float, default=DEFAULT_FPS, help="most redraws a second (default: %(default)s)")
    return p


def replay_main(argv: list[str]) -> int:
    return _main(argv, follow=False)


def follow_main(argv: list[str]) -> int:
    return _main(argv, follow=True)


def _error(message: str) -> int:
    from vgtui.ui.state import shown

    print(f"vgtui: error: {shown(message)}", file=sys.stderr)
    return 2


def _main(argv: list[str], follow: bool) -> int:
    prog = "vgtui follow" if follow else "vgtui replay"
    args = build_parser(prog, follow).parse_args(argv)
    files = [args.file] if follow else args.files
    follow = follow or args.follow
    if len(files) > MAX_FILES:
        return _error(f"{prog} overlays at most {MAX_FILES} files (got {len(files)})")
    if follow and len(files) > 1:
        return _error("--follow takes one file")
    if not args.fps > 0:
        return _error(f"--fps must be a positive number, got {args.fps!r}")
    if args.run is not None and len(files) > 1:
        return _error("--run picks the run of one file")
    tty = sys.stdout.isatty()
    try:
        if files == ["-"]:
            if not follow:
                return _error("standard input (-) can only be followed: vgtui follow -")
            return _follow_stdin(args.fps)
        from vgtui.sources.file import FileSource

        sources = [FileSource(f, run=args.run, follow=follow) for f in files]
        for s in sources:
            s.open()
    except MetricsFileError as e:
        return _error(str(e))
    if not tty or not sys.stdin.isatty():
        return _summary(sources)
    from vgtui.ui.app import VgtuiApp, run_app

    return run_app(VgtuiApp(sources, fps=args.fps))


def _summary(sources) -> int:
    """No terminal: say what each file holds (and its notice), one line per run and under it the run's verdict
    lines and its loss spikes with the layer that led each, as `--headless` ends (verdict_lines, spike_lines); the
    file's strings as text (control characters made visible: the output may still be a terminal's, through a
    pipe)."""
    from vgtui.core.summary import RunSummary
    from vgtui.ui.state import shown

    for s in sources:
        path = shown(s.path)
        if s.waiting:
            print(f"vgtui: {shown(s.waiting)} (no terminal here: nothing to show)", file=sys.stderr)
            continue
        if s.notice:
            print(f"vgtui: {path}: {shown(s.notice)}", file=sys.stderr)
        for i, run in enumerate(s.runs, start=1):
            r = RunSummary.of_index(run)
            print(f"{path}: run {i}: {shown(r.what)} · {len(r.header.layers)} layers · {r.snapshots:,} snapshots · "
                  f"last {r.last_text} · {shown(r.end_text)}")
            for line in verdict_lines(run) + rank_lines(run) + r.spike_lines():  # the flight recorder's spikes too
                print(f"{path}: run {i}: {shown(line)}")
            for b in map(RunSummary.of_index, run.branches):
                at = b.header.forked_at if isinstance(b.header.forked_at, int) else 0
                print(f"{path}: run {i}: fork {shown(b.header.branch or '')} at step {at:,} · {b.snapshots:,} snapshots · "
                      f"{shown(b.end_text)}")
    print("vgtui: no terminal here: run it in a terminal to see the runs", file=sys.stderr)
    return 0


def verdict_lines(run) -> list[str]:
    """The run's verdict as `vgtui --headless` ends with it (diagnosis.judge_run, through RunSummary.verdict): the
    badge and the line naming the layer and the reason, the factors' sentence, the preflight at the first snapshot.
    Every snapshot of the run is read (the learning verdict reads every loss); a snapshot line that cannot be read
    is left out and counted in a last line. The strings hold the file's layer names: the caller shows them as text."""
    from vgtui.core.metrics import MetricsFileError
    from vgtui.core.summary import RunSummary

    summary = RunSummary()
    summary.add(run.header)
    damaged = 0
    for k in range(run.n_snapshots):
        try:
            summary.add(run.snapshot(k))
        except MetricsFileError:
            damaged += 1
    for rec in run.epochs:
        summary.add(rec)
    if run.end is not None:
        summary.add(run.end)
    v = summary.verdict
    lines = [f"layers: {v.badge}: {v.line}"]
    if v.factor_line:
        lines.append(f"factors: {v.factor_line}")
    if v.preflight is not None:
        lines.append(f"preflight: {v.preflight.text}")
    if damaged:
        lines.append(f"({damaged:,} damaged snapshot line{'s' if damaged != 1 else ''} left out of the verdict)")
    return lines


MAX_RANK_EVENTS = 10


def rank_lines(run) -> list[str]:
    """A distributed job's ranks (vgtui.watch on every rank): one line with each rank's loss at the last snapshot
    and the ranks flagged there, then the file's changes of flagged ranks (its "ranks" events, the first few).
    Nothing for a single process's run."""
    from vgtui.core.metrics import MetricsFileError

    snap = None
    for k in range(run.n_snapshots - 1, max(run.n_snapshots - 4, -1), -1):  # the last readable snapshot
        try:
            snap = run.snapshot(k)
            break
        except MetricsFileError:
            continue
    lines = []
    if snap is not None and snap.ranks:
        losses = " ".join(f"{r.rank}:{r.loss:.4g}" for r in snap.ranks[:16])
        more = f" (+{len(snap.ranks) - 16} more)" if len(snap.ranks) > 16 else ""
        flagged = "; ".join(f"rank {r.rank}: {r.flag}" for r in snap.departed()) or "none departs"
        lines.append(f"ranks: {len(snap.ranks)} at step {snap.step:,} · loss by rank {losses}{more} · {flagged}")
    events = [e for e in run.events if "ranks" in e.set]
    for e in events[:MAX_RANK_EVENTS]:
        lines.append(f"ranks: step {e.step:,}: {e.set['ranks']}")
    if len(events) > MAX_RANK_EVENTS:
        lines.append(f"ranks: {len(events) - MAX_RANK_EVENTS:,} more changes of the flagged ranks")
    return lines


def _follow_stdin(fps: float) -> int:
    """Records from standard input; the keys come from the terminal (/dev/tty), which takes stdin's place."""
    from vgtui.sources.file import StreamSource

    if sys.stdin.isatty():
        return _error("vgtui follow - reads records from standard input: pipe them in "
                      "(ssh box tail -n +1 -f run.jsonl | vgtui follow -)")
    source = StreamSource(os.fdopen(os.dup(0), "rb", buffering=0), "<stdin>")
    if sys.stderr.isatty():
        print("vgtui: waiting for the run header on standard input…", file=sys.stderr)
    source.read_header()  # MetricsFileError: refused before the UI starts
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        return _error("vgtui follow - needs a terminal for its keys (/dev/tty), and none is here")
    os.dup2(tty, 0)
    os.close(tty)
    from vgtui.ui.app import VgtuiApp, run_app

    return run_app(VgtuiApp(source, fps=fps))
