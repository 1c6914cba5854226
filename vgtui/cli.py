"""Command line: `vgtui [options]` opens the live terminal UI; `vgtui --headless [options]` runs without it.

Parsing and validation import neither torch nor textual, so `--help` and refused options answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from vgtui import __version__
from vgtui.core.config import (ACTIVATIONS, DATASETS, DEFAULT_PROBE_EVERY, DEVICES, INITS, MAX_FPS, MIN_FPS,
                                 OPTIMIZERS, PROBE_MIN_INTERVAL_S, ConfigError, RunConfig, check_fits,
                                 default_data_dir)

DEFAULT_FPS = 2.0

DESCRIPTION = """\
Watch gradients vanish, live. vgtui trains a deep MLP (by default the classic 784-1000x5-10 sigmoid network on
MNIST) and shows per-layer gradient magnitudes and activation histograms as it learns, in your terminal.
Toggle the activation and the remedies (init, batchnorm, skip connections) with keys, and watch the first
layers' gradients come back. With --headless it runs without the UI and prints a per-epoch summary."""

EPILOG = """\
examples:
  vgtui                                            the live UI on the 5,000 embedded MNIST digits (no download)
  vgtui --headless --epochs 2                      the same without the UI
  vgtui --headless --activation relu --init kaiming --metrics run.jsonl
  vgtui --headless --batchnorm --max-steps 200 --device cuda
  vgtui data download mnist                        fetch full MNIST ahead of time (into --data-dir)

exit status (headless): 0 completed, 1 failed, 2 bad arguments or missing data, 3 diverged, 4 the metrics file
could not be written (a full disk), 130 Ctrl+C, 129 hangup (SIGHUP), 143 SIGTERM, 141 standard output closed.
data: the default, mnist-5k, is built in. --dataset mnist reads full MNIST from --data-dir (default $VGTUI_DATA,
else ~/.cache/vgtui) and downloads it there when it can; without it, vgtui falls back to mnist-5k and says why."""


def version_text() -> str:
    """vgtui's version, then torch's, the CUDA it was built for and the device `--device auto` would use (with
    the reason when a GPU here cannot be used). Imports torch: only for --version."""
    lines = [f"vgtui {__version__} (python {sys.version.split()[0]})"]
    try:
        import torch
    except ImportError as e:
        return "\n".join(lines + [f"torch: not importable ({e})"])
    from vgtui.engine.data import device_name, resolve_device

    cuda = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    lines.append(f"torch {torch.__version__} ({cuda})")
    device, notice = resolve_device("auto")
    name = device_name(device)
    lines.append(f"device: {device}{f' ({name})' if name else ''} (what --device auto picks here)")
    if notice:
        lines.append(f"notice: {notice}")
    return "\n".join(lines)


class VersionAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    d = RunConfig.__dataclass_fields__
    subs = "\n".join(f"  vgtui {name:<8} {what}" for name, (_, what) in SUBCOMMANDS.items())
    epilog = f"subcommands (vgtui NAME --help for theirs):\n{subs}\n\n{EPILOG}" if subs else EPILOG
    p = argparse.ArgumentParser(prog="vgtui", description=DESCRIPTION, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action=VersionAction, nargs=0,
                   help="print vgtui's version and the torch, CUDA and device it would use, and exit")
    p.add_argument("--headless", action="store_true", help="run without the terminal UI (also when there is no TTY)")
    p.add_argument("--metrics", metavar="PATH",
                   help="append every record as JSON Lines to PATH (never truncated; locked while the run writes)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --metrics file that is not a vgtui metrics file (refused otherwise)")

    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=d["dataset"].default, metavar="NAME",
                   help=f"{', '.join(DATASETS)} (default: %(default)s)")
    g.add_argument("--data-dir", default=None, metavar="DIR",
                   help=f"where torchvision datasets live (default: $VGTUI_DATA, else ~/.cache/vgtui; now "
                        f"{default_data_dir()})")
    g.add_argument("--offline", action="store_true", help="never touch the network")

    g = p.add_argument_group("model")
    g.add_argument("--depth", type=int, default=d["depth"].default, help="hidden layers (default: %(default)s)")
    g.add_argument("--width", type=int, default=d["width"].default, help="units per hidden layer (default: %(default)s)")
    g.add_argument("--activation", default=d["activation"].default, metavar="NAME",
                   help=f"{', '.join(ACTIVATIONS)} (default: %(default)s)")
    g.add_argument("--init", default=d["init"].default, metavar="NAME",
                   help=f"{', '.join(INITS)} (default: %(default)s, PyTorch's own)")
    g.add_argument("--batchnorm", action="store_true", help="Linear -> BatchNorm1d -> activation")
    g.add_argument("--skip", action="store_true", help="residual connections around hidden layers 2..depth")

    g = p.add_argument_group("training")
    g.add_argument("--optimizer", default=d["optimizer"].default, metavar="NAME",
                   help=f"{', '.join(OPTIMIZERS)} (default: %(default)s)")
    g.add_argument("--lr", type=float, default=d["lr"].default, help="learning rate (default: %(default)s)")
    g.add_argument("--momentum", type=float, default=d["momentum"].default,
                   help="SGD momentum, in [0, 1) (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=d["batch_size"].default, help="(default: %(default)s)")
    g.add_argument("--epochs", type=int, default=d["epochs"].default, help="(default: %(default)s)")
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    g.add_argument("--seed", type=int, default=d["seed"].default,
                   help="same seed, same numbers on the CPU (default: %(default)s)")
    g.add_argument("--device", default=d["device"].default, metavar="NAME",
                   help=f"{', '.join(DEVICES)} (default: %(default)s: cuda, then mps, then cpu)")
    g.add_argument("--probe-every", type=int, default=None, metavar="N",
                   help="take a snapshot of the probes exactly every N steps (and at step 1 and each epoch end); "
                        f"default: every {DEFAULT_PROBE_EVERY} steps but at most {1 / PROBE_MIN_INTERVAL_S:g} a "
                        "second, about 2%% of training time")
    g.add_argument("--no-flight", dest="flight", action="store_false",
                   help="turn off the flight recorder, which keeps every step's loss and per-layer gradient and "
                        "update norms on the device and writes a spike record (which layer led) for a loss spike")

    g = p.add_argument_group("terminal UI")
    g.add_argument("--fps", type=float, default=DEFAULT_FPS,
                   help="most redraws a second (default: %(default)s)")
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        dataset=args.dataset, data_dir=args.data_dir or default_data_dir(), offline=args.offline, depth=args.depth,
        width=args.width, activation=args.activation, init=args.init, batchnorm=args.batchnorm, skip=args.skip,
        optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, batch_size=args.batch_size,
        epochs=args.epochs, max_steps=args.max_steps, seed=args.seed, device=args.device,
        probe_every=args.probe_every, flight=args.flight,
    ).validate()


# Subcommands: name -> ("module:function", one line for `vgtui --help`). Each function takes the rest of argv and
# returns the exit status; its module is imported only when the subcommand is used (no torch for the viewer).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "replay": ("vgtui.commands.replay:replay_main", "replay a metrics file in the UI (up to eight files: overlaid)"),
    "follow": ("vgtui.commands.replay:follow_main", "follow a metrics file still being written, or - for stdin"),
    "export": ("vgtui.commands.export:main", "write a metrics file's snapshots as CSV, one row per snapshot and layer"),
    "compare": ("vgtui.commands.compare:main", "train several configurations (SPECs or a --preset) and print one table"),
    "lesson": ("vgtui.commands.lesson:main", "a lesson: predict, then reveal, on the live network (no NAME: the list)"),
    "data": ("vgtui.commands.data:main", "data download [mnist|fashion-mnist|all]: fetch datasets ahead of time"),
}


_CLOSED_AT_START: set[str] = set()  # the standard streams that were closed when vgtui started


def closed_at_start(name: str) -> bool:
    """True when standard stream `name` ("stdin", "stdout", "stderr") was closed when vgtui started (and is now
    /dev/null: see open_closed_streams)."""
    return name in _CLOSED_AT_START


def open_closed_streams() -> set[str]:
    """Open /dev/null on each standard stream that is closed (`vgtui ... >&-`, `<&-`, `2>&-`, as some daemons and
    service managers start programs), before anything else opens a file: otherwise the first file vgtui opens
    (the metrics file) takes descriptor 1 or 2, and a stray print, a warning or a child's output lands in it.
    Python leaves sys.stdout (sys.stdin, sys.stderr) None for a closed stream; each gets a stream on /dev/null.
    Returns the names of the streams that were closed."""
    closed = set()
    for fd, name, flags, mode in ((0, "stdin", os.O_RDONLY, "r"), (1, "stdout", os.O_WRONLY, "w"),
                                  (2, "stderr", os.O_WRONLY, "w")):
        try:
            os.fstat(fd)
            if getattr(sys, name) is not None:
                continue
            fd = os.open(os.devnull, flags | os.O_CLOEXEC)  # fd taken by something else: keep off it
        except OSError:  # closed: /dev/null takes its number (the lower ones are open by now)
            null = os.open(os.devnull, flags)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        closed.add(name)
        stream = open(fd, mode, buffering=-1 if mode == "r" else 1, closefd=False, encoding="utf-8",
                      errors="backslashreplace")
        setattr(sys, name, stream)
    _CLOSED_AT_START.update(closed)
    return closed


def _discard_output() -> None:
    """Point standard output and error at /dev/null (after a broken pipe), so that the interpreter's own flush at
    exit has nowhere to fail."""
    for fd in (1, 2):
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    """The entry point: a Ctrl+C at any moment (even while torch loads) ends with one line, never a traceback; a
    standard stream closed at start is /dev/null (the command runs, or says why it cannot in one line); standard
    output closed under a command (`| head -1`) ends it with 141, like a SIGPIPE would."""
    try:
        open_closed_streams()
    except OSError:  # no /dev/null: go on with what there is
        pass
    try:
        return _main(argv)
    except BrokenPipeError:
        from vgtui import signals

        _discard_output()
        return signals.BROKEN_PIPE_STATUS
    except KeyboardInterrupt as e:
        from vgtui import signals

        signals.ignore_after_first()
        try:
            print(f"vgtui: {getattr(e, 'message', 'interrupted')}", file=sys.stderr)
        except OSError:
            pass
        return signals.status_of(e)


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        target, _ = SUBCOMMANDS[argv[0]]
        if argv[0] == "follow" and "-" in argv[1:] and closed_at_start("stdin"):
            print("vgtui follow: error: standard input is closed: nothing to follow (pipe a run in: "
                  "`python train.py | vgtui follow -`, or give a file)", file=sys.stderr)
            return 2
        module, func = target.split(":")
        return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        if not MIN_FPS <= args.fps <= MAX_FPS:
            raise ConfigError("--fps", f"redraws a second, from {MIN_FPS:g} to {MAX_FPS:g}; got {args.fps!r}")
        check_fits(config)
    except ConfigError as e:
        parser.print_usage(sys.stderr)
        print(f"vgtui: error: {e}", file=sys.stderr)
        return 2
    headless = args.headless
    if not headless and not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("vgtui: no terminal here, running --headless", file=sys.stderr)
        headless = True
    if headless:
        from vgtui.commands.headless import run_headless

        return run_headless(config, args.metrics, overwrite=args.overwrite)
    from vgtui.core.writer import check_writable

    try:
        if args.metrics:
            check_writable(args.metrics, overwrite=args.overwrite)
    except ValueError as e:
        print(f"vgtui: error: {e}", file=sys.stderr)
        return 2
    from vgtui.ui.app import run_tui

    return run_tui(config, args.metrics, fps=args.fps, overwrite=args.overwrite)


if __name__ == "__main__":
    raise SystemExit(main())
