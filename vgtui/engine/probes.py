"""Probes: per-layer gradient and activation statistics of any nn.Module, through hooks.

How it works: a forward hook on every Linear/Conv layer marks it as the current layer; a forward hook on every
activation module attributes that activation's output to the current layer and computes its statistics (among
them the derivative probe: |act'(z)| over the batch, its mean and its histogram against the activation's largest
|act'|); tensor hooks on the outputs record the back-propagated gradient, after the activation (out_grad_norm) and
before it (pre_grad_norm, the layer's own output z). Everything is computed on the training device under
no_grad, only on armed (probe) steps, and moved to the host in one transfer by `finish()`. No `.item()`.

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
import sys
from typing import Any

import numpy as np
import torch
from torch import nn

from vgtui.core.activations import ACTIVATION_TABLE, DEFAULT_HIST_RANGE
from vgtui.engine.model import Activation
from vgtui.core.records import DERIV_BINS, DERIV_EDGES, Hist, LayerStats

LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

# Fixed histogram ranges per activation (values outside are counted as under/over): bars never rescale. vgtui's
# own activations: their table's (vgtui.core.activations); relu6 is one more a user's model may hold.
ACT_RANGES: dict[str, tuple[float, float]] = {**{n: a.hist for n, a in ACTIVATION_TABLE.items()}, "relu6": (0.0, 6.0)}
DEFAULT_ACT_RANGE = DEFAULT_HIST_RANGE
ACT_BINS = 40
# Pre-activation percentiles are taken over at most this many of a layer's inputs z, a fixed random sample (the
# same positions at every snapshot): a sort of 16k values instead of the whole batch's (100k for the seed's net).
PRE_SAMPLE = 16384
PRE_QUANTILES = (0.15, 0.50, 0.85)
SATURATION = 0.05  # a unit is saturated where |act'(z)| < 5% of the activation's largest |derivative|

# Weight-gradient histograms: one bin per power of two of |g|, 2^-46 (1.4e-14) .. 2^8 (256), read straight from
# the float32 exponent bits (far cheaper than log10 + histc over millions of values).
GRAD_EXP_MIN, GRAD_EXP_MAX = -46, 8
GRAD_EDGES_LOG10 = np.arange(GRAD_EXP_MIN, GRAD_EXP_MAX + 1) * math.log10(2.0)

# nn modules recognised as activations, by the name vgtui uses for them (ReLU6 before its base class Hardtanh).
_MODULE_ACTS: tuple[tuple[type, str], ...] = (
    (nn.Sigmoid, "sigmoid"), (nn.Tanh, "tanh"), (nn.Softsign, "softsign"), (nn.ReLU6, "relu6"),
    (nn.Hardtanh, "hardtanh"), (nn.ReLU, "relu"), (nn.LeakyReLU, "leaky_relu"), (nn.ELU, "elu"), (nn.SELU, "selu"),
    (nn.CELU, "celu"), (nn.GELU, "gelu"), (nn.SiLU, "swish"), (nn.Mish, "mish"), (nn.Softplus, "softplus"),
    (nn.PReLU, "prelu"), (nn.RReLU, "rrelu"), (nn.Hardswish, "hardswish"), (nn.Hardsigmoid, "hardsigmoid"),
    (nn.LogSigmoid, "logsigmoid"), (nn.Tanhshrink, "tanhshrink"),
)


def activation_name(module: nn.Module) -> str | None:
    """vgtui's name for an activation module, or None if the module is not one."""
    if isinstance(module, Activation):
        return module.name
    for cls, name in _MODULE_ACTS:
        if isinstance(module, cls):
            return name
    return None


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
    key = (name, repr(module))
    if key not in _DMAX_CACHE and isinstance(module, Activation) and name in ACTIVATION_TABLE:
        _DMAX_CACHE[key] = ACTIVATION_TABLE[name].d_max  # vgtui's own: the table's (no sync)
    if key not in _DMAX_CACHE:  # any other module (its own parameters): measured on a grid
        grid = torch.linspace(-20.0, 20.0, 40001, device=device)
        _DMAX_CACHE[key] = float(_derivative(module, grid).abs().max())  # once per activation: a one-off sync
    return _DMAX_CACHE[key]


def _max_derivative(module: nn.Module, name: str, device: torch.device) -> torch.Tensor:
    return torch.tensor(max_derivative_value(module, name, device), device=device)  # host -> device: no sync


_SAMPLE_CACHE: dict[tuple[int, int, str], torch.Tensor] = {}


def _pre_sample(z: torch.Tensor, cap: int = PRE_SAMPLE) -> torch.Tensor:
    """The values of z whose PRE_QUANTILES a snapshot shows (on its device, no sync): all of them when z has at most
    `cap` values, else a fixed random sample of `cap` of them (the same positions at every snapshot). In a job of
    several ranks each rank gives at most PRE_SAMPLE // ranks of its micro-batch's values and the quantiles are
    those of their union: exact while the global batch's layer has at most PRE_SAMPLE values, as in one process."""
    flat = z.detach().float().reshape(-1)
    n = flat.numel()
    if n > cap:
        key = (n, cap, str(flat.device))
        if key not in _SAMPLE_CACHE:
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:cap]
            _SAMPLE_CACHE[key] = idx.to(flat.device)
        flat = flat[_SAMPLE_CACHE[key]]
    return flat


def _local(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """This rank's part of a parameter (or its gradient, or optimiser state) and whether it is a shard: a DTensor
    (FSDP2's fully_shard) gives its local shard, an ordinary tensor itself (a replica: DDP's, or a single
    process's). A shard also replicated over a mesh dimension (HSDP) counts on the first replica only: an empty
    tensor elsewhere. Host-side: no sync, no collective."""
    if hasattr(t, "to_local") and hasattr(t, "placements"):
        local = t.to_local()
        mesh = t.device_mesh
        coord = mesh.get_coordinate() or []
        for dim, pl in enumerate(t.placements):
            if pl.is_replicate() and dim < len(coord) and coord[dim] != 0:
                return local.reshape(-1)[:0], True
        return local, True
    return t, False


def _foreach_norm(ts: list[torch.Tensor], ord: float = 2.0) -> list[torch.Tensor]:
    try:
        return list(torch._foreach_norm(ts, ord))
    except (AttributeError, RuntimeError, TypeError):  # pragma: no cover - very old torch or exotic devices
        return [torch.linalg.vector_norm(t, ord) for t in ts]


def _std_of(sq: float, total: float, n: float) -> float:
    """Sample std from the sum of squares and the sum (host floats, added over the ranks): one fused pass each on
    the device instead of torch.std's two. Gradients, weights and updates have a mean far below their spread."""
    return np.float64(math.sqrt(max((sq - total * total / n) / max(n - 1, 1), 0.0)) if n else math.nan)


def _exponent_counts(a: torch.Tensor) -> torch.Tensor:
    """Counts of `a` = |g| (contiguous float32, sign bit clear) per power of two: 256 bins indexed by the float32
    exponent field (0 = zero or subnormal, 255 = inf/nan). On little-endian machines it reads the high 16 bits of
    each float (exponent and 7 mantissa bits) as int16, non-negative since the sign is clear: one bincount over
    half the bytes, exact, with no pass of its own over the gradient (bench/overhead.py)."""
    if sys.byteorder == "little":
        return torch.bincount(a.view(torch.int16).flatten()[1::2], minlength=32768).view(256, 128).sum(1)
    return torch.bincount((a.view(torch.int32) >> 23).flatten(), minlength=256)  # pragma: no cover


def _abs_sum(a: torch.Tensor, wide: torch.dtype) -> torch.Tensor:
    """The sum of `a` (= |g|): float32 per row of the weight (pairwise sums of a few thousand values at most),
    then `wide` (float64, where the device has it) across rows: within 1e-7 of the exact sum for the seed's
    million-gradient layers. Summing everything in float64 made a float64 copy of each gradient first: 40 MB
    written per snapshot of the seed's network, a quarter of a probed step's extra time."""
    if a.numel() == 0:  # an empty shard (a small layer over many ranks)
        return torch.zeros((), dtype=wide, device=a.device)
    rows = a.reshape(a.shape[0], -1) if a.dim() > 1 else a.reshape(1, -1)
    return rows.sum(1).to(wide).sum()


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

    def copy(self, dtype: torch.dtype) -> None:
        """One device -> host copy of every part as `dtype`: the parts are joined per dtype first (a handful of
        cats instead of a cast per part: a probed step of the seed's network holds about a hundred parts)."""
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

    def __contains__(self, key: Any) -> bool:
        return key in self._spans

    def __getitem__(self, key: Any) -> np.ndarray:
        a, b = self._spans[key]
        return self._host[a:b]


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
        # per layer: (activation name, its local partial sums, its moments (n, mean, population var), lo, hi)
        self._act: dict[int, tuple[str, dict[str, torch.Tensor], torch.Tensor, float, float]] = {}
        self._deriv: dict[int, float] = {}  # per layer: the derivative's largest value (a host float)
        self._pre: dict[int, torch.Tensor] = {}  # per layer: the sampled inputs z whose percentiles are shown
        self._act_grad: dict[int, torch.Tensor] = {}
        self._out_grad: dict[int, torch.Tensor] = {}
        self._no_grad_out: set[int] = set()  # layers whose output needs no gradient (out_grad_norm None)
        self._stash: dict[int, torch.Tensor] = {}
        # per layer, this rank's partial sums: norm of g, sum |g|, sum g, norm of w, sum w (a device stack)
        self._grad_stats: list[torch.Tensor] | None = None
        self._grad_hists: list[torch.Tensor] | None = None
        self._counts: list[tuple[int, int]] = []  # per layer: numel of the local g and w (shapes: host ints)
        self._sharded: list[bool] = []  # per layer: a DTensor shard (summed over ranks) or a replica (counted once)
        self._w_before: list[torch.Tensor | None] | None = None  # per layer: a copy of the weight, or None
        self._update_from: list[str] = []  # per layer: "sgd", "copy" or "frozen" (see collect_grads)
        self._optimizer: torch.optim.Optimizer | None = None
        self._w_std: list[torch.Tensor] | None = None  # set by collect_grads: the update may be read
        # per layer: (norm, sum) of the update on this rank, its numel and its scale (lr), or None (frozen)
        self._update: list[tuple[torch.Tensor, int, float] | None] | None = None

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
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(lambda g, i=idx: self._out_grad.__setitem__(i, torch.linalg.vector_norm(g.float())))
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
        with torch.no_grad():
            h = out.detach().float()
            # |act'(z)|: for non-monotone activations (gelu, swish, mish) the derivative is negative for some z,
            # and a unit there still passes gradient back (only its sign flips): saturated means a small magnitude
            d = _derivative(module, z, h)
            d = d if _closed_form(module, h) else d.abs()  # a closed form is never negative: one pass fewer
            d_max = _max_derivative(module, name, d.device)
            sat = d < SATURATION * d_max
            # one row per example (and token, and pixel), one column per unit: a view for Linear layers (units
            # last), a copy for convolutions (channels on axis 1) as before
            axis = _unit_axis(self.layers[idx][1], sat.dim())  # from shapes: no sync
            units = sat.reshape(1) if sat.dim() == 0 else sat if axis == sat.dim() - 1 else sat.movedim(axis, -1)
            per_unit = units.reshape(-1, units.shape[-1])
            hist = torch.histc(h, bins=self.act_bins, min=lo, max=hi)
            # the derivative probe: |act'(z)| / its maximum on DERIV_EDGES (multiples of 1/16: histc's bin arithmetic
            # is exact there), and its mean; from `d` above, on the device (no sync: they ride finish()'s copy)
            dm = max_derivative_value(module, name, d.device)  # the same value, a host float (cached): no sync
            if dm > 0 and math.frexp(dm)[0] == 0.5:  # a power of two (sigmoid's 1/4, tanh's 1): d / dm is exact, so
                dhist = torch.histc(d, bins=DERIV_BINS, min=0.0, max=dm)  # histc on [0, dm] bins d alike, one pass
            else:
                dhist = torch.histc(d / d_max, bins=DERIV_BINS, min=0.0, max=1.0)
            n = h.numel()  # a shape: no sync
            wide = torch.float32 if h.device.type == "mps" else torch.float64
            # local partial sums, added over the ranks' micro-batches at finish(): counts (exact in float64),
            # the histograms, sum |act'|, and per unit whether it is alive on any of this rank's examples
            # count_nonzero: no int64 copy of the mask first (as .sum() of a bool tensor makes)
            under = torch.count_nonzero(h < lo).to(wide)
            counts = torch.stack([under, n - hist.to(wide).sum() - under, torch.count_nonzero(sat).to(wide),
                                  d.sum().to(wide), n - dhist.to(wide).sum()])
            # alive on some example = not saturated on all of them: a reduction of the mask, no negated copy of it
            sums = {"counts": counts, "act_hist": hist, "deriv_hist": dhist,
                    "alive": ~per_unit.all(dim=0)}
            # mean and std: each rank's mean and population variance (a two-pass std, as torch's), combined by
            # Chan's formula at finish(): sums of squares would lose a narrow sigmoid layer's spread to rounding
            moments = (torch.stack([h.mean(), h.var(correction=0)]) if n else torch.zeros(2, device=h.device))
        self._act[idx] = (name, sums, moments, lo, hi)
        self._pre[idx] = _pre_sample(z, PRE_SAMPLE // max(self.world, 1))
        self._deriv[idx] = max_derivative_value(module, name, d.device)  # a host float (cached): no sync
        if out.requires_grad:
            out.register_hook(lambda g, i=idx: self._act_grad.__setitem__(i, torch.linalg.vector_norm(g.float())))

    # ------------------------------------------------------------------ after backward / after the step
    def _weights(self) -> list[torch.Tensor]:
        return [m.weight.detach() for _, m in self.layers]

    def collect_grads(self, optimizer: torch.optim.Optimizer | None = None,
                      weights_before: list[torch.Tensor | None] | None = None) -> None:
        """Weight-gradient statistics, as this rank's partial sums; call after backward() and before
        optimizer.step(). With the optimizer, the update of a plain SGD step is read from its state after the
        step (no copy of the weights). `weights_before`, a copy of the weights taken before the step, lets it be
        called after the step (the gradients are still in .grad then) for a loop whose optimiser vgtui never sees;
        the weight statistics are then those of the copy, as they would have been before the step (None in place
        of a frozen layer's copy: it has no update, and its weights are the same before and after).
        Sharded parameters (DTensors) give their local shard: nothing here issues a collective."""
        live = self._weights()
        ws = live if weights_before is None else [b if b is not None else w for b, w in zip(weights_before, live)]
        gs = [m.weight.grad.detach() if m.weight.grad is not None else torch.zeros_like(m.weight)
              for _, m in self.layers]
        with torch.no_grad():
            loc_w = [_local(w) for w in ws]
            self._sharded = [sh for _, sh in loc_w]
            ws32 = [w.float() for w, _ in loc_w]
            gs = [_local(g)[0].float() for g in gs]
            self._counts = [(g.numel(), w.numel()) for g, w in zip(gs, ws32)]  # shapes: no sync
            gnorm, wnorm = _foreach_norm(gs), _foreach_norm(ws32)
            wide = torch.float32 if gs[0].device.type == "mps" else torch.float64  # MPS has no float64
            absg = [g.abs().contiguous() for g in gs]  # one pass: the L1 sum and the exponent counts read it
            gl1 = [_abs_sum(a, wide) for a in absg]
            self._grad_stats = [torch.stack([gn, g1.float(), g.sum(), wn, w.sum()])
                                for gn, g1, g, wn, w in zip(gnorm, gl1, gs, wnorm, ws32)]
            self._grad_hists = [_exponent_counts(a) for a in absg]
            self._w_std = []  # the update may now be read (collect_update)
            del absg
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
            dnorm = _foreach_norm(diffs) if diffs else []
            self._update = [None] * len(self.layers)
            for i, k, dn, d in zip(at, scale, dnorm, diffs):
                self._update[i] = (torch.stack([dn, d.sum()]), d.numel(), k)
        self._w_before = None

    # ------------------------------------------------------------------ one transfer to the host
    def grads_finite(self) -> torch.Tensor:
        """After collect_grads(): are all weight gradients finite? A boolean tensor on the device (no sync)."""
        return torch.isfinite(torch.stack([s[0] for s in self._grad_stats])).all()

    def finish(self, extra: list[torch.Tensor] = (), link: Any = None, shared: int = 0,
               host_row: list[float] = ()) -> tuple[tuple[LayerStats, ...], list[float]]:
        """Move everything to the host in one copy and build the per-layer stats; disarms the probes.
        `extra` scalars (the loss, say) travel in the same copy and come back as floats (this rank's).

        In a job of several ranks (`link`, vgtui.engine.distributed.Link), every rank calls it at the same step:
        the partial sums of all ranks are added in one all_reduce (a replica's weights and gradients, DDP's,
        count once: rank 0's), and one all_gather brings every rank's means and variances, sampled
        pre-activations, its first `shared` extras and `host_row`: `self.rows` (one row per rank: the shared
        extras, then host_row, then a checksum of the replica's probed weights, NaN where they are shards).
        Activation-side gradient norms are those of the mean loss over the ranks' (equal) micro-batches."""
        if self._grad_stats is None:
            self.collect_grads()
        self._order_layers()
        dev = self._grad_stats[0].device
        size = link.size if link is not None else 1
        rank = link.rank if link is not None else 0
        pack = HostPack()
        for j, t in enumerate(extra):
            pack.add(("extra", j), t)
        L = len(self.layers)
        for i in range(L):
            pack.add((i, "grad"), self._grad_stats[i])  # norm g, sum |g|, sum g, norm w, sum w
            pack.add((i, "grad_hist"), self._grad_hists[i])  # counts per float32 exponent, 256
            if self._update is not None and self._update[i] is not None:
                u, _, k = self._update[i]
                pack.add((i, "update"), u)
                if isinstance(k, torch.Tensor):
                    pack.add((i, "lr"), k)
            out_grad = self._act_grad.get(i, self._out_grad.get(i))
            if out_grad is not None:
                pack.add((i, "out_grad"), out_grad)
            if i in self._act:
                _, sums, moments, _, _ = self._act[i]
                for key, t in sums.items():
                    pack.add((i, key), t)
                pack.add((i, "moments"), moments)
                pack.add((i, "pre"), self._pre[i])
                if i in self._act_grad and i in self._out_grad:  # the gradient at z, before the activation
                    pack.add((i, "pre_grad"), self._out_grad[i])
        pack.copy(torch.float32 if dev.type == "mps" else torch.float64)  # sync: the one device -> host copy

        # ---- the partial sums, one vector: added over the ranks in one collective (none in one process)
        summed: dict[Any, np.ndarray] = {}
        checksum = 0.0
        for i in range(L):
            gn, g1, gs, wn, wsum = pack[i, "grad"]
            ng, nw = self._counts[i]
            checksum = checksum + (wsum + wn * wn) if not self._sharded[i] else float("nan")
            mine = self._sharded[i] or rank == 0  # a replica is counted once, on rank 0
            summed[i, "grad"] = np.array([gn * gn, g1, gs, ng, wn * wn, wsum, nw]) * mine
            summed[i, "grad_hist"] = pack[i, "grad_hist"] * mine
            if (i, "update") in pack:
                dn, ds = pack[i, "update"]
                summed[i, "update"] = np.array([dn * dn, ds, self._update[i][1]]) * mine
            if (i, "out_grad") in pack:
                summed[i, "out_grad"] = pack[i, "out_grad"] ** 2
            if (i, "pre_grad") in pack:
                summed[i, "pre_grad"] = pack[i, "pre_grad"] ** 2
            if i in self._act:
                for key in self._act[i][1]:
                    summed[i, key] = pack[i, key]
        keys = list(summed)
        spans = np.cumsum([0] + [summed[k].size for k in keys])
        vec = np.concatenate([summed[k] for k in keys])
        if link is not None:
            vec = link.sum(vec)  # sync: the watch's all_reduce(SUM) over the ranks, on the host
        total = {k: vec[spans[j]:spans[j + 1]] for j, k in enumerate(keys)}

        # ---- per rank: moments, sampled pre-activations, shared extras, host row (one all_gather)
        vals = [float(pack["extra", j][0]) for j in range(len(extra))]
        cap = PRE_SAMPLE // size
        parts: list[np.ndarray] = [np.array(vals[:shared] + [float(v) for v in host_row] + [checksum])]
        for i in sorted(self._act):
            n_loc = float(pack[i, "act_hist"].sum() + pack[i, "counts"][0] + pack[i, "counts"][1])
            z = pack[i, "pre"]
            pad = np.zeros(cap - z.size) if link is not None else np.zeros(0)
            parts.append(np.concatenate([[n_loc, *pack[i, "moments"], z.size], z, pad]))
        row = np.concatenate(parts)
        rows = link.gather(row) if link is not None else row[None, :]  # sync: the watch's all_gather, host
        width = len(parts[0])
        self.rows = rows[:, :width]
        per_rank: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        at = width
        for i in sorted(self._act):
            z_len = self._pre[i].numel() if link is None else cap
            block = rows[:, at:at + 4 + z_len]
            zs = np.concatenate([b[4:4 + int(b[3])] for b in block])
            per_rank[i] = (block[:, 0], block[:, 1], block[:, 2], zs)
            at += 4 + z_len

        stats: list[LayerStats] = []
        exp = np.arange(256) - 127
        inside = (exp >= GRAD_EXP_MIN) & (exp < GRAD_EXP_MAX)
        with np.errstate(divide="ignore", invalid="ignore"):
            for i, (name, _) in enumerate(self.layers):
                g2, g1, gs, ng, w2, wsum, nw = total[i, "grad"]
                w_std = _std_of(w2, wsum, nw)
                raw = np.rint(total[i, "grad_hist"]).astype(np.int64)
                grad_hist = Hist(GRAD_EDGES_LOG10, raw[inside], under=int(raw[1:][exp[1:] < GRAD_EXP_MIN].sum()),
                                 over=int(raw[exp >= GRAD_EXP_MAX].sum()), zeros=int(raw[0]))
                frozen = self._update is not None and self._update[i] is None
                if frozen:
                    update = None
                elif (i, "update") in total:
                    d2, ds, nd = total[i, "update"]
                    k = self._update[i][2]
                    k = float(pack[i, "lr"][0]) if isinstance(k, torch.Tensor) else k
                    update = float(k * _std_of(d2, ds, nd) / w_std)
                else:
                    update = math.nan
                no_grad_out = i in self._no_grad_out and i not in self._act_grad and i not in self._out_grad
                out_grad = (None if no_grad_out else float(np.sqrt(total[i, "out_grad"][0]) / size)
                            if (i, "out_grad") in total else math.nan)
                kw: dict[str, Any] = {}
                if i in self._act:
                    act_name, _, _, lo, hi = self._act[i]
                    under, over, sat, d_sum, d_over = total[i, "counts"]
                    n_r, mean_r, var_r, zs = per_rank[i]
                    n = n_r.sum()
                    mean = float((n_r * mean_r).sum() / n)
                    m2 = float((n_r * var_r).sum() + (n_r * (mean_r - mean) ** 2).sum())  # Chan et al.
                    p15, p50, p85 = (np.quantile(zs, PRE_QUANTILES) if zs.size else [math.nan] * 3)
                    alive = total[i, "alive"]
                    kw = dict(activation=act_name, act_mean=mean, act_std=math.sqrt(max(m2 / max(n - 1, 1), 0.0)),
                              saturated_frac=float(sat / n), dead_frac=float((alive == 0).mean()),
                              pre_p15=float(p15), pre_p50=float(p50), pre_p85=float(p85),
                              act_hist=Hist(np.linspace(lo, hi, self.act_bins + 1),
                                            np.rint(total[i, "act_hist"]).astype(np.int64), int(under), int(over)),
                              deriv_mean=float(d_sum / n), deriv_max=self._deriv[i],
                              deriv_hist=Hist(DERIV_EDGES, np.rint(total[i, "deriv_hist"]).astype(np.int64), 0,
                                              int(d_over)))
                    if (i, "pre_grad") in total:
                        kw["pre_grad_norm"] = float(np.sqrt(total[i, "pre_grad"][0]) / size)
                stats.append(LayerStats(name=name, grad_norm=float(np.sqrt(g2)), grad_mean_abs=float(g1 / ng),
                                        weight_norm=float(np.sqrt(w2)),
                                        grad_data_ratio=float(_std_of(g2, gs, ng) / w_std),
                                        update_data_ratio=update, out_grad_norm=out_grad, grad_hist=grad_hist, **kw))
        self.disarm()
        return tuple(stats), vals

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
        self._out_grad = {remap[k]: v for k, v in self._out_grad.items()}
        self._no_grad_out = {remap[k] for k in self._no_grad_out}
        def reordered(vals: list | None) -> list | None:
            return [vals[i] for i in order] if vals else vals

        # every per-layer list, by name (not a list of attribute-name strings: one left out would fail silently)
        self._grad_stats, self._grad_hists = reordered(self._grad_stats), reordered(self._grad_hists)
        self._update, self._w_std = reordered(self._update), reordered(self._w_std)
        self._w_before, self._update_from = reordered(self._w_before), reordered(self._update_from)
        self._counts, self._sharded = reordered(self._counts), reordered(self._sharded)


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
