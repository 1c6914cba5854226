"""Lessons (issue 17): predict, then reveal, on the live network. No torch, no textual.

A lesson is a TOML file: a `[lesson]` table (its title, what it is about, the configuration every step starts from)
and `[[step]]` tables, each with a short text, a setup (a configuration to restart with, a restart, or a fork into up
to four branches), an optional question with two to four answers asked before the run, a run (N steps, or until an
expression over the measured numbers holds) and a reveal: a template whose `{expressions}` are computed from the
run's own numbers, the expression that says which answer is right, the explanation and the paper's figure.

`parse_lesson(text, path)` returns a `Lesson` or raises `LessonError`, whose `str()` is one line naming the file, the
line and what is wrong. `Numbers.from_records(...)` gathers what a step's run measured; `evaluate(expr, numbers)`
computes an expression with a small evaluator over the parsed syntax tree (whitelisted names and functions only:
nothing is ever handed to Python's eval); `reveal(step, numbers, answer)` says it all in lines.
"""

from __future__ import annotations

import ast
import math
import re
import statistics
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from vgtui.core.config import ACTIVATIONS, INITS, ConfigError, RunConfig
from vgtui.core.diagnosis import (RECENT, RunVerdict, chance_loss, judge_run, layer_factors, ratio_words)

LESSON_DIR = Path(__file__).with_name("lessons")  # the built-in lessons, NAME.toml
MAX_ANSWERS = 4
MAX_BRANCHES = 4  # A and up to three forks
BRANCH_IDS = ("A", "B", "C", "D")
ANSWER_KEYS = ("1", "2", "3", "4")
MAX_TEXT = 600  # characters of a step's text: it must fit beside the charts at 80x24
MAX_RUN = 100_000
MAX_EXPR = 400

LESSON_KEYS = {"title": "the lesson's title", "about": "one line on what it teaches",
               "config": "the configuration every step starts from (vgtui's options: activation, init, ...)"}
STEP_KEYS = {"title": "the step's title", "text": "what the teacher says (short: it sits beside the charts)",
             "config": "restart with the lesson's configuration and these changes",
             "restart": "true: restart with the same configuration (fresh weights)",
             "fork": "a list of up to three configurations: branches B, C, D beside A, each with its change",
             "question": "asked before the run", "answers": "two to four answers, one key each (1-4)",
             "right": "an expression over the run's numbers: the number of the right answer",
             "run": "steps to train", "until": "an expression: stop the run as soon as it is true",
             "reveal": "what happened, with {expressions} over the run's numbers",
             "explain": "why, said after the reveal", "figure": "the paper's figure: PRESET:SPEC of vgtui compare"}
CONFIG_KEYS = ("depth", "width", "activation", "init", "batchnorm", "skip", "optimizer", "lr", "momentum",
               "batch_size", "seed", "dataset", "probe_every")
# the lesson UI's defaults for a class: snapshots every few steps (the curves move at once), a run that goes on
LESSON_DEFAULTS = dict(dataset="mnist-5k", probe_every=5, epochs=1000, max_steps=None)


class LessonError(ValueError):
    """A lesson file refused: `str()` is one line, "FILE:LINE: what is wrong"."""

    def __init__(self, path: str, line: int | None, message: str):
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


# ---------------------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class Step:
    title: str
    text: str
    config: RunConfig  # branch A's
    restart: bool  # start this step from fresh weights (a config, a restart or a fork)
    fork: tuple[RunConfig, ...] = ()  # branches B, C, D
    question: str = ""
    answers: tuple[str, ...] = ()
    right: str = ""
    run: int = 0
    until: str = ""
    reveal: str = ""
    explain: str = ""
    figure: str = ""  # said as it is (resolved from PRESET:SPEC when parsed)
    line: int = 0  # where the step starts in its file

    @property
    def branches(self) -> tuple[str, ...]:
        return BRANCH_IDS[:1 + len(self.fork)]

    def configs(self) -> dict[str, RunConfig]:
        return dict(zip(self.branches, (self.config, *self.fork)))


@dataclass(frozen=True)
class Lesson:
    name: str
    title: str
    about: str
    steps: tuple[Step, ...]
    path: str = ""


# ---------------------------------------------------------------------------------------------- what a run measured
@dataclass
class Numbers:
    """One branch's numbers over a step's run: its snapshots (the step's own), its epochs' test accuracy, its
    configuration and verdict. The expressions read these (see NAMES)."""

    snapshots: list[Any]
    config: RunConfig | None = None
    test_acc: float = math.nan
    start_step: int = 0
    verdict: RunVerdict | None = None

    @classmethod
    def of(cls, snapshots: Sequence[Any], config: RunConfig | None = None, test_acc: float | None = None,
           start_step: int = 0, end_cause: str | None = None) -> "Numbers":
        """`end_cause`: the cause of the branch's end record when it ended during the step ("diverged",
        "exploded": the verdict says so)."""
        snaps = list(snapshots)
        verdict = judge_run(None, snaps[-RECENT:], [s.loss_avg for s in snaps], 10, test_acc,
                            first=snaps[0] if snaps else None, count=len(snaps),
                            end_cause=end_cause) if snaps else None
        return cls(snaps, config, math.nan if test_acc is None else float(test_acc), start_step, verdict)

    @property
    def recent(self) -> list[Any]:
        return self.snapshots[-RECENT:]

    @property
    def layers(self) -> tuple[str, ...]:
        if self.snapshots:
            return tuple(l.name for l in self.snapshots[-1].layers)
        if self.config is not None:
            return tuple(f"fc{i}" for i in range(1, self.config.depth + 2))
        return ()

    def per_layer(self, attr: str) -> dict[str, float]:
        """A layer's number: the median over the recent snapshots (one batch is noisy)."""
        out = {}
        for name in self.layers:
            vals = [getattr(l, attr) for s in self.recent for l in s.layers if l.name == name]
            vals = [v for v in vals if v is not None and math.isfinite(v)]
            out[name] = statistics.median(vals) if vals else math.nan
        return out

    def ratio(self, a: str, b: str) -> float:
        """Layer a's weight-gradient norm over layer b's: the median of the recent snapshots' ratios."""
        if not self.snapshots:
            raise EvalError("no snapshot of this run yet")
        rs = []
        for s in self.recent:
            by = {l.name: l.grad_norm for l in s.layers}
            if a not in by or b not in by:
                raise EvalError(f"no layer {a if a not in by else b!r} in this run (its layers: "
                                f"{', '.join(by)})")
            if by[b] > 0 and math.isfinite(by[a]) and math.isfinite(by[b]):
                rs.append(by[a] / by[b])
        return statistics.median(rs) if rs else math.nan

    def value(self, name: str) -> Any:
        s = self.snapshots
        if not s and name not in ("step", "steps", "chance", "first", "last", "activation", "describe"):
            raise EvalError("no snapshot of this run yet")
        if name == "loss":
            return s[-1].loss_avg if s else math.nan
        if name == "loss0":
            return s[0].loss_avg if s else math.nan
        if name == "step":
            return s[-1].step if s else self.start_step
        if name == "steps":
            return (s[-1].step - self.start_step) if s else 0
        if name == "test_acc":
            return self.test_acc
        if name == "chance":
            return chance_loss(10)
        if name == "factor":
            fs = [f.factor for f in layer_factors(s[-1])] if s else []
            fs = [f for f in fs if f > 0 and math.isfinite(f)]
            return math.exp(statistics.fmean(math.log(f) for f in fs)) if fs else math.nan
        if name == "deriv":  # mean |act'| over the hidden layers
            d = [v for k, v in self.per_layer("deriv_mean").items() if math.isfinite(v)]
            return statistics.fmean(d) if d else math.nan
        if name == "badge":
            return self.verdict.badge if self.verdict else "TOO EARLY"
        if name == "verdict":
            return self.verdict.line if self.verdict else "too early"
        if name == "first":
            return self.layers[0] if self.layers else "fc1"
        if name == "last":
            return self.layers[-1] if self.layers else "fc6"
        if name in LAYER_DICTS:
            return self.per_layer(LAYER_DICTS[name])
        if name == "activation":
            return self.config.activation if self.config else ""
        if name == "describe":
            return self.config.describe() if self.config else ""
        raise EvalError(f"unknown name {name!r}")


SCALARS = {"loss": "the mean training loss at the last snapshot", "loss0": "the same at the step's first snapshot",
           "step": "the trainer's step at the last snapshot", "steps": "steps run in this step",
           "test_acc": "test accuracy at the last epoch's end (nan before one)", "chance": "ln 10, a uniform guess's loss",
           "factor": "what each layer multiplies the gradient by on its way down (geometric mean)",
           "deriv": "mean |activation'| over the hidden layers", "badge": "the verdict's word (VANISHING, ...)",
           "verdict": "the verdict's line", "first": "the first layer's name", "last": "the output layer's name",
           "activation": "the branch's activation", "describe": "the branch's configuration in words"}
LAYER_DICTS = {"grad_norm": "grad_norm", "update": "update_data_ratio", "saturated": "saturated_frac",
               "dead": "dead_frac", "deriv_of": "deriv_mean", "act_std": "act_std"}


class EvalError(ValueError):
    """An expression that cannot be computed on these numbers (said in the reveal, never a crash)."""


def _argbest(pick: Callable) -> Callable:
    def f(*xs: Any) -> int:
        vals = list(xs[0]) if len(xs) == 1 and isinstance(xs[0], (list, tuple)) else list(xs)
        if not vals:
            raise EvalError("argmin/argmax of nothing")
        finite = [(v if isinstance(v, (int, float)) and math.isfinite(v) else None) for v in vals]
        cands = [(v, i) for i, v in enumerate(finite) if v is not None]
        if not cands:
            raise EvalError("argmin/argmax: no finite value")
        return pick(cands)[1] + 1
    return f


def _share(r: float, name: str) -> str:
    """A gradient ratio against layer `name`'s, in words: "1/9,800 of fc6's gradient", "0.72x fc6's gradient"."""
    w = ratio_words(r)
    return f"{w} of {name}'s gradient" if w.startswith("1/") else f"{w} {name}'s gradient"


def _pct(x: float) -> str:
    return f"{x:.0%}" if isinstance(x, (int, float)) and math.isfinite(x) else "n/a"


FUNCTIONS: dict[str, Callable] = {
    "min": min, "max": max, "abs": abs, "round": round,
    "log10": lambda x: math.log10(x) if x > 0 else -math.inf,
    "words": lambda r: ratio_words(float(r)), "pct": _pct, "share": lambda r, name: _share(float(r), str(name)),
    "argmin": _argbest(min), "argmax": _argbest(max),
    "isnan": lambda x: isinstance(x, float) and math.isnan(x),
}
BRANCH_METHODS = {"ratio"}
NAMES = set(SCALARS) | set(LAYER_DICTS) | set(FUNCTIONS) | {"ratio"} | set(BRANCH_IDS) | {"nan", "inf"}

_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b if b else (math.nan if a == 0 else math.copysign(math.inf, a)),
           ast.Pow: lambda a, b: a ** b, ast.Mod: lambda a, b: a % b}
_CMPS = {ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b,
         ast.GtE: lambda a, b: a >= b, ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b}


def compile_expr(src: str, branches: Sequence[str] = ("A",), layers: Sequence[str] = ()) -> ast.Expression:
    """Parse and check an expression (raises ValueError with what is wrong): only numbers, strings, the names of
    NAMES, + - * / ** %, comparisons, and/or/not, `x if c else y`, lists, calls of FUNCTIONS and ratio, a branch's
    numbers as B.loss / B.ratio("fc1", "fc6"), a layer's as grad_norm["fc1"]. Layer and branch names given as
    constants are checked against `layers` and `branches` (when given)."""
    if len(src) > MAX_EXPR:
        raise ValueError(f"expression longer than {MAX_EXPR} characters")
    try:
        tree = ast.parse(src.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"expression {src.strip()!r}: {e.msg}") from None

    def layer(node: ast.AST) -> None:
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            if isinstance(node, ast.Name) and node.id in ("first", "last"):
                return
            raise ValueError(f"a layer is named by a string (\"fc1\") or first / last, not {ast.unparse(node)}")
        if layers and node.value not in layers:
            raise ValueError(f"no layer {node.value!r} in this step's network (its layers: {', '.join(layers)})")

    def check(node: ast.AST) -> None:
        if isinstance(node, ast.Expression):
            return check(node.body)
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, str, bool)):
                raise ValueError(f"constant {node.value!r} not allowed")
            return
        if isinstance(node, ast.Name):
            if node.id not in NAMES:
                raise ValueError(f"unknown name {node.id!r} (known: {', '.join(sorted(set(SCALARS) | set(LAYER_DICTS)))}"
                                 ", ratio(a, b), A-D)")
            if node.id in BRANCH_IDS and node.id not in branches:
                raise ValueError(f"branch {node.id} does not exist in this step (branches: {', '.join(branches)})")
            return
        if isinstance(node, ast.Attribute):
            if not (isinstance(node.value, ast.Name) and node.value.id in BRANCH_IDS):
                raise ValueError("only a branch's numbers have attributes (B.loss, B.ratio(\"fc1\", \"fc6\"))")
            check(node.value)
            if node.attr not in SCALARS and node.attr not in LAYER_DICTS and node.attr not in BRANCH_METHODS:
                raise ValueError(f"unknown name {node.attr!r} of branch {node.value.id}")
            return
        if isinstance(node, ast.Subscript):
            base = node.value
            ok = (isinstance(base, ast.Name) and base.id in LAYER_DICTS) or (
                isinstance(base, ast.Attribute) and base.attr in LAYER_DICTS)
            if not ok:
                raise ValueError(f"only per-layer numbers take [\"layer\"] ({', '.join(LAYER_DICTS)})")
            check(base)
            return layer(node.slice)
        if isinstance(node, ast.Call):
            if node.keywords:
                raise ValueError("no keyword arguments")
            f = node.func
            if isinstance(f, ast.Name) and f.id == "ratio" or isinstance(f, ast.Attribute) and f.attr == "ratio":
                if isinstance(f, ast.Attribute):
                    check(f.value)
                if len(node.args) != 2:
                    raise ValueError("ratio takes two layers: ratio(\"fc1\", \"fc6\")")
                for a in node.args:
                    layer(a)
                return
            if not (isinstance(f, ast.Name) and f.id in FUNCTIONS):
                raise ValueError(f"unknown function {ast.unparse(f)!r} (known: ratio, {', '.join(FUNCTIONS)})")
            for a in node.args:
                check(a)
            return
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            check(node.left), check(node.right)
            return
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            return check(node.operand)
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                check(v)
            return
        if isinstance(node, ast.Compare) and all(type(o) in _CMPS for o in node.ops):
            check(node.left)
            for c in node.comparators:
                check(c)
            return
        if isinstance(node, ast.IfExp):
            check(node.test), check(node.body), check(node.orelse)
            return
        if isinstance(node, (ast.List, ast.Tuple)):
            for e in node.elts:
                check(e)
            return
        raise ValueError(f"{type(node).__name__} not allowed in an expression ({ast.unparse(node)!r})")

    check(tree)
    return tree


def evaluate(src: str | ast.Expression, numbers: Mapping[str, Numbers]) -> Any:
    """The expression's value on a step's numbers (`numbers`: branch id -> Numbers; plain names are A's). Raises
    EvalError when it cannot be computed (a missing layer, a string where a number goes)."""
    tree = compile_expr(src, tuple(numbers)) if isinstance(src, str) else src
    a = numbers.get("A") or next(iter(numbers.values()))

    def branch(node: ast.AST) -> Numbers:
        nums = numbers.get(node.id)  # type: ignore[attr-defined]
        if nums is None:
            raise EvalError(f"branch {node.id} did not run")  # type: ignore[attr-defined]
        return nums

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id == "nan":
                return math.nan
            if node.id == "inf":
                return math.inf
            if node.id in BRANCH_IDS:
                return branch(node)
            return a.value(node.id)
        if isinstance(node, ast.Attribute):
            return branch(node.value).value(node.attr)
        if isinstance(node, ast.Subscript):
            d = ev(node.value)
            key = ev(node.slice)
            if key not in d:
                raise EvalError(f"no layer {key!r} in this run")
            return d[key]
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr == "ratio":
                return branch(f.value).ratio(*(ev(x) for x in node.args))
            if f.id == "ratio":  # type: ignore[attr-defined]
                return a.ratio(*(ev(x) for x in node.args))
            args = [ev(x) for x in node.args]
            try:
                return FUNCTIONS[f.id](*args)  # type: ignore[attr-defined]
            except EvalError:
                raise
            except (TypeError, ValueError, OverflowError) as e:
                raise EvalError(f"{ast.unparse(node)}: {e}") from None
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if not all(isinstance(x, (int, float)) for x in (left, right)):
                raise EvalError(f"{ast.unparse(node)}: not numbers")
            if isinstance(node.op, ast.Pow) and abs(right) > 100:
                raise EvalError(f"{ast.unparse(node)}: exponent too large")
            try:
                return _BINOPS[type(node.op)](left, right)
            except (OverflowError, ZeroDivisionError, ValueError) as e:
                raise EvalError(f"{ast.unparse(node)}: {e}") from None
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return (not v) if isinstance(node.op, ast.Not) else (-v if isinstance(node.op, ast.USub) else +v)
        if isinstance(node, ast.BoolOp):
            vals = None
            for v in node.values:
                vals = ev(v)
                if isinstance(node.op, ast.And) and not vals or isinstance(node.op, ast.Or) and vals:
                    return vals
            return vals
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, c in zip(node.ops, node.comparators):
                right = ev(c)
                try:
                    if not _CMPS[type(op)](left, right):
                        return False
                except TypeError:
                    raise EvalError(f"{ast.unparse(node)}: cannot compare {left!r} and {right!r}") from None
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return ev(node.body) if ev(node.test) else ev(node.orelse)
        if isinstance(node, (ast.List, ast.Tuple)):
            return [ev(e) for e in node.elts]
        raise EvalError(f"{type(node).__name__} not allowed")

    return ev(tree)


_FIELD = re.compile(r"\{([^{}]+)\}")


def template_fields(template: str) -> list[tuple[str, str]]:
    """The {expression:format} fields of a reveal's template."""
    out = []
    for m in _FIELD.finditer(template):
        body = m.group(1)
        expr, _, spec = body.partition(":") if not _quoted_colon(body) else (body, "", "")
        out.append((expr, spec))
    return out


def _quoted_colon(body: str) -> bool:
    i = body.find(":")
    return i >= 0 and (body[:i].count('"') % 2 == 1 or body[:i].count("'") % 2 == 1)


def fill(template: str, numbers: Mapping[str, Numbers]) -> str:
    """The template with each {expression} (and {expression:format}) computed on the numbers; a field that cannot be
    computed reads "(n/a: why)"."""
    def one(m: re.Match) -> str:
        body = m.group(1)
        expr, _, spec = body.partition(":") if not _quoted_colon(body) else (body, "", "")
        try:
            v = evaluate(expr, numbers)
        except (EvalError, ValueError) as e:
            return f"(n/a: {e})"
        if spec:
            try:
                return format(v, spec)
            except (TypeError, ValueError):
                return str(v)
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)
    return _FIELD.sub(one, template.replace("{{", "\x00").replace("}}", "\x01")).replace("\x00", "{").replace(
        "\x01", "}")


@dataclass(frozen=True)
class Reveal:
    """What a step's run showed: `what` (the template computed), the right answer's number (None: no question, or
    it could not be computed: `why`), the class's, and the explanation with the paper's figure."""

    what: str
    right: int | None
    answer: int | None
    lines: tuple[str, ...] = field(default=())

    @property
    def correct(self) -> bool | None:
        return None if self.right is None or self.answer is None else self.right == self.answer


def reveal(step: Step, numbers: Mapping[str, Numbers], answer: int | None = None) -> Reveal:
    """The reveal of `step` on its run's numbers; `answer` is the class's (1-based; None: not answered)."""
    what = fill(step.reveal, numbers) if step.reveal else ""
    lines = [what] if what else []
    right = None
    if step.answers:
        try:
            v = evaluate(step.right, numbers)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or not 1 <= v <= len(
                    step.answers):
                raise EvalError(f"the right answer came out {v!r}, not an answer's number 1..{len(step.answers)}")
            right = int(v)
            lines.append(f"right: {right}) {step.answers[right - 1]}")
        except (EvalError, ValueError) as e:
            lines.append(f"right: cannot tell ({e})")
        if answer is None:
            lines.append("the class did not answer")
        else:
            mark = "" if right is None else ("  ✓ right" if answer == right else "  ✗ wrong")
            lines.append(f"the class: {answer}) {step.answers[answer - 1]}{mark}")
    if step.explain:
        lines.append(fill(step.explain, numbers))
    if step.figure:
        lines.append(step.figure)
    return Reveal(what, right, answer, tuple(lines))


def until_met(step: Step, numbers: Mapping[str, Numbers]) -> bool:
    """Whether the step's `until` holds on these numbers (False when it cannot be computed yet)."""
    if not step.until:
        return False
    try:
        return bool(evaluate(step.until, numbers))
    except (EvalError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------- the parser
_STEP_HEADER = re.compile(r"^\s*\[\[\s*step\s*\]\]")
_LESSON_HEADER = re.compile(r"^\s*\[\s*lesson\s*\]")


class _Lines:
    """Where things are in the file's text, for the one line an error names."""

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.steps = [i + 1 for i, l in enumerate(self.lines) if _STEP_HEADER.match(l)]
        self.lesson = next((i + 1 for i, l in enumerate(self.lines) if _LESSON_HEADER.match(l)), None)

    def block(self, step: int | None) -> tuple[int, int]:
        """The lines (1-based, end exclusive) of step `step` (0-based), or of the [lesson] table (None)."""
        heads = sorted(self.steps + ([self.lesson] if self.lesson else []))
        start = self.lesson if step is None else (self.steps[step] if step < len(self.steps) else None)
        if start is None:
            return 1, len(self.lines) + 1
        after = [h for h in heads if h > start]
        return start, after[0] if after else len(self.lines) + 1

    def of(self, step: int | None, key: str | None = None) -> int:
        start, end = self.block(step)
        if key is None:
            return start
        pat = re.compile(r"(^|[\s{,])" + re.escape(key) + r"\s*=")
        for n in range(start, end):
            if pat.search(self.lines[n - 1]):
                return n
        return start


def _closest(word: str, known: Sequence[str]) -> str:
    import difflib

    m = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {m[0]!r}?)" if m else f" (known: {', '.join(known)})"


def parse_lesson(text: str, path: str = "<lesson>", name: str | None = None,
                 figures: Mapping[str, Mapping[str, str]] | None = None, scale: float = 1.0) -> Lesson:
    """A lesson from its TOML text. Raises LessonError (one line: the file, the line, what is wrong). `figures`:
    PRESET -> {SPEC: the paper's figure in words} (vgtui compare's presets), which `figure = "PRESET:SPEC"`
    names; `scale` multiplies every step's run (at least two snapshots' worth)."""
    where = _Lines(text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        raise LessonError(path, int(m.group(1)) if m else None, f"not valid TOML: {msg}") from None

    def err(step: int | None, key: str | None, message: str) -> LessonError:
        return LessonError(path, where.of(step, key), message)

    for k in doc:
        if k not in ("lesson", "step"):
            raise LessonError(path, _top_line(where, k), f"unknown table {k!r}: a lesson has [lesson] and [[step]]")
    head = doc.get("lesson", {})
    if not isinstance(head, dict):
        raise err(None, None, "[lesson] must be a table")
    for k in head:
        if k not in LESSON_KEYS:
            raise err(None, k, f"unknown key {k!r} in [lesson]{_closest(k, list(LESSON_KEYS))}")
    title = _text(head.get("title", name or Path(path).stem), lambda m: err(None, "title", m), "title")
    about = _text(head.get("about", ""), lambda m: err(None, "about", m), "about")
    base = RunConfig().replace(**LESSON_DEFAULTS)
    base = _config(base, head.get("config", {}), lambda k, m: err(None, k, m))
    steps_raw = doc.get("step")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise LessonError(path, None, "no [[step]]: a lesson needs at least one step")
    steps: list[Step] = []
    for i, s in enumerate(steps_raw):
        steps.append(_step(i, s, base, err, where, figures or {}, scale, steps[-1] if steps else None))
    return Lesson(name or Path(path).stem, title, about, tuple(steps), path)


def _top_line(where: _Lines, key: str) -> int | None:
    pat = re.compile(r"^\s*\[*\s*" + re.escape(key) + r"\b")
    for n, l in enumerate(where.lines, 1):
        if pat.match(l):
            return n
    return None


def _text(v: Any, err: Callable[[str], LessonError], key: str, most: int | None = None) -> str:
    if not isinstance(v, str):
        raise err(f"{key} must be a string, got {type(v).__name__}")
    v = v.strip()
    if most and len(v) > most:
        raise err(f"{key} is {len(v)} characters; at most {most} fit beside the charts")
    if any(ord(c) < 32 and c not in "\n\t" or 0x7F <= ord(c) <= 0x9F for c in v):
        raise err(f"{key} holds a control character")
    return v


def _config(base: RunConfig, raw: Any, err: Callable[[str, str], LessonError]) -> RunConfig:
    if not isinstance(raw, dict):
        raise err("config", f"config must be a table of options ({{ activation = \"relu\" }}), got "
                            f"{type(raw).__name__}")
    changes = {}
    for k, v in raw.items():
        if k not in CONFIG_KEYS:
            raise err(k, f"unknown option {k!r} in config{_closest(k, CONFIG_KEYS)}")
        if k == "activation" and v not in ACTIVATIONS:
            raise err(k, f"unknown activation {v!r}; choose one of: {', '.join(ACTIVATIONS)}")
        if k == "init" and v not in INITS:
            raise err(k, f"unknown init {v!r}; choose one of: {', '.join(INITS)}")
        want = type(getattr(base, k)) if getattr(base, k) is not None else int
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, want) or (want is int and isinstance(v, bool)):
            raise err(k, f"{k} must be {'true or false' if want is bool else want.__name__}, got {v!r}")
        changes[k] = v
    try:
        cfg = base.replace(**changes).validate()
    except ConfigError as e:
        key = e.option.lstrip("-").replace("-", "_")
        raise err(key, f"config: {e}") from None
    if cfg.dataset != "mnist-5k":
        raise err("dataset", "a lesson trains on the embedded digits (dataset = \"mnist-5k\"): nothing downloads "
                             "in front of a class")
    return cfg


def _step(i: int, s: Any, base: RunConfig, err: Callable, where: _Lines, figures: Mapping,
          scale: float, prev: Step | None) -> Step:
    """Step i. Without a setup (config, restart, fork) it goes on from the step before: its run, its branches."""
    n = i + 1

    def e(key: str | None, message: str) -> LessonError:
        return err(i, key, f"step {n}: {message}")

    if not isinstance(s, dict):
        raise e(None, "must be a table")
    for k in s:
        if k not in STEP_KEYS:
            raise e(k, f"unknown key {k!r}{_closest(k, list(STEP_KEYS))}")
    title = _text(s.get("title", f"step {n}"), lambda m: e("title", m), "title", 60)
    text = _text(s.get("text", ""), lambda m: e("text", m), "text", MAX_TEXT)
    setups = [k for k in ("config", "restart", "fork") if k in s]
    if "restart" in s and not isinstance(s["restart"], bool):
        raise e("restart", "restart must be true or false")
    if not setups and prev is not None:
        cfg, forks = prev.config, list(prev.fork)
    else:
        cfg, forks = _config(base, s.get("config", {}), lambda k, m: e(k, m)), []
    if "fork" in s:
        raw = s["fork"]
        if not isinstance(raw, list) or not raw or not all(isinstance(x, dict) for x in raw):
            raise e("fork", "fork must be a list of one to three configurations: fork = [{ batchnorm = true }]")
        if len(raw) > MAX_BRANCHES - 1:
            raise e("fork", f"fork has {len(raw)} branches; at most {MAX_BRANCHES - 1} beside A")
        for x in raw:
            forks.append(_config(cfg, x, lambda k, m: e(k, m)))
    restart = prev is None or (bool(setups) and s.get("restart", True) is not False)
    branches = BRANCH_IDS[:1 + len(forks)]
    layers = tuple(f"fc{j}" for j in range(1, cfg.depth + 2))
    question = _text(s.get("question", ""), lambda m: e("question", m), "question", 200)
    answers_raw = s.get("answers")
    answers: tuple[str, ...] = ()
    if question and answers_raw is None:
        raise e("question", "a question needs answers: answers = [\"...\", \"...\"] (two to four)")
    if answers_raw is not None:
        if not question:
            raise e("answers", "answers without a question")
        if not isinstance(answers_raw, list) or not 2 <= len(answers_raw) <= MAX_ANSWERS:
            got = len(answers_raw) if isinstance(answers_raw, list) else type(answers_raw).__name__
            raise e("answers", f"a question needs two to four answers, got {got}")
        answers = tuple(_text(a, lambda m: e("answers", m), "an answer", 80) for a in answers_raw)
    right = s.get("right", "")
    if answers and not right:
        raise e("question", "a question needs `right`: an expression over the run's numbers giving the right "
                            "answer's number (never a fixed answer)")
    if right and not answers:
        raise e("right", "right without a question and answers")
    if right != "" and not isinstance(right, str):
        raise e("right", "right must be an expression in a string (\"1 if ratio('fc1', 'fc6') > 0.1 else 2\"), "
                         "computed from the run's numbers")
    if isinstance(right, str) and right:
        try:
            tree = compile_expr(right, branches, layers)
        except ValueError as x:
            raise e("right", f"right: {x}") from None
        if isinstance(tree.body, ast.Constant):
            raise e("right", "right is a constant: the right answer must be computed from the run's numbers")
    until = s.get("until", "")
    if not isinstance(until, str):
        raise e("until", "until must be an expression in a string")
    if until:
        try:
            compile_expr(until, branches, layers)
        except ValueError as x:
            raise e("until", f"until: {x}") from None
    run = s.get("run", 0)
    if isinstance(run, bool) or not isinstance(run, int) or not 0 <= run <= MAX_RUN:
        raise e("run", f"run must be a whole number of steps from 0 to {MAX_RUN:,}, got {run!r}")
    if answers and not run and not until:
        raise e("question", "a question needs a run to answer it: run = N steps (or until = ...)")
    texts = {}
    for key in ("reveal", "explain"):  # texts with {expressions} over the run's numbers, each checked now
        texts[key] = _text(s.get(key, ""), lambda m, key=key: e(key, m), key, MAX_TEXT)
        for expr, spec in template_fields(texts[key]):
            try:
                compile_expr(expr, branches, layers)
            except ValueError as x:
                raise e(key, f"{key} {{{expr}}}: {x}") from None
    rev, explain = texts["reveal"], texts["explain"]
    fig = s.get("figure", "")
    figure = ""
    if fig:
        if not isinstance(fig, str) or ":" not in fig:
            raise e("figure", "figure is PRESET:SPEC of vgtui compare (\"glorot2010:tanh\")")
        preset, _, spec = fig.partition(":")
        if preset not in figures:
            raise e("figure", f"no preset {preset!r}{_closest(preset, list(figures))}")
        if spec not in figures[preset]:
            raise e("figure", f"preset {preset} has no figure for {spec!r}{_closest(spec, list(figures[preset]))}")
        figure = figures[preset][spec]
    run = max(int(round(run * scale)), 2 * (cfg.probe_every or 5)) if run else 0
    return Step(title, text, cfg, restart, tuple(forks), question, answers, right, run, until, rev, explain, figure,
                where.of(i))


# ---------------------------------------------------------------------------------------------- finding lessons
def builtin_names() -> list[str]:
    return sorted(p.stem for p in LESSON_DIR.glob("*.toml"))


def read_lesson(name_or_path: str, figures: Mapping | None = None, scale: float = 1.0) -> Lesson:
    """A built-in lesson by name, or a lesson file by path. Raises LessonError."""
    p = Path(name_or_path)
    if name_or_path in builtin_names() and not p.exists():
        p = LESSON_DIR / f"{name_or_path}.toml"
    elif not p.exists():
        raise LessonError(name_or_path, None, f"no such lesson file, and no built-in lesson of that name (built in: "
                                              f"{', '.join(builtin_names())})")
    if not p.is_file():
        raise LessonError(name_or_path, None, "not a regular file")
    try:
        with open(p, "rb") as f:
            raw = f.read(1_000_001)
    except OSError as e:
        raise LessonError(name_or_path, None, f"cannot be read: {e.strerror or e}") from None
    if len(raw) > 1_000_000:
        raise LessonError(name_or_path, None, "larger than 1 MB: not a lesson")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LessonError(name_or_path, raw[:e.start].count(b"\n") + 1, "not UTF-8 text") from None
    return parse_lesson(text, name_or_path, p.stem, figures, scale)
