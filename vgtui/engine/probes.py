"""Probes: per-layer gradient and activation statistics of any nn.Module, through hooks.

How it works: a forward hook on every Linear/Conv layer marks it as the current layer; a forward hook on every
activation module attributes that activation's output to the current layer and computes its statistics (among
them the derivative probe: |act'(z)| over the batch, its mean and its histogram against the activation's largest
|act'|), or, for the layers of one bounded closed-form activation and shape (sigmoid, tanh, softsign), copies the
output into a shared buffer whose statistics are computed for all of them at once after the pass (_ActBatch);
tensor hooks on the outputs record the back-propagated gradient, after the activation (out_grad_norm) and before
it (pre_grad_norm, the layer's own output z). Weight and gradient norms, sums and standard deviations read every
value; a large layer's gradient histogram and mean |g| come from a fixed sample (GRAD_SAMPLE). Everything is
computed on the training device under no_grad, only on armed (probe) steps, and moved to the host in one transfer
by `finish()`. No `.item()`.

    probes = Probes(model)
    probes.arm()                 # before the forward pass of a probe step
    loss = ...; loss.backward()
    probes.collect_grads()       # after backward, before optimizer.step()
    optimizer.step()
    probes.collect_update()      # after optimizer.step() (update:data ratio)
    stats = probes.finish()      # tuple[LayerStats, ...], one device->host copy
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from vgtui.core.activations import ACTIVATION_TABLE, DEFAULT_HIST_RANGE
from vgtui.engine.distributed import is_dtensor
from vgtui.engine.model import Activation
from vgtui.core.records import DERIV_BINS, DERIV_EDGES, Hist, LayerStats

LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

# Fixed histogram ranges per activation (values outside are counted as under/over): bars never rescale. vgtui's
# own activations: their table's (vgtui.core.activations); relu6 is one more a user's model may hold.
ACT_RANGES: dict[str, tuple[float, float]] = {**{n: a.hist for n, a in ACTIVATION_TABLE.items()}, "relu6": (0.0, 6.0)}
DEFAULT_ACT_RANGE = DEFAULT_HIST_RANGE
ACT_BINS = 40
# Pre-activation percentiles are taken over at most this many of a layer's inputs z, a fixed sample (the same
# positions at every snapshot, spread over every unit): a partition of 4k values instead of the whole batch's (100k
# for the seed's network). A quantile's sampling error is then about 0.02 of z's spread; 16k values cost 1.3 ms more
# a probed step of the seed's network on this CPU (issue 18).
PRE_SAMPLE = 4096
PRE_QUANTILES = (0.15, 0.50, 0.85)
# Activations whose statistics are computed for all their layers at once (_ActBatch), from their output h alone,
# for layers of at most BATCH_MAX output values (a larger one's kernels are long enough on their own)
BATCHED = ("sigmoid", "tanh", "softsign")
BATCH_MAX = 1 << 18
SATURATION = 0.05  # a unit is saturated where |act'(z)| < 5% of the activation's largest |derivative|

# Weight-gradient histograms: one bin per power of two of |g|, 2^-46 (1.4e-14) .. 2^8 (256), read straight from
# the float32 exponent bits (far cheaper than log10 + histc over millions of values).
GRAD_EXP_MIN, GRAD_EXP_MAX = -46, 8
GRAD_EDGES_LOG10 = np.arange(GRAD_EXP_MIN, GRAD_EXP_MAX + 1) * math.log10(2.0)
# The histogram and mean |g| of a layer of at most GRAD_SAMPLE weights are exact; a larger layer's come from a fixed
# sample of its gradients (runs of 16 values spread over every row and column, the same positions at every
# snapshot, see _sample_stride), the counts scaled to the layer's size. Exact ones read every gradient twice more
# (|g|, then its bincount): 10 ms of a 21-25 ms step of the seed's network on this CPU, most of issue 18's
# probed-step cost. The norms, sums and standard deviations stay exact. 2^15 is the flight recorder's CPU sample too:
# the histogram's bins within a few tenths of a percent of the layer's share, mean |g| within about 0.5%
# (tests/test_probes.py).
GRAD_SAMPLE = 1 << 15

# nn modules recognised as activations, by the name vgtui uses for them (ReLU6 before its base class Hardtanh).
_MODULE_ACTS: tuple[tuple[type, str], ...] = (
    (nn.Sigmoid, "sigmoid"), (nn.Tanh, "tanh"), (nn.Softsign, "softsign"), (nn.ReLU6, "relu6"),
    (nn.Hardtanh, "hardtanh"), (nn.ReLU, "relu"), (nn.LeakyReLU, "leaky_relu"), (nn.ELU, "elu"), (nn.SELU, "selu"),
    (nn.CELU, "celu"), (nn.GELU, "gelu"), (nn.SiLU, "swish"), (nn.Mish, "mish"), (nn.Softplus, "softplus"),
    (nn.PReLU, "prelu"), (nn.RReLU, "rrelu"), (nn.Hardswish, "hardswish"), (nn.Hardsigmoid, "hardsigmoid"),
    (nn.LogSigmoid, "logsigmoid"), (nn.Tanhshrink, "tanhshrink"),
)


_NAME_OF_TYPE: dict[type, str | None] = {}


def activation_name(module: nn.Module) -> str | None:
    """vgtui's name for an activation module, or None if the module is not one (found once per module type: a probed
    step asks it of every module of the model)."""
    if isinstance(module, Activation):
        return module.name
    kind = type(module)
    if kind not in _NAME_OF_TYPE:
        _NAME_OF_TYPE[kind] = next((name for cls, name in _MODULE_ACTS if isinstance(module, cls)), None)
    return _NAME_OF_TYPE[kind]


# d act / d z from the input z and the output h, for vgtui's own Activation module (whose parameters are fixed);
# anything else goes through autograd.
_CLOSED_FORM: dict[str, Any] = {
    "sigmoid": lambda z, h: h * (1 - h),
    "tanh": lambda z, h: 1 - h * h,
    "softsign": lambda z, h: (1 - h.abs()) ** 2,
    "hardtanh": lambda z, h: (z.abs() < 1).float(),
    "relu": lambda z, h: (z > 0).float(),
    "leaky_relu": lambda z, h: torch.where(z > 0, 1.0, 0.01),
    "elu": lambda z, h: torch.where(z > 0, torch.ones_like(h), h + 1),
    "softplus": lambda z, h: torch.sigmoid(z),
    "linear": lambda z, h: torch.ones_like(h),
}


def _closed_form(module: nn.Module, h: torch.Tensor | None) -> bool:
    """Is d act / d z known in closed form (vgtui's own Activation)? Every closed form above is >= 0 (sigmoid's
    h(1-h) with h in [0, 1], tanh's 1-h^2 with |h| <= 1, elu's h+1 with h >= -1, ...): no abs() needed."""
    return h is not None and isinstance(module, Activation) and module.name in _CLOSED_FORM


def _bounded_output(module: nn.Module, name: str, lo: float, hi: float) -> bool:
    """Does the activation's output always lie in [lo, hi] (or is NaN)? vgtui's own Activation and torch's Sigmoid,
    Tanh and Softsign, whose range (vgtui.core.activations) the histogram's covers: a saturating activation."""
    info = ACTIVATION_TABLE.get(name)
    if info is None or not info.saturating or not (lo <= info.lo and info.hi <= hi):
        return False
    return isinstance(module, Activation) or type(module) in (nn.Sigmoid, nn.Tanh, nn.Softsign)


def _derivative(module: nn.Module, z: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
    """Elementwise d act / d z at z: closed form for vgtui's Activation, else by autograd on a detached copy
    (which works for any elementwise activation)."""
    if _closed_form(module, h):
        return _CLOSED_FORM[module.name](z.float(), h.float())
    with torch.enable_grad():
        zz = z.detach().float().requires_grad_(True)
        y = module.forward(zz + 0.0)  # forward() bypasses hooks; "+ 0.0" lets in-place modules work
        (d,) = torch.autograd.grad(y.sum(), zz)
    return d


_DMAX_CACHE: dict[Any, float] = {}


def max_derivative_value(module: nn.Module, name: str, device: torch.device) -> float:
    """The largest |act'(z)| of the activation module, a host float: the table's for vgtui's own activations,
    measured on a grid of z in -20..20 (step 1e-3) for any other module, once per module kind and parameters."""
    if isinstance(module, Activation) and name in ACTIVATION_TABLE:
        return ACTIVATION_TABLE[name].d_max  # vgtui's own: the table's (no sync)
    key = (name, repr(module))
    if key not in _DMAX_CACHE:  # any other module (its own parameters): measured on a grid
        grid = torch.linspace(-20.0, 20.0, 40001, device=device)
        _DMAX_CACHE[key] = float(_derivative(module, grid).abs().max())  # once per activation: a one-off sync
    return _DMAX_CACHE[key]


def _pre_sample(z: torch.Tensor, cap: int = PRE_SAMPLE) -> torch.Tensor:
    """The values of z whose PRE_QUANTILES a snapshot shows (on its device, no sync): all of them when z has at most
    `cap` values, else every s-th of them (s = numel / cap rounded up, raised until it shares no factor with the size
    of one example, so that the sample visits every unit, channel and pixel in turn; the same positions at every
    snapshot; a strided read, several times cheaper than a gather of random positions). In a job of several ranks
    each rank gives at most PRE_SAMPLE // ranks of its micro-batch's values and the quantiles are those of their
    union: exact while the global batch's layer has at most PRE_SAMPLE values, as in one process."""
    flat = z.detach().float().reshape(-1)
    n = flat.numel()
    if n > cap:
        s = -(-n // cap)
        example = n // z.shape[0] if z.dim() >= 2 and z.shape[0] else 1
        while math.gcd(s, example) != 1:
            s += 1
        flat = flat[::s]
    return flat


def _quantiles(xs: list[np.ndarray], qs: tuple[float, ...]) -> list[list[float]]:
    """np.quantile(x, qs) (its default, linear interpolation) of each array in `xs` (NaN for an empty one), whose
    values are float32 numbers (_pre_sample's): sorted as float32, arrays of one size (every layer's sample, as a
    rule) together as the rows of one array. numpy sorts float32 with SIMD and no branch to mispredict: 5 layers'
    samples of the seed's network in 0.2 ms, where a partition at the 6 ranks needed takes 0.34 ms (on new data:
    timed in a loop over the same array, a partition looks 5x faster, its branches learnt)."""
    out: list[list[float]] = [[math.nan] * len(qs) for _ in xs]
    by_size: dict[int, list[int]] = {}
    for j, x in enumerate(xs):
        if x.size:
            by_size.setdefault(x.size, []).append(j)
    for n, js in by_size.items():
        at = [q * (n - 1) for q in qs]
        lo, hi = [int(math.floor(v)) for v in at], [int(math.ceil(v)) for v in at]
        part = np.stack([xs[j] for j in js]).astype(np.float32, copy=False)
        part.sort(axis=1)
        p_lo, p_hi = part[:, lo].astype(np.float64), part[:, hi].astype(np.float64)
        vals = p_lo + (p_hi - p_lo) * np.array([v - f for v, f in zip(at, lo)])
        for j, row in zip(js, vals.tolist()):
            out[j] = row
    return out


def _local(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """This rank's part of a parameter (or its gradient, or optimiser state) and whether it is a shard: a DTensor
    (FSDP2's fully_shard) gives its local shard, an ordinary tensor itself (a replica: DDP's, or a single
    process's). A shard also replicated over a mesh dimension (HSDP) counts on the first replica only: an empty
    tensor elsewhere. Host-side: no sync, no collective."""
    if is_dtensor(t):
        local = t.to_local()
        mesh = t.device_mesh
        coord = mesh.get_coordinate() or []
        for dim, pl in enumerate(t.placements):
            if pl.is_replicate() and dim < len(coord) and coord[dim] != 0:
                return local.reshape(-1)[:0], True
        return local, True
    return t, False


def _sq_norm(t: torch.Tensor) -> torch.Tensor:
    """The sum of squares of a tensor's values in float32, on its device (no sync): a BLAS dot on the CPU (twice as
    fast as torch's norm there, and nearer the exact sum: 3.5e-6 against 1.5e-5 relative for a million gradients),
    the norm squared elsewhere."""
    f = t.detach().reshape(-1).float()
    return torch.dot(f, f) if f.device.type == "cpu" else torch.linalg.vector_norm(f).square()


def _std(sq: float, total: float, n: float) -> float:
    """Sample std from the sum of squares and the sum (host floats, added over the ranks): one fused pass each on
    the device instead of torch.std's two. Gradients, weights and updates have a mean far below their spread. NaN
    for no values, or a NaN sum."""
    return math.sqrt(max((sq - total * total / n) / max(n - 1, 1), 0.0)) if n else math.nan


def _ratio(a: float, b: float) -> float:
    """a / b as IEEE floats divide (numpy's): a non-zero a over 0 is an infinity of a's sign, 0 / 0 NaN."""
    if b:
        return a / b
    return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1.0, b)


# The gradient histogram's 256 counts are per float32 exponent field e (the exponent e - 127; 0 for zeros and
# subnormals): its bins are e in _EXP_INSIDE, below them `under` (zeros apart), above them `over`.
_EXP_INSIDE = slice(GRAD_EXP_MIN + 127, GRAD_EXP_MAX + 127)
_EDGES: dict[tuple[float, float, int], np.ndarray] = {}


def _act_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """An activation histogram's edges, made once per range (every snapshot's histograms share them)."""
    key = (lo, hi, bins)
    if key not in _EDGES:
        _EDGES[key] = np.linspace(lo, hi, bins + 1)
        _EDGES[key].flags.writeable = False
    return _EDGES[key]


def activation_edges(name: str, bins: int = ACT_BINS) -> np.ndarray:
    """The edges of the probes' histogram of that activation's output (its fixed range): the same array as its
    snapshots' histograms hold, for a run header (whose snapshots then leave them out: a third of a watched
    snapshot's line, and of the time spent writing it)."""
    return _act_edges(*ACT_RANGES.get(name, DEFAULT_ACT_RANGE), bins)


def _sat_threshold(dm: float) -> float:
    """The saturation threshold, SATURATION x the activation's largest |act'|, as their float32 product (the value
    the comparison with a float32 derivative uses)."""
    return float(np.float32(SATURATION) * np.float32(dm))


def _bins_of(x: torch.Tensor, lo: float, hi: float, bins: int, work: torch.Tensor | None = None,
             out: torch.Tensor | None = None) -> torch.Tensor:
    """The histc bin of each value of `x`, known to lie in [lo, hi] where it is not NaN (a sigmoid's output in
    [0, 1], a closed-form derivative in [0, its maximum]), as int16, in bins + 2 places: computed as histc computes
    it, (x - lo) * bins / (hi - lo) in x's dtype, truncated; `hi` itself in place `bins` (histc counts it in its
    last bin: _merge_top moves it there in the counts, a pass over the values fewer than a clamp), NaN in place
    `bins + 1`. Where bins / (hi - lo) is a power of two, one multiplication by it (it rounds as the two operations
    do). `work` (float, x's shape) and `out` (int16) are buffers to write into (_ActBatch's); by default new."""
    width = float(np.float32(hi) - np.float32(lo)) if x.dtype == torch.float32 else hi - lo  # as histc: x's dtype
    pow2 = width != 1.0 and math.frexp(width)[0] == 0.5
    scale = bins / width if pow2 else bins
    p = torch.sub(x, lo, out=work).mul_(scale) if lo else torch.mul(x, scale, out=work)
    if width != 1.0 and not pow2:
        p.div_(width)
    p.nan_to_num_(nan=float(bins + 1))
    return out.copy_(p) if out is not None else p.to(torch.int16)  # int16: 5x faster than uint8 on the CPU


def _bounded_hist(x: torch.Tensor, lo: float, hi: float, bins: int) -> torch.Tensor:
    """torch.histc(x, bins, lo, hi) and one bin more, the NaNs, for `x` as in _bins_of: one bincount, a quarter of
    histc's time on the CPU (tests/test_probes.py checks it equals histc, edges included). On the device."""
    counts = torch.bincount(_bins_of(x, lo, hi, bins).reshape(-1), minlength=bins + 2)
    counts[bins - 1] += counts[bins]
    return torch.cat([counts[:bins], counts[bins + 1:]])


def _merge_top(counts: np.ndarray, bins: int, axis: int) -> np.ndarray:
    """Counts over _bins_of's bins + 2 places along `axis` as histc's bins and the NaNs (bins + 1): the count of
    `hi` itself added to the last bin. Host arrays."""
    c = np.moveaxis(counts, axis, -1)
    out = np.concatenate([c[..., :bins], c[..., bins + 1:]], axis=-1)
    out[..., bins - 1] += c[..., bins]
    return np.moveaxis(out, -1, axis)


def _joint_code(x: torch.Tensor, x_range: tuple[float, float], x_bins: int, y: torch.Tensor,
                y_range: tuple[float, float], y_bins: int, flag: torch.Tensor,
                bufs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Each value's bins of x and y (same shape, as _bins_of) and a 0/1 `flag` (bool, or int16: added faster) as one
    int16 code, of (x_bins + 2) x (y_bins + 2) x 2: one bincount of the codes gives the two histograms and the flag's
    count (its sums, then _merge_top on the host). `bufs` ("p" float, "x", "y", "code" int16: _ActBatch's) are
    written into; by default new tensors."""
    b = bufs or {}
    code = torch.add(_bins_of(y, *y_range, y_bins, b.get("p"), b.get("y")),
                     _bins_of(x, *x_range, x_bins, b.get("p"), b.get("x")), alpha=y_bins + 2, out=b.get("code"))
    return torch.add(flag, code, alpha=2, out=code)


SAMPLE_RUN = 16  # the gradient sample's values come in runs of 16 neighbours: one cache line of float32 each


def _sample_stride(shape: tuple[int, ...], cap: int) -> int:
    """The gradient sample of a weight (GRAD_SAMPLE): the runs of SAMPLE_RUN values that start at every k-th position
    of the whole weight, row-major. k = 1 (every value) for at most `cap` values; else the smallest multiple of
    SAMPLE_RUN that keeps at most `cap`, raised until the runs' starts fall on every SAMPLE_RUN-th column or closer,
    so that the runs cover every column (where the sample holds a row's worth of values) and every row (where a row
    is longer than k): every k-th row whole would see 1/k of the units, and a unit's row of gradients is its error
    times the inputs, so rows differ far more than the values within one do. Runs, not single values: one value in
    each cache line read costs 10x more."""
    n = math.prod(shape)
    if n <= cap:
        return 1
    run = SAMPLE_RUN
    k = -(-(-(-n * run // cap)) // run) * run
    row = n // shape[0] if len(shape) >= 2 and shape[0] else 1
    while math.gcd(k, row) > run:
        k += run
    return k


def _sample_pieces(g: torch.Tensor, k: int, offset: int) -> list[torch.Tensor]:
    """The sampled gradients of a weight (_sample_stride's k) whose local part `g` starts at flat position `offset`
    of the whole weight (a shard), as views of `g` in order (a run cut by the part's start, the runs as a (runs,
    SAMPLE_RUN) strided view, a run cut by its end): positions fixed in the whole weight, so every rank takes those
    in its own shard (a run cut by a shard's edge in two parts) and a sharded job counts the same values as one
    process, in the same order. Strided windows (unfold), no index: a gather by index costs 6x more. No sync."""
    flat = g.reshape(-1)
    if k == 1:
        return [flat]
    n, run = flat.numel(), SAMPLE_RUN
    parts = []
    before = offset // k * k  # the run begun in the part before this one may reach into it
    if before < offset < before + run:
        parts.append(flat[:before + run - offset])
    start = -(-offset // k) * k - offset  # the first run that starts here
    if start + run <= n:
        windows = flat[start:].unfold(0, run, k)
        parts.append(windows)
        start += windows.shape[0] * k
    if start < n:  # a run cut by this part's end (or the weight's)
        parts.append(flat[start:])
    return parts


def _sample(g: torch.Tensor, k: int, offset: int) -> torch.Tensor:
    """_sample_pieces' values as one flat tensor (a copy)."""
    return torch.cat([p.reshape(-1) for p in _sample_pieces(g, k, offset)])


def _shard_offset(t: torch.Tensor) -> int:
    """Where this rank's part of `t` starts in the whole tensor, in flat (row-major) positions: 0 for an ordinary
    tensor; for a DTensor sharded on dim 0 (FSDP2) the first row's. Host-side: no sync."""
    if not is_dtensor(t):
        return 0
    try:
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
    except ImportError:  # pragma: no cover - torch < 2.4
        from torch.distributed._tensor._utils import compute_local_shape_and_global_offset
    _, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
    strides = [math.prod(t.shape[d + 1:]) for d in range(len(t.shape))]
    return sum(o * st for o, st in zip(offset, strides))


_OFFSETS_CACHE: dict[tuple, torch.Tensor] = {}


def _exponent_counts(values: torch.Tensor, lens: list[int],
                     exp: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Counts per float32 exponent (256 bins: 0 = zero or subnormal, 255 = inf/nan) of each sample held one after
    the other in `values` (float32, their lengths `lens`), one row each, and the sum of each one's absolute values:
    `values` made absolute in place (the sign bit cleared: the bits >> 23 are then the exponent field), and one
    bincount for all of them, each sample's bins offset by 256 x its index. `exp` is an int32 buffer of values'
    size (a new tensor of this size on the CPU costs its page faults). No sync."""
    dev = values.device
    key = (tuple(lens), str(dev))
    if key not in _OFFSETS_CACHE:
        _OFFSETS_CACHE.clear()  # one network's layout at a time
        _OFFSETS_CACHE[key] = torch.repeat_interleave(
            torch.arange(len(lens), dtype=torch.int32) * 256, torch.tensor(lens)).to(dev)
    values.abs_()
    torch.bitwise_right_shift(values.view(torch.int32), 23, out=exp).add_(_OFFSETS_CACHE[key])
    counts = torch.bincount(exp, minlength=256 * len(lens)).view(len(lens), 256)
    return counts, [part.sum() for part in values.split(list(lens))]


# Layers whose output holds its units on axis 1, (N, C, *spatial): convolutions and the norms that follow them.
# Every other layer (Linear, Bilinear, Embedding, LayerNorm) holds them on the last axis, (*, features), as a
# Linear applied to (batch, tokens, features) does.
_CHANNEL_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase, nn.GroupNorm)


def _unit_axis(layer: nn.Module, ndim: int) -> int:
    """The axis of `layer`'s output (`ndim` dimensions) along which its units lie; the other axes are examples,
    token positions or pixels, over which a dead unit is dead at every one. An unbatched convolution's output,
    (C, *spatial), has its channels first."""
    if isinstance(layer, _CHANNEL_FIRST) and ndim >= 2:
        spatial = len(layer.kernel_size) if isinstance(layer, nn.modules.conv._ConvNd) else ndim - 2
        return 1 if ndim >= spatial + 2 else 0
    return ndim - 1


def _trainable(w: torch.Tensor) -> bool:
    """A weight that can move: a frozen one (requires_grad False, a fine-tuned model's backbone) has no update."""
    return w.requires_grad


def _sgd_update_known(opt: torch.optim.Optimizer | None) -> bool:
    """A plain SGD step (no weight decay, dampening or Nesterov, not maximising): its update is -lr * buffer."""
    if type(opt) is not torch.optim.SGD:
        return False
    return all(not g.get("weight_decay") and not g.get("dampening") and not g.get("nesterov")
               and not g.get("maximize") for g in opt.param_groups)


class HostPack:
    """Device tensors gathered for one device-to-host copy and read back by name, not by position:

        pack = HostPack(); pack.add((0, "grad"), t); pack.copy(torch.float64); pack[0, "grad"] -> np.ndarray
    """

    def __init__(self) -> None:
        self._parts: list[torch.Tensor] = []
        self._keys: list[Any] = []  # part j's key
        self._spans: dict[Any, tuple[int, int]] = {}
        self._n = 0
        self._host: np.ndarray | None = None

    def add(self, key: Any, t: torch.Tensor) -> None:
        t = t.detach().reshape(-1)
        self._parts.append(t)
        self._keys.append(key)
        self._spans[key] = (self._n, self._n + t.numel())  # a shape: no sync
        self._n += t.numel()

    def copy(self, dtype: torch.dtype, into: torch.Tensor | None = None) -> None:
        """One device -> host copy of every part as `dtype`: the parts are joined per dtype first (a handful of
        cats instead of a cast per part). Parts already on the CPU are instead each cast into `into`, a CPU buffer
        of `dtype` and at least as many values kept by the caller (no new array of a few hundred kB, whose page
        faults cost more than the casts); the arrays read back are views of it, valid until its next use."""
        if into is not None and all(p.device.type == "cpu" for p in self._parts):
            for j, p in enumerate(self._parts):
                a, b = self._spans[self._keys[j]]
                into[a:b].copy_(p)
            self._host = into[:self._n].numpy()
            return
        groups: dict[torch.dtype, list[int]] = {}
        for j, p in enumerate(self._parts):
            groups.setdefault(p.dtype, []).append(j)
        order = [j for js in groups.values() for j in js]
        self._host = torch.cat([torch.cat([self._parts[j] for j in js]).to(dtype)
                                for js in groups.values()]).cpu().numpy()  # sync: one copy for all
        at = 0
        for j in order:  # each part's span in the joined copy
            n = self._parts[j].numel()
            self._spans[self._keys[j]] = (at, at + n)
            at += n

    @property
    def size(self) -> int:
        return self._n

    def __contains__(self, key: Any) -> bool:
        return key in self._spans

    def __getitem__(self, key: Any) -> np.ndarray:
        a, b = self._spans[key]
        return self._host[a:b]


class _ActBatch:
    """The activation statistics of the layers that share one closed-form bounded activation (sigmoid, tanh,
    softsign) and one output shape, computed together once the forward pass is over: each layer's output is copied
    into a slot of one buffer at its hook, and every statistic is then one kernel over all the layers at once
    instead of one per layer (the seed's network: about 20 kernels instead of 100; on the CPU each costs its
    dispatch and thread wake-up, more than reading 100k values). The buffers stay between probed steps (a new buffer
    of a few MB costs its page faults on the CPU every time)."""

    def __init__(self, name: str, shape: tuple[int, ...], axis: int, device: torch.device, lo: float, hi: float,
                 dm: float, bins: int):
        self.name, self.shape, self.axis, self.lo, self.hi, self.dm, self.bins = name, shape, axis, lo, hi, dm, bins
        self.n = math.prod(shape)
        self.device = device
        self.h = torch.empty((0, *shape), device=device)  # one slot per layer
        self.work: dict[str, torch.Tensor] = {}
        self.k = 0

    def add(self, h: torch.Tensor) -> int:
        if self.k == self.h.shape[0]:  # a slot more (the first probed steps only: the count is the same later)
            grown = torch.empty((self.k + 1, *self.shape), device=self.device)
            grown[:self.k].copy_(self.h[:self.k])
            self.h = grown
        self.h[self.k].copy_(h)  # a copy: an in-place change of the output later in the pass does not reach it
        self.k += 1
        return self.k - 1

    def _buf(self, key: str, dtype: torch.dtype) -> torch.Tensor:
        size = self.k * self.n
        t = self.work.get(key)
        if t is None or t.numel() < size:
            t = self.work[key] = torch.empty(size, dtype=dtype, device=self.device)
        return t[:size].view(self.k, self.n)

    def compute(self) -> dict[str, torch.Tensor]:
        """This rank's statistics of every slot, one row each: "dead" (slots, units), "dsum", "act" and "deriv" (the
        two histograms' counts, _bins_of's places), "sat" (saturated count), "mean" and "var" (population). No sync.
        About 20 passes over the slots' values; each counted pass is 50-80 us for the seed's 500k values on this
        CPU. Five buffers (h, d, and three of int16: two of bins and the flag): once d's bins are taken, its buffer is
        the float scratch of what follows (the buffers come back from memory at every probed step, 40 steps after the
        last)."""
        k, bins, dbins = self.k, self.bins, DERIV_BINS
        h = self.h[:k].view(k, self.n)
        d = self._buf("d", torch.float32)  # the closed form from h alone, as _CLOSED_FORM computes it
        if self.name == "sigmoid":  # h (1 - h): the sigmoid's own backward with an upstream gradient of 1, one pass
            torch.ops.aten.sigmoid_backward.grad_input(torch.ones((), device=self.device).expand(k, self.n), h,
                                                       grad_input=d)
        elif self.name == "tanh":
            torch.mul(h, h, out=d).neg_().add_(1.0)  # 1 - h^2
        else:
            torch.abs(h, out=d).neg_().add_(1.0).square_()  # softsign: (1 - |h|)^2
        thr = _sat_threshold(self.dm)
        # dead: saturated on all of this rank's examples, i.e. the largest |act'| over them below the threshold (a
        # float max over the examples: 6x faster than all() of the mask)
        units = d.view(k, *self.shape)
        if self.axis != len(self.shape) - 1:
            units = units.movedim(self.axis + 1, -1)
        dead = units.reshape(k, -1, units.shape[-1]).amax(dim=1) < thr
        dsum = d.sum(dim=1)
        # the joint codes of h, d and whether saturated (as a single layer's), each layer's offset by its slot: the
        # two histograms and the saturated count from one bincount
        width = (bins + 2) * (dbins + 2) * 2
        i16 = torch.int16
        # the flag as int16, the codes' own type: adding a bool mask to them took 0.18 ms more for the seed's network
        sat = torch.lt(d, thr, out=self._buf("flag", torch.int16))
        code = self._buf("code", i16)
        code = _joint_code(h, (self.lo, self.hi), bins, d, (0.0, self.dm), dbins, sat,
                           {"p": d, "x": self._buf("ih", i16), "y": code, "code": code})
        wide = torch.int16 if k * width < 2 ** 15 else torch.int32
        code = code.to(wide) if wide != torch.int16 else code
        code.add_(torch.arange(k, device=self.device, dtype=wide).mul_(width).unsqueeze(1))
        joint = torch.bincount(code.reshape(-1), minlength=k * width).view(k, bins + 2, dbins + 2, 2)
        mean = h.mean(dim=1)
        dev = torch.sub(h, mean.unsqueeze(1), out=d)  # two passes, as torch's var
        var = torch.linalg.vector_norm(dev, dim=1).square_().div_(self.n)
        # the two histograms (in _bins_of's places) and the saturated count, each a few kernels on 15k counts: a
        # fifth of the values to copy, and cheaper here than numpy's calls on the host after the step
        return {"dead": dead, "dsum": dsum, "act": joint.sum((2, 3)), "deriv": joint.sum((1, 3)),
                "sat": joint[..., 1].sum((1, 2)), "mean": mean, "var": var}


class Probes:
    """Hooks on every Linear/Conv layer of `model` and the activation after each one."""

    def __init__(self, model: nn.Module, act_bins: int = ACT_BINS,
                 layers: list[tuple[str, nn.Module]] | None = None):
        """`layers`, (name, module) pairs with a `weight`, replaces the default choice of every Linear/Conv."""
        self.model = model
        self.act_bins = act_bins
        self.layers: list[tuple[str, nn.Module]] = (list(layers) if layers is not None else
                                                   [(n, m) for n, m in model.named_modules()
                                                    if isinstance(m, LAYER_TYPES)])
        if not self.layers:
            raise ValueError("the model has no Linear or Conv layer to probe")
        self._ordered = False
        self.armed = False
        self.world = 1  # ranks whose micro-batches finish() adds together (vgtui.watch sets it)
        self.rows = np.zeros((1, 0))  # after finish(): one row per rank (see finish)
        self._handles: list[Any] = []
        self._batches: dict[tuple, _ActBatch] = {}  # kept between probed steps: their buffers are reused
        self._scratches: dict[str, torch.Tensor] = {}  # buffers kept between probed steps (_scratch)
        self._sharded_w: set[int] = set()  # layer modules whose weight is a shard (DTensor): read at collect_grads
        self._reset()

    def _attach(self) -> None:
        """Hooks exist only while armed: unprobed steps run the model exactly as without vgtui."""
        for _, m in self.layers:
            self._handles.append(m.register_forward_hook(self._on_layer))
        for _, m in self.model.named_modules():
            if activation_name(m) is not None:
                if getattr(m, "inplace", False):
                    self._handles.append(m.register_forward_pre_hook(self._on_act_input))
                self._handles.append(m.register_forward_hook(self._on_act))

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.layers]

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # ------------------------------------------------------------------ state of one probe step
    def _reset(self) -> None:
        self._cur: int | None = None
        self._fired: list[int] = []
        # per layer: (activation name, its local partial sums, its (mean, population var), lo, hi, values)
        self._act: dict[int, tuple[str, dict[str, torch.Tensor] | None, tuple | None, float, float, int]] = {}
        self._pending: dict[int, tuple[_ActBatch, int]] = {}  # per layer: its batch and slot, until _flush()
        self._done: list[dict[str, torch.Tensor]] = []  # per batch computed by _flush(): its statistics, a row a slot
        self._slots: dict[int, tuple[int, int]] = {}  # per batched layer: its batch's place in _done, and its row
        batches = self._batches
        if len(batches) > 16:  # shapes that change from step to step (a last, smaller batch; sequences): start over
            batches.clear()
        for b in batches.values():
            b.k = 0
        self._deriv: dict[int, float] = {}  # per layer: the derivative's largest value (a host float)
        self._pre: dict[int, torch.Tensor] = {}  # per layer: the sampled inputs z whose percentiles are shown
        self._act_grad: dict[int, torch.Tensor] = {}
        self._out_grad: dict[int, torch.Tensor] = {}
        self._no_grad_out: set[int] = set()  # layers whose output needs no gradient (out_grad_norm None)
        self._stash: dict[int, torch.Tensor] = {}
        # per layer module: its weight's sum of squares and sum, read at its forward hook (_on_layer)
        self._w_fwd: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        # per layer, this rank's partial sums: sum g^2, sum |g|, sum g, sum w^2, sum w (a device stack)
        self._grad_stats: torch.Tensor | None = None  # (layers, 5), see collect_grads
        self._grad_hists: torch.Tensor | None = None
        self._sampled: list[int] = []  # per layer: how many local gradients its exponent counts read (host ints)
        self._counts: list[tuple[int, int]] = []  # per layer: numel of the local g and w (shapes: host ints)
        self._sharded: list[bool] = []  # per layer: a DTensor shard (summed over ranks) or a replica (counted once)
        self._w_before: list[torch.Tensor | None] | None = None  # per layer: a copy of the weight, or None
        self._update_from: list[str] = []  # per layer: "sgd", "copy" or "frozen" (see collect_grads)
        self._optimizer: torch.optim.Optimizer | None = None
        self._w_std: list[torch.Tensor] | None = None  # set by collect_grads: the update may be read
        # per layer: its row of _update_rows (sum of squares and sum of the update on this rank), its numel and its
        # scale (lr: a float, or a tensor on the device), or None (frozen)
        self._update: list[tuple[int, int, float | torch.Tensor] | None] | None = None
        self._update_rows: torch.Tensor | None = None

    def arm(self) -> None:
        self._reset()
        if not self._handles:
            self._attach()
        self.armed = True

    def disarm(self) -> None:
        self.armed = False
        self.close()
        self._reset()

    # ------------------------------------------------------------------ hooks
    def _index(self, module: nn.Module) -> int:
        for i, (_, m) in enumerate(self.layers):
            if m is module:
                return i
        raise KeyError(module)

    def _on_layer(self, module: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        if not self.armed:
            return
        idx = self._index(module)
        self._cur = idx
        self._fired.append(idx)
        key = id(module)
        if key not in self._w_fwd and key not in self._sharded_w:
            # The weight's sum of squares and sum as the forward pass used it (the weights before the step), read
            # now, while the layer's own product has just brought it into the cache: a cold read after backward
            # costs more. Not for a shard (a DTensor here, or FSDP2's full weight during its forward, which is not
            # the rank's part: collect_grads reads the shard, and notes the layer in _sharded_w).
            w = module.weight
            if is_dtensor(w):
                self._sharded_w.add(key)
            else:
                w = w.detach().reshape(-1).float()  # detached: nothing here is recorded for autograd
                self._w_fwd[key] = (_sq_norm(w), w.sum())
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(lambda g, i=idx: self._out_grad.__setitem__(i, _sq_norm(g)))
        elif isinstance(out, torch.Tensor):  # a frozen layer on a frozen input: no gradient comes back (no sync)
            self._no_grad_out.add(idx)

    def _on_act_input(self, module: nn.Module, inputs: Any) -> None:
        if self.armed and self._cur is not None:
            self._stash[id(module)] = inputs[0].detach().clone()

    def _on_act(self, module: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        if not self.armed or self._cur is None or self._cur in self._act:
            return
        idx = self._cur
        name = activation_name(module) or "?"
        z = self._stash.pop(id(module), inputs[0])
        lo, hi = ACT_RANGES.get(name, DEFAULT_ACT_RANGE)
        h = out.detach().float()  # detached: what follows records nothing for autograd
        closed = _closed_form(module, h)
        dm = max_derivative_value(module, name, h.device)  # a host float (cached): no sync
        if (closed and name in BATCHED and h.dim() and 0 < h.numel() <= BATCH_MAX and self.act_bins < 2 ** 10
                and _bounded_output(module, name, lo, hi)):
            # the statistics wait for _flush(), with those of the other layers of this activation and shape
            axis = _unit_axis(self.layers[idx][1], h.dim())  # from shapes: no sync
            key = (name, h.shape, axis, h.device, lo, hi, dm)
            batch = self._batches.get(key)
            if batch is None:
                batch = self._batches[key] = _ActBatch(name, tuple(h.shape), axis, h.device, lo, hi, dm,
                                                       self.act_bins)
            self._pending[idx] = (batch, batch.add(h))
            sums = moments = None
        else:
            with torch.no_grad():
                sums, moments = self._layer_stats(idx, module, name, z, h, closed, dm, lo, hi)
        self._act[idx] = (name, sums, moments, lo, hi, h.numel())
        # a copy, taken while z is in the cache (a strided read of a cold z at finish() costs 4x more)
        self._pre[idx] = _pre_sample(z, PRE_SAMPLE // max(self.world, 1)).clone()
        self._deriv[idx] = dm
        if out.requires_grad:
            out.register_hook(lambda g, i=idx: self._act_grad.__setitem__(i, _sq_norm(g)))

    def _layer_stats(self, idx: int, module: nn.Module, name: str, z: torch.Tensor, h: torch.Tensor, closed: bool,
                     dm: float, lo: float, hi: float) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
        """One layer's activation statistics on its own (an activation _ActBatch does not take): this rank's partial
        sums and (mean, population variance), on the device (no sync)."""
        # |act'(z)|: for non-monotone activations (gelu, swish, mish) the derivative is negative for some z,
        # and a unit there still passes gradient back (only its sign flips): saturated means a small magnitude
        d = _derivative(module, z, h)
        d = d if closed else d.abs()  # a closed form is never negative: one pass fewer
        sat = d < _sat_threshold(dm)
        # one row per example (and token, and pixel), one column per unit: a view for Linear layers (units
        # last), a copy for convolutions (channels on axis 1) as before
        axis = _unit_axis(self.layers[idx][1], sat.dim())  # from shapes: no sync
        units = sat.reshape(1) if sat.dim() == 0 else sat if axis == sat.dim() - 1 else sat.movedim(axis, -1)
        per_unit = units.reshape(-1, units.shape[-1])
        # This rank's partial sums, added over the ranks' micro-batches at finish() (every one a device tensor
        # that rides finish()'s one copy, cast there: no stack or cast of its own here). Few kernels: on the CPU
        # each costs its dispatch and thread wake-up, more than the reading of 100k values.
        #  - per unit, saturated on all of this rank's examples (dead where it is on every rank's);
        #  - the saturated count (count_nonzero: no int64 copy of the mask) and sum |act'|;
        #  - the activation's histogram on [lo, hi] and the derivative probe's, |act'(z)| / its maximum on
        #    DERIV_EDGES (multiples of 1/16: histc's bin arithmetic is exact there).
        sums: dict[str, torch.Tensor] = {"dead": per_unit.all(dim=0), "dsum": d.sum()}
        # For a largest |act'| that is a power of two (sigmoid's 1/4, tanh's 1), d / dm is exact, so bins on
        # [0, dm] bin d alike; a closed form lies in [0, dm], and a bounded activation's output in [lo, hi]:
        # then both histograms and the saturated count come from one bincount of their joint bins (NaNs in one
        # bin past the last).
        exact_dm = dm > 0 and math.frexp(dm)[0] == 0.5
        if closed and exact_dm and _bounded_output(module, name, lo, hi) and self.act_bins < 2 ** 10:
            code = _joint_code(h, (lo, hi), self.act_bins, d, (0.0, dm), DERIV_BINS, sat)
            sums["joint"] = torch.bincount(code.reshape(-1), minlength=(self.act_bins + 2) * (DERIV_BINS + 2) * 2)
        else:
            sums["sat"] = torch.count_nonzero(sat)  # count_nonzero: no int64 copy of the mask (as .sum() makes)
            sums["act_hist"] = torch.histc(h, bins=self.act_bins, min=lo, max=hi)
            sums["under"] = torch.count_nonzero(h < lo)
            if closed and exact_dm:
                sums["deriv_hist"] = _bounded_hist(d, 0.0, dm, DERIV_BINS)[:-1]
            elif exact_dm:
                sums["deriv_hist"] = torch.histc(d, bins=DERIV_BINS, min=0.0, max=dm)
            else:
                sums["deriv_hist"] = torch.histc(d / float(np.float32(dm)), bins=DERIV_BINS, min=0.0, max=1.0)
        # mean and std: each rank's mean and population variance (a two-pass std, as torch's), combined by
        # Chan's formula at finish(): sums of squares would lose a narrow sigmoid layer's spread to rounding
        moments = (h.mean(), h.var(correction=0)) if h.numel() else (torch.zeros((), device=h.device),) * 2
        return sums, moments

    def _flush(self) -> None:
        """The batched activation statistics (_ActBatch) of this probed step: each waiting layer's partial sums."""
        if not self._pending:
            return
        at: dict[int, int] = {}
        with torch.no_grad():
            for batch, _ in self._pending.values():
                if id(batch) not in at:
                    at[id(batch)] = len(self._done)
                    self._done.append(batch.compute())
        for idx, (batch, slot) in self._pending.items():
            self._slots[idx] = (at[id(batch)], slot)
        self._pending = {}

    # ------------------------------------------------------------------ after backward / after the step
    def _scratch(self, key: str, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A buffer of n values kept between probed steps (a new tensor of a few hundred kB costs its page faults on
        the CPU every time)."""
        t = self._scratches.get(key)
        if t is None or t.numel() < n or t.dtype != dtype or t.device != device:
            t = self._scratches[key] = torch.empty(n, dtype=dtype, device=device)
        return t[:n]

    def _weights(self) -> list[torch.Tensor]:
        return [m.weight.detach() for _, m in self.layers]

    def collect_grads(self, optimizer: torch.optim.Optimizer | None = None,
                      weights_before: list[torch.Tensor | None] | None = None) -> None:
        """Weight-gradient statistics, as this rank's partial sums; call after backward() and before
        optimizer.step(). With the optimizer, the update of a plain SGD step is read from its state after the
        step (no copy of the weights). `weights_before`, a copy of the weights taken before the step, lets it be
        called after the step (the gradients are still in .grad then) for a loop whose optimiser vgtui never sees;
        the weight statistics are then those of the copy, as they would have been before the step (None in place
        of a frozen layer's copy: it has no update, and its weights are the same before and after). The weight
        statistics of a layer whose forward hook ran were read there (the same weights, then in the cache).
        Sharded parameters (DTensors) give their local shard: nothing here issues a collective."""
        live = self._weights()
        ws = live if weights_before is None else [b if b is not None else w for b, w in zip(weights_before, live)]
        grads = [m.weight.grad.detach() if m.weight.grad is not None else torch.zeros_like(m.weight)
                 for _, m in self.layers]
        with torch.no_grad():
            loc_w = [_local(w) for w in ws]
            self._sharded = [sh for _, sh in loc_w]
            ws32 = [w.float() for w, _ in loc_w]
            gs = [_local(g)[0].float() for g in grads]
            self._counts = [(g.numel(), w.numel()) for g, w in zip(gs, ws32)]  # shapes: no sync
            # The gradient's sample for the exponent counts: fixed positions of the whole weight, each rank taking
            # those in its own shard, so that a sharded job counts the same values as one process (views here).
            samples = [_sample_pieces(g, _sample_stride(tuple(m.weight.shape), GRAD_SAMPLE), _shard_offset(raw))
                       for g, raw, (_, m) in zip(gs, grads, self.layers)]
            self._sampled = [sum(p.numel() for p in pieces) for pieces in samples]
            values = self._scratch("sample", sum(self._sampled), torch.float32, gs[0].device)
            # Each tensor's reads one after the other, while it is in the cache (all the dots, then all the sums, read
            # the seed's 38 MB of weights and gradients twice from memory): the gradient's sum of squares, its sum
            # and its sample (copied into one buffer), then the weight's sum of squares and sum.
            parts, at = [], 0
            for g, w, pieces, sharded, (_, m) in zip(gs, ws32, samples, self._sharded, self.layers):
                gg, gsum = _sq_norm(g), g.sum()
                for p in pieces:
                    values[at:at + p.numel()].view(p.shape).copy_(p)
                    at += p.numel()
                if sharded:
                    self._sharded_w.add(id(m))
                # the weight's sums as the forward pass read them (_on_layer: the weights before the step, as a copy
                # before the step holds them), unless the weight is a shard or no forward hook ran
                fwd = self._w_fwd.get(id(m)) if not sharded else None
                parts.append((gg, gsum, *(fwd if fwd is not None else (_sq_norm(w), w.sum()))))
            # and sum |g| over the same sample
            hists, gl1 = _exponent_counts(values, self._sampled, self._scratch("exp", at, torch.int32, values.device))
            self._grad_stats = torch.stack([x for (gg, gsum, ww, wsum), g1 in zip(parts, gl1)
                                            for x in (gg, g1.float(), gsum, ww, wsum)]).view(len(gs), 5)
            self._grad_hists = hists  # (layers, 256)
        # The activation batches' statistics after the gradients' reads, not before: their buffers (7 MB for the
        # seed's network) would push the gradients the backward pass just wrote out of the cache
        self._flush()
        with torch.no_grad():
            self._w_std = []  # the update may now be read (collect_update)
            self._optimizer = optimizer
            # How each layer's update will be read after the step: a frozen weight has none (and is not copied);
            # one that plain SGD steps is read from its state; any other from a copy of the weight before the step.
            # requires_grad and the optimiser's parameter list are host-side: no sync.
            sgd = {id(p) for grp in optimizer.param_groups for p in grp["params"]} if _sgd_update_known(
                optimizer) else set()
            self._update_from, self._w_before = [], []
            for i, ((_, m), w) in enumerate(zip(self.layers, ws)):
                given = weights_before[i] if weights_before is not None else None
                if not _trainable(m.weight) or (weights_before is not None and given is None):
                    how, copy = "frozen", None
                elif weights_before is not None:
                    how, copy = "copy", _local(given)[0]
                elif id(m.weight) in sgd:
                    how, copy = "sgd", None
                else:
                    how, copy = "copy", _local(w)[0].clone()
                self._update_from.append(how)
                self._w_before.append(copy)

    def collect_update(self) -> None:
        """Update:data ratio, update.std() / w_before.std(); call after optimizer.step(). Under plain SGD the
        update is the optimiser's intended step, lr * momentum buffer (the gradient without momentum): what w
        moves by in exact arithmetic, read from the optimiser's state instead of copying the weights. The stored
        float32 weights move by that step rounded to their resolution (by nothing at all when the step is below
        it, as in vanishing first layers). Under any other optimiser it is the actual change, w_after - w_before.
        A frozen layer (its weight's requires_grad False) has no update: its update_data_ratio is None."""
        if self._w_std is None:
            return
        with torch.no_grad():
            opt = self._optimizer
            lr = ({id(p): grp["lr"] for grp in opt.param_groups for p in grp["params"]}
                  if "sgd" in self._update_from else {})
            at, diffs, scale = [], [], []
            for i, ((_, m), how) in enumerate(zip(self.layers, self._update_from)):
                if how == "frozen":  # no update at all: the field stays None
                    continue
                if how == "copy":
                    d, k = (_local(m.weight.detach())[0] - self._w_before[i]).float(), 1.0
                else:  # plain SGD moved w by -lr * (its momentum buffer, or the gradient without momentum)
                    buf = opt.state.get(m.weight, {}).get("momentum_buffer")
                    g = buf if buf is not None else m.weight.grad
                    d = _local(g)[0].float() if g is not None else torch.zeros_like(_local(m.weight)[0]).float()
                    k = lr[id(m.weight)]
                    k = float(k) if not isinstance(k, torch.Tensor) else k  # a tensor lr stays on the device
                at.append(i)
                diffs.append(d)
                scale.append(k)
            # each one's sum of squares and sum one after the other, while it is in the cache, the last layer first:
            # an SGD step on the CPU goes through the parameters in turn, so the last ones it moved are still there
            pairs = [(_sq_norm(d), d.sum()) for d in reversed(diffs)][::-1]
            rows = torch.stack([x for pair in pairs for x in pair]).view(-1, 2) if diffs else None
            self._update, self._update_rows = [None] * len(self.layers), rows
            for j, (i, k, d) in enumerate(zip(at, scale, diffs)):
                self._update[i] = (j, d.numel(), k)
        self._w_before = None

    # ------------------------------------------------------------------ one transfer to the host
    def grads_finite(self) -> torch.Tensor:
        """After collect_grads(): are all weight gradients finite? A boolean tensor on the device (no sync)."""
        return torch.isfinite(self._grad_stats[:, 0]).all()

    def finish(self, extra: list[torch.Tensor] = (), link: Any = None, shared: int = 0,
               host_row: list[float] = ()) -> tuple[tuple[LayerStats, ...], list[float]]:
        """Move everything to the host in one copy and build the per-layer stats; disarms the probes.
        `extra` scalars (the loss, say) travel in the same copy and come back as floats (this rank's).

        In a job of several ranks (`link`, vgtui.engine.distributed.Link), every rank calls it at the same step:
        the partial sums of all ranks are added in one all_reduce (a replica's weights and gradients, DDP's,
        count once: rank 0's), and one all_gather brings every rank's means and variances, sampled
        pre-activations, its first `shared` extras and `host_row`: `self.rows` (one row per rank: the shared
        extras, then host_row, then a checksum of the replica's probed weights, NaN where they are shards).
        Activation-side gradient norms are those of the mean loss over the ranks' (equal) micro-batches.

        The copy holds a part per kind, not per layer; a layer's few numbers are then Python floats, an activation
        batch's histograms numpy rows, one per slot: Python's cost per layer, not the device's, was most of this
        function's 1.9 ms for the seed's network on this CPU (1.0 ms now)."""
        if self._grad_stats is None:
            self.collect_grads()
        self._flush()
        self._order_layers()
        dev = self._grad_stats.device
        size = link.size if link is not None else 1
        L = len(self.layers)
        acts = sorted(self._act)
        alone = [i for i in acts if i not in self._slots]  # activations computed on their own (_layer_stats)
        # the tensor hooks' squared norms, one stack: after each layer's activation (or at its output), then before
        # the activation where both were seen
        og_at = [i for i in range(L) if i in self._act_grad or i in self._out_grad]
        pg_at = [i for i in acts if i in self._act_grad and i in self._out_grad]
        hooked = [self._act_grad.get(i, self._out_grad.get(i)) for i in og_at] + [self._out_grad[i] for i in pg_at]
        update = self._update if self._update is not None else [None] * L
        upd_at = [i for i in range(L) if update[i] is not None]
        pack = HostPack()
        for j, t in enumerate(extra):
            pack.add(("extra", j), t)
        pack.add("grad", self._grad_stats)  # (L, 5): sum g^2, sum |g| (sampled), sum g, sum w^2, sum w
        pack.add("grad_hist", self._grad_hists)  # (L, 256): counts per float32 exponent
        if upd_at:
            pack.add("update", self._update_rows)  # a row per updated layer: sum d^2, sum d
        for i in upd_at:
            if isinstance(update[i][2], torch.Tensor):
                pack.add((i, "lr"), update[i][2])
        if hooked:
            pack.add("hooked", torch.stack(hooked))
        for b, t in enumerate(self._done):
            for key, v in t.items():
                if key == "dead" and link is None:  # one process: the fraction of dead units, not every unit
                    key, v = "dead_frac", v.float().mean(dim=1)
                pack.add((b, key), v)
        for i in alone:
            _, sums, moments, _, _, _ = self._act[i]
            for key, t in sums.items():
                pack.add((i, key), t)
            pack.add((i, "mean"), moments[0])
            pack.add((i, "var"), moments[1])
        host_pre = dev.type == "cpu" and link is None  # the samples are already host arrays (copies: _on_act)
        for i in acts:
            if not host_pre:
                pack.add((i, "pre"), self._pre[i])
        wide = torch.float32 if dev.type == "mps" else torch.float64
        host = self._scratch("host", pack.size, wide, torch.device("cpu"))
        pack.copy(wide, host)  # sync: the one device -> host copy

        # ---- the partial sums: added over the ranks in one collective (none in one process). The few numbers a
        # layer has are Python floats from here (tolist): for a few layers faster than numpy's calls on tiny arrays
        grad = pack["grad"].reshape(L, 5).tolist()  # per layer: sum g^2, sum |g| (sampled), sum g, sum w^2, sum w
        checksum = math.nan if any(self._sharded) else sum(w2 + ws for *_, w2, ws in grad)
        urows = pack["update"].reshape(-1, 2).tolist() if upd_at else []
        total: dict[Any, Any] = {
            "grad": [[g2, g1, gs, ng, w2, ws, nw, sam] for (g2, g1, gs, w2, ws), (ng, nw), sam
                     in zip(grad, self._counts, self._sampled)],
            "grad_hist": pack["grad_hist"].reshape(L, 256),
            "update": [[*urows[update[i][0]], update[i][1]] for i in upd_at],
            "hooked": pack["hooked"].tolist() if hooked else []}  # squared norms
        for b, t in enumerate(self._done):
            k = t["mean"].shape[0]
            for key in ("dead", "dead_frac", "dsum", "act", "deriv", "sat"):
                if (b, key) in pack:
                    total[b, key] = pack[b, key].reshape(k, -1)
        for i in alone:
            for key in self._act[i][1]:
                total[i, key] = pack[i, key]
        if link is not None:
            total = self._summed(total, link, upd_at)

        # ---- per rank: moments, sampled pre-activations, shared extras, host row (one all_gather)
        vals = [float(pack["extra", j][0]) for j in range(len(extra))]
        head = vals[:shared] + [float(v) for v in host_row] + [checksum]
        moments = {}
        for i in acts:
            b, slot = self._slots.get(i, (None, 0))
            mean, var = (pack[b, "mean"][slot], pack[b, "var"][slot]) if b is not None else (pack[i, "mean"][0],
                                                                                           pack[i, "var"][0])
            moments[i] = (float(self._act[i][5]), float(mean), float(var))  # values, mean, population variance
        if link is None:
            self.rows = np.array([head])
            per_rank = {i: ([n], [mean], [var], self._pre[i].numpy() if host_pre else pack[i, "pre"])
                        for i, (n, mean, var) in moments.items()}
        else:
            per_rank = self._gathered(head, moments, pack, link, size)

        # ---- every layer's figures
        stats = []
        sampled = np.array([row[7] for row in total["grad"]])
        ng_all = np.array([row[3] for row in total["grad"]])
        with np.errstate(divide="ignore", invalid="ignore"):
            # a sampled layer's counts scaled to its size (GRAD_SAMPLE); an exact one's as counted
            scale = np.where((sampled > 0) & (sampled != ng_all), ng_all / sampled, 1.0)
            raw = np.rint(total["grad_hist"] * scale[:, None]).astype(np.int64)
            gh_counts = raw[:, _EXP_INSIDE]
            gh_under = raw[:, 1:_EXP_INSIDE.start].sum(axis=1).tolist()
            gh_over, gh_zeros = raw[:, _EXP_INSIDE.stop:].sum(axis=1).tolist(), raw[:, 0].tolist()
            act = self._act_figures(total, per_rank, size)
        ratio: list[float | None] = [None if self._update is not None else math.nan] * L
        for (d2, ds, nd), i in zip(total["update"], upd_at):
            k = update[i][2]
            k = float(pack[i, "lr"][0]) if isinstance(k, torch.Tensor) else k
            w2, ws, nw = total["grad"][i][4:7]
            ratio[i] = _ratio(k * _std(d2, ds, nd), _std(w2, ws, nw))
        out_grad: list[float | None] = [math.nan] * L
        norms = [math.sqrt(v) / size for v in total["hooked"]]
        for i, v in zip(og_at, norms):
            out_grad[i] = v
        pre_grad = dict(zip(pg_at, norms[len(og_at):]))
        for i in self._no_grad_out:
            if i not in self._act_grad and i not in self._out_grad:
                out_grad[i] = None
        for i, (name, _) in enumerate(self.layers):
            g2, g1, gs, ng, w2, ws, nw, sam = total["grad"][i]
            kw = act.get(i, {})
            if i in pre_grad:
                kw["pre_grad_norm"] = pre_grad[i]
            stats.append(LayerStats(
                name=name, grad_norm=math.sqrt(g2), grad_mean_abs=_ratio(g1, sam), weight_norm=math.sqrt(w2),
                grad_data_ratio=_ratio(_std(g2, gs, ng), _std(w2, ws, nw)), update_data_ratio=ratio[i],
                out_grad_norm=out_grad[i], grad_hist=Hist(GRAD_EDGES_LOG10, gh_counts[i], under=gh_under[i],
                                                          over=gh_over[i], zeros=gh_zeros[i]), **kw))
        self.disarm()
        return tuple(stats), vals

    def _summed(self, total: dict[Any, Any], link: Any, upd_at: list[int]) -> dict[Any, Any]:
        """finish()'s partial sums added over the ranks in one all_reduce: a replica's (DDP's) counted once, rank
        0's; a shard's (FSDP's) from every rank."""
        mine = np.array([1.0 if sh or link.rank == 0 else 0.0 for sh in self._sharded])
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in total.items()}
        arrays["grad"] = arrays["grad"] * mine[:, None]
        arrays["grad_hist"] = arrays["grad_hist"] * mine[:, None]
        if upd_at:
            arrays["update"] = arrays["update"] * mine[upd_at][:, None]
        keys = [k for k in arrays if arrays[k].size]
        vec = link.sum(np.concatenate([arrays[k].reshape(-1) for k in keys]))  # sync: the watch's all_reduce(SUM)
        at = 0
        for k in keys:
            arrays[k] = vec[at:at + arrays[k].size].reshape(arrays[k].shape)
            at += arrays[k].size
        for k in ("grad", "update", "hooked"):
            arrays[k] = arrays[k].tolist()
        return arrays

    def _gathered(self, head: list[float], moments: dict[int, tuple[float, float, float]], pack: "HostPack",
                  link: Any, size: int) -> dict[int, tuple[list, list, list, np.ndarray]]:
        """finish()'s per-rank row gathered from every rank in one all_gather: `head` (shared extras, host row,
        checksum: `self.rows`), then per activation its values, mean, variance and pre-activation sample (padded to
        PRE_SAMPLE // size). Per layer: every rank's values, means, variances, and the union of the samples."""
        cap = PRE_SAMPLE // size
        parts = [np.array(head)]
        for i, (n, mean, var) in moments.items():
            z = pack[i, "pre"]
            parts.append(np.concatenate([[n, mean, var, z.size], z, np.zeros(cap - z.size)]))
        rows_all = link.gather(np.concatenate(parts))  # sync: the watch's all_gather, on the host
        width = len(head)
        self.rows = rows_all[:, :width]
        per_rank = {}
        at = width
        for i in moments:
            block = rows_all[:, at:at + 4 + cap]
            zs = np.concatenate([b[4:4 + int(b[3])] for b in block])
            per_rank[i] = (block[:, 0].tolist(), block[:, 1].tolist(), block[:, 2].tolist(), zs)
            at += 4 + cap
        return per_rank

    def _act_figures(self, total: dict[Any, np.ndarray], per_rank: dict[int, tuple], size: int
                     ) -> dict[int, dict[str, Any]]:
        """finish()'s activation fields of every layer with an activation, from the partial sums added over the
        ranks (`total`) and every rank's moments and pre-activation samples (`per_rank`). The histograms and
        counts of an activation batch's layers come from its arrays, a row per slot, at once."""
        bins = self.act_bins
        rows = []  # per activation batch: its counts, a row per slot
        for b in range(len(self._done)):
            a = _merge_top(np.rint(total[b, "act"]).astype(np.int64), bins, 1)  # NaNs in the last bins
            d = _merge_top(np.rint(total[b, "deriv"]).astype(np.int64), DERIV_BINS, 1)
            dead = (total[b, "dead_frac"].reshape(-1).tolist() if (b, "dead_frac") in total else
                    (total[b, "dead"] >= size - 0.5).mean(axis=1).tolist())
            rows.append((a, d, total[b, "sat"].reshape(-1).tolist(), dead, total[b, "dsum"].reshape(-1)))
        counts: dict[int, tuple] = {}  # per layer: act_hist, under, over, deriv_hist, its NaN/over, saturated, dead
        for i, (b, slot) in self._slots.items():
            a, d, sat, dead, dsum = rows[b]
            counts[i] = (a[slot, :-1], 0, int(a[slot, -1]), d[slot, :-1], int(d[slot, -1]), sat[slot], dead[slot],
                         dsum[slot])
        out: dict[int, dict[str, Any]] = {}
        pre = dict(zip(per_rank, _quantiles([zs for *_, zs in per_rank.values()], PRE_QUANTILES)))
        for i, (n_r, mean_r, var_r, _) in per_rank.items():
            act_name, _, _, lo, hi, _ = self._act[i]
            n = sum(n_r)
            if i in counts:
                act_hist, under, over, deriv_hist, d_over, sat, dead, d_sum = counts[i]
            else:
                if (i, "joint") in total:  # both histograms and the saturated count, NaNs in the last bins
                    joint = total[i, "joint"].reshape(bins + 2, DERIV_BINS + 2, 2)
                    act_counts = _merge_top(joint.sum((1, 2)), bins, 0)
                    d_counts = _merge_top(joint.sum((0, 2)), DERIV_BINS, 0)
                    sat = joint[..., 1].sum()
                    act_hist, under, over = act_counts[:-1], 0.0, act_counts[-1]
                    deriv_hist, d_over = d_counts[:-1], d_counts[-1]
                else:
                    act_hist, under, deriv_hist = total[i, "act_hist"], total[i, "under"][0], total[i, "deriv_hist"]
                    sat = total[i, "sat"][0]
                    over, d_over = n - act_hist.sum() - under, n - deriv_hist.sum()
                act_hist, deriv_hist = np.rint(act_hist).astype(np.int64), np.rint(deriv_hist).astype(np.int64)
                under, over, d_over = int(round(under)), int(round(over)), int(round(d_over))
                # dead: saturated on every example of every rank (a rank whose micro-batch is empty counts as dead
                # there, as all() of nothing is true)
                dead = float((total[i, "dead"] >= size - 0.5).mean())
                d_sum = total[i, "dsum"][0]
            mean = _ratio(sum(c * m for c, m in zip(n_r, mean_r)), n)
            m2 = sum(c * v for c, v in zip(n_r, var_r)) + sum(c * (m - mean) ** 2 for c, m in zip(n_r, mean_r))  # Chan
            p15, p50, p85 = pre[i]
            out[i] = dict(activation=act_name, act_mean=mean, act_std=math.sqrt(max(m2 / max(n - 1, 1), 0.0)),
                          saturated_frac=_ratio(float(sat), n), dead_frac=float(dead),
                          pre_p15=float(p15), pre_p50=float(p50), pre_p85=float(p85),
                          act_hist=Hist(_act_edges(lo, hi, bins), act_hist, under, over),
                          deriv_mean=_ratio(float(d_sum), n), deriv_max=self._deriv[i],
                          deriv_hist=Hist(DERIV_EDGES, deriv_hist, 0, d_over))
        return out

    def _order_layers(self) -> None:
        """Put layers in the order the forward pass reached them (once): input-to-output order."""
        if self._ordered or not self._fired:
            return
        first: dict[int, int] = {}
        for pos, idx in enumerate(self._fired):
            first.setdefault(idx, pos)
        order = sorted(range(len(self.layers)), key=lambda i: first.get(i, len(self._fired) + i))
        self._ordered = True
        if order == list(range(len(self.layers))):
            return
        remap = {old: new for new, old in enumerate(order)}
        self.layers = [self.layers[i] for i in order]
        self._act = {remap[k]: v for k, v in self._act.items()}
        self._deriv = {remap[k]: v for k, v in self._deriv.items()}
        self._pre = {remap[k]: v for k, v in self._pre.items()}
        self._act_grad = {remap[k]: v for k, v in self._act_grad.items()}
        self._slots = {remap[k]: v for k, v in self._slots.items()}
        self._out_grad = {remap[k]: v for k, v in self._out_grad.items()}
        self._no_grad_out = {remap[k] for k in self._no_grad_out}
        def reordered(vals: list | torch.Tensor | None) -> list | torch.Tensor | None:
            if vals is None or len(vals) == 0:
                return vals
            return vals[order] if isinstance(vals, torch.Tensor) else [vals[i] for i in order]

        # every per-layer list, by name (not a list of attribute-name strings: one left out would fail silently)
        self._grad_stats, self._grad_hists = reordered(self._grad_stats), reordered(self._grad_hists)
        self._update, self._w_std = reordered(self._update), reordered(self._w_std)
        self._w_before, self._update_from = reordered(self._w_before), reordered(self._update_from)
        self._counts, self._sharded = reordered(self._counts), reordered(self._sharded)
        self._sampled = reordered(self._sampled)


def locate_nonfinite(model: nn.Module, x: torch.Tensor | None = None) -> tuple[str | None, str]:
    """Where a non-finite value first appears: the first layer (input to output) whose weights or outputs on
    `x` are non-finite; if the forward pass is finite, the first layer back from the output whose weight
    gradient is. Returns (layer name or None, what was non-finite)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)]
    bad_out: list[str] = []
    if x is not None:
        hooks = [m.register_forward_hook(lambda mod, i, o, n=n: bad_out.append(n)
                                         if not bool(torch.isfinite(o).all()) else None) for n, m in layers]
        try:
            with torch.no_grad():
                model(x)
        finally:
            for h in hooks:
                h.remove()
    for n, m in layers:
        if not bool(torch.isfinite(m.weight).all()):
            return n, "weights"
        if n in bad_out:
            return n, "outputs"
    for n, m in reversed(layers):
        if m.weight.grad is not None and not bool(torch.isfinite(m.weight.grad).all()):
            return n, "weight gradient"
    return None, "loss"
