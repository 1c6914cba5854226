"""`vgtui compare`: several configurations trained one after another with the same seed and the same data order,
then one table: the gradient ratio, the diagnosis, saturation and dead units per layer, accuracy and speed, and
for the presets taken from papers, the paper's figure beside ours.

A SPEC names a configuration in words joined by "+": `sigmoid`, `relu+kaiming`, `sigmoid+bn`,
`relu+kaiming+depth30`, `softsign+xavier+lr0.1`. Parsing, presets and the table import no torch (a bad SPEC is
refused at once); the runs import the engine.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import io
import json
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from vgtui.core.config import (ACTIVATIONS, DATASETS, DEVICES, INITS, OPTIMIZERS, SEED_MAX, ConfigError, RunConfig,
                                 check_fits, default_data_dir, shapes_text)
from vgtui.core.summary import N_CLASSES, RunSummary, median_finite


# ---------------------------------------------------------------------------------------------- the grammar
FLAGS = {"bn": "batchnorm", "batchnorm": "batchnorm", "skip": "skip"}
NUMBERED = {"depth": int, "width": int, "lr": float, "batch": int, "momentum": float}
GRAMMAR = f"""\
SPEC: words joined by "+", each at most once per kind:
  activation  {', '.join(ACTIVATIONS)}
  init        {', '.join(INITS)}
  remedies    bn (or batchnorm), skip
  optimizer   {', '.join(OPTIMIZERS)}
  numbers     depthN, widthN, batchN (hidden layers, units, batch size), lrX, momentumX (e.g. lr0.1)
Words left out come from the options (--activation, --depth, ...; a preset's own defaults first).
e.g. sigmoid  relu+kaiming  sigmoid+bn  sigmoid+skip  selu+lecun  relu+kaiming+depth30  softsign+xavier+lr0.1"""


class SpecError(ValueError):
    """A SPEC that does not parse; the message names the bad word and the closest valid one."""


def _vocabulary() -> list[str]:
    return [*ACTIVATIONS, *INITS, *FLAGS, *OPTIMIZERS, *(f"{k}N" for k in NUMBERED)]


def _closest(word: str) -> str:
    """The closest valid word, for the error message (a numbered word keeps the user's number)."""
    m = re.fullmatch(r"([a-z_-]*?)([-+]?[0-9.e]+)", word)
    stem, num = (m.group(1), m.group(2)) if m else (word, "")
    if num:
        hit = difflib.get_close_matches(stem, list(NUMBERED), n=1, cutoff=0.5)
        if hit:
            return hit[0] + num
    hit = difflib.get_close_matches(word, _vocabulary(), n=1, cutoff=0.4)
    return hit[0] if hit else ""


def parse_spec(spec: str, base: RunConfig) -> RunConfig:
    """The configuration SPEC names, on top of `base`; SpecError for a bad one (validated like the options)."""
    words = [w.strip().lower() for w in spec.split("+")]
    if not spec.strip() or any(not w for w in words):
        raise SpecError(f"{spec!r}: an empty word (words are joined by a single +)")
    changes: dict[str, Any] = {}
    kinds: dict[str, str] = {}

    def put(kind: str, word: str, **kw: Any) -> None:
        if kind in kinds:
            raise SpecError(f"{spec!r}: two words for the {kind} ({kinds[kind]!r} and {word!r})")
        kinds[kind] = word
        changes.update(kw)

    for w in words:
        m = re.fullmatch(r"([a-z]+)([-+]?\.?[0-9][0-9.e+-]*)", w)
        if w in ACTIVATIONS:
            put("activation", w, activation=w)
        elif w in INITS:
            put("init", w, init=w)
        elif w in FLAGS:
            put(FLAGS[w], w, **{FLAGS[w]: True})
        elif w in OPTIMIZERS:
            put("optimizer", w, optimizer=w)
        elif m and m.group(1) in NUMBERED:
            key, conv = m.group(1), NUMBERED[m.group(1)]
            try:
                value = conv(m.group(2))
            except ValueError:
                raise SpecError(f"{spec!r}: {w!r}: {key} takes {'a whole number' if conv is int else 'a number'}, "
                                f"e.g. {key}{'30' if conv is int else '0.1'}") from None
            put(key, w, **{"batch_size" if key == "batch" else key: value})
        else:
            near = _closest(w)
            hint = f"; did you mean {near!r}?" if near else ""
            raise SpecError(f"{spec!r}: unknown word {w!r}{hint}")
    try:
        return base.replace(**changes).validate()
    except ConfigError as e:
        raise SpecError(f"{spec!r}: {e.option.lstrip('-')}: {e.message}") from None


def label(spec: str) -> str:
    return "+".join(w.strip().lower() for w in spec.split("+"))


# ---------------------------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    """A comparison from the seed's article or a paper: its SPECs, the options it changes from vgtui's defaults,
    the paper's figure per SPEC (None: none to print) and the extra view the table adds."""

    specs: tuple[str, ...]
    about: str
    defaults: dict[str, Any] = field(default_factory=dict)
    paper: str | None = None  # the paper's column header
    paper_values: dict[str, str] = field(default_factory=dict)
    paper_setup: str = ""
    view: str | None = None  # "layers" (per-layer gradient ratio), "actstats" (act mean/std), "pre" (percentiles),
    # "err" (our test error %, beside the paper's)


PRESETS: dict[str, Preset] = {
    "seed": Preset(
        ("sigmoid", "relu", "swish", "sigmoid+skip", "sigmoid+bn", "sigmoid+xavier", "relu+kaiming"),
        "the seed's article: 784-1000x5-10 sigmoid against each remedy it names",
        defaults=dict(epochs=2)),
    "glorot2010": Preset(
        ("softsign", "softsign+xavier", "tanh", "tanh+xavier", "sigmoid"),
        "Glorot & Bengio 2010, Table 1 (MNIST): 5 hidden layers of 1000, standard vs normalised (xavier) init",
        defaults=dict(epochs=3),
        paper="paper test err %",
        paper_values={"softsign": "1.64", "softsign+xavier": "1.72", "tanh": "1.76", "tanh+xavier": "1.64",
                      "sigmoid": "2.21"},
        paper_setup="full MNIST, minibatch 10, trained to convergence; their standard init U[-1/sqrt(n), "
                    "1/sqrt(n)] is PyTorch's default Linear init", view="err"),
    "he2015": Preset(
        ("relu+xavier", "relu+kaiming"),
        "He et al. 2015, Figure 3: 30 layers of ReLU, Xavier's init against theirs (kaiming)",
        defaults=dict(depth=30, width=256, epochs=2),
        paper="paper (30 layers)",
        paper_values={"relu+xavier": "stalls, gradients diminish", "relu+kaiming": "converges"},
        paper_setup="ImageNet, a 30-layer ReLU net (27 conv + 3 fc)", view="layers"),
    "selu2017": Preset(
        ("selu+lecun", "relu", "sigmoid"),
        "Klambauer et al. 2017: SELU with LeCun-normal init keeps activations near mean 0, std 1 through 50 layers "
        "and learns (SGD lr 0.001, momentum 0.9: at vgtui's lr 0.01 the 50-layer SELU net leaves the fixed point, "
        "activation std 2-6, and does not learn)",
        defaults=dict(depth=50, width=100, epochs=3, lr=0.001, momentum=0.9),
        paper="paper",
        paper_values={"selu+lecun": "mean 0, std 1 at every layer (fixed point)"},
        paper_setup="the self-normalising fixed point, proved and measured on deep fully connected nets; it holds "
                    "while training only with a small enough step (here lr 0.001 with momentum 0.9; lr 0.01 leaves it)",
        view="actstats"),
    "bn2015": Preset(
        ("sigmoid", "sigmoid+bn"),
        "Ioffe & Szegedy 2015, section 4.1: 3 hidden layers of 100 sigmoid units, with and without batch norm",
        defaults=dict(depth=3, width=100, batch_size=60, lr=0.1, epochs=10),
        paper="paper (Fig. 1)",
        paper_values={"sigmoid": "percentiles drift", "sigmoid+bn": "percentiles stable, learns faster"},
        paper_setup="full MNIST, 50,000 steps of 60 examples", view="pre"),
}
COMPARE_DEFAULTS = dict(dataset="mnist-5k", epochs=2, probe_every=5)  # vgtui compare's own, before a preset's


# ---------------------------------------------------------------------------------------------- results
@dataclass
class Result:
    """One configuration run with one seed, boiled down to what the table shows."""

    label: str
    seed: int
    status: str = "running"
    ratio: float = math.nan  # median over snapshots of fc1/fc_last weight-gradient norm
    diagnosis: str = ""
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

    def __call__(self, rec) -> None:
        from vgtui.core.records import EndRecord, EpochRecord, Snapshot

        self.summary.add(rec)
        if isinstance(rec, Snapshot):
            if self.summary.snapshots == 1:
                hidden = [l for l in rec.layers if l.is_hidden]
                self.r.act_mean, self.r.act_std = [l.act_mean for l in hidden], [l.act_std for l in hidden]
            self.norms.append([l.grad_norm for l in rec.layers])
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
        r, s = self.r, self.summary
        snap = s.last
        r.status, r.steps = rec.status, rec.steps
        r.steps_per_s, r.ratio, r.diagnosis = s.steps_per_s, s.ratio, s.badge or r.diagnosis
        if snap is not None:
            hidden = [l for l in snap.layers if l.is_hidden]
            r.saturated = [100 * (l.saturated_frac or 0.0) for l in hidden]
            r.dead = [100 * (l.dead_frac or 0.0) for l in hidden]
            r.act_mean_end, r.act_std_end = [l.act_mean for l in hidden], [l.act_std for l in hidden]
            last = [n[-1] for n in self.norms]
            r.layer_ratio = [median_finite([n[i] / b if b else math.nan for n, b in zip(self.norms, last)])
                             for i in range(len(snap.layers))]
        r.pre_drift = self.drift if self.pre_first is not None else math.nan


# ---------------------------------------------------------------------------------------------- the table
def _sample(values: list, n: int = 5) -> list:
    """All values for up to 6 layers, else n evenly spaced ones, first and last included."""
    if len(values) <= 6:
        return list(values)
    return [values[round(i * (len(values) - 1) / (n - 1))] for i in range(n)]


def _layers_note(depth: int) -> str:
    if depth <= 6:
        return ""
    idx = _sample(list(range(1, depth + 1)))
    return f"per-layer cells show layers {', '.join(f'fc{i}' for i in idx)} of {depth}"


def _spread(values: list[float], fmt: str) -> str:
    """The median, and the range when there are several seeds: '0.91 (0.89-0.93)'."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "-"
    med = fmt.format(statistics.median(finite))
    if len(values) == 1:
        return med
    return f"{med} ({fmt.format(min(finite))}..{fmt.format(max(finite))})"


def _ints(values: list[float]) -> str:
    return " ".join(f"{v:.0f}" for v in _sample(values)) if values else "-"


def _g(v: float, digits: int = 2) -> str:
    return f"{v:.{digits}g}" if math.isfinite(v) else "nan"


@dataclass
class Row:
    label: str
    results: list[Result]
    planned: int = 0  # seeds this configuration was to run; more than len(results): a partial row (stopped)

    @property
    def partial(self) -> bool:
        return len(self.results) < self.planned

    def _med_list(self, attr: str) -> list[float]:
        lists = [getattr(r, attr) for r in self.results if getattr(r, attr)]
        return [median_finite(list(col)) for col in zip(*lists)] if lists else []

    def cells(self, preset: Preset | None) -> dict[str, Any]:
        """The row as named values (JSON/CSV) in the table's order."""
        rs = self.results
        diag = sorted({r.diagnosis for r in rs if r.diagnosis}, key=[r.diagnosis for r in rs].index)
        d: dict[str, Any] = {
            "configuration": self.label,
            "seeds": [r.seed for r in rs],
            "status": "/".join(sorted({r.status for r in rs})),
            "ratio": median_finite([r.ratio for r in rs]),
            "ratio_range": [min(r.ratio for r in rs), max(r.ratio for r in rs)],
            "diagnosis": "/".join(diag),
            "saturated_pct": self._med_list("saturated"),
            "dead_pct": self._med_list("dead"),
            "train_acc": median_finite([r.train_acc for r in rs]),
            "test_acc": median_finite([r.test_acc for r in rs]),
            "test_acc_range": [min(r.test_acc for r in rs), max(r.test_acc for r in rs)],
            "steps": max(r.steps for r in rs),
            "steps_per_s": median_finite([r.steps_per_s for r in rs]),
            "partial": self.partial,
        }
        if preset is not None and preset.view == "layers":
            d["layer_ratio"] = self._med_list("layer_ratio")
        if preset is not None and preset.view == "actstats":
            d["act_mean"], d["act_std"] = self._med_list("act_mean"), self._med_list("act_std")
            d["act_mean_end"], d["act_std_end"] = self._med_list("act_mean_end"), self._med_list("act_std_end")
        if preset is not None and preset.view == "pre":
            d["pre_drift"] = median_finite([r.pre_drift for r in rs])
            d["pre_last"] = [list(p) for p in rs[0].pre_last]
        if preset is not None and preset.paper:
            d["paper"] = preset.paper_values.get(self.label, "")
        return d


def _text_columns(rows: list[Row], preset: Preset | None) -> tuple[list[str], list[list[str]]]:
    head = ["configuration", "fc1/last", "diagnosis", "saturated % per layer", "dead % per layer", "train acc",
            "test acc", "steps/s"]
    out = []
    for row in rows:
        rs = row.results
        cells = [row.label, _spread([r.ratio for r in rs], "{:.1e}"), row.cells(None)["diagnosis"] or "-",
                 _ints(row._med_list("saturated")), _ints(row._med_list("dead")),
                 _spread([r.train_acc for r in rs], "{:.2f}"), _spread([r.test_acc for r in rs], "{:.2f}"),
                 _spread([r.steps_per_s for r in rs], "{:.0f}")]
        if any(r.status != "completed" for r in rs):
            cells[0] += f" ({'/'.join(sorted({r.status for r in rs}))})"
        if row.partial:
            cells[0] += f" (partial: {len(rs)} of {row.planned} seeds)"
        out.append(cells)
    if preset is not None and preset.view == "layers":
        head.append("grad norm / output layer's, per hidden layer")
        for cells, row in zip(out, rows):
            cells.append(" ".join(f"{v:.0e}" for v in _sample(row._med_list("layer_ratio")[:-1])))  # hidden
    if preset is not None and preset.view == "actstats":
        head += ["act mean, step 1", "act std, step 1", "act mean, end", "act std, end"]
        for cells, row in zip(out, rows):
            cells += [" ".join(_g(v, 2) for v in _sample(row._med_list(k)))
                      for k in ("act_mean", "act_std", "act_mean_end", "act_std_end")]
    if preset is not None and preset.view == "pre":
        head += ["z drift", "z p15/p50/p85 at the end, per layer"]
        for cells, row in zip(out, rows):
            cells += [_spread([r.pre_drift for r in row.results], "{:.2f}"),
                      "  ".join("/".join(_g(v, 2) for v in p) for p in row.results[0].pre_last)]
    if preset is not None and preset.view == "err":
        head.append("test err %")
        for cells, row in zip(out, rows):
            cells.append(_spread([100 * (1 - r.test_acc) for r in row.results], "{:.1f}"))
    if preset is not None and preset.paper:
        head.append(preset.paper)
        for cells, row in zip(out, rows):
            cells.append(preset.paper_values.get(row.label, ""))
    return head, out


def format_text(rows: list[Row], preset: Preset | None, setup: str, depth: int) -> str:
    head, body = _text_columns(rows, preset)
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    lines = [line(head), line(["-" * w for w in widths])] + [line(c) for c in body]
    notes = [f"ours: {setup}"]
    if preset is not None and preset.paper:
        notes.append(f"paper: {preset.paper_setup}")
    if _layers_note(depth):
        notes.append(_layers_note(depth))
    if preset is not None and preset.view == "pre":
        notes.append("z drift: the farthest the 15th/50th/85th percentiles of a hidden layer's pre-activation moved "
                     "from their first snapshot, in units of its first p85-p15 spread (Ioffe & Szegedy's Fig. 1)")
    notes.append("fc1/last: median over snapshots of fc1's weight-gradient norm over the output layer's; "
                 "saturated/dead % at the last snapshot")
    return "\n".join(lines + [""] + notes) + "\n"


def format_json(rows: list[Row], preset: Preset | None, name: str | None, setup: str) -> str:
    doc = {"preset": name, "setup": setup, "paper_setup": preset.paper_setup if preset and preset.paper else None,
           "rows": [r.cells(preset) for r in rows]}
    return json.dumps(_clean(doc), indent=1, allow_nan=False) + "\n"


def _clean(o: Any) -> Any:
    """NaN and infinities as null: strict JSON that any parser reads."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def format_csv(rows: list[Row], preset: Preset | None) -> str:
    buf = io.StringIO()
    dicts = [r.cells(preset) for r in rows]
    if not dicts:
        return ""
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(dicts[0]))
    for d in dicts:
        w.writerow([" ".join(_csv_cell(x) for x in v) if isinstance(v, list) else _csv_cell(v) for v in d.values()])
    return buf.getvalue()


def _csv_cell(v: Any) -> str:
    if isinstance(v, list):
        return "/".join(_csv_cell(x) for x in v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return "" if v is None else str(v)


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


# ---------------------------------------------------------------------------------------------- command line
DESCRIPTION = """\
Train several configurations one after another, with the same seed and the same data order, and print one table:
the median fc1/last-layer gradient-norm ratio, the diagnosis, the saturated and dead units per layer, the final
train and test accuracy and the speed. A preset reproduces the seed's article or a paper's comparison, with the
paper's figure beside ours and our (much shorter) setup stated."""


def _preset_help() -> str:
    lines = []
    for name, p in PRESETS.items():
        opts = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in p.defaults.items())
        lines.append(f"  {name:<11} {p.about}\n  {'':<11} {' '.join(p.specs)}   [{opts}]")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    epilog = f"""{GRAMMAR}

presets (vgtui compare --preset NAME; the options in [ ] are its defaults, any option given overrides them):
{_preset_help()}

examples:
  vgtui compare --preset seed                       the article's comparison on mnist-5k (2 epochs each)
  vgtui compare sigmoid relu+kaiming sigmoid+bn --epochs 3 --seeds 3
  vgtui compare --preset he2015 --json > he.json    the table as JSON (--csv: as CSV)
  vgtui compare --preset bn2015 --metrics-dir runs/ then: vgtui replay runs/sigmoid.jsonl runs/sigmoid+bn.jsonl

exit status: 0 done (diverged configurations are rows of the table), 2 a bad SPEC or option, a --metrics-dir file
that cannot be written, a seed range past 2**63-1 or a network too big for memory (all checked before anything
trains), 4 a metrics file could not be written mid-way, 130 Ctrl+C, 143 SIGTERM, 129 SIGHUP, 141 standard output
closed (a broken pipe). When it stops early, the table of what finished is printed (a configuration's finished
seeds as a row marked partial)."""
    p = argparse.ArgumentParser(prog="vgtui compare", description=DESCRIPTION, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("specs", nargs="*", metavar="SPEC", help="a configuration, e.g. relu+kaiming (grammar below)")
    p.add_argument("--preset", metavar="NAME", help=f"{', '.join(PRESETS)} (SPECs given too are added after its own)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="run each configuration with seeds SEED..SEED+N-1; the table shows the median and the range")
    p.add_argument("--metrics-dir", metavar="DIR", help="write one metrics file per configuration there, named after it")
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


RUN_OPTIONS = ("dataset", "epochs", "max_steps", "seed", "device", "batch_size", "lr", "momentum", "optimizer",
               "depth", "width", "activation", "init", "probe_every")


def base_config(args: argparse.Namespace, preset: Preset | None) -> RunConfig:
    """vgtui's defaults, then compare's, then the preset's, then the options given."""
    kw: dict[str, Any] = dict(COMPARE_DEFAULTS)
    kw.update(preset.defaults if preset else {})
    kw.update({k: getattr(args, k) for k in RUN_OPTIONS if getattr(args, k) is not None})
    kw.update(data_dir=args.data_dir or default_data_dir(), offline=args.offline)
    return RunConfig(**kw).validate()


def setup_line(cfg: RunConfig, configs: list[RunConfig], seeds: int) -> str:
    steps = f"at most {cfg.max_steps} steps" if cfg.max_steps else f"{cfg.epochs} epoch{'s' if cfg.epochs > 1 else ''}"
    arch = shapes_text(configs)
    lrs = "/".join(f"{x:g}" for x in sorted({c.lr for c in configs}))
    optimizers = sorted({c.optimizer for c in configs})
    opts = "/".join(optimizers)
    mom = f" momentum {cfg.momentum:g}" if "sgd" in optimizers else ""
    seed = f"seed {cfg.seed}" if seeds == 1 else f"seeds {cfg.seed}..{cfg.seed + seeds - 1} (median, range)"
    return (f"{cfg.dataset}, {steps}, batch {cfg.batch_size}, {arch}, {opts} lr {lrs}{mom}, {seed}, "
            f"a snapshot every {cfg.probe_every} steps")


def _refuse(parser: argparse.ArgumentParser, msg: str, grammar: bool = False) -> int:
    parser.print_usage(sys.stderr)
    sys.stderr.write(f"vgtui compare: error: {msg}\n")
    if grammar:
        sys.stderr.write(GRAMMAR + "\n")
    return 2


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    preset = None
    if args.preset is not None:
        if args.preset not in PRESETS:
            near = difflib.get_close_matches(args.preset, list(PRESETS), n=1, cutoff=0.3)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            return _refuse(parser, f"--preset: unknown preset {args.preset!r}{hint} (choose one of: "
                                   f"{', '.join(PRESETS)})")
        preset = PRESETS[args.preset]
    specs = list(preset.specs if preset else ()) + list(args.specs)
    if not specs:
        return _refuse(parser, "give at least one SPEC or --preset NAME", grammar=True)
    if args.seeds < 1:
        return _refuse(parser, f"--seeds: must be a positive whole number, got {args.seeds}")
    try:
        base = base_config(args, preset)
    except ConfigError as e:
        return _refuse(parser, str(e))
    except TypeError as e:  # pragma: no cover - a preset default that RunConfig does not know
        return _refuse(parser, str(e))
    if base.seed + args.seeds - 1 > SEED_MAX:
        return _refuse(parser, f"--seeds {args.seeds} from --seed {base.seed} runs past the largest seed, 2**63-1; "
                               "choose a smaller --seed or fewer --seeds")
    configs: list[tuple[str, RunConfig]] = []
    for s in specs:
        try:
            configs.append((label(s), parse_spec(s, base)))
        except SpecError as e:
            return _refuse(parser, str(e), grammar=True)
    labels = [n for n, _ in configs]
    dup = next((n for n in labels if labels.count(n) > 1), None)
    if dup:
        return _refuse(parser, f"{dup!r} is given twice")
    for name, cfg in configs:  # the check `vgtui --headless` applies, for every configuration before any runs
        try:
            check_fits(cfg)
        except ConfigError as e:
            return _refuse(parser, f"{name!r}: {e}")
    if args.metrics_dir:
        problem = check_metrics_dir(args.metrics_dir, labels, args.seeds)
        if problem:
            return _refuse(parser, problem)
    from vgtui.cli import closed_at_start

    out: TextIO = sys.stdout
    if closed_at_start("stdout") and not closed_at_start("stderr"):
        out = sys.stderr
        out.write("vgtui compare: standard output is closed: the table goes to standard error\n")
    rows, status = run_all(configs, args.seeds, args.metrics_dir, sys.stderr)  # stdout holds only the table
    if rows is None:
        return status
    cfgs = [c for _, c in configs]
    setup = setup_line(base, cfgs, args.seeds)
    if args.json:
        text = format_json(rows, preset, args.preset, setup)
    elif args.csv:
        text = format_csv(rows, preset)
    else:
        text = format_text(rows, preset, setup, max(c.depth for c in cfgs))
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:  # `| head -1`: as a SIGPIPE would end it
        from vgtui.cli import _discard_output
        from vgtui.signals import BROKEN_PIPE_STATUS

        _discard_output()
        return BROKEN_PIPE_STATUS
    return status


def _metrics_path(directory: str, name: str, seed: int, seeds: int) -> str:
    """DIR/relu+kaiming.jsonl, or DIR/relu+kaiming.seed1.jsonl with several seeds."""
    import os

    stem = name if seeds == 1 else f"{name}.seed{seed}"
    return os.path.join(directory, re.sub(r"[^A-Za-z0-9+._-]", "_", stem) + ".jsonl")


def check_metrics_dir(directory: str, labels: list[str], seeds: int, seed: int = 0) -> str | None:
    """Why the comparison could not write its metrics files in `directory` (made if missing), or None: each
    configuration's file is checked as `--metrics` checks its file (a directory, FIFO or device at that name, a
    file that is not a vgtui metrics file, one another run holds locked, a folder that refuses writes), before
    any configuration trains."""
    import os

    from vgtui.core.writer import MetricsPathError, check_writable

    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        return f"--metrics-dir {directory}: cannot make that folder ({e.strerror or e})"
    for name in labels:
        for s in range(seeds):
            path = _metrics_path(directory, name, seed + s, seeds)
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
    import select

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
    import os

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
                    writer_path = _metrics_path(metrics_dir, name, cfg.seed + s, seeds) if metrics_dir else ""
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
