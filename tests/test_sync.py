"""No host sync on ordinary steps: a step that is neither a snapshot nor a progress tick turns no tensor into a
Python value (on a GPU each such conversion would stall the host until the device caught up)."""

import contextlib

import pytest
import torch

from vgtui.engine.trainer import Trainer

# Every way a tensor's value reaches Python: each blocks the host on a GPU.
SYNCING = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "cpu", "numpy")


class Forbidden(AssertionError):
    pass


@contextlib.contextmanager
def tensor_values_forbidden(when):
    """Patch torch.Tensor's value conversions to raise while `when()` is true."""
    originals = {name: getattr(torch.Tensor, name) for name in SYNCING}

    def guard(name, original):
        def patched(self, *args, **kwargs):
            if when():
                raise Forbidden(f"Tensor.{name} on an ordinary step")
            return original(self, *args, **kwargs)
        return patched

    for name, original in originals.items():
        setattr(torch.Tensor, name, guard(name, original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def _ordinary_steps_run(digits, small, forbid_cuda_sync=False):
    """Train 20 steps with snapshots at 1, 10, 20 and a clock that never moves (so no progress tick): the
    steps in between must not read a tensor. Returns the steps that ran under the guard."""
    special = {1, 10, 20}
    state = {"forbidden": False, "guarded": []}

    def on_step(trainer):  # after step k: the next step (k + 1) runs under the guard unless it is special
        if forbid_cuda_sync:
            torch.cuda.set_sync_debug_mode(0)
        state["forbidden"] = trainer.step + 1 not in special and trainer.step < 20
        if state["forbidden"]:
            state["guarded"].append(trainer.step + 1)
            if forbid_cuda_sync:
                torch.cuda.set_sync_debug_mode("error")

    cfg = small.replace(max_steps=20, probe_every=10, epochs=1)
    trainer = Trainer(cfg, [], data=digits, on_step=on_step, clock=lambda: 0.0)
    with tensor_values_forbidden(lambda: state["forbidden"]):
        try:
            end = trainer.run()
        finally:
            if forbid_cuda_sync:
                torch.cuda.set_sync_debug_mode(0)
    assert end.status == "completed" and end.steps == 20
    return state["guarded"]


def test_ordinary_steps_turn_no_tensor_into_a_python_value(digits, small):
    guarded = _ordinary_steps_run(digits, small)
    assert guarded == [s for s in range(2, 20) if s != 10]


def test_the_guard_catches_a_sync():
    """The guard itself works: bool() of a tensor under it raises."""
    with tensor_values_forbidden(lambda: True), pytest.raises(Forbidden):
        bool(torch.ones(()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for torch.cuda.set_sync_debug_mode")
def test_ordinary_steps_do_not_sync_on_cuda(digits, small):
    guarded = _ordinary_steps_run(digits.to("cuda"), small.replace(device="cuda"), forbid_cuda_sync=True)
    assert len(guarded) == 17


def test_no_host_sync_and_no_collective_on_an_ordinary_step_on_every_rank():
    """An FSDP2 job of two ranks (tests/dist_worker.py, mode sync): on every rank, no tensor becomes a Python value
    in vgtui's code and the watch's own group is not used, on the steps between snapshots; its collectives come at
    the probed steps 1, 2, 4, 6 alone."""
    import re

    from distjobs import job

    _, out = job(2)
    lines = {int(m.group(1)): m.group(2) for m in re.finditer(r"sync rank (\d): (.*)", out)}
    assert set(lines) == {0, 1}
    for line in lines.values():
        assert line == ("host syncs on ordinary steps [], watch collectives on ordinary steps [], "
                        "watch collectives at steps [1, 2, 4, 6]")

def test_the_flight_recorder_adds_no_sync_to_an_ordinary_step(digits, small):
    """The flight recorder (on by default) records every step, guarded ones included, without reading a tensor;
    the same in vgtui.watch, whose ordinary steps (not probed, not a flight check) read none either. With Adam (which
    reads its own step count, a CPU tensor, on every step) the recorder's own work is checked under the guard."""
    import tempfile

    import torch.nn.functional as F
    from torch import nn

    import vgtui
    from vgtui.engine.flight import FlightRecorder

    assert small.flight
    assert _ordinary_steps_run(digits, small) == [s for s in range(2, 20) if s != 10]

    model = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9)
    forbidden = {"on": False}
    with tempfile.TemporaryDirectory() as d, tensor_values_forbidden(lambda: forbidden["on"]):
        with vgtui.watch(model, f"{d}/w.jsonl", every=10, optimizer=opt, quiet=True) as probe:
            for step in range(1, 21):
                forbidden["on"] = step not in (1, 10, 20)
                loss = F.cross_entropy(model(digits.x_train[:32]), digits.y_train[:32])
                opt.zero_grad()
                loss.backward()
                opt.step()
                probe.step(loss)
                forbidden["on"] = False
    assert list(probe._flight.h_steps) == list(range(1, 21))

    adam = torch.optim.Adam(model.parameters())
    flight = FlightRecorder([("0", model[0]), ("2", model[2])], adam, "cpu")
    for step in range(1, 6):
        loss = F.cross_entropy(model(digits.x_train[:32]), digits.y_train[:32])
        adam.zero_grad()
        loss.backward()
        adam.step()
        with tensor_values_forbidden(lambda: True):
            flight.record(step, loss)
    flight.check()
    assert flight.metric == "step_norm" and list(flight.h_steps) == [1, 2, 3, 4, 5]
    assert (flight.h_vals[:, 1:] > 0).all()


class _Ops:
    """Counts the operations dispatched to a kernel (views left out) while it is active: each one a launch on a
    GPU, and a dispatch and a thread wake-up on the CPU, whatever the size of its tensors."""

    def __init__(self):
        import collections

        from torch.utils._python_dispatch import TorchDispatchMode

        counts = self.counts = collections.Counter()

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if not func.is_view:
                    counts[str(func.overloadpacket)] += 1
                return func(*args, **(kwargs or {}))

        self.mode = Mode()

    def __enter__(self):
        self.mode.__enter__()
        return self.counts

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def test_an_ordinary_step_adds_a_few_operations_to_the_bare_loop(digits, small):
    """The engine's ordinary step (not probed) runs every operation of a bare PyTorch step of the same network and
    a few more: the loss's sum (which is also the divergence check: a NaN stays in it), the hits per position (argmax,
    eq, add) and the flight recorder's row. On an accelerator the row is one fused norm and one stack, six in all:
    it was 16 before the divergence check and the accuracy moved into those sums, and on a GPU, whose step of the
    seed's network is launch-bound, each is a launch. On the CPU the row is one norm per tensor written into its
    cell and a copy of the loss (torch's fused norm is a loop of norms there, and the stack one call more)."""
    import torch.nn.functional as F

    from vgtui.engine.model import build_model, build_optimizer

    assert small.flight
    t = Trainer(small, [], data=digits)
    t.prepare()
    x, y = digits.x_train[:100], digits.y_train[:100]
    model = build_model(small)
    opt = build_optimizer(small, model)

    def bare():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # past the first steps' own work (the momentum buffers, the accumulator's first shape)
        t.main.train_step(x, y, False)
        bare()
    with _Ops() as engine:
        t.main.train_step(x, y, False)
    with _Ops() as plain:
        bare()
    assert sum(plain.values()) > 20 and not plain - engine  # the bare step's operations, all of them in the engine's
    extra = engine - plain
    flight = t.main.flight
    assert not flight.fused and flight.metric == "update_norm"  # the CPU's row: gradients, momentum buffers, weights
    assert dict(extra) == {"aten.add_": 2, "aten.argmax": 1, "aten.eq": 1, "aten.copy_": 1,
                           "aten.linalg_vector_norm": 3 * len(flight.weights)}
    flight.fused = True  # an accelerator's row
    with _Ops() as engine:
        t.main.train_step(x, y, False)
    extra = engine - plain
    assert sum(extra.values()) == 6, dict(extra)
    assert extra["aten._foreach_norm"] == 1 and extra["aten.stack"] == 1
