"""`vgtui compare`'s command line: the parser (its --help text: the grammar, the presets, the exit statuses) and
main, which plans the runs (refusing a bad SPEC or option before torch is imported), runs them and prints the table.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from vgtui.commands.compare.collect import check_metrics_dir, run_all
from vgtui.commands.compare.files import check_file, is_file_arg, read_files
from vgtui.commands.compare.presets import PRESETS, Preset, preset_help
from vgtui.commands.compare.spec import GRAMMAR, RUN_OPTIONS, Refused, label, plan
from vgtui.commands.compare.table import format_csv, format_json, format_text, setup_line
from vgtui.core.config import DATASETS, DEVICES, OPTIMIZERS
from vgtui.core.records import safe_text as shown

DESCRIPTION = """\
Train several configurations one after another, with the same seed and the same data order, and print one table:
the median fc1/last-layer gradient-norm ratio, the factor the gradient is multiplied by per layer, the diagnosis
(every layer judged) and the layer it names, the saturated and dead units per layer, the final train and test
accuracy and the speed. A preset reproduces the seed's article or a paper's comparison, with the
paper's figure beside ours and our (much shorter) setup stated."""


def build_parser() -> argparse.ArgumentParser:
    epilog = f"""{GRAMMAR}

presets (vgtui compare --preset NAME; the options in [ ] are its defaults, any option given overrides them):
{preset_help()}

examples:
  vgtui compare --preset seed                       the article's comparison on mnist-5k (2 epochs each)
  vgtui compare sigmoid relu+kaiming sigmoid+bn --epochs 3 --seeds 3
  vgtui compare --preset he2015 --json > he.json    the table as JSON (--csv: as CSV)
  vgtui compare --preset bn2015 --metrics-dir runs/ then: vgtui replay runs/sigmoid.jsonl runs/sigmoid+bn.jsonl
  vgtui compare runs/*.jsonl                        the same table again from the files (one row per run; with
                                                    --preset NAME its columns; files and SPECs are not mixed)

exit status: 0 done (diverged configurations are rows of the table), 2 a bad SPEC or option, a --metrics-dir file
that cannot be written, a seed range past 2**63-1 or a network too big for memory (all checked before anything
trains), 4 a metrics file could not be written mid-way, 130 Ctrl+C, 143 SIGTERM, 129 SIGHUP, 141 standard output
closed (a broken pipe). When it stops early, the table of what finished is printed (a configuration's finished
seeds as a row marked partial)."""
    p = argparse.ArgumentParser(prog="vgtui compare", description=DESCRIPTION, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("specs", nargs="*", metavar="SPEC|FILE",
                   help="a configuration, e.g. relu+kaiming (grammar below); or a metrics file (a word ending in "
                        ".jsonl or holding a /): the table of the runs it holds, nothing trains")
    p.add_argument("--preset", metavar="NAME", help=f"{', '.join(PRESETS)} (SPECs given too are added after its own)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="run each configuration with seeds SEED..SEED+N-1; the table shows the median and the range")
    p.add_argument("--metrics-dir", metavar="DIR",
                   help="write one metrics file per configuration there, named after it")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the table as JSON on stdout (progress on stderr)")
    fmt.add_argument("--csv", action="store_true", help="print the table as CSV on stdout (progress on stderr)")
    g = p.add_argument_group("run options (as for vgtui --headless; default: the preset's, else vgtui's)")
    g.add_argument("--dataset", metavar="NAME", help=f"{', '.join(DATASETS)} (default: mnist-5k)")
    g.add_argument("--data-dir", metavar="DIR", help="where torchvision datasets live")
    g.add_argument("--offline", action="store_true", help="never touch the network")
    g.add_argument("--epochs", type=int, help="(default: the preset's, else 2)")
    g.add_argument("--max-steps", type=int, help="stop each configuration after this many steps")
    g.add_argument("--seed", type=int, help="(default: 0)")
    g.add_argument("--device", metavar="NAME", help=f"{', '.join(DEVICES)} (default: auto)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--momentum", type=float)
    g.add_argument("--optimizer", metavar="NAME", help=", ".join(OPTIMIZERS))
    g.add_argument("--depth", type=int, help="hidden layers (default: the preset's, else 5)")
    g.add_argument("--width", type=int, help="units per hidden layer (default: the preset's, else 1000)")
    g.add_argument("--activation", metavar="NAME", help="for SPECs that name none (default: sigmoid)")
    g.add_argument("--init", metavar="NAME", help="for SPECs that name none (default: PyTorch's)")
    g.add_argument("--probe-every", type=int, metavar="N", help="a snapshot every N steps (default: 5)")
    return p


def _refuse(parser: argparse.ArgumentParser, msg: str, grammar: bool = False) -> int:
    parser.print_usage(sys.stderr)
    sys.stderr.write(f"vgtui compare: error: {msg}\n")
    if grammar:
        sys.stderr.write(GRAMMAR + "\n")
    return 2


def _given_run_options(args: argparse.Namespace) -> list[str]:
    """The run options given (they shape a run; files are read as they were written)."""
    given = [f"--{k.replace('_', '-')}" for k in RUN_OPTIONS if getattr(args, k) is not None]
    given += [o for o, on in (("--data-dir", args.data_dir is not None), ("--offline", args.offline),
                              ("--seeds", args.seeds != 1), ("--metrics-dir", args.metrics_dir is not None)) if on]
    return given


def _main_files(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`vgtui compare FILE...`: the table from metrics files already written (files.py)."""
    files = [w for w in args.specs if is_file_arg(w)]
    specs = [w for w in args.specs if not is_file_arg(w)]
    if specs:
        return _refuse(parser, f"give metrics files or SPECs, not both ('{shown(specs[0])}' is a SPEC, "
                       f"'{shown(files[0])}' a file): train with --metrics-dir DIR, then compare DIR/*.jsonl")
    given = _given_run_options(args)
    if given:
        return _refuse(parser, f"{given[0]}: metrics files are read as they were written; the run options are "
                       "for SPECs")
    preset = None
    if args.preset is not None:
        if args.preset not in PRESETS:
            return _refuse(parser, f"--preset: unknown preset '{shown(args.preset)}' (choose one of: "
                           f"{', '.join(PRESETS)})")
        preset = PRESETS[args.preset]
    for f in files:
        problem = check_file(f)
        if problem:
            sys.stderr.write(f"vgtui compare: error: {problem}\n")
            return 2
    from vgtui.core.metrics import MetricsFileError

    try:
        table = read_files(files, sys.stderr)
    except MetricsFileError as e:
        sys.stderr.write(f"vgtui compare: error: {shown(str(e))}\n")
        return 2
    except OSError as e:  # a file that fails as it is read
        sys.stderr.write(f"vgtui compare: error: cannot be read ({shown(e.strerror or str(e))})\n")
        return 2
    rows = table.rows
    if preset is not None:  # its configurations in its order, as its run printed them; the other runs after them
        rank = {label(s): i for i, s in enumerate(preset.specs)}
        rows = sorted(rows, key=lambda r: rank.get(r.label, len(rank)))
    return _print(_table_out(), args, rows, preset, table.setup, table.depth, 0)


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if any(is_file_arg(w) for w in args.specs):
        return _main_files(parser, args)
    try:
        want = plan(args)
    except Refused as e:
        return _refuse(parser, e.message, grammar=e.grammar)
    if args.metrics_dir:
        problem = check_metrics_dir(args.metrics_dir, want.labels, args.seeds, want.base.seed)
        if problem:
            return _refuse(parser, problem)
    out = _table_out()
    rows, status = run_all(want.configs, args.seeds, args.metrics_dir, sys.stderr)  # stdout holds only the table
    if rows is None:
        return status
    cfgs = [c for _, c in want.configs]
    setup = setup_line(want.base, cfgs, args.seeds)
    return _print(out, args, rows, want.preset, setup, max(c.depth for c in cfgs), status)


def _table_out() -> TextIO:
    """Where the table goes: standard output, or standard error where standard output was closed at the start."""
    from vgtui.cli import closed_at_start

    if closed_at_start("stdout") and not closed_at_start("stderr"):
        sys.stderr.write("vgtui compare: standard output is closed: the table goes to standard error\n")
        return sys.stderr
    return sys.stdout


def _print(out: TextIO, args: argparse.Namespace, rows: list, preset: Preset | None, setup: str, depth: int,
           status: int) -> int:
    """The table on `out` as text, JSON or CSV; `status`, or 141 when its reader has gone."""
    if args.json:
        text = format_json(rows, preset, args.preset, setup)
    elif args.csv:
        text = format_csv(rows, preset)
    else:
        text = format_text(rows, preset, setup, depth)
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:  # `| head -1`: as a SIGPIPE would end it
        from vgtui.cli import _discard_output
        from vgtui.signals import BROKEN_PIPE_STATUS

        _discard_output()
        return BROKEN_PIPE_STATUS
    return status

