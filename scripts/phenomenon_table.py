"""Print the README's "What the remedies do" table, measured: each row's configuration trained as the README says,
`vgtui --headless --max-steps 40 --probe-every 1 OPTIONS` (the embedded mnist-5k digits, seed 0, on the CPU), a
snapshot at every step. Columns, each the median over the 40 snapshots:

- fc1/fc6: fc1's weight-gradient norm over the output layer's;
- factor per layer: the geometric mean of the gradient's factors from one layer down to the next (|dL/dz| at a
  layer over the one above it; diagnosis.layer_factors, as explain_factors states it; `vgtui compare`'s
  factor/layer column);
- mean |φ'|: the mean over the hidden layers of the derivative probe's mean |act'(z)| over the batch;
- diagnosis at step 40: the run's verdict at its end (diagnosis.judge_run, as `--headless` prints it on its
  "layers:" line), the badge and the first clause of its line.

    python scripts/phenomenon_table.py            # the markdown table, pasted into README.md
    python scripts/phenomenon_table.py --rows 4   # the first four rows only

tests/test_phenomenon.py imports `figures` and `ROWS` from here and asserts the README's first four rows.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# (OPTIONS as the README writes them, the row's first cell)
ROWS: list[tuple[str, str]] = [
    ("", "(none: sigmoid, PyTorch's default init)"),
    ("--activation relu --init kaiming", "`--activation relu --init kaiming`"),
    ("--batchnorm", "`--batchnorm`"),
    ("--skip", "`--skip`"),
    ("--init xavier", "`--init xavier`"),
    ("--activation tanh", "`--activation tanh`"),
    ("--activation relu", "`--activation relu`"),
    ("--activation swish", "`--activation swish`"),
    ("--activation softsign --init xavier", "`--activation softsign --init xavier`"),
]


@dataclass(frozen=True)
class Figures:
    """One row's measurements over its 40 snapshots."""

    ratio: float  # median fc1/fc6 weight-gradient norm
    factor: float  # median of each snapshot's geometric-mean per-layer factor
    deriv: float  # median of each snapshot's mean (over hidden layers) of mean |act'(z)|
    badge: str  # judge_run's badge at the end
    line: str  # and its line


def config_for(options: str, device: str = "cpu"):
    """The RunConfig `vgtui --headless --max-steps 40 --probe-every 1 OPTIONS` trains (on `device`)."""
    from vgtui.cli import build_parser, config_from_args

    argv = ["--headless", "--max-steps", "40", "--probe-every", "1", "--device", device, *shlex.split(options)]
    return config_from_args(build_parser().parse_args(argv))


def _median(xs: list[float]) -> float:
    xs = [x for x in xs if math.isfinite(x)]
    return statistics.median(xs) if xs else math.nan


def figures(records) -> Figures:
    """A row's figures from one run's records (all of them, in order)."""
    from vgtui.commands.compare.collect import snapshot_deriv, snapshot_factor
    from vgtui.core.records import Snapshot
    from vgtui.core.summary import RunSummary

    summary = RunSummary()
    snaps = []
    for rec in records:
        summary.add(rec)
        if isinstance(rec, Snapshot):
            snaps.append(rec)
    v = summary.verdict
    return Figures(_median([s.ratio("grad_norm") for s in snaps]), _median([snapshot_factor(s) for s in snaps]),
                   _median([snapshot_deriv(s) for s in snaps]), v.badge, v.line)


def train(options: str, data=None) -> list:
    """Every record of the row's run."""
    from vgtui.engine.trainer import Trainer

    records: list = []
    end = Trainer(config_for(options), [records.append], data=data).run()
    assert end.status == "completed", end
    return records


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x:.1e}".replace("e-0", "e-") if x < 0.01 else f"{x:.2g}"  # 1.0e-4, as the README writes it


def table(rows: list[tuple[str, Figures]]) -> str:
    lines = ["| OPTIONS | fc1/fc6 | factor per layer | mean \\|φ'\\| | diagnosis at step 40 |",
             "|---|---|---|---|---|"]
    for cell, f in rows:
        why = re.split(r"; (?:also |every layer|worst layer)", f.line)[0].replace("|", "\\|")  # its first clause
        lines.append(f"| {cell} | {_num(f.ratio)} | {f.factor:.2f} | {f.deriv:.2f} | {f.badge}: {why} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=len(ROWS), help="the first N rows only")
    p.add_argument("--lines", action="store_true", help="also print each row's verdict line (to stderr)")
    args = p.parse_args(argv)
    from vgtui.engine.data import load_mnist5k

    data = load_mnist5k("cpu")
    out = []
    for options, cell in ROWS[:args.rows]:
        f = figures(train(options, data))
        out.append((cell, f))
        if args.lines:
            print(f"{options or '(none)'}: {f}", file=sys.stderr)
    print(table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
