"""The probes' numbers, checked against a direct plain-torch computation on the same model and batch."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vgtui.core.config import RunConfig
from vgtui.engine.model import build_model
from vgtui.engine.probes import GRAD_EXP_MAX, GRAD_EXP_MIN, GRAD_SAMPLE, Probes


def _reference_step(model, x, y, lr=0.05, momentum=0.9):
    """Plain torch: forward with retained activations, backward, SGD step; every statistic by hand."""
    acts, outs = {}, {}
    h = x.flatten(1)
    for i in range(1, model.depth + 1):
        z = getattr(model, f"fc{i}")(h)
        a = getattr(model, f"act{i}")(z)
        a.retain_grad()
        acts[f"fc{i}"] = (z.detach().clone(), a)
        h = a
    logits = getattr(model, f"fc{model.depth + 1}")(h)
    logits.retain_grad()
    outs[f"fc{model.depth + 1}"] = logits
    loss = F.cross_entropy(logits, y)
    model.zero_grad()
    loss.backward()
    ref = {}
    for name in model.layer_names:
        w = getattr(model, name).weight
        g = w.grad
        ref[name] = {"grad_norm": g.norm().item(), "grad_mean_abs": g.abs().mean().item(),
                     "weight_norm": w.norm().item(), "grad_data_ratio": (g.std() / w.std()).item(),
                     "w_before": w.detach().clone(), "grad": g.detach().clone()}
    for name, (z, a) in acts.items():
        s = torch.sigmoid(z)
        sat = s * (1 - s) < 0.05 * 0.25
        ref[name].update(act_mean=a.mean().item(), act_std=a.std().item(), saturated_frac=sat.float().mean().item(),
                         dead_frac=sat.all(0).float().mean().item(), out_grad_norm=a.grad.norm().item(),
                         act_values=a.detach().numpy().ravel())
    ref[f"fc{model.depth + 1}"]["out_grad_norm"] = outs[f"fc{model.depth + 1}"].grad.norm().item()
    return ref, loss


@pytest.mark.parametrize("activation", ["sigmoid"])
def test_probe_values_match_plain_torch(digits, activation):
    # width 40: fc1 holds 31,360 weights, under GRAD_SAMPLE, so every statistic is exact (a larger layer's
    # histogram and mean |g| come from a sample: test_a_large_layers_histogram_and_mean_abs_come_from_a_fixed_sample)
    cfg = RunConfig(dataset="mnist-5k", depth=3, width=40, activation=activation, init="xavier", seed=3)
    model = build_model(cfg)
    # Make the first layer partly saturated so saturated/dead fractions are not trivially 0.
    with torch.no_grad():
        model.fc1.bias[:10] = 12.0
    x, y = digits.x_train[:100], digits.y_train[:100]

    ref_model = build_model(cfg)
    ref_model.load_state_dict(model.state_dict())
    ref, ref_loss = _reference_step(ref_model, x, y)

    probes = Probes(model)
    assert probes.names == ["fc1", "fc2", "fc3", "fc4"]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    probes.arm()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    probes.collect_grads(opt)
    opt.step()
    probes.collect_update()
    stats, (loss_v,) = probes.finish(extra=[loss.detach()])
    assert loss_v == pytest.approx(ref_loss.item(), rel=1e-6)

    for s in stats:
        r = ref[s.name]
        for key in ("grad_norm", "grad_mean_abs", "weight_norm", "grad_data_ratio", "out_grad_norm"):
            assert getattr(s, key) == pytest.approx(r[key], rel=1e-4), (s.name, key)
        # the first SGD step with momentum moves w by -lr * grad exactly
        w_after = getattr(model, s.name).weight.detach()
        expect = ((w_after - r["w_before"]).std() / r["w_before"].std()).item()
        assert s.update_data_ratio == pytest.approx(expect, rel=1e-4)
        assert s.update_data_ratio == pytest.approx(0.05 * r["grad_data_ratio"], rel=1e-3)
        # weight-gradient histogram: one bin per power of two of |g|, everything counted once
        g = r["grad"].abs().numpy().ravel()
        assert s.grad_hist.total == g.size
        nz = g[g > 0]
        e = np.floor(np.log2(nz)).astype(int)
        inside = e[(e >= GRAD_EXP_MIN) & (e < GRAD_EXP_MAX)]
        np.testing.assert_array_equal(s.grad_hist.counts, np.bincount(inside - GRAD_EXP_MIN,
                                                                      minlength=GRAD_EXP_MAX - GRAD_EXP_MIN))
        assert s.grad_hist.zeros == int((g == 0).sum())
        if s.name == "fc4":
            assert not s.is_hidden and s.act_mean is None and s.activation is None
            continue
        assert s.activation == "sigmoid"
        for key in ("act_mean", "act_std", "saturated_frac", "dead_frac"):
            assert getattr(s, key) == pytest.approx(r[key], rel=1e-5, abs=1e-7), (s.name, key)
        counts, _ = np.histogram(r["act_values"], bins=40, range=(0.0, 1.0))
        assert s.act_hist.edges[0] == 0.0 and s.act_hist.edges[-1] == 1.0
        assert np.abs(s.act_hist.counts - counts).sum() <= 2  # float edge ties may land one bin over
        assert s.act_hist.total == r["act_values"].size
    fc1 = stats[0]
    assert 0.05 < fc1.saturated_frac < 0.5 and fc1.dead_frac == pytest.approx(10 / 40)


def test_probes_attach_to_any_module_in_forward_order():
    """A user's model: Conv and Linear layers, in-place ReLUs, modules registered out of forward order."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(8 * 4 * 4, 10)  # registered first, runs last
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.act = nn.ReLU(inplace=True)
            self.pool = nn.AdaptiveAvgPool2d(4)

        def forward(self, x):
            return self.head(self.pool(self.act(self.conv(x))).flatten(1))

    torch.manual_seed(0)
    net = Net()
    x, y = torch.randn(16, 1, 12, 12), torch.randint(0, 10, (16,))
    with torch.no_grad():
        z = net.conv(x)  # reference pre-activation
    probes = Probes(net)
    probes.arm()
    F.cross_entropy(net(x), y).backward()
    stats, _ = probes.finish()
    assert [s.name for s in stats] == ["conv", "head"]
    conv, head = stats
    assert conv.activation == "relu" and head.activation is None
    relu = torch.relu(z)
    assert conv.act_mean == pytest.approx(relu.mean().item(), rel=1e-5)
    # saturated = derivative 0 = pre-activation <= 0, computed from the input the in-place ReLU overwrote
    assert conv.saturated_frac == pytest.approx((z <= 0).float().mean().item(), abs=1e-6)
    per_channel = (z <= 0).movedim(1, -1).reshape(-1, 8).all(0).float().mean().item()
    assert conv.dead_frac == pytest.approx(per_channel)
    assert conv.grad_norm == pytest.approx(net.conv.weight.grad.norm().item(), rel=1e-5)
    assert math.isnan(conv.update_data_ratio)  # no optimiser step was taken


def test_unarmed_steps_run_without_hooks(digits):
    model = build_model(RunConfig(depth=2, width=16))
    probes = Probes(model)
    assert not model.fc1._forward_hooks and not model.act1._forward_hooks
    F.cross_entropy(model(digits.x_train[:10]), digits.y_train[:10]).backward()
    assert probes._act == {} and probes._out_grad == {} and probes._act_grad == {}
    probes.arm()
    assert model.fc1._forward_hooks and model.act1._forward_hooks
    F.cross_entropy(model(digits.x_train[:10]), digits.y_train[:10]).backward()
    stats, _ = probes.finish()
    assert stats[0].activation == "sigmoid"
    assert not model.fc1._forward_hooks and not model.act1._forward_hooks


def test_update_ratio_with_adam_copies_the_weights(digits):
    """Not plain SGD: the update is measured as w_after - w_before from a copy taken before the step."""
    model = build_model(RunConfig(depth=2, width=32, seed=1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    probes = Probes(model)
    before = {n: getattr(model, n).weight.detach().clone() for n in ("fc1", "fc2", "fc3")}
    probes.arm()
    F.cross_entropy(model(digits.x_train[:50]), digits.y_train[:50]).backward()
    probes.collect_grads(opt)
    assert probes._w_before is not None
    opt.step()
    probes.collect_update()
    stats, _ = probes.finish()
    for s in stats:
        w = getattr(model, s.name).weight.detach()
        expect = ((w - before[s.name]).std() / before[s.name].std()).item()
        assert s.update_data_ratio == pytest.approx(expect, rel=1e-4)


def _one_probed_step(model, x, y, opt=None):
    probes = Probes(model)
    probes.arm()
    loss = F.cross_entropy(model(x), y)
    model.zero_grad()
    loss.backward()
    probes.collect_grads(opt)
    if opt is not None:
        opt.step()
        probes.collect_update()
    stats, _ = probes.finish()
    return stats


@pytest.mark.parametrize("activation, fn", [("gelu", F.gelu), ("swish", F.silu), ("mish", F.mish)])
def test_saturation_of_non_monotone_activations_uses_the_derivatives_magnitude(digits, activation, fn):
    """gelu's derivative is negative for z in about (-3, -0.75): units there pass gradient back (sign flipped),
    so they are not saturated; only |act'(z)| < 5% of its largest counts."""
    cfg = RunConfig(dataset="mnist-5k", depth=1, width=256, activation=activation, seed=0)
    model = build_model(cfg)
    with torch.no_grad():
        model.fc1.weight.mul_(8.0)  # spread z over the negative-derivative region and the flat tails
    x, y = digits.x_train[:200], digits.y_train[:200]
    (fc1, _) = _one_probed_step(model, x, y)

    z = model.fc1(x).detach().requires_grad_(True)
    (d,) = torch.autograd.grad(fn(z).sum(), z)
    grid = torch.linspace(-20, 20, 40001, requires_grad=True)
    (dg,) = torch.autograd.grad(fn(grid).sum(), grid)
    threshold = 0.05 * dg.abs().max()
    expect = (d.abs() < threshold).float().mean().item()
    signed = (d < threshold).float().mean().item()  # what counting the negative derivatives would give
    assert fc1.saturated_frac == pytest.approx(expect, abs=1e-6)
    assert signed - expect > 0.05  # a real difference on this batch: the test tells the two apart
    assert fc1.dead_frac == pytest.approx((d.abs() < threshold).all(0).float().mean().item())


def _exponent_hist(g: np.ndarray) -> np.ndarray:
    """Counts of |g| per power of two on GRAD_EDGES (values below and above left out), by log2: independent of the
    probes' exponent bits."""
    nz = np.abs(g[g != 0])
    e = np.floor(np.log2(nz)).astype(int)
    inside = e[(e >= GRAD_EXP_MIN) & (e < GRAD_EXP_MAX)]
    return np.bincount(inside - GRAD_EXP_MIN, minlength=GRAD_EXP_MAX - GRAD_EXP_MIN)


def test_a_large_layers_histogram_and_mean_abs_come_from_a_fixed_sample(digits):
    """fc1 of the seed's network: 784,000 gradients. Its histogram and mean |g| come from runs of 16 values every 384
    positions (at most GRAD_SAMPLE values; 384 and the row length 784 share 16, so the runs cover every column),
    the counts scaled to the layer; its norm, sum and std stay exact. The sample's
    figures are those of the whole layer within sampling error, and the same positions at every snapshot."""
    model = build_model(RunConfig(dataset="mnist-5k", depth=1, width=1000, seed=0))
    (fc1, _) = _one_probed_step(model, digits.x_train[:100], digits.y_train[:100])
    g = model.fc1.weight.grad.numpy().astype(np.float64)
    flat = g.ravel()  # the sample, by its definition: the runs of 16 values from flat positions 0, 384, 768, ...
    rows = flat[(np.arange(0, flat.size, 384)[:, None] + np.arange(16)).ravel()]
    assert rows.size <= GRAD_SAMPLE and rows.size == 32672
    assert fc1.grad_mean_abs == pytest.approx(np.abs(rows).mean(), rel=1e-6)
    np.testing.assert_array_equal(fc1.grad_hist.counts, np.rint(_exponent_hist(rows) * g.size / rows.size))
    assert fc1.grad_norm == pytest.approx(np.sqrt((g * g).sum()), rel=1e-5)  # every gradient (a float32 dot)
    assert fc1.grad_hist.total == pytest.approx(g.size, abs=60)  # scaled to the layer (each bin rounded)
    # within sampling error of the whole layer's
    assert fc1.grad_mean_abs == pytest.approx(np.abs(g).mean(), rel=0.01)
    full = _exponent_hist(g) / g.size
    assert np.abs(fc1.grad_hist.counts / g.size - full).max() < 0.01
    # the comparison can fail: another layer's gradients give another histogram
    assert np.abs(_exponent_hist(g[:40]) / rows.size - _exponent_hist(rows) / rows.size).max() > 0.01


def test_shards_sample_the_positions_of_the_whole_weight():
    """Under FSDP each rank holds some rows of a weight: the union of the ranks' samples is the whole weight's sample
    (so a sharded job's histogram equals one process's), by whole rows or by a stride through the values."""
    from vgtui.engine.probes import _sample, _sample_stride

    for shape, ranks in (((1000, 784), 3), ((400, 400), 4), ((4, 20000), 2), ((70000,), 3), ((10, 20), 2),
                         ((3, 40000), 5)):  # more ranks than rows: some shards are empty
        w = torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape)
        k = _sample_stride(shape, GRAD_SAMPLE)
        whole = _sample(w, k, 0)
        assert whole.numel() <= GRAD_SAMPLE and (k > 1) == (w.numel() > GRAD_SAMPLE)
        parts, at = [], 0
        for chunk in torch.chunk(w, ranks, dim=0):  # FSDP2's dim-0 shards
            parts.append(_sample(chunk, k, at))
            at += chunk.numel()
        assert torch.equal(torch.cat(parts), whole), shape
        if len(shape) == 2 and GRAD_SAMPLE < w.numel() and shape[1] <= whole.numel():  # every row and column in it
            assert len({int(v) % shape[1] for v in whole}) == shape[1], shape
            assert len({int(v) // shape[1] for v in whole}) == shape[0], shape


@pytest.mark.parametrize("name, module", [("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh)])
def test_batched_activation_statistics_equal_the_layer_by_layer_ones(digits, name, module):
    """vgtui's own sigmoid and tanh layers are measured together (one kernel per statistic for all of them, joint
    histogram bins); torch's nn.Sigmoid and nn.Tanh one by one (histc, autograd's derivative): the same numbers."""
    cfg = RunConfig(dataset="mnist-5k", depth=4, width=256, activation=name, seed=5)
    model = build_model(cfg)
    with torch.no_grad():
        model.fc1.weight.mul_(6.0)  # saturate part of fc1: the counts are not trivially 0
    other = build_model(cfg)
    other.load_state_dict(model.state_dict())
    for i in range(1, 5):
        setattr(other, f"act{i}", module())
    x, y = digits.x_train[:300], digits.y_train[:300]
    batched, one_by_one = _one_probed_step(model, x, y), _one_probed_step(other, x, y)
    for a, b in zip(batched[:4], one_by_one[:4]):
        assert a.activation == b.activation == name
        np.testing.assert_array_equal(a.act_hist.counts, b.act_hist.counts)
        assert (a.act_hist.under, a.act_hist.over) == (b.act_hist.under, b.act_hist.over) == (0, 0)
        np.testing.assert_array_equal(a.deriv_hist.counts, b.deriv_hist.counts)
        assert (a.saturated_frac, a.dead_frac) == (b.saturated_frac, b.dead_frac)
        for key in ("act_mean", "act_std", "deriv_mean", "pre_p15", "pre_p50", "pre_p85"):
            assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-5), (a.name, key)
    assert batched[0].saturated_frac > 0.1 and batched[0].dead_frac > 0


def test_grad_hist_always_writes_zeros():
    from vgtui.core.records import Hist

    d = Hist(np.array([0.0, 1.0]), np.array([3])).to_json()
    assert d["zeros"] == 0 and Hist.from_json(d).zeros == 0


def test_update_ratio_under_sgd_is_the_intended_step(digits):
    """Plain SGD with momentum, a few steps in: update_data_ratio = std(lr * momentum buffer) / std(w_before),
    the optimiser's intended step (README); the stored weights move by it up to float32 rounding."""
    model = build_model(RunConfig(dataset="mnist-5k", depth=2, width=32, seed=2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = digits.x_train[:100], digits.y_train[:100]
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    before = {n: getattr(model, n).weight.detach().clone() for n in model.layer_names}
    stats = _one_probed_step(model, x, y, opt)
    for s in stats:
        w = getattr(model, s.name).weight
        step = 0.05 * opt.state[w]["momentum_buffer"]
        assert s.update_data_ratio == pytest.approx((step.std() / before[s.name].std()).item(), rel=1e-5)
        actual = ((w.detach() - before[s.name]).std() / before[s.name].std()).item()
        assert s.update_data_ratio == pytest.approx(actual, rel=1e-3)  # the same, up to float32 rounding


def test_pre_activation_percentiles_match_plain_torch(digits):
    """pre_p15/p50/p85 are the 15th/50th/85th percentiles of each hidden layer's activation input z: exact for a
    small batch (every value), within sampling error of the exact ones for a large layer (a fixed sample)."""
    for width, batch, exact in ((40, 100, True), (400, 200, False)):
        cfg = RunConfig(dataset="mnist-5k", depth=3, width=width, activation="tanh", batchnorm=True, seed=1)
        model = build_model(cfg)
        x, y = digits.x_train[:batch], digits.y_train[:batch]
        zs, h = {}, x.flatten(1)
        with torch.no_grad():
            ref_model = build_model(cfg)
            ref_model.load_state_dict(model.state_dict())
            for i in range(1, 4):
                z = getattr(ref_model, f"bn{i}")(getattr(ref_model, f"fc{i}")(h))  # the activation's input
                zs[f"fc{i}"] = z
                h = torch.tanh(z)
        probes = Probes(model)
        probes.arm()
        F.cross_entropy(model(x), y).backward()
        stats, _ = probes.finish()
        for s in stats[:3]:
            ref = torch.quantile(zs[s.name].flatten(), torch.tensor([0.15, 0.5, 0.85])).tolist()
            got = [s.pre_p15, s.pre_p50, s.pre_p85]
            assert got[0] < got[1] < got[2]
            if exact:
                assert got == pytest.approx(ref, rel=1e-5, abs=1e-6), s.name
            else:  # 4,000 of 80,000 values: a quantile's sampling error is a few hundredths of z's spread
                assert got == pytest.approx(ref, abs=0.05), s.name
        assert stats[3].pre_p50 is None


def _edgy(lo: float, hi: float, bins: int, n: int, seed: int) -> torch.Tensor:
    """Values in [lo, hi] that a histogram's arithmetic meets at its worst: random ones, every bin edge and its two
    float32 neighbours (kept in range), lo and hi themselves, and two NaNs."""
    g = torch.Generator().manual_seed(seed)
    edges = torch.linspace(lo, hi, bins + 1)
    near = torch.cat([edges, torch.nextafter(edges, torch.tensor(hi)), torch.nextafter(edges, torch.tensor(lo))])
    return torch.cat([torch.rand(n, generator=g) * (hi - lo) + lo, near.clamp(lo, hi),
                      torch.tensor([lo, hi, hi, float("nan"), float("nan")])])


@pytest.mark.parametrize("lo, hi, bins", [(0.0, 1.0, 40), (-1.0, 1.0, 40), (0.0, 0.25, 16), (0.0, 1.0, 16),
                                          (-1.0, 1.0, 30), (0.0, 0.3, 7)])
def test_bounded_hist_is_histc_then_the_nans(lo, hi, bins):
    """The probes' own binning (a multiplication, truncation and one bincount instead of histc) puts every value in
    histc's bin, bin edges and `hi` included, and counts the NaNs one place after the last bin."""
    from vgtui.engine.probes import _bounded_hist

    x = _edgy(lo, hi, bins, 20000, seed=bins)
    got = _bounded_hist(x, lo, hi, bins)
    assert got[:bins].tolist() == torch.histc(x[~x.isnan()], bins, lo, hi).long().tolist()
    assert int(got[bins]) == 2 and int(got.sum()) == x.numel()


def test_joint_code_counts_both_histograms_and_the_flag():
    """One bincount of the joint codes of a sigmoid-like x, a derivative-like y and a flag gives histc's histogram of
    each (NaNs after the last bin) and the flag's count."""
    from vgtui.engine.probes import _joint_code, _merge_top

    x, y = _edgy(0.0, 1.0, 40, 30000, seed=1), _edgy(0.0, 0.25, 16, 30000, seed=2)
    n = min(len(x), len(y))
    x, y = x[-n:], y[-n:].roll(7)  # both end with their NaNs: moved apart
    flag = torch.rand(n, generator=torch.Generator().manual_seed(3)) < 0.3
    code = _joint_code(x, (0.0, 1.0), 40, y, (0.0, 0.25), 16, flag)
    joint = torch.bincount(code.reshape(-1).long(), minlength=42 * 18 * 2).numpy().reshape(42, 18, 2)
    a, d = _merge_top(joint.sum((1, 2)), 40, 0), _merge_top(joint.sum((0, 2)), 16, 0)
    assert a[:40].tolist() == torch.histc(x[~x.isnan()], 40, 0.0, 1.0).long().tolist()
    assert d[:16].tolist() == torch.histc(y[~y.isnan()], 16, 0.0, 0.25).long().tolist()
    assert (a[40], d[16]) == (int(x.isnan().sum()), int(y.isnan().sum())) and a[40] > 0
    assert joint[..., 1].sum() == int(flag.sum()) > 0


def test_a_layer_of_equal_weights_has_infinite_ratios_not_an_error(digits):
    """A layer whose weights are all equal (all zero here) has a weight std of 0: its gradient:data and update:data
    ratios are infinite, as IEEE division says (not an error, not 0), and its weight norm 0."""
    model = build_model(RunConfig(dataset="mnist-5k", depth=3, width=32, seed=2))
    with torch.no_grad():
        model.fc2.weight.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    stats = {s.name: s for s in _one_probed_step(model, digits.x_train[:64], digits.y_train[:64], opt)}
    fc2 = stats["fc2"]
    assert fc2.weight_norm == 0.0 and fc2.grad_norm > 0
    assert fc2.grad_data_ratio == math.inf and fc2.update_data_ratio == math.inf
    assert all(math.isfinite(stats[n].grad_data_ratio) for n in ("fc1", "fc3", "fc4"))
