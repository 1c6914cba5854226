"""vgtui.watch on users' models and loops: the file it writes, its numbers against plain torch, and each "works with"
case (mixed precision, in-place activations, modules called twice, eval() validation, torch.compile, a hook that
fails, NaN gradients), the end status, and that close() leaves no hook behind."""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vgtui
from conftest import ROOT
from vgtui.core.config import RunConfig
from vgtui.core.metrics import read_metrics
from vgtui.engine.model import build_model
from vgtui.watching import COMPILED_NOTICE, WatchWarning, select_layers


def _run(path):
    (run,) = read_metrics(path)
    return run


def _batches(digits, n, size=50):
    return [(digits.x_train[i * size:(i + 1) * size], digits.y_train[i * size:(i + 1) * size]) for i in range(n)]


def _mlp(seed=0):
    return build_model(RunConfig(depth=3, width=32, seed=seed))


def _train(model, batches, path, every=5, manual=False, **kw):
    """The five-line loop of the README; manual: without optimizer=, probe.step() counts the steps."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with vgtui.watch(model, metrics=path, every=every, optimizer=None if manual else opt, quiet=True, **kw) as p:
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            p.step(loss=loss)
    return p


def test_import_vgtui_stays_torch_free():
    code = "import sys, vgtui; a = 'torch' in sys.modules; vgtui.watch; print(a, 'torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.stdout.split() == ["False", "True"], r.stderr


def test_file_header_snapshots_and_numbers_match_plain_torch(digits, tmp_path):
    model, ref = _mlp(), _mlp()
    batches = _batches(digits, 12)
    p = _train(model, batches, tmp_path / "run.jsonl")
    assert p.steps == 12 and p.snapshots == 3
    run = _run(tmp_path / "run.jsonl")
    h = run.header
    assert h.source == "vgtui.watch" and h.config is None and h.probe_every == 5 and h.device == "cpu"
    assert h.model == f"MLP, {sum(q.numel() for q in model.parameters()):,} parameters"
    assert [(l.name, l.kind, l.activation) for l in h.layers] == [
        ("fc1", "Linear", "sigmoid"), ("fc2", "Linear", "sigmoid"), ("fc3", "Linear", "sigmoid"),
        ("fc4", "Linear", None)]
    assert [s.step for s in run.snapshots] == [1, 5, 10]
    assert run.end.status == "completed" and run.end.steps == 12

    # step 1 by hand: gradients before the step, activations of the batch, the update after it
    x, y = batches[0]
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    acts = {}
    hooks = [getattr(ref, f"act{i}").register_forward_hook(lambda m, i, o, n=f"fc{i}": acts.__setitem__(n, o))
             for i in (1, 2, 3)]
    loss = F.cross_entropy(ref(x), y)
    loss.backward()
    for h_ in hooks:
        h_.remove()
    before = {n: getattr(ref, n).weight.detach().clone() for n in ("fc1", "fc2", "fc3", "fc4")}
    grads = {n: getattr(ref, n).weight.grad.clone() for n in before}
    opt.step()
    snap = run.snapshots[0]
    assert snap.loss == pytest.approx(loss.item(), rel=1e-6) and snap.loss_avg == pytest.approx(loss.item(), rel=1e-6)
    for s in snap.layers:
        w, g = before[s.name], grads[s.name]
        assert s.grad_norm == pytest.approx(g.norm().item(), rel=1e-5)
        assert s.weight_norm == pytest.approx(w.norm().item(), rel=1e-5)
        after = getattr(ref, s.name).weight.detach()
        assert s.update_data_ratio == pytest.approx(((after - w).std() / w.std()).item(), rel=1e-4)
        if s.name in acts:
            assert s.act_mean == pytest.approx(acts[s.name].mean().item(), rel=1e-5)
    # loss_avg is the mean of the losses given since the previous snapshot
    assert run.snapshots[1].loss_avg != run.snapshots[1].loss
    # the histograms' edges are written once, in the header: the snapshots' lines leave them out, and read back whole
    lines = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert len(lines[0]["grad_edges"]) == 55 and len(lines[0]["act_edges"]["sigmoid"]) == 41
    hists = [hist for d in lines if d["type"] == "snapshot" for layer in d["layers"] for k, hist in layer.items()
             if k.endswith("_hist")]
    assert len(hists) == 3 * (4 + 3 + 3) and not any("edges" in hist for hist in hists)
    assert all(s.grad_hist.edges.tolist() == h.grad_edges.tolist() and len(s.grad_hist.counts) == 54
               for snap in run.snapshots for s in snap.layers)
    assert [len(s.act_hist.edges) for s in snap.layers if s.act_hist] == [41] * 3


def test_without_optimizer_probe_step_counts_and_the_numbers_are_the_same(digits, tmp_path):
    batches = _batches(digits, 11)
    _train(_mlp(), batches, tmp_path / "opt.jsonl")
    p = _train(_mlp(), batches, tmp_path / "manual.jsonl", manual=True)
    assert p.steps == 11
    a, b = _run(tmp_path / "opt.jsonl"), _run(tmp_path / "manual.jsonl")
    assert [s.step for s in b.snapshots] == [1, 5, 10] and b.end.steps == 11
    for sa, sb in zip(a.snapshots, b.snapshots):
        assert sb.loss == sa.loss
        for la, lb in zip(sa.layers, sb.layers):
            for k in ("grad_norm", "weight_norm", "grad_data_ratio", "act_mean", "saturated_frac"):
                assert getattr(lb, k) == pytest.approx(getattr(la, k), rel=1e-6, nan_ok=True), k
            # the SGD momentum buffer (optimizer=) and the weights' difference (probe.step) agree
            assert lb.update_data_ratio == pytest.approx(la.update_data_ratio, rel=1e-3)


class Twice(nn.Module):
    """In-place ReLUs, a Linear called twice per step, a Conv, modules registered out of forward order."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 10)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.shared = nn.Linear(16, 16)
        self.act2 = nn.Tanh()

    def forward(self, x):
        h = self.pool(self.act(self.conv(x))).flatten(1)
        h = self.act2(self.shared(h))
        return self.head(self.shared(h))


def test_inplace_activations_and_a_module_called_twice(tmp_path):
    torch.manual_seed(0)
    net = Twice()
    ref = copy.deepcopy(net)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    with vgtui.watch(net, tmp_path / "t.jsonl", every=2, optimizer=opt, quiet=True):
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    run = _run(tmp_path / "t.jsonl")
    assert [(l.name, l.kind, l.activation) for l in run.header.layers] == [
        ("conv", "Conv2d", "relu"), ("shared", "Linear", "tanh"), ("head", "Linear", None)]
    # no probe.step(): each probed step is written when the next one begins, without a loss
    assert [s.step for s in run.snapshots] == [1, 2] and math.isnan(run.snapshots[0].loss)
    F.cross_entropy(ref(x), y).backward()
    z = ref.conv(x)
    conv, shared, _ = run.snapshots[0].layers
    assert conv.act_mean == pytest.approx(torch.relu(z).mean().item(), rel=1e-5)
    assert conv.saturated_frac == pytest.approx((z <= 0).float().mean().item(), abs=1e-6)  # from the input
    # both calls' gradients, accumulated; the activation of the first call
    assert shared.grad_norm == pytest.approx(ref.shared.weight.grad.norm().item(), rel=1e-5)
    with torch.no_grad():
        h = ref.pool(torch.relu(z)).flatten(1)
        assert shared.act_mean == pytest.approx(torch.tanh(ref.shared(h)).mean().item(), rel=1e-5)


def test_eval_validation_between_steps_is_not_probed(digits, tmp_path):
    model, ref = _mlp(), _mlp()
    batches = _batches(digits, 6)
    val = digits.x_test[:200]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with vgtui.watch(model, tmp_path / "v.jsonl", every=5, optimizer=opt, quiet=True) as p:
        for x, y in batches:
            model.eval()
            with torch.no_grad():
                model(val)  # validation before each step, in the probed steps' window
            model.train()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.eval()
            model(val)  # and after it, in eval() even with autograd on
            model.train()
            p.step(loss=loss)
    run = _run(tmp_path / "v.jsonl")
    assert [s.step for s in run.snapshots] == [1, 5]
    with torch.no_grad():
        expect = torch.sigmoid(ref.fc1(batches[0][0])).mean().item()
    assert run.snapshots[0].layer("fc1").act_mean == pytest.approx(expect, rel=1e-5)


def test_select_layers_by_name_glob_type_and_predicate():
    model = build_model(RunConfig(depth=3, width=8, batchnorm=True))
    names = lambda spec: [n for n, _ in select_layers(model, spec)]  # noqa: E731
    assert names(None) == ["fc1", "fc2", "fc3", "fc4"]
    assert names("fc2") == ["fc2"]
    assert names("bn*") == ["bn1", "bn2", "bn3"]
    assert names([nn.BatchNorm1d, "fc4"]) == ["bn1", "bn2", "bn3", "fc4"]
    assert names(lambda n, m: n.endswith("1")) == ["fc1", "bn1"]
    with pytest.raises(ValueError, match="no module of MLP matches layers='fc9'"):
        select_layers(model, "fc9")
    with pytest.raises(ValueError, match="act1 .Activation. has no weight"):
        select_layers(model, "act1")
    with pytest.raises(ValueError, match="matches no module with a weight"):
        select_layers(model, nn.Sigmoid)
    with pytest.raises(TypeError, match="layers= takes"):
        select_layers(model, 3)


def test_layers_option_probes_the_chosen_modules(digits, tmp_path):
    model = build_model(RunConfig(depth=2, width=16, batchnorm=True))
    _train(model, _batches(digits, 2), tmp_path / "l.jsonl", every=1, layers=["fc1", nn.BatchNorm1d])
    run = _run(tmp_path / "l.jsonl")
    assert [(l.name, l.kind) for l in run.header.layers] == [("fc1", "Linear"), ("bn1", "BatchNorm1d"),
                                                              ("bn2", "BatchNorm1d")]
    assert run.snapshots[0].layer("bn1").grad_norm > 0
    assert run.snapshots[0].layer("bn2").activation == "sigmoid"


def _hook_count(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    """Every hook PyTorch can hold for this model and optimiser: each module's hook dicts, each parameter's
    tensor hooks, the optimiser's own, and the global module and optimiser hooks."""
    n = 0
    for m in model.modules():
        n += sum(len(v) for k, v in vars(m).items() if "hooks" in k and isinstance(v, dict))
    for p in model.parameters():
        n += sum(len(getattr(p, k) or {}) for k in ("_backward_hooks", "_post_accumulate_grad_hooks"))
    n += sum(len(v) for k, v in vars(opt).items() if "hooks" in k and isinstance(v, dict))
    mod, optim = importlib.import_module("torch.nn.modules.module"), importlib.import_module("torch.optim.optimizer")
    n += sum(len(v) for k, v in vars(mod).items() if k.startswith("_global") and "hooks" in k and isinstance(v, dict))
    n += sum(len(v) for k, v in vars(optim).items() if k.startswith("_global") and isinstance(v, dict))
    return n


@pytest.mark.parametrize("ending", ["close", "with", "exception", "mid-step"])
def test_close_leaves_no_hook_behind(tmp_path, ending):
    model = Twice()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    before = _hook_count(model, opt)
    p = vgtui.watch(model, tmp_path / "h.jsonl", every=2, optimizer=opt, quiet=True)
    # armed for step 1: 3 layers, 2 activations (the in-place one twice), the model's root, the optimiser's 2
    assert _hook_count(model, opt) - before == 3 + 3 + 1 + 2

    def loop():
        for _ in range(3):
            loss = F.cross_entropy(model(x), y)
            if ending == "mid-step":
                return
            opt.zero_grad()
            loss.backward()
            opt.step()
        if ending == "exception":
            raise ZeroDivisionError("boom")

    if ending == "close":
        loop()
        p.close()
    else:
        with contextlib.suppress(ZeroDivisionError), p:
            loop()
    assert _hook_count(model, opt) == before
    p.close()  # twice is fine
    assert _run(tmp_path / "h.jsonl").end.status == ("failed" if ending == "exception" else "completed")


def test_end_status_failed_interrupted_and_at_exit(digits, tmp_path):
    model = _mlp()
    with pytest.raises(RuntimeError, match="lost the plot"):
        with vgtui.watch(model, tmp_path / "f.jsonl", quiet=True) as p:
            p.step()
            raise RuntimeError("lost the plot")
    end = _run(tmp_path / "f.jsonl").end
    assert end.status == "failed" and end.message == "RuntimeError: lost the plot" and end.steps == 1
    assert "raise RuntimeError" in end.traceback
    with pytest.raises(KeyboardInterrupt):
        with vgtui.watch(model, tmp_path / "i.jsonl", quiet=True):
            raise KeyboardInterrupt
    assert _run(tmp_path / "i.jsonl").end.status == "interrupted"
    # no with, no close(): the file still ends, with the uncaught exception
    script = textwrap.dedent(f"""
        import torch, vgtui
        model = torch.nn.Sequential(torch.nn.Linear(4, 2))
        probe = vgtui.watch(model, {str(tmp_path / 'x.jsonl')!r}, quiet=True)
        model(torch.randn(3, 4)).sum().backward()
        probe.step()
        raise ValueError("forgot to close")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and "forgot to close" in r.stderr
    run = _run(tmp_path / "x.jsonl")
    assert run.end.status == "failed" and run.end.message == "ValueError: forgot to close"
    assert [s.step for s in run.snapshots] == [1]


def test_nan_gradient_is_recorded_named_and_training_goes_on(digits, tmp_path):
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    batches = _batches(digits, 6)
    with pytest.warns(WatchWarning, match="non-finite weight gradient in fc2 at step 2"):
        with vgtui.watch(model, tmp_path / "n.jsonl", every=2, optimizer=opt, quiet=True) as p:
            for i, (x, y) in enumerate(batches):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                if i == 1:
                    model.fc2.weight.grad[0, 0] = float("nan")
                opt.step()
                p.step(loss=loss)
    run = _run(tmp_path / "n.jsonl")
    assert run.end.status == "completed" and run.end.steps == 6
    s2 = run.snapshots[1]
    assert s2.step == 2 and math.isnan(s2.layer("fc2").grad_norm) and math.isfinite(s2.layer("fc1").grad_norm)
    assert s2.layer("fc2").grad_hist.over >= 1  # the NaN is counted, not dropped
    (ev,) = [e for e in run.events if "nonfinite" in e.set]
    assert ev.step == 2 and ev.set["nonfinite"].startswith("non-finite weight gradient in fc2")


def test_a_failing_hook_turns_off_its_statistics_only(tmp_path):
    """PReLU with one slope per channel cannot run on vgtui's 1-D grid for its largest derivative."""
    net = nn.Sequential(nn.Linear(6, 8), nn.PReLU(8), nn.Linear(8, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.warns(WatchWarning, match=r"statistics at 1 \(PReLU\) are off: RuntimeError"):
        with vgtui.watch(net, tmp_path / "p.jsonl", every=1, optimizer=opt, quiet=True):
            for _ in range(2):
                opt.zero_grad()
                net(torch.randn(5, 6)).sum().backward()
                opt.step()
    run = _run(tmp_path / "p.jsonl")
    assert run.end.status == "completed" and len(run.snapshots) == 2
    assert all(math.isfinite(l.grad_norm) and l.act_mean is None for s in run.snapshots for l in s.layers)


def test_a_failure_inside_vgtui_never_stops_the_training(digits, tmp_path, monkeypatch):
    """Fault injection: the one host copy fails at the second snapshot; the loop runs to its end."""
    from vgtui.engine.probes import Probes

    calls = []

    def finish(self, extra=()):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("device lost")
        return real_finish(self, extra)

    real_finish = Probes.finish
    monkeypatch.setattr(Probes, "finish", finish)
    model = _mlp()
    before = _hook_count(model, torch.optim.SGD(model.parameters(), lr=0.05))
    with pytest.warns(WatchWarning, match="probes off from step 5: RuntimeError: device lost"):
        p = _train(model, _batches(digits, 8), tmp_path / "e.jsonl", every=5, manual=True)
    assert p.steps == 8
    run = _run(tmp_path / "e.jsonl")
    assert [s.step for s in run.snapshots] == [1]
    assert [(e.step, e.set) for e in run.events] == [(5, {"probes": "off: RuntimeError: device lost"})]
    assert run.end.status == "completed" and run.end.steps == 8
    assert run.end.message == "8 steps (vgtui's probes stopped: RuntimeError: device lost)"
    assert _hook_count(model, torch.optim.SGD(model.parameters(), lr=0.05)) == before


def test_autocast_bfloat16_and_gradscaler_unscaled_gradients_and_skipped_steps(digits, tmp_path):
    """GradScaler on the CPU: the probes see unscaled gradients, and a step the scaler skips is noted, with or
    without optimizer=."""
    batches = _batches(digits, 4)
    for manual in (False, True):
        model, ref = _mlp(), _mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
        path = tmp_path / f"amp{manual}.jsonl"
        with vgtui.watch(model, path, every=2, optimizer=None if manual else opt, scaler=scaler, quiet=True) as p:
            for i, (x, y) in enumerate(batches):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                scaler.scale(loss * (float("inf") if i == 1 else 1.0)).backward()  # step 2: inf gradients
                scaler.step(opt)
                scaler.update()
                p.step(loss=loss)
        run = _run(path)
        assert [e.step for e in run.events if "skipped" in e.set] == [2], manual
        assert not [e for e in run.events if "nonfinite" in e.set]
        # the probe due at the skipped step 2 is taken at the next step taken
        assert [s.step for s in run.snapshots] == [1, 3, 4]
        assert all(math.isfinite(l.grad_norm) for s in run.snapshots for l in s.layers)
        # step 1 against the same step without a scaler
        with torch.autocast("cpu", dtype=torch.bfloat16):
            F.cross_entropy(ref(batches[0][0]), batches[0][1]).backward()
        for s in run.snapshots[0].layers:
            assert s.grad_norm == pytest.approx(getattr(ref, s.name).weight.grad.norm().item(), rel=1e-5)
        assert run.snapshots[0].layer("fc1").activation == "sigmoid"


@pytest.mark.parametrize("how", ["torch.compile(model)", "model.compile()"])
def test_torch_compile_reads_gradients_and_says_activations_are_off(digits, tmp_path, how):
    model, ref = _mlp(), _mlp()
    if how == "model.compile()":
        model.compile(backend="aot_eager")
        compiled = model
    else:
        compiled = torch.compile(model, backend="aot_eager")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = _batches(digits, 1)[0]
    with pytest.warns(WatchWarning, match="torch.compile'd model: activation statistics are off"):
        with vgtui.watch(compiled, tmp_path / "c.jsonl", every=2, optimizer=opt, quiet=True):
            for _ in range(3):
                opt.zero_grad()
                F.cross_entropy(compiled(x), y).backward()
                opt.step()
    run = _run(tmp_path / "c.jsonl")
    assert run.header.notice == COMPILED_NOTICE
    assert run.header.layer_names == ("fc1", "fc2", "fc3", "fc4")  # the model's own names, not _orig_mod.fc1
    assert [s.step for s in run.snapshots] == [1, 2]
    F.cross_entropy(ref(x), y).backward()
    for s in run.snapshots[0].layers:
        assert s.act_mean is None and s.activation is None
        assert s.grad_norm == pytest.approx(getattr(ref, s.name).weight.grad.norm().item(), rel=1e-5)
        assert math.isfinite(s.update_data_ratio)


def test_other_ranks_record_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = _hook_count(model, opt)
    with vgtui.watch(model, tmp_path / "r.jsonl", optimizer=opt) as p:
        assert not p.active and _hook_count(model, opt) == before
        p.step(loss=1.0)
    assert not (tmp_path / "r.jsonl").exists()


def test_bad_arguments_say_so_in_one_line(tmp_path):
    model = _mlp()
    with pytest.raises(ValueError, match=r"^vgtui.watch: metrics=.*nope/run.jsonl: folder .* does not exist$"):
        vgtui.watch(model, tmp_path / "nope" / "run.jsonl")
    with pytest.raises(ValueError, match="every=0"):
        vgtui.watch(model, tmp_path / "a.jsonl", every=0)
    with pytest.raises(TypeError, match="expected a torch.nn.Module, got function"):
        vgtui.watch(lambda x: x, tmp_path / "a.jsonl")
    with vgtui.watch(model, tmp_path / "a.jsonl", quiet=True) as p:
        with pytest.raises(TypeError, match=r"metrics\['acc'\] = 'high' is not a number"):
            p.step(metrics={"acc": "high"})


def test_metrics_go_into_the_snapshot(digits, tmp_path):
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with vgtui.watch(model, tmp_path / "m.jsonl", every=2, optimizer=opt, quiet=True) as p:
        for x, y in _batches(digits, 2):
            logits = model(x)
            opt.zero_grad()
            F.cross_entropy(logits, y).backward()
            opt.step()
            p.step(metrics={"acc": (logits.argmax(1) == y).float().mean(), "lr": 0.05})
    assert p.last_metrics["lr"] == 0.05
    snaps = _run(tmp_path / "m.jsonl").snapshots
    assert snaps[1].metrics == p.last_metrics and 0 <= snaps[1].metrics["acc"] <= 1
