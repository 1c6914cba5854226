"""Every layer judged (issue 16), on real training: the per-layer factors of the seed's sigmoid network, the
30-layer relu + xavier network whose gradients are small everywhere, a user's model with a saturated middle block
(through vgtui.watch), "too early" at one snapshot, the preflight at step 1, and the headless report's lines."""

from __future__ import annotations

import dataclasses
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vgtui
from vgtui.commands.headless import Reporter
from vgtui.core.config import RunConfig
from vgtui.core.diagnosis import (
    UPDATE_LOW, diagnose, explain_factors, factors_product, judge_run, layer_factors, preflight, ratio_words,
)
from vgtui.core.metrics import read_metrics
from vgtui.core.records import EndRecord, RunRecord, Snapshot
from vgtui.core.summary import RunSummary
from vgtui.engine.trainer import Trainer


def _train(digits, **kw) -> list:
    recs: list = []
    Trainer(RunConfig(dataset="mnist-5k", device="cpu", epochs=1, **kw), [recs.append], data=digits).run()
    return recs


def _summary(recs) -> RunSummary:
    s = RunSummary()
    for r in recs:
        s.add(r)
    return s


@pytest.fixture(scope="module")
def sigmoid_run(digits):
    """The seed's network as it is (784-1000x5-10 sigmoid, default init, SGD lr 0.01): two probed steps."""
    return _train(digits, max_steps=2, probe_every=1)


# ---------------------------------------------------------------------------------------------- the seed's network
def test_the_sigmoid_networks_factors_are_each_about_a_seventh_and_multiply_to_the_measured_ratio(sigmoid_run):
    snaps = [r for r in sigmoid_run if isinstance(r, Snapshot)]
    assert [s.step for s in snaps] == [1, 2]
    for snap in snaps:
        factors = layer_factors(snap)
        assert [(f.name, f.above) for f in factors] == [("fc1", "fc2"), ("fc2", "fc3"), ("fc3", "fc4"),
                                                        ("fc4", "fc5"), ("fc5", "fc6")]
        for f in factors:
            assert 0.05 < f.factor < 0.3, (snap.step, f)
            # the derivative's part: sigmoid' is at most 0.25 and near it where the activations sit around 0.5
            assert f.activation == "sigmoid" and f.deriv_max == 0.25 and 0.15 < f.deriv <= 0.25
            assert f.weights == pytest.approx(f.factor / f.deriv)
        measured = snap.ratio()  # fc1/fc6 weight-gradient norms, measured
        assert measured < 1e-3
        assert measured / 3 < factors_product(factors) < measured * 3, (factors_product(factors), measured)
        line = explain_factors(snap, factors)
        assert line.startswith("each layer multiplies the gradient by about 0.1") and "(sigmoid' <= 0.25)" in line
        assert "from fc6 down to fc1" in line and f"{measured:.1e}" in line


def test_the_sigmoid_network_is_vanishing_at_fc1_and_the_reason_says_by_how_much(sigmoid_run):
    v = _summary(sigmoid_run).verdict
    assert v.badge == "VANISHING" and v.snapshots == 2
    fc1 = v.layer("fc1")
    assert fc1.regime == "vanishing" and "of fc6's gradient" in fc1.reason and "barely move" in fc1.reason
    assert v.line.startswith("fc1: gets 1/") and "of fc6's gradient" in v.line
    assert v.layer("fc6").regime == "healthy"
    assert [l.name for l in v.layers] == ["fc1", "fc2", "fc3", "fc4", "fc5", "fc6"]
    assert v.factor_line.startswith("each layer multiplies the gradient by about 0.1")
    assert v.preflight is not None and v.preflight.step == 1
    assert v.preflight.loss_line.startswith("loss at init 2.") and v.preflight.loss_line.endswith("(chance): fine")
    assert v.preflight.gain_line.startswith("activation std fc1 ") and " -> fc5 " in v.preflight.gain_line
    assert [n for n, _ in v.preflight.act_std] == ["fc1", "fc2", "fc3", "fc4", "fc5"]


def test_one_snapshot_is_too_early(sigmoid_run):
    header = next(r for r in sigmoid_run if isinstance(r, RunRecord))
    first = next(r for r in sigmoid_run if isinstance(r, Snapshot))
    v = _summary([header, first]).verdict
    assert (v.badge, v.line) == ("TOO EARLY", "too early: 1 snapshot")
    assert v.preflight is not None and v.preflight.loss_line.startswith("loss at init")  # there from step 1
    assert len(v.layers) == 6  # each layer's own numbers are there; only the run's badge waits
    assert judge_run(header.layers, []).line == "too early: no snapshot yet (6 layers)"


def test_the_headless_report_prints_the_layers_the_factors_and_the_preflight(sigmoid_run):
    out = io.StringIO()
    rep = Reporter(out, tty=False)
    for r in sigmoid_run:
        rep(r)
    text = out.getvalue()
    lines = {l.split(":", 1)[0]: l for l in text.splitlines()}
    assert lines["layers"].startswith("layers: VANISHING: fc1: gets 1/")
    assert lines["factors"].startswith("factors: each layer multiplies the gradient by about 0.1")
    assert "(sigmoid' <= 0.25)" in lines["factors"]
    assert lines["preflight"].startswith("preflight: loss at init 2.") and "activation std fc1" in lines["preflight"]


# ---------------------------------------------------------------------------------------------- small everywhere
def test_thirty_relu_layers_with_xavier_are_not_healthy_the_gradients_are_small_everywhere(digits):
    recs = _train(digits, depth=30, width=256, activation="relu", init="xavier", max_steps=20, probe_every=10)
    s = _summary(recs)
    assert s.snapshots == 3
    last = s.last
    # what the first/last ratio misses: every layer's weight gradient is tiny, fc1's is not much below fc31's
    assert all(l.grad_norm < 1e-2 for l in last.layers) and diagnose(s.ratio) == "healthy"
    assert all(l.update_data_ratio < UPDATE_LOW for l in last.layers)
    v = s.verdict
    assert v.badge == "VANISHING" and v.badge != "HEALTHY"
    assert v.line.startswith("update:data below 1e-0") and "on 31 of 31 layers: gradients too small everywhere" \
        in v.line
    # the mechanism: the gradient at each layer's input shrinks by ~0.7 a step down, 1e-5 over 30 layers
    factors = layer_factors(last)
    assert len(factors) == 30 and factors_product(factors) < 1e-3
    assert "(relu' <= 1)" in v.factor_line
    # and forward: the activations shrink layer after layer at step 1 (xavier's gain is too small for relu)
    assert v.preflight.act_std[-1][1] < 1e-2 * v.preflight.act_std[0][1]
    assert v.preflight.gain_line.startswith("activation std fc1 ") and " -> fc30 " in v.preflight.gain_line


# ---------------------------------------------------------------------------------------------- a user's model
class _Blocks(nn.Module):
    def __init__(self, width: int = 96, n: int = 5):
        super().__init__()
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Linear(784 if i == 0 else width, width), nn.Tanh())
                                      for i in range(n)])
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.blocks(x.flatten(1)))


def _watched(model, digits, path, steps=12, every=4, lr=0.05):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    with vgtui.watch(model, metrics=path, every=every, optimizer=opt, quiet=True) as probe:
        for i in range(steps):
            x, y = digits.x_train[i * 50:(i + 1) * 50], digits.y_train[i * 50:(i + 1) * 50]
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            probe.step(loss=loss)
    (run,) = read_metrics(path)
    return run


def test_a_saturated_middle_block_of_a_watched_model_is_named(digits, tmp_path):
    torch.manual_seed(0)
    model = _Blocks()
    with torch.no_grad():
        model.blocks[2][0].weight.mul_(20.0)  # its tanh saturates
    run = _watched(model, digits, tmp_path / "run.jsonl")
    assert len(run.snapshots) >= 3
    mid = run.snapshots[-1].layer("blocks.2.0")
    assert mid.activation == "tanh" and mid.saturated_frac > 0.5
    assert mid.deriv_max == 1.0 and mid.deriv_mean < 0.3  # tanh's derivative: at most 1, little of it here
    s = RunSummary()
    for r in (run.header, *run.snapshots):
        s.add(r)
    v = s.verdict
    assert v.badge == "SATURATED"
    assert v.line.startswith("blocks.2.0: ") and v.line.split(": ", 1)[1].split("%")[0].isdigit()
    assert v.line.split(": ", 1)[1].endswith("saturated") or "saturated (" in v.line
    assert v.layer("blocks.2.0").regime == "saturated"
    assert all(l.regime != "saturated" for l in v.layers if l.name != "blocks.2.0")
    # a watched model: the number of classes is not recorded, the preflight says so instead of guessing
    assert "chance unknown" in v.preflight.loss_line
    assert len(v.factors) == 5 and "(tanh' <= 1)" in v.factor_line


def test_the_preflight_says_when_the_output_layer_starts_too_large(digits, tmp_path):
    torch.manual_seed(0)
    model = _Blocks(width=64, n=2)
    with torch.no_grad():
        model.head.weight.mul_(60.0)
    run = _watched(model, digits, tmp_path / "run.jsonl", steps=2, every=1)
    first = run.snapshots[0]
    assert first.step == 1 and first.loss > 1.5 * math.log(10)
    p = preflight(first, 10)
    shown = f"{first.loss:.2f}" if first.loss < 10 else f"{first.loss:.3g}"
    assert p.too_large and p.loss_line == f"loss at init {shown} vs 2.30 (chance): the output layer starts too large"
    fine = preflight(dataclasses.replace(first, loss=2.31), 10)
    assert fine.loss_line == "loss at init 2.31 vs 2.30 (chance): fine" and not fine.too_large


def test_an_ended_run_and_an_older_file_are_said_as_such(sigmoid_run):
    snaps = [r for r in sigmoid_run if isinstance(r, Snapshot)]
    end = EndRecord(status="diverged", steps=2, elapsed_s=1.0, message="", cause="exploded")
    s = _summary([*sigmoid_run[:-1], end])
    assert s.verdict.badge == "EXPLODING"
    old = [dataclasses.replace(sn, layers=tuple(dataclasses.replace(l, pre_grad_norm=None, deriv_mean=None)
                                                for l in sn.layers)) for sn in snaps]
    v = judge_run(None, old)
    assert v.factors == () and v.factor_line == ("factors need the gradient before each activation: not recorded "
                                                 "in this file (written by an older vgtui)")


def test_ratio_words():
    assert [ratio_words(r) for r in (1e-4, 1.1e-4, 0.14, 0.7, 300.0, 0.0)] == \
           ["1/10,000", "1/9,100", "1/7", "0.7x", "300x", "none"]


def test_a_non_finite_layer_is_diverged_even_at_one_snapshot(digits):
    from vgtui.engine.model import build_model
    from vgtui.engine.probes import Probes

    model = build_model(RunConfig(depth=2, width=16, activation="tanh", seed=0))
    with torch.no_grad():
        model.fc1.weight[0, 0] = float("nan")
    probes = Probes(model)
    probes.arm()
    loss = F.cross_entropy(model(digits.x_train[:20]), digits.y_train[:20])
    loss.backward()
    probes.collect_grads()
    layers, _ = probes.finish()
    snap = Snapshot(step=1, epoch=1, elapsed_s=0.0, loss=loss.item(), loss_avg=loss.item(), steps_per_s=0.0,
                    activation="tanh", layers=layers)
    v = judge_run(None, [snap])
    assert v.badge == "DIVERGED" and v.line.startswith("fc1: non-finite weight gradient")
    assert v.factor_line == "factors need finite gradients: not finite at fc1, fc2"
    assert v.preflight.loss_line == "loss at init nan: not finite"
