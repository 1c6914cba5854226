"""One table of the activations vgtui trains with: what each one is, in numpy terms (no torch here).

For each: its name, the function and its derivative as numpy formulas of the input z, the range of its output
(open or closed ends as the comments say; infinite ends are math.inf), the maximum of the derivative (sup over z of
|act'(z)|: 0.25 for the sigmoid, whose derivative is therefore at most a quarter at every layer, which is the
vanishing-gradient story; 1 for tanh and relu), and the fixed range of the screen's activation histogram.

    ACTIVATION_TABLE["sigmoid"].d_max       # 0.25
    ACTIVATION_TABLE["tanh"].derivative(z)  # 1 - tanh(z)**2, elementwise

The order is the UI's `a` key's cycle (the saturating ones first); vgtui.core.config.ACTIVATIONS is its names.
The torch modules are built in vgtui.engine.model, from these names; tests/test_summary.py checks every derivative
against a finite difference of the torch activation, and every maximum against a dense grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable


class _Numpy:
    """numpy, imported on first use: the table is read by vgtui.core.config, which the CLI imports at start."""

    def __getattr__(self, name: str) -> Any:
        import numpy

        return getattr(numpy, name)


np = _Numpy()
Array = Any  # a numpy array (or a float)
LEAKY_SLOPE = 0.01  # torch's leaky_relu default
SELU_ALPHA = 1.6732632423543772848170429916717  # Klambauer et al. 2017's constants, as torch's selu
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT2 = math.sqrt(2.0)


def _erf(z: Array) -> Array:
    return np.vectorize(math.erf, otypes=[float])(z)


def _sigmoid(z: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


def _softplus(z: Array) -> Array:
    return np.logaddexp(0.0, z)


def _phi_cdf(z: Array) -> Array:  # the standard normal's CDF (gelu is z * Phi(z), torch's exact form)
    return 0.5 * (1.0 + _erf(z / _SQRT2))


def _phi_pdf(z: Array) -> Array:
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def _mish_d(z: Array) -> Array:
    t = np.tanh(_softplus(z))
    return t + z * (1.0 - t * t) * _sigmoid(z)


@dataclass(frozen=True)
class ActivationInfo:
    name: str
    fn: Callable[[Array], Array]  # act(z), elementwise
    derivative: Callable[[Array], Array]  # act'(z), elementwise (at a kink: the right-hand side's, as torch)
    lo: float  # the output range: act(z) lies in [lo, hi] (an infinite end: -inf / inf)
    hi: float
    d_max: float  # the largest |act'(z)| over all z (a supremum where no z reaches it: softplus, selu)
    hist: tuple[float, float]  # the fixed range of the activation histogram (values outside: under/over)
    about: str = ""

    @property
    def saturating(self) -> bool:
        """Bounded on both sides: its derivative goes to 0 for large |z| (sigmoid, tanh, softsign, hardtanh)."""
        return math.isfinite(self.lo) and math.isfinite(self.hi)


_TABLE: tuple[ActivationInfo, ...] = (
    ActivationInfo("sigmoid", _sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z)), 0.0, 1.0, 0.25, (0.0, 1.0),
                   "1 / (1 + e^-z); open range (0, 1)"),
    ActivationInfo("tanh", lambda z: np.tanh(z), lambda z: 1.0 - np.tanh(z) ** 2, -1.0, 1.0, 1.0, (-1.0, 1.0), "open range"),
    ActivationInfo("softsign", lambda z: z / (1.0 + np.abs(z)), lambda z: 1.0 / (1.0 + np.abs(z)) ** 2, -1.0, 1.0,
                   1.0, (-1.0, 1.0), "Glorot & Bengio's z / (1 + |z|); open range"),
    ActivationInfo("hardtanh", lambda z: np.clip(z, -1.0, 1.0), lambda z: (np.abs(z) < 1.0).astype(float), -1.0,
                   1.0, 1.0, (-1.0, 1.0), "clip(z, -1, 1)"),
    ActivationInfo("relu", lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float), 0.0, math.inf, 1.0,
                   (0.0, 4.0), "max(z, 0)"),
    ActivationInfo("leaky_relu", lambda z: np.where(z > 0, z, LEAKY_SLOPE * z),
                   lambda z: np.where(z > 0, 1.0, LEAKY_SLOPE), -math.inf, math.inf, 1.0, (-1.0, 4.0),
                   f"slope {LEAKY_SLOPE} below 0"),
    ActivationInfo("elu", lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
                   lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0))), -1.0, math.inf, 1.0, (-1.0, 4.0),
                   "alpha 1; open at -1"),
    ActivationInfo("selu", lambda z: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0.0))),
                   lambda z: SELU_SCALE * np.where(z > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(z, 0.0))),
                   -SELU_SCALE * SELU_ALPHA, math.inf, SELU_SCALE * SELU_ALPHA, (-2.0, 4.0),
                   "self-normalising; open at -scale*alpha; the derivative's largest value is just below 0"),
    ActivationInfo("gelu", lambda z: z * _phi_cdf(z), lambda z: _phi_cdf(z) + z * _phi_pdf(z),
                   -0.16997120747990366, math.inf,
                   0.5 * (1.0 + math.erf(1.0)) + math.exp(-1.0) / math.sqrt(math.pi), (-0.5, 4.0),
                   "z * Phi(z), exact (erf) form; its minimum at z = -0.752, the derivative's maximum at z = sqrt 2"),
    ActivationInfo("swish", lambda z: z * _sigmoid(z),
                   lambda z: _sigmoid(z) + z * _sigmoid(z) * (1.0 - _sigmoid(z)), -0.2784645427610738, math.inf,
                   1.099839320128867, (-0.5, 4.0), "z * sigmoid(z) (SiLU); minimum at z = -1.278, largest slope at "
                   "z = 2.399"),
    ActivationInfo("mish", lambda z: z * np.tanh(_softplus(z)), _mish_d, -0.30884341301725027, math.inf,
                   1.0884981612517277, (-0.5, 4.0), "z * tanh(softplus(z)); minimum at z = -1.192, largest slope at "
                   "z = 1.491"),
    ActivationInfo("softplus", _softplus, _sigmoid, 0.0, math.inf, 1.0, (0.0, 4.0),
                   "log(1 + e^z); open at 0; its slope, the sigmoid, nears 1 for large z"),
    ActivationInfo("linear", lambda z: np.asarray(z, dtype=float), lambda z: np.ones_like(z, dtype=float),
                   -math.inf, math.inf, 1.0, (-4.0, 4.0), "the identity: no activation"),
)

ACTIVATION_TABLE: dict[str, ActivationInfo] = {a.name: a for a in _TABLE}
ACTIVATION_NAMES: tuple[str, ...] = tuple(ACTIVATION_TABLE)
# The activation histogram's fixed range for activations outside the table (an nn.Module a user's model holds)
DEFAULT_HIST_RANGE = (-4.0, 4.0)


def activation_info(name: str) -> ActivationInfo | None:
    return ACTIVATION_TABLE.get(name)


def hist_range(name: str | None) -> tuple[float, float]:
    """The activation histogram's fixed range for the activation `name` (any name: the default outside the table)."""
    a = ACTIVATION_TABLE.get(name or "")
    return a.hist if a is not None else DEFAULT_HIST_RANGE
