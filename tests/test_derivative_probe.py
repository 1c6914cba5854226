"""The derivative probe (issue 16): for every activation vgtui offers, the probe's |act'(z)| equals autograd's, its
mean and histogram over a real batch equal an independent computation from z captured by the test's own forward
hook, the maximum is the activation's, the gradient before the activation (pre_grad_norm) is plain torch's, and the
new fields go through the metrics file and back (an older file without them still reads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vgtui.core.activations import ACTIVATION_NAMES, ACTIVATION_TABLE
from vgtui.core.config import RunConfig
from vgtui.core.metrics import read_metrics
from vgtui.core.records import DERIV_BINS, DERIV_EDGES, RecordEncoder, record_from_json
from vgtui.engine import recorder
from vgtui.engine.model import ACTIVATION_FNS, Activation, build_model
from vgtui.engine.probes import Probes, _derivative, max_derivative_value
from conftest import ROOT

# z over every region: the flat tails, the kinks' neighbourhoods (not on them: one-sided derivatives differ),
# the negative-derivative dips of gelu/swish/mish
Z = torch.cat([torch.linspace(-12.0, 12.0, 2401) + 0.0005, torch.randn(4000, generator=torch.Generator().manual_seed(1)) * 3])

# torch's own modules for the same activations (a user's model holds these: their derivative goes through autograd)
TORCH_MODULES = {"sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(), "softsign": nn.Softsign(), "hardtanh": nn.Hardtanh(),
                 "relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(), "elu": nn.ELU(), "selu": nn.SELU(),
                 "gelu": nn.GELU(), "swish": nn.SiLU(), "mish": nn.Mish(), "softplus": nn.Softplus(),
                 "linear": nn.Identity()}


def _autograd(fn, z: torch.Tensor) -> torch.Tensor:
    zz = z.detach().clone().requires_grad_(True)
    (d,) = torch.autograd.grad(fn(zz).sum(), zz)
    return d


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_the_probes_derivative_is_autograds_and_its_maximum_the_activations(name):
    module = Activation(name)
    h = module(Z)
    d = _derivative(module, Z, h)
    ref = _autograd(ACTIVATION_FNS[name], Z)
    assert (d - ref).abs().max().item() <= 1e-6, name
    # the maximum: the table's for vgtui's own module, and measured for torch's (a user's model) it is the same
    assert max_derivative_value(module, name, torch.device("cpu")) == ACTIVATION_TABLE[name].d_max
    if name != "linear":
        m = TORCH_MODULES[name]
        assert (_derivative(m, Z) - ref).abs().max().item() <= 1e-6, name
        assert max_derivative_value(m, name, torch.device("cpu")) == pytest.approx(ACTIVATION_TABLE[name].d_max,
                                                                                 rel=1e-5)


def _probed_step_with_own_hooks(model, x, y):
    """One probed step; the test's own hooks capture each hidden layer's z and dL/dz (independent of the probes)."""
    zs, gz = {}, {}

    def keep(name):
        def hook(mod, inp, out):
            zs[name] = out.detach().clone()
            out.register_hook(lambda g: gz.__setitem__(name, g.detach().clone()))
        return hook

    handles = [getattr(model, n).register_forward_hook(keep(n)) for n in model.layer_names]
    probes = Probes(model)
    probes.arm()
    loss = F.cross_entropy(model(x), y)
    model.zero_grad()
    loss.backward()
    probes.collect_grads()
    stats, _ = probes.finish()
    for h in handles:
        h.remove()
    return stats, zs, gz


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_derivative_mean_and_histogram_equal_an_independent_computation(digits, name):
    model = build_model(RunConfig(depth=2, width=48, activation=name, seed=4))
    with torch.no_grad():
        model.fc1.weight.mul_(6.0)  # spread fc1's z over the activation's tails and dips
    x, y = digits.x_train[:150], digits.y_train[:150]
    stats, zs, gz = _probed_step_with_own_hooks(model, x, y)
    assert [s.name for s in stats] == ["fc1", "fc2", "fc3"]
    for s in stats[:2]:
        z = zs[s.name]
        d = _autograd(ACTIVATION_FNS[name], z).abs()  # autograd's |act'(z)|, float32
        assert s.deriv_max == ACTIVATION_TABLE[name].d_max
        assert s.deriv_mean == pytest.approx(d.double().mean().item(), abs=1e-6), (name, s.name)
        v = (d / torch.tensor(s.deriv_max, dtype=torch.float32)).numpy().astype(np.float64)
        counts, edges = np.histogram(v, bins=DERIV_BINS, range=(0.0, 1.0))
        assert np.array_equal(s.deriv_hist.edges, edges) and np.array_equal(s.deriv_hist.edges, DERIV_EDGES)
        assert s.deriv_hist.counts.tolist() == counts.tolist(), (name, s.name)
        # past the maximum: none, but for float32 rounding. On some CPUs (a Xeon with AVX-512) torch's float32 mish'
        # and swish' reach one ulp above d_max for z near their largest slope (v = 1 + 2^-23); the probe counts those
        # as over, as the independent computation does, and nothing lies further out
        assert s.deriv_hist.over == int((v > 1.0).sum()) and s.deriv_hist.total == z.numel()
        assert v.max() <= 1.0 + 2.0 ** -22, (name, s.name, v.max())
        # the gradient at z, before the activation, is plain torch's; after it (out_grad_norm) as before
        assert s.pre_grad_norm == pytest.approx(gz[s.name].norm().item(), rel=1e-5)
    out = stats[-1]
    assert out.activation is None and out.deriv_mean is None and out.deriv_hist is None and out.pre_grad_norm is None
    if name == "sigmoid":  # a non-trivial spread over the bins: saturated tails and the near-maximal middle
        fc1 = stats[0].deriv_hist.counts
        assert fc1[0] > 0 and fc1[-1] > 0 and (fc1 > 0).sum() >= 8


def test_relu_derivative_histogram_is_its_off_and_on_units(digits):
    model = build_model(RunConfig(depth=1, width=64, activation="relu", seed=0))
    stats, zs, _ = _probed_step_with_own_hooks(model, digits.x_train[:100], digits.y_train[:100])
    fc1, z = stats[0], zs["fc1"]
    off, on = int((z <= 0).sum()), int((z > 0).sum())
    assert fc1.deriv_hist.counts[0] == off and fc1.deriv_hist.counts[-1] == on and fc1.deriv_hist.counts[1:-1].sum() == 0
    assert fc1.deriv_mean == pytest.approx(on / z.numel(), abs=1e-7)


def test_in_place_activations_of_a_users_model(digits):
    """nn.ReLU(inplace=True) overwrites z: the probe's derivative still comes from z (the stash), and the gradient
    at z from the Linear's output hook."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(inplace=True), nn.Linear(32, 10))
    x, y = digits.x_train[:80], digits.y_train[:80]
    z = model[1](x.flatten(1)).detach()
    zz = model[1](x.flatten(1))
    zz.retain_grad()
    F.cross_entropy(model[3](torch.relu(zz)), y).backward()
    model.zero_grad()
    probes = Probes(model)
    probes.arm()
    F.cross_entropy(model(x), y).backward()
    probes.collect_grads()
    (l1, l2), _ = probes.finish()
    assert l1.deriv_mean == pytest.approx((z > 0).float().mean().item(), abs=1e-7)
    assert l1.pre_grad_norm == pytest.approx(zz.grad.norm().item(), rel=1e-5)
    assert l1.deriv_max == 1.0


# ---------------------------------------------------------------------------------------------- the file
def test_the_new_fields_go_through_the_file_and_an_older_file_still_reads(digits, tmp_path):
    model = build_model(RunConfig(depth=2, width=32, activation="tanh", seed=2))
    stats, _, _ = _probed_step_with_own_hooks(model, digits.x_train[:64], digits.y_train[:64])
    header = recorder.run_header(((s.name, "Linear", s.activation) for s in stats), source="vgtui.watch",
                                 device=torch.device("cpu"), model="test")
    assert np.array_equal(header.deriv_edges, DERIV_EDGES)
    snap = recorder.snapshot(step=1, epoch=1, elapsed_s=0.1, loss=2.3, loss_avg=2.3, rate=0.0, activation="tanh",
                             layers=stats)
    enc = RecordEncoder()
    hline, sline = enc.line(header), enc.line(snap)
    d = json.loads(sline)
    assert "edges" not in d["layers"][0]["deriv_hist"]  # the header holds them
    assert json.loads(hline)["deriv_edges"] == DERIV_EDGES.tolist()
    h2 = record_from_json(json.loads(hline))
    s2 = record_from_json(d, h2)
    for a, b in zip(stats, s2.layers):
        for k in ("deriv_mean", "deriv_max", "pre_grad_norm"):
            assert (getattr(a, k) is None and getattr(b, k) is None) or \
                   getattr(b, k) == pytest.approx(getattr(a, k), rel=1e-7), k
        if a.deriv_hist is not None:
            assert b.deriv_hist.counts.tolist() == a.deriv_hist.counts.tolist()
            assert np.array_equal(b.deriv_hist.edges, DERIV_EDGES) and b.deriv_hist.over == a.deriv_hist.over
        else:
            assert b.deriv_hist is None
    # strict: a derivative histogram without edges needs them in the header; counts must fit the bins
    old_header = record_from_json({k: v for k, v in json.loads(hline).items() if k != "deriv_edges"})
    assert old_header.deriv_edges is None
    with pytest.raises(ValueError, match="deriv_hist without edges"):
        record_from_json(d, old_header)
    bad = json.loads(sline)
    bad["layers"][0]["deriv_hist"]["counts"] = [1] * (DERIV_BINS + 1)
    with pytest.raises(ValueError, match="deriv_hist"):
        record_from_json(bad, h2)
    bad["layers"][0]["deriv_hist"] = {"counts": [1], "edges": [0.0, 1.0]}
    bad["layers"][0]["deriv_mean"] = "much"
    with pytest.raises(ValueError, match="deriv_mean"):
        record_from_json(bad, h2)
    # a file written before the probe: the fields are None, the rest as it was
    (run,) = read_metrics(ROOT / "tests" / "ui" / "fixtures" / "sigmoid.jsonl")
    assert run.header.deriv_edges is None and len(run.snapshots) == 12
    for layer in run.snapshots[-1].layers:
        assert (layer.deriv_mean, layer.deriv_max, layer.deriv_hist, layer.pre_grad_norm) == (None,) * 4
        assert layer.grad_norm > 0
