"""vgtui.watch as a careless user or a hostile loop would use it (issue 13), with real torch training on the
embedded digits: a full disk at the end never replaces the user's exception; a frozen backbone (fine-tuning)
under SGD, SGD with momentum and Adam probes the trainable layers and gives the frozen ones no update; dead_frac
counts units (a Linear's last axis, a convolution's channels), not token positions; absurd user metrics are
capped with one warning line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import traceback
import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vgtui
from conftest import ROOT
from vgtui.core.config import RunConfig
from vgtui.core.metrics import read_metrics
from vgtui.engine.model import build_model
from vgtui.engine.probes import Probes
from vgtui.watching import MAX_METRIC_NAME, MAX_METRICS, WatchWarning


def _run(path):
    (run,) = read_metrics(path)
    return run


def _batches(digits, n, size=32):
    return [(digits.x_train[i * size:(i + 1) * size], digits.y_train[i * size:(i + 1) * size]) for i in range(n)]


def _watch_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, WatchWarning)]


def _whole_lines(path) -> list[dict]:
    """The file as JSON records, asserting it holds whole lines only (ended by a newline, each one JSON)."""
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


# ------------------------------------------------------------------------------------------ a full disk
def _fill_disk(probe) -> None:
    """From now on every write to the metrics file fails as on a full disk: the writer's descriptor becomes
    /dev/full, whose every write the kernel refuses with ENOSPC (the real file keeps what was written)."""
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, probe._writer.fd)
    os.close(full)


class Fatal(BaseException):
    """A user's own BaseException (not an Exception)."""


def _raise(case: str, model: nn.Module) -> None:
    if case == "ValueError":
        raise ValueError("the user's own")
    if case == "torch shape error":  # a real error from torch itself, deep in its forward
        model(torch.randn(5, 13))
    if case == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if case == "SystemExit(3)":
        raise SystemExit(3)
    if case == "BaseException":
        raise Fatal("fatal")
    raise AssertionError(case)


@pytest.mark.parametrize("case, pending", [
    ("ValueError", False), ("torch shape error", False), ("KeyboardInterrupt", False), ("SystemExit(3)", False),
    ("BaseException", False), ("ValueError", True)])
def test_a_full_disk_at_the_end_never_replaces_the_users_exception(digits, tmp_path, case, pending):
    """The disk fills after the last snapshot (pending: with a snapshot still waiting to be written): leaving
    the with block raises the user's exception, the same object with the same traceback, nothing chained to it;
    vgtui says its failure in one warning line; the file holds whole lines only."""
    model = build_model(RunConfig(depth=2, width=16, seed=0))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    path = tmp_path / "run.jsonl"
    made, at_raise = [], []

    def user_code(probe):
        for x, y in _batches(digits, 4):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            if not pending:
                probe.step()  # with probe.step() each snapshot is written at once; without, at the next step
        _fill_disk(probe)
        try:
            _raise(case, model)
        except BaseException as e:
            made.append(e)
            at_raise.append(traceback.format_tb(e.__traceback__))
            raise

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(BaseException) as info:
            with vgtui.watch(model, path, every=1 if pending else 2, optimizer=opt, quiet=True) as probe:
                user_code(probe)
    err = info.value
    assert err is made[0] and type(err).__name__ == {"torch shape error": "RuntimeError", "BaseException": "Fatal"
                                                     }.get(case, case.split("(")[0])
    assert err.__context__ is None and err.__cause__ is None
    assert traceback.format_tb(err.__traceback__)[-len(at_raise[0]):] == at_raise[0]  # the same frames, intact
    (said,) = _watch_warnings(caught)
    assert "\n" not in said and "No space left on device" in said and "the file ends at its last whole record" in said
    assert ("and its last snapshot" in said) == pending
    records = _whole_lines(path)
    assert [r["type"] for r in records] == ["run", "snapshot", "snapshot", "snapshot"]
    assert [r["step"] for r in records[1:]] == ([1, 2, 3] if pending else [1, 2, 4])  # pending: 4 is lost
    assert probe.closed and _run(path).end is None


@pytest.mark.parametrize("how", ["with", "close()", "full since step 3"])
def test_a_full_disk_without_a_user_exception_warns_and_the_program_goes_on(digits, tmp_path, how):
    """No exception of the user's: a failed end record is a warning, not an error (the training is done, and
    the code after the block, saving the model, must run). A disk full from mid-run on: the probes go off with
    one line, the steps are still counted, and the end gets its own line."""
    model = build_model(RunConfig(depth=2, width=16, seed=1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    path = tmp_path / "run.jsonl"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probe = vgtui.watch(model, path, every=2, optimizer=opt, quiet=True)
        with probe if how == "with" else open(os.devnull):
            for i, (x, y) in enumerate(_batches(digits, 6)):
                if how == "full since step 3" and i == 2:
                    _fill_disk(probe)
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
                probe.step()
            if how != "full since step 3":
                _fill_disk(probe)
        probe.close()
        after_the_block = True
    assert after_the_block and probe.closed and probe.steps == 6
    said = _watch_warnings(caught)
    ended = "could not be written to " + str(path) + " (No space left on device); the file ends at its last whole"
    if how == "full since step 3":
        assert len(said) == 2 and said[0].startswith("vgtui.watch: probes off from step 4: MetricsWriteError")
        assert ended in said[1]
        assert [r.get("step") for r in _whole_lines(path)] == [None, 1, 2]
    else:
        assert len(said) == 1 and ended in said[0]
        assert [r.get("step") for r in _whole_lines(path)] == [None, 1, 2, 4, 6]


@pytest.mark.parametrize("mode", ["at exit", "snapshot lost"])
def test_a_disk_with_little_room_left_rolls_back_the_half_line(tmp_path, mode):
    """The file may grow by a few bytes only (RLIMIT_FSIZE in a child process: the kernel writes what fits of a
    line and refuses the rest); the writer rolls the half line back. At exit (no with, no close()): the end record
    does not fit; the uncaught exception's traceback is printed as Python prints it, and vgtui adds one line.
    Snapshot lost: the pending snapshot does not fit, the end record (smaller) then does, and says so."""
    path = tmp_path / "x.jsonl"
    room, ending = {"at exit": ("20", 'raise ValueError("the user\'s own")'),
                    "snapshot lost": ("1000", "probe.close()")}[mode]
    script = textwrap.dedent(f"""
        import os, resource, signal, torch, vgtui
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG or a short write instead of a signal
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        probe = vgtui.watch(model, {str(path)!r}, every=1, optimizer=opt, quiet=True)
        for _ in range(3):  # without probe.step(), step 3's snapshot waits for the next step (or the end)
            opt.zero_grad(); model(torch.randn(3, 4)).sum().backward(); opt.step()
        size = os.path.getsize({str(path)!r})
        print(size, flush=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + {room}, size + {room}))
        {ending}
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    said = [line for line in r.stderr.splitlines() if "vgtui.watch:" in line]
    assert len(said) == 1 and "Exception ignored" not in r.stderr, r.stderr
    records = _whole_lines(path)
    if mode == "at exit":
        assert r.returncode == 1 and path.stat().st_size == int(r.stdout)  # the 20 bytes written: rolled back
        assert "Traceback (most recent call last)" in r.stderr and r.stderr.count("ValueError: the user's own") == 1
        assert "the end of the run and its last snapshot could not be written" in said[0]
        assert "MetricsWriteError" not in r.stderr
        assert [rec["type"] for rec in records] == ["run", "snapshot", "snapshot"]
    else:
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert "the last snapshot (step 3) is not in" in said[0] and "(File too large); the end is" in said[0]  # the system's own reason
        assert [rec["type"] for rec in records] == ["run", "snapshot", "snapshot", "end"]
        assert records[-1]["status"] == "completed" and records[-1]["message"].startswith(
            "3 steps (vgtui's probes stopped: MetricsWriteError: [Errno 27] cannot write the metrics file")


# ------------------------------------------------------------------------------------------ frozen layers
def _finetune_model(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """A pretrained-style backbone, frozen (requires_grad False), under a trainable head."""
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Linear(784, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU())
    head = nn.Sequential(nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10))
    backbone.requires_grad_(False)
    return nn.Sequential(OrderedDict(backbone=backbone, head=head)), backbone


FROZEN, TRAINED = ("backbone.0", "backbone.2"), ("head.0", "head.2")
OPTIMISERS = {
    "SGD": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "SGD momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
    "SGD nesterov decay": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "Adam": lambda ps: torch.optim.Adam(ps, lr=1e-3),
}


@pytest.mark.parametrize("manual", [False, True], ids=["optimizer=", "probe.step()"])
@pytest.mark.parametrize("opt_name", list(OPTIMISERS))
def test_a_frozen_backbone_is_probed_without_an_update_and_the_head_normally(digits, tmp_path, opt_name, manual):
    """The usual fine-tuning set-up: the optimiser over the trainable parameters only. No warning; at every
    snapshot the head's statistics are finite numbers, and the backbone's update and back-propagated gradient
    are None (absent from the file: there are none), its weight-gradient statistics zero (.grad is None)."""
    model, _ = _finetune_model()
    opt = OPTIMISERS[opt_name]([p for p in model.parameters() if p.requires_grad])
    path = tmp_path / "ft.jsonl"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with vgtui.watch(model, path, every=3, optimizer=None if manual else opt, quiet=True) as probe:
            for x, y in _batches(digits, 10):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                probe.step(loss=loss)
    assert _watch_warnings(caught) == []
    run = _run(path)
    assert run.end.status == "completed" and run.end.steps == 10 and run.end.message == "10 steps"
    assert [s.step for s in run.snapshots] == [1, 3, 6, 9]
    for snap in run.snapshots:
        layers = {l.name: l for l in snap.layers}
        assert list(layers) == [*FROZEN, *TRAINED]
        for name in TRAINED:
            l = layers[name]
            assert l.finite and l.grad_norm > 0 and l.grad_data_ratio > 0 and 0 < l.update_data_ratio < 1
            if opt_name == "SGD":  # plain SGD moves w by lr * g: update:data = lr * grad:data
                assert l.update_data_ratio == pytest.approx(0.1 * l.grad_data_ratio, rel=1e-3 if manual else 1e-5)
        for name in FROZEN:
            l = layers[name]
            assert l.update_data_ratio is None and l.out_grad_norm is None and l.finite
            assert l.grad_norm == 0 and l.grad_mean_abs == 0 and l.weight_norm > 0 and l.act_mean is not None
    for line in _whole_lines(path)[1:-1]:  # in the file: no update_data_ratio at all for a frozen layer
        assert [("update_data_ratio" in l) for l in line["layers"]] == [False, False, True, True]


@pytest.mark.parametrize("opt_name", ["SGD momentum", "Adam"])
def test_gradual_unfreezing_frozen_then_outside_the_optimiser_then_trained(digits, tmp_path, opt_name):
    """Steps 1-4 frozen: no update. Steps 5-8 requires_grad but not in the optimiser: the weights do not move,
    update 0. From step 9 in the optimiser (a new parameter group): an update like any other layer's."""
    model, backbone = _finetune_model(seed=3)
    opt = OPTIMISERS[opt_name]([p for p in model.parameters() if p.requires_grad])
    path = tmp_path / "unfreeze.jsonl"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with vgtui.watch(model, path, every=2, optimizer=opt, quiet=True) as probe:
            for i, (x, y) in enumerate(_batches(digits, 12)):
                if i == 4:
                    backbone.requires_grad_(True)
                if i == 8:
                    opt.add_param_group({"params": list(backbone.parameters())})
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
                probe.step()
    assert _watch_warnings(caught) == []
    snaps = _run(path).snapshots
    assert [s.step for s in snaps] == [1, 2, 4, 6, 8, 10, 12]
    for s in snaps:
        layers = {l.name: l for l in s.layers}
        assert all(layers[n].update_data_ratio > 0 for n in TRAINED)
        backbone_updates = [layers[n].update_data_ratio for n in FROZEN]
        if s.step <= 4:
            assert backbone_updates == [None, None]
        elif s.step <= 8:
            assert backbone_updates == [0.0, 0.0] and all(layers[n].grad_norm > 0 for n in FROZEN)
        else:
            assert all(0 < u < 1 for u in backbone_updates)


def test_probes_alone_on_a_frozen_layer_under_plain_sgd(digits):
    """The engine's Probes, as the seed's trainer drives them: plain SGD over the trainable parameters reads
    their update from its state, and the frozen layer is neither copied nor given an update."""
    model = build_model(RunConfig(depth=2, width=24, seed=4))
    model.fc1.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    probes = Probes(model)
    probes.arm()
    F.cross_entropy(model(digits.x_train[:40]), digits.y_train[:40]).backward()
    probes.collect_grads(opt)
    assert probes._update_from == ["frozen", "sgd", "sgd"] and probes._w_before == [None, None, None]
    opt.step()
    probes.collect_update()
    stats, _ = probes.finish()
    assert [s.update_data_ratio is None for s in stats] == [True, False, False]
    for s in stats[1:]:
        w = getattr(model, s.name).weight
        expect = (0.05 * opt.state[w]["momentum_buffer"]).std() / w.detach().std()
        assert s.update_data_ratio == pytest.approx(expect.item(), rel=1e-3)


# ------------------------------------------------------------------------------------------ dead units
_GRID = torch.linspace(-20, 20, 40001)


def _reference_dead(fn, z: torch.Tensor, unit_axis: int) -> tuple[float, float]:
    """(saturated fraction, dead fraction) of activation `fn` at its input z, by autograd: saturated where
    |fn'(z)| < 5% of its largest |derivative|; dead where a unit is saturated at every other index."""
    z = z.detach().requires_grad_(True)
    (d,) = torch.autograd.grad(fn(z).sum(), z)
    g = _GRID.clone().requires_grad_(True)
    (dg,) = torch.autograd.grad(fn(g).sum(), g)
    sat = d.abs() < 0.05 * dg.abs().max()
    per_unit = sat.movedim(unit_axis, -1).reshape(-1, sat.shape[unit_axis])
    return sat.float().mean().item(), per_unit.all(0).float().mean().item()


def _probe_once(model: nn.Module, x: torch.Tensor):
    probes = Probes(model)
    probes.arm()
    model(x).float().pow(2).mean().backward()
    stats, _ = probes.finish()
    model.zero_grad()
    return stats


def _kill(layer: nn.Module, units: list[int], bias: float) -> None:
    """Units that see no input, only `bias`: dead on every example, token and pixel."""
    with torch.no_grad():
        layer.weight[units] = 0.0
        layer.bias[units] = bias


@pytest.mark.parametrize("shape", [(4, 10, 16), (2, 3, 5, 16), (7, 16), (16,)])
def test_dead_frac_of_a_linear_layer_counts_its_features_on_any_input(shape):
    """A Linear applied to (batch, tokens, features), (batch, heads, tokens, features), (batch, features) or one
    unbatched vector: its units are the last axis. 8 of 64 GELU units dead on every token read 8/64."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 4))
    dead = list(range(3, 64, 8))
    _kill(model[0], dead, -10.0)
    x = torch.randn(*shape)
    (fc, _) = _probe_once(model, x)
    sat, expect = _reference_dead(F.gelu, model[0](x), -1)
    assert fc.dead_frac == pytest.approx(expect, abs=1e-12) and fc.saturated_frac == pytest.approx(sat, abs=1e-6)
    if len(shape) > 1:  # on a batch, exactly the killed units
        assert fc.dead_frac == 8 / 64


@pytest.mark.parametrize("conv, act, fn, x_shape, dead, bias", [
    (nn.Conv2d(3, 16, 3), nn.ReLU(), F.relu, (4, 3, 8, 8), [1, 5, 9, 13], -1.0),
    (nn.Conv2d(3, 16, 3), nn.ReLU(), F.relu, (3, 8, 8), [0, 15], -1.0),  # unbatched: channels first
    (nn.Conv1d(2, 8, 3), nn.Tanh(), torch.tanh, (4, 2, 20), [0, 6], 10.0),
    (nn.Conv3d(1, 4, 2), nn.Sigmoid(), torch.sigmoid, (2, 1, 4, 4, 4), [2], -12.0),
])
def test_dead_frac_of_a_convolution_counts_its_channels(conv, act, fn, x_shape, dead, bias):
    torch.manual_seed(1)
    _kill(conv, dead, bias)
    model = nn.Sequential(conv, act)
    x = torch.randn(*x_shape)
    (layer,) = _probe_once(model, x)
    channels = 0 if len(x_shape) == conv.weight.dim() - 1 else 1
    sat, expect = _reference_dead(fn, conv(x), channels)
    assert layer.dead_frac == len(dead) / conv.out_channels == pytest.approx(expect, abs=1e-12)
    assert layer.saturated_frac == pytest.approx(sat, abs=1e-6)


class Tokens(nn.Module):
    """The digits as 16 tokens of 49 pixels: a per-token Linear and GELU, averaged over tokens, then a head."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(49, 64)
        self.act = nn.GELU()
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.act(self.mix(x.reshape(-1, 16, 49))).mean(1))


def test_dead_frac_through_vgtui_watch_on_tokens(digits, tmp_path):
    torch.manual_seed(2)
    model = Tokens()
    _kill(model.mix, list(range(0, 64, 8)), -10.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with vgtui.watch(model, tmp_path / "t.jsonl", every=2, optimizer=opt, quiet=True):
        for x, y in _batches(digits, 5):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    snaps = _run(tmp_path / "t.jsonl").snapshots
    assert [s.step for s in snaps] == [1, 2, 4]
    assert [s.layers[0].dead_frac for s in snaps] == [8 / 64] * 3  # tokens read 0.0 before (dim 1 as units)


# ------------------------------------------------------------------------------------------ hostile sizes
def _loop(model, path, metrics_at, steps=4, every=1):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(8, 784), torch.randint(0, 10, (8,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with vgtui.watch(model, path, every=every, optimizer=opt, quiet=True) as probe:
            for i in range(steps):
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
                probe.step(metrics=metrics_at(i))
    return _watch_warnings(caught), _run(path)


def test_ten_thousand_metrics_are_capped_with_one_line(tmp_path):
    model = build_model(RunConfig(depth=1, width=8, seed=0))
    said, run = _loop(model, tmp_path / "m.jsonl",
                      lambda i: {"acc": 0.5 + i, **{f"m{j}": torch.tensor(float(j)) for j in range(10_000)}})
    assert len(said) == 1 and "\n" not in said[0]
    assert f"9,745 metrics left out at step 1: a run records at most {MAX_METRICS} metric names" in said[0]
    for i, s in enumerate(run.snapshots):
        assert list(s.metrics) == ["acc", *(f"m{j}" for j in range(MAX_METRICS - 1))]
        assert s.metrics["acc"] == 0.5 + i and s.metrics["m254"] == 254.0
    assert max(len(line) for line in (tmp_path / "m.jsonl").read_bytes().splitlines()) < 64_000


def test_metric_names_that_grow_every_step_stop_at_the_cap(tmp_path):
    """A name per step (f"loss_{step}"): the run's first MAX_METRICS names are kept, every later new one is left
    out, and names already recorded go on being recorded."""
    model = build_model(RunConfig(depth=1, width=8, seed=0))
    said, run = _loop(model, tmp_path / "g.jsonl", lambda i: {"acc": 1.0, **{f"s{i}_{j}": j for j in range(100)}})
    assert len(said) == 1 and "45 metrics left out at step 3" in said[0]
    assert [len(s.metrics) for s in run.snapshots] == [101, 101, 56, 1]
    assert all(s.metrics["acc"] == 1.0 for s in run.snapshots)


def test_absurd_metric_names_are_left_out_and_odd_keys_are_text(tmp_path):
    model = build_model(RunConfig(depth=1, width=8, seed=0))
    edge = "n" * MAX_METRIC_NAME
    said, run = _loop(model, tmp_path / "n.jsonl",
                      lambda i: {"x" * 5000: 1.0, edge: 2.0, 7: 3.0, "\x1b]0;PWNED\x07" * 30: 4.0, "ok": i})
    assert len(said) == 1 and f"2 metric names over {MAX_METRIC_NAME} characters left out at step 1" in said[0]
    assert all(s.metrics == {edge: 2.0, "7": 3.0, "ok": float(i)} for i, s in enumerate(run.snapshots))


def test_a_metric_that_is_not_one_number_is_refused_at_the_call(tmp_path):
    model = build_model(RunConfig(depth=1, width=8, seed=0))
    with vgtui.watch(model, tmp_path / "t.jsonl", quiet=True) as p:
        model(torch.randn(2, 784)).sum().backward()
        with pytest.raises(TypeError, match=r"metrics\['acc'\] = a tensor of shape \(2,\) is not a number"):
            p.step(metrics={"acc": torch.tensor([0.5, 0.6])})
        p.step(metrics={"acc": torch.tensor([[0.5]])})  # one value, any shape
