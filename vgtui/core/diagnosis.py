"""Plain-words diagnosis, shared by the headless summary and the UI's badge (no torch): a verdict on gradient flow
(from the first/last layer gradient-norm ratio) and, beside it, one on learning (from the training loss): flowing
gradients alone do not make a healthy run.

Every layer judged (issue 16), the one verdict every consumer calls: `judge_run(header_layers, snapshots, losses,
n_classes, accuracy)` -> RunVerdict(badge, line, layers, factors, factor_line, preflight, ...): a verdict per layer
from its own numbers (judge_layers), the gradient's factor at each step down split into the activation's
derivative and the weights (layer_factors, explain_factors), the preflight at the first snapshot (preflight), and
the run's badge, the worst of the layers and of the learning verdict. diagnose/explain/badge are the older
first/last-ratio verdict, kept for their callers."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

VANISHING_BELOW = 1e-2  # fc1 gets less than 1% of the last layer's gradient
EXPLODING_ABOVE = 1e2  # fc1 gets more than 100x the last layer's gradient
EXPLODING_NORM = 1e3  # or any layer's weight gradient norm is this large

DIAGNOSES = ("vanishing", "healthy", "exploding", "diverged")


def diagnose(ratio: float, grad_norms: Sequence[float] = ()) -> str:
    """'vanishing' | 'healthy' | 'exploding' | 'diverged' from the first/last layer gradient-norm ratio."""
    if not math.isfinite(ratio) or any(not math.isfinite(g) for g in grad_norms):
        return "diverged"
    if ratio > EXPLODING_ABOVE or any(g > EXPLODING_NORM for g in grad_norms):
        return "exploding"
    if ratio < VANISHING_BELOW:
        return "vanishing"
    return "healthy"


def explain(diagnosis: str, ratio: float, first: str = "fc1", last: str = "the output layer") -> str:
    """One sentence for people."""
    r = f"{ratio:.1e}" if math.isfinite(ratio) else str(ratio)
    if diagnosis == "vanishing":
        return (f"VANISHING: {first} gets {r} of {last}'s gradient, so the first layers barely learn. "
                "Try relu + kaiming, batchnorm, or skip connections.")
    if diagnosis == "exploding":
        return f"EXPLODING: {first} gets {r}x {last}'s gradient. Try a lower --lr, batchnorm, or xavier init."
    if diagnosis == "diverged":
        return "DIVERGED: non-finite gradients. Try a lower --lr, batchnorm, or a different init."
    if diagnosis == "exploded":  # a run the trainer ended for a loss far above chance (no NaN)
        return ("EXPLODING: the training loss grew far above chance without a NaN: the steps are far too large. "
                "Try a much lower --lr (divide by 100), batchnorm, or xavier init.")
    return f"HEALTHY: {first} gets {r} of {last}'s gradient: every layer learns."


# ---------------------------------------------------------------------------------------------- learning
# A training loss this many times chance (ln of the number of classes: 2.30 for 10) means logits in the hundreds:
# the weights have blown up. The trainer ends such a run as it ends a NaN (status "diverged", exit 3).
EXPLODED_X_CHANCE = 100
RISING_X = 1.1  # recent loss above 1.1x its start (or chance, if higher): the steps make it worse
AT_CHANCE_X = 0.95  # recent loss within 5% of chance, or accuracy under 1.5x chance: nothing learnt yet

LEARNING = ("too early", "learning", "stalled", "rising", "exploding")


def chance_loss(n_classes: int = 10) -> float:
    """Cross-entropy of a uniform guess over n_classes."""
    return math.log(max(n_classes, 2))


def exploded(loss: float, n_classes: int = 10) -> bool:
    """A mean training loss that says the run exploded (without a NaN, or before one)."""
    return math.isfinite(loss) and loss > EXPLODED_X_CHANCE * chance_loss(n_classes)


def judge_learning(losses: Sequence[float], n_classes: int = 10, accuracy: float | None = None) -> str:
    """One of LEARNING from the mean training loss at each snapshot (in order) and the latest accuracy (None if
    unknown): compares the last quarter of the snapshots with the first and with chance."""
    finite = [l for l in losses if math.isfinite(l)]
    if len(finite) < 2:
        return "too early"
    chance = chance_loss(n_classes)
    recent = statistics.fmean(finite[-max(1, len(finite) // 4):])
    if exploded(recent, n_classes):
        return "exploding"
    if recent > RISING_X * max(finite[0], chance):
        return "rising"
    if recent > AT_CHANCE_X * chance or (accuracy is not None and accuracy < 1.5 / n_classes):
        return "stalled"
    return "learning"


def _stalled_words(finite: Sequence[float], n_classes: int, accuracy: float | None) -> str:
    """Why a run is said not to learn: its loss stays at chance, or (its loss fell) its accuracy does."""
    chance = chance_loss(n_classes)
    now = f"{finite[-1]:.3g}" if finite else "?"
    recent = statistics.fmean(finite[-max(1, len(finite) // 4):]) if finite else math.nan
    acc = f", accuracy {accuracy:.0%}" if accuracy is not None else ""
    if math.isfinite(recent) and recent <= AT_CHANCE_X * chance and accuracy is not None:
        return (f"the accuracy stays at chance ({accuracy:.0%}; chance is {1 / max(n_classes, 2):.0%}) although the "
                f"loss fell to {now}")
    return f"the loss stays at chance ({now}; chance is {chance:.2f}){acc}"


def explain_learning(verdict: str, losses: Sequence[float], n_classes: int = 10, accuracy: float | None = None,
                     flow: str = "healthy") -> str:
    """One sentence for people on the learning verdict; `flow` (the gradient verdict) picks what to try."""
    finite = [l for l in losses if math.isfinite(l)]
    chance = chance_loss(n_classes)
    start, now = (f"{finite[0]:.3g}", f"{finite[-1]:.3g}") if finite else ("?", "?")
    acc = f", accuracy {accuracy:.0%}" if accuracy is not None else ""
    if verdict == "exploding":
        return (f"EXPLODING: the loss reached {now} (chance is {chance:.2f}) without a NaN: the steps are far too "
                "large. Try a much lower --lr (divide by 100), batchnorm, or xavier init.")
    if verdict == "rising":
        cure = "Try a lower --lr (divide by 10) or batchnorm."
        if flow == "healthy":
            cure = "The gradients flow, but the steps overshoot: try a lower --lr (divide by 10) or batchnorm."
        return f"LOSS RISING: the loss went from {start} to {now} (chance is {chance:.2f}){acc}. {cure}"
    if verdict == "stalled":
        cure = ("The vanishing gradients above are why: try relu + kaiming, batchnorm, or skip connections."
                if flow == "vanishing" else "The gradients flow but nothing is learnt yet: give it more steps, or "
                "try a lower --lr, batchnorm, or --optimizer adam.")
        return f"NOT LEARNING: {_stalled_words(finite, n_classes, accuracy)}. {cure}"
    if verdict == "learning":
        return f"LEARNING: the loss fell from {start} to {now} (chance is {chance:.2f}){acc}."
    return "TOO EARLY to say whether it learns: fewer than two snapshots."


def badge(flow: str, learning: str) -> str:
    """The one word for the UI's badge from both verdicts, the worst first: DIVERGED, EXPLODING, VANISHING, LOSS
    RISING, NOT LEARNING, HEALTHY (gradients flow and the loss falls, or it is too early to tell)."""
    if flow == "diverged":
        return "DIVERGED"
    if flow == "exploding" or learning == "exploding":
        return "EXPLODING"
    if flow == "vanishing":
        return "VANISHING"
    if learning == "rising":
        return "LOSS RISING"
    if learning == "stalled":
        return "NOT LEARNING"
    return "HEALTHY"


# ---------------------------------------------------------------------------------------------- every layer
# A verdict per layer from that layer's own numbers, the mechanism (each layer's factor on the gradient), a preflight
# at step 1, and the run's verdict: the worst of the layers and of the learning verdict (judge_run). One function
# for every consumer (headless, compare, replay, the UI).
UPDATE_LOW = 1e-5  # update:data below this: the weights barely move (not learning, whatever the ratios say)
UPDATE_HIGH = 1e-1  # above: every step rewrites a tenth of the weights (too large)
NEIGHBOUR_BELOW = 1e-2  # a layer that gets under 1% of the layer above's gradient
SATURATED_ABOVE = 0.5  # more than half of a saturating activation's outputs saturated (|act'| < 5% of its max)
DEAD_ABOVE = 0.5  # more than half of the units saturated on every example of the batch
MIN_SNAPSHOTS = 2  # fewer snapshots: "too early" (one snapshot is one batch at one step: no trend, no median)
RECENT = 5  # a layer's verdict reads the median of its numbers over the last RECENT snapshots (noise of one batch)
PREFLIGHT_HIGH_X = 1.5  # a loss at init above 1.5x chance: the output layer starts too large
PREFLIGHT_LOW_X = 0.5  # below half of chance at the first snapshot: it starts from learnt weights (or came late)
# Bounded activations outside vgtui's table whose saturated fraction means saturation (for relu and its kin a
# "saturated" output is one that is off, which is half of them in a healthy network: only `dead` applies there)
_SATURATING_EXTRA = frozenset({"relu6", "hardsigmoid"})

# Per-layer regimes, from the best to the worst: the run's verdict is its worst layer's (a frozen layer, whose
# weights do not train, is no fault). A trainable layer whose gradient is exactly 0 is "vanishing".
REGIMES = ("frozen", "healthy", "vanishing", "too large", "dead", "saturated", "exploding", "diverged")
_BADGE = {"diverged": "DIVERGED", "exploding": "EXPLODING", "saturated": "SATURATED", "dead": "DEAD UNITS",
          "too large": "STEPS TOO LARGE", "vanishing": "VANISHING"}
# The run's badge words, from the worst: the layers' and the learning verdict's in one order.
BADGES = ("DIVERGED", "EXPLODING", "SATURATED", "DEAD UNITS", "STEPS TOO LARGE", "VANISHING", "LOSS RISING",
          "NOT LEARNING", "TOO EARLY", "HEALTHY")


@dataclass(frozen=True)
class LayerVerdict:
    """One layer's regime (one of REGIMES) and why, in a few words ("84% saturated")."""

    name: str
    regime: str
    reason: str


@dataclass(frozen=True)
class Factor:
    """How much smaller the back-propagated gradient is at layer `name` than at the layer `above` it: `factor` is
    |dL/dz| at name over |dL/dz| at above (z: a layer's output before its activation), the gradient's one step
    down, through above's weights and name's activation. `deriv`: name's mean |act'(z)| (the part the derivative
    explains; None where no activation was seen between them, or none recorded); `weights` = factor / deriv (the
    part the weights add; the whole factor where there is no derivative). `deriv_max`: the activation's largest
    |act'| (0.25 for the sigmoid)."""

    name: str
    above: str
    factor: float
    deriv: float | None
    weights: float
    activation: str | None = None
    deriv_max: float | None = None


@dataclass(frozen=True)
class Preflight:
    """The run at its first snapshot: the loss against chance (ln of the number of classes, None if unknown) and
    the forward gain, each hidden layer's activation std. `loss_line` and `gain_line` say them in words."""

    step: int
    loss: float
    chance: float | None
    loss_line: str
    act_std: tuple[tuple[str, float], ...]
    gain_line: str

    @property
    def too_large(self) -> bool:
        """The loss at init is far above chance: the output layer starts too large."""
        return (self.chance is not None and math.isfinite(self.loss) and self.step <= 1
                and self.loss > PREFLIGHT_HIGH_X * self.chance)

    @property
    def text(self) -> str:
        return "; ".join(x for x in (self.loss_line, self.gain_line) if x)


@dataclass(frozen=True)
class RunVerdict:
    """The run's verdict. `badge`: one of BADGES; `line`: the layer and the reason ("blocks.4.0: 84% saturated"),
    or the learning verdict's reason, or "too early: 1 snapshot"; `layers`: each layer's verdict (input to
    output); `factors` and `factor_line`: the mechanism (see layer_factors, explain_factors); `preflight`: the
    first snapshot's (None without one); `learning`: judge_learning's verdict; `snapshots`: how many were judged."""

    badge: str
    line: str
    layers: tuple[LayerVerdict, ...] = ()
    factors: tuple[Factor, ...] = ()
    factor_line: str = ""
    preflight: Preflight | None = None
    learning: str = "too early"
    snapshots: int = 0

    @property
    def regime(self) -> str:
        """The worst layer's regime ("healthy" when every layer is, or there are none)."""
        return max((v.regime for v in self.layers), key=REGIMES.index, default="healthy")

    def layer(self, name: str) -> LayerVerdict:
        for v in self.layers:
            if v.name == name:
                return v
        raise KeyError(name)


def ratio_words(r: float) -> str:
    """A gradient ratio in words a class reads: 1e-4 -> "1/10,000", 0.14 -> "1/7", 0.7 -> "0.7x", 300 -> "300x"."""
    if not math.isfinite(r):
        return str(r)
    if r <= 0:
        return "none"
    if r < 0.5:
        n = 1 / r
        digits = max(0, int(math.floor(math.log10(n))) - 1)  # two significant figures
        return f"1/{int(round(n / 10 ** digits)) * 10 ** digits:,}"
    if r < 10:
        return f"{r:.2g}x"
    digits = max(0, int(math.floor(math.log10(r))) - 1)
    return f"{int(round(r / 10 ** digits)) * 10 ** digits:,}x"


def _gets(r: float, name: str) -> str:
    """"gets 1/9,100 of fc6's gradient", "gets 0.92x head's gradient"."""
    w = ratio_words(r)
    return f"gets {w} of {name}'s gradient" if w.startswith("1/") else f"gets {w} {name}'s gradient"


def _median(xs: Sequence[float | None]) -> float | None:
    v = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.median(v) if v else None


def _gz(layer: Any) -> float | None:
    """|dL/dz| at a layer: before its activation (pre_grad_norm), or its output's where none follows it."""
    if getattr(layer, "activation", None) is None:
        return layer.out_grad_norm
    return getattr(layer, "pre_grad_norm", None)


def layer_factors(snapshot: Any) -> list[Factor]:
    """The gradient's factor at each step down, from one snapshot: for consecutive probed layers k-1, k (input to
    output), |dL/dz| at k-1 over |dL/dz| at k, split into the derivative of k-1's activation and the weights'
    part. A pair without the gradients it needs (an older file, a layer no gradient reaches) is left out; see
    explain_factors for the words."""
    out: list[Factor] = []
    layers = snapshot.layers
    for lo, hi in zip(layers, layers[1:]):
        a, b = _gz(lo), _gz(hi)
        if a is None or b is None or not math.isfinite(a) or not math.isfinite(b) or b <= 0:
            continue
        f = a / b
        d = getattr(lo, "deriv_mean", None) if lo.activation is not None else None
        d = d if d is not None and math.isfinite(d) and d > 0 else None
        out.append(Factor(lo.name, hi.name, f, d, f / d if d else f, lo.activation, getattr(lo, "deriv_max", None)))
    return out


def factors_product(factors: Sequence[Factor]) -> float:
    """The product of the factors: the gradient at the first layer's z over the one at the last layer's output."""
    return math.prod(f.factor for f in factors) if factors else math.nan


def _geomean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if x > 0 and math.isfinite(x)]
    return math.exp(statistics.fmean(math.log(x) for x in xs)) if xs else math.nan


def explain_factors(snapshot: Any, factors: Sequence[Factor] | None = None) -> str:
    """One sentence: "each layer multiplies the gradient by about 0.14 (sigmoid' <= 0.25): 0.22 from the
    derivative, 0.64 from the weights; from fc6 down to fc1 2.4e-05 in all, against a measured fc1/fc6
    weight-gradient ratio of 1.1e-04" (geometric means of the factors), or why there are no factors."""
    layers = snapshot.layers
    if len(layers) < 2:
        return "factors need two probed layers or more: this model has one"
    factors = layer_factors(snapshot) if factors is None else list(factors)
    missing = [lo.name for lo, hi in zip(layers, layers[1:]) if lo.name not in {f.name for f in factors}]
    nonfinite = [lo.name for lo, hi in zip(layers, layers[1:]) if lo.name in missing and
                 any(g is not None and not math.isfinite(g) for g in (_gz(lo), _gz(hi)))]
    if not factors and nonfinite:
        return "factors need finite gradients: not finite at " + ", ".join(nonfinite)
    if not factors:
        if all(getattr(l, "pre_grad_norm", None) is None for l in layers if l.activation is not None) and \
                any(l.activation is not None for l in layers):
            return ("factors need the gradient before each activation: not recorded in this file "
                    "(written by an older vgtui)")
        return "factors need the gradient at each layer's output: not recorded for " + ", ".join(missing)
    gm = _geomean([f.factor for f in factors])
    acts = {f.activation for f in factors if f.activation}
    maxes = [f.deriv_max for f in factors if f.deriv_max is not None]
    if len(acts) == 1 and maxes:
        bound = f" ({next(iter(acts))}' <= {max(maxes):.3g})"
    elif maxes:
        bound = f" (the activations' derivatives <= {max(maxes):.3g})"
    else:
        bound = ""
    text = f"each layer multiplies the gradient by about {gm:.2g}{bound}"
    derivs = [f.deriv for f in factors if f.deriv is not None]
    if len(derivs) == len(factors):
        text += (f": {_geomean(derivs):.2g} from the derivative, {_geomean([f.weights for f in factors]):.2g} "
                 "from the weights")
    elif derivs:
        text += f" ({len(factors) - len(derivs)} of {len(factors)} with no activation between the layers)"
    else:
        text += " (no activation seen between the layers: the weights' part only)"
    first, last = layers[0], layers[-1]
    if not missing:
        text += (f"; from {last.name} down to {first.name} {factors_product(factors):.1e} in all, against a measured "
                 f"{first.name}/{last.name} weight-gradient ratio of {snapshot.ratio():.1e}")
    else:
        text += f"; no factor for {', '.join(missing)}: the gradient there was not recorded or not finite"
    return text


def _saturating(activation: str | None) -> bool:
    if activation is None:
        return False
    from vgtui.core.activations import ACTIVATION_TABLE

    a = ACTIVATION_TABLE.get(activation)
    return a.saturating if a is not None else activation in _SATURATING_EXTRA


_FIELD_WORDS = {"grad_norm": "weight gradient", "out_grad_norm": "back-propagated gradient",
                "update_data_ratio": "update", "weight_norm": "weights"}


def _nonfinite_fields(layer: Any) -> list[str]:
    return [k for k in ("grad_norm", "out_grad_norm", "update_data_ratio", "weight_norm")
            if getattr(layer, k, None) is not None and not math.isfinite(getattr(layer, k))]


def judge_layers(snapshots: Sequence[Any]) -> tuple[LayerVerdict, ...]:
    """Each layer's verdict (input to output) from the last RECENT snapshots: the median of its gradient against
    the output layer's and the layer above's, of its update:data ratio against UPDATE_LOW/UPDATE_HIGH, of its
    saturated and dead fractions; a non-finite number in the latest snapshot is "diverged" at once."""
    if not snapshots:
        return ()
    recent = list(snapshots)[-RECENT:]
    latest = recent[-1]
    names = [l.name for l in latest.layers]
    series: dict[str, dict[str, list[float | None]]] = {n: {} for n in names}
    for snap in recent:
        if [l.name for l in snap.layers] != names:
            continue  # another model (a restart): only the latest's layers are judged
        last = snap.layers[-1].grad_norm
        for i, l in enumerate(snap.layers):
            above = snap.layers[i + 1].grad_norm if i + 1 < len(snap.layers) else None
            s = series[l.name]
            for k, v in (("rel_out", l.grad_norm / last if last else None),
                         ("rel_above", l.grad_norm / above if above else None),
                         ("grad", l.grad_norm), ("upd", l.update_data_ratio), ("sat", l.saturated_frac),
                         ("dead", l.dead_frac)):
                s.setdefault(k, []).append(v)
    out_name = names[-1]
    verdicts = []
    for i, l in enumerate(latest.layers):
        s = {k: _median(v) for k, v in series[l.name].items()}
        bad = _nonfinite_fields(l)
        above = names[i + 1] if i + 1 < len(names) else None
        rel, rel_above, upd, sat, dead, g = (s.get(k) for k in ("rel_out", "rel_above", "upd", "sat", "dead", "grad"))
        upd_text = f"update:data {upd:.1e}" if upd is not None else ""
        if upd is not None and upd < UPDATE_LOW:
            upd_text += " (its weights barely move)"
        if bad:
            v = ("diverged", "non-finite " + ", ".join(_FIELD_WORDS.get(k, k) for k in bad))
        elif l.update_data_ratio is None and l.grad_norm == 0:
            v = ("frozen", "its weights do not train (no gradient, no update)")
        elif l.update_data_ratio is None:
            v = ("frozen", "its weights do not train (frozen)")
        elif g is not None and g > EXPLODING_NORM:
            v = ("exploding", f"gradient norm {g:.1e}, above {EXPLODING_NORM:.0e}")
        elif rel is not None and i < len(names) - 1 and rel > EXPLODING_ABOVE:
            v = ("exploding", _gets(rel, out_name))
        elif _saturating(l.activation) and sat is not None and sat > SATURATED_ABOVE:
            v = ("saturated", f"{sat:.0%} saturated")
        elif dead is not None and dead > DEAD_ABOVE:
            v = ("dead", f"{dead:.0%} of its units dead")
        elif upd is not None and upd > UPDATE_HIGH:
            v = ("too large", f"{upd_text}, above {UPDATE_HIGH:g}: each step rewrites its weights")
        elif g == 0:
            v = ("vanishing", "no gradient at all (exactly 0)")
        elif rel is not None and i < len(names) - 1 and rel < VANISHING_BELOW:
            v = ("vanishing", _gets(rel, out_name) + (f", {upd_text}" if upd_text else ""))
        elif rel_above is not None and rel_above < NEIGHBOUR_BELOW:
            v = ("vanishing", _gets(rel_above, above) + " (the layer above)")
        elif upd is not None and upd < UPDATE_LOW:
            v = ("vanishing", f"update:data {upd:.1e}, below {UPDATE_LOW:.0e}: its weights barely move")
        elif i == len(names) - 1:
            v = ("healthy", "the output layer" + (f", {upd_text}" if upd_text else ""))
        else:
            v = ("healthy", _gets(rel, out_name) if rel is not None else "")
            if upd_text:
                v = ("healthy", (v[1] + ", " if v[1] else "") + upd_text)
        verdicts.append(LayerVerdict(l.name, *v))
    return tuple(verdicts)


def _worst_key(v: LayerVerdict, layer: Any) -> tuple:
    """Within one regime, the most extreme layer first (lowest gradient share, most saturated, ...)."""
    g = layer.grad_norm if layer is not None and math.isfinite(layer.grad_norm) else 0.0
    sat = (layer.saturated_frac or 0.0) if layer is not None else 0.0
    dead = (layer.dead_frac or 0.0) if layer is not None else 0.0
    upd = layer.update_data_ratio if layer is not None and layer.update_data_ratio is not None else 0.0
    if v.regime == "saturated":
        return (REGIMES.index(v.regime), sat)
    if v.regime == "dead":
        return (REGIMES.index(v.regime), dead)
    if v.regime in ("too large",):
        return (REGIMES.index(v.regime), upd)
    if v.regime == "exploding":
        return (REGIMES.index(v.regime), g)
    if v.regime == "vanishing":
        return (REGIMES.index(v.regime), -g)
    return (REGIMES.index(v.regime), 0.0)


def _everywhere(snapshot: Any) -> str | None:
    """'update:data below 1e-06 on 31 of 31 layers: gradients too small everywhere', when every trainable layer's
    update:data ratio is below UPDATE_LOW (the bound said is the decade above the largest of them)."""
    upd = [l.update_data_ratio for l in snapshot.layers if l.update_data_ratio is not None]
    if not upd or not all(math.isfinite(u) and u < UPDATE_LOW for u in upd):
        return None
    top = max(upd)
    bound = 10.0 ** math.ceil(math.log10(top)) if top > 0 else UPDATE_LOW
    bound = bound * 10 if bound <= top else bound
    n = len(snapshot.layers)
    return f"update:data below {bound:.0e} on {len(upd)} of {n} layers: gradients too small everywhere"


def preflight(snapshot: Any, n_classes: int | None = 10) -> Preflight:
    """The first snapshot's loss against chance (ln n_classes; None: unknown) and its forward gain in words."""
    loss, step = snapshot.loss, snapshot.step
    at = "at init" if step <= 1 else f"at step {step:,} (the first snapshot)"
    chance = chance_loss(n_classes) if n_classes else None
    shown = f"{loss:.2f}" if abs(loss) < 10 else f"{loss:.3g}"  # 2.31, 27.4, 146
    if not math.isfinite(loss):
        loss_line = f"loss {at} {loss}: not finite"
    elif chance is None:
        loss_line = f"loss {at} {shown} (chance unknown: the number of classes is not recorded)"
    elif loss > PREFLIGHT_HIGH_X * chance and step <= 1:
        loss_line = f"loss {at} {shown} vs {chance:.2f} (chance): the output layer starts too large"
    elif loss < PREFLIGHT_LOW_X * chance:
        loss_line = f"loss {at} {shown} vs {chance:.2f} (chance): well below chance already"
    else:
        loss_line = f"loss {at} {shown} vs {chance:.2f} (chance): fine"
    stds = tuple((l.name, l.act_std) for l in snapshot.layers if l.act_std is not None)
    if not stds:
        gain = "no activation statistics: the forward gain is not known"
    elif len(stds) == 1:
        gain = f"activation std {stds[0][0]} {stds[0][1]:.2g}"
    else:
        (n0, s0), (n1, s1) = stds[0], stds[-1]
        per = (s1 / s0) ** (1 / (len(stds) - 1)) if s0 > 0 and s1 > 0 and math.isfinite(s0 * s1) else math.nan
        gain = f"activation std {n0} {s0:.2g} -> {n1} {s1:.2g}" + (f" (x{per:.2g} a layer)" if math.isfinite(per)
                                                                      else "")
    return Preflight(step, loss, chance, loss_line, stds, gain)


_LEARNING_BADGE = {"exploding": "EXPLODING", "rising": "LOSS RISING", "stalled": "NOT LEARNING"}


def _learning_line(verdict: str, losses: Sequence[float], n_classes: int, accuracy: float | None) -> str:
    finite = [l for l in losses if math.isfinite(l)]
    chance = chance_loss(n_classes)
    now = f"{finite[-1]:.3g}" if finite else "?"
    acc = f", accuracy {accuracy:.0%}" if accuracy is not None else ""
    if verdict == "exploding":
        return f"the loss reached {now} without a NaN (chance is {chance:.2f}): the steps are far too large"
    if verdict == "rising":
        return f"the loss rose from {finite[0]:.3g} to {now} (chance is {chance:.2f}){acc}"
    if verdict == "stalled":
        return _stalled_words(finite, n_classes, accuracy)
    return f"the loss fell from {finite[0]:.3g} to {now}{acc}; every layer's numbers are in range" if finite else ""


def judge_run(header_layers: Sequence[Any] | None, snapshots: Sequence[Any], losses: Sequence[float] | None = None,
              n_classes: int | None = 10, accuracy: float | None = None, *, first: Any = None,
              count: int | None = None, end_cause: str | None = None) -> RunVerdict:
    """The run's verdict, for every consumer: each layer's (judge_layers, over the last RECENT of `snapshots`),
    the factors and their sentence (the latest snapshot's), the preflight (`first`, the run's first snapshot,
    default snapshots[0]) and the learning verdict (judge_learning over `losses`, default each snapshot's
    loss_avg). `count`: how many snapshots the run has (default len(snapshots)): with fewer than MIN_SNAPSHOTS
    the badge is "TOO EARLY" (a non-finite number says DIVERGED at once). `end_cause`: an end record's cause
    ("diverged", "exploded") overrides. `header_layers` (the run header's LayerInfo or names) is the layer order
    when there is no snapshot. `n_classes` None: unknown (the preflight says so; learning is judged against 10)."""
    snaps = list(snapshots)
    count = len(snaps) if count is None else count
    first = first if first is not None else (snaps[0] if snaps else None)
    losses = [s.loss_avg for s in snaps] if losses is None else list(losses)
    nc = n_classes or 10
    learning = judge_learning(losses, nc, accuracy)
    pre = preflight(first, n_classes) if first is not None else None
    if not snaps:
        n = 0 if header_layers is None else len(header_layers)
        text = "too early: no snapshot yet" if count == 0 else f"{count} snapshots, none of them read"
        return RunVerdict("TOO EARLY", text + (f" ({n} layers)" if n else ""), learning=learning, preflight=pre,
                          snapshots=count)
    latest = snaps[-1]
    layers = judge_layers(snaps)
    factors = tuple(layer_factors(latest))
    factor_line = explain_factors(latest, factors)
    by = {l.name: l for l in latest.layers}
    worst = max(layers, key=lambda v: _worst_key(v, by.get(v.name)))
    same = [v for v in layers if v.regime == worst.regime and v is not worst]
    line = f"{worst.name}: {worst.reason}" + (f"; also {worst.regime}: {_names(same)}" if same else "")
    kw = dict(layers=layers, factors=factors, factor_line=factor_line, preflight=pre, learning=learning,
              snapshots=count)
    if end_cause in ("diverged", "exploded"):
        where = f"{worst.name}: {worst.reason}" if worst.regime == "diverged" else ""
        text = ("the training loss grew far above chance without a NaN" if end_cause == "exploded"
                else "non-finite loss or gradients")
        return RunVerdict("EXPLODING" if end_cause == "exploded" else "DIVERGED",
                          text + (f" ({where})" if where else ""), **kw)
    if worst.regime == "diverged":
        return RunVerdict("DIVERGED", line, **kw)
    if count < MIN_SNAPSHOTS:
        return RunVerdict("TOO EARLY", f"too early: {count} snapshot{'s' if count != 1 else ''}", **kw)
    if learning == "exploding":
        return RunVerdict("EXPLODING", _learning_line(learning, losses, nc, accuracy), **kw)
    everywhere = _everywhere(latest)
    if everywhere and worst.regime not in ("exploding",):
        # every layer's weights barely move: the run's story, whatever else a layer shows (the dead units of a
        # 30-layer relu net whose activations shrink to 1e-5 are a symptom of it)
        also = f"; worst layer {worst.name}: {worst.reason}" if worst.regime not in ("vanishing", "healthy") else ""
        return RunVerdict("VANISHING", everywhere + also, **kw)
    if worst.regime in _BADGE:
        return RunVerdict(_BADGE[worst.regime], line, **kw)
    if learning in _LEARNING_BADGE:
        return RunVerdict(_LEARNING_BADGE[learning], _learning_line(learning, losses, nc, accuracy), **kw)
    return RunVerdict("HEALTHY", _learning_line(learning, losses, nc, accuracy) or "every layer's numbers are in "
                      "range", **kw)


def _names(vs: Sequence[LayerVerdict], most: int = 4) -> str:
    names = [v.name for v in vs]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
