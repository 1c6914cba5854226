"""A fork's branch is an exact copy of the run: forked mid-window (between a progress tick and the next snapshot),
mid-epoch and again right after a snapshot, the run's records and an unchanged branch B's are those of a run that
was never forked, field by field (loss_avg, steps/s, the epoch's train loss and accuracy included). The running
sums are copied by `RunningSums.clone()`; the second test leaves each of its fields out of the clone in turn and
checks that the comparison sees it. Real torch on the embedded digits, a fake clock (time moves a fixed step per
training step), so that steps/s and progress ticks are exact."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
import torch

from vgtui.core.records import EndRecord, EpochRecord, Fork, ProgressRecord, RunRecord, Snapshot, to_json
from vgtui.engine.branch import RunningSums
from vgtui.engine.data import TensorData
from vgtui.engine.trainer import Trainer

PER_STEP = 1 / 16  # seconds a step (a binary fraction: exact times); a progress tick every 4 steps
# 20 steps an epoch, 30 steps; snapshots every 5 steps, progress ticks at 5, 9, 13, 17, ... Fork after step 10 (a
# snapshot that was no tick: the progress sums part-filled, the epoch's too), end it after 16; fork again after 18
# (a snapshot at 15, a tick at 17, a step since: the window's and the device's sums part-filled) and cross the
# epoch's end at 20 forked
SCRIPT = {10: [Fork(True)], 16: [Fork(False)], 18: [Fork(True)]}
FORK_STEPS = (10, 18)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def sums_differences(a: RunningSums, b: RunningSums, where: str) -> list[str]:
    """Every field of two branches' sums that differs."""
    out = []
    for f in dataclasses.fields(RunningSums):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor):
            assert x.data_ptr() != y.data_ptr(), f"{f.name}: the branches share a device tensor"
            x, y = x.sum().item(), y.sum().item()  # acc_correct holds one count per position in the batch
        if x != y and not (x != x and y != y):  # NaN is NaN
            out.append(f"{where}: sums.{f.name} {x!r} != {y!r}")
    return out


def train(cfg, digits, script=None, after=None, per_step=PER_STEP) -> list:
    """Run `cfg` under a fake clock that moves `per_step` a step, sending script[n] after step n;
    `after(trainer)` after every step."""
    clock, recs = FakeClock(), []

    def on_step(t: Trainer) -> None:
        if after is not None:
            after(t)
        for cmd in (script or {}).get(t.step, ()):
            t.send(cmd)
        clock.t += per_step

    end = Trainer(cfg, [recs.append], data=digits, clock=clock, on_step=on_step).run()
    recs.append(end)
    return recs


def comparable(rec, header: RunRecord) -> str:
    """A record as its JSON line would say it, less the branch it belongs to."""
    d = to_json(rec, header)
    d.pop("branch", None)
    return json.dumps(d, sort_keys=True)


def data_records(recs, branch=None) -> list:
    return [r for r in recs if isinstance(r, (Snapshot, EpochRecord, ProgressRecord)) and r.branch == branch]


_PLAIN: dict = {}  # the unforked run, per configuration (it does not change with the clone)


def fork_differences(cfg, digits) -> list[str]:
    """What differs between an unforked run and a forked one (A's records, each B's records from its fork to its
    end, and A's and B's sums as B starts), as lines; [] when the fork is exact."""
    key = (cfg, id(digits))
    if key not in _PLAIN:
        _PLAIN[key] = train(cfg, digits)
    plain = _PLAIN[key]
    header = plain[0]
    by_step = {(type(r).__name__, r.step): comparable(r, header) for r in data_records(plain)}
    out: list[str] = []

    def after(t: Trainer) -> None:  # the first step after each fork: both branches took it from the same state
        if t.fork is not None and t.step - 1 in FORK_STEPS:
            out.extend(sums_differences(t.main.sums, t.fork.sums, f"step {t.step}"))

    forked = train(cfg, digits, SCRIPT, after)
    a = [comparable(r, header) for r in data_records(forked)]
    if a != [comparable(r, header) for r in data_records(plain)]:
        out.append("A's records differ from the unforked run's")
    # B's records, per fork: from its header to its end record
    segments, current = [], None
    for r in forked:
        if getattr(r, "branch", None) != "B":
            continue
        if isinstance(r, RunRecord):
            current = []
            segments.append((r.forked_at, current))
        elif isinstance(r, EndRecord):
            current = None
        elif current is not None and isinstance(r, (Snapshot, EpochRecord, ProgressRecord)):
            current.append(r)
    if [at for at, _ in segments] != list(FORK_STEPS):
        out.append(f"forks at {[at for at, _ in segments]}, not {list(FORK_STEPS)}")
    kinds = {type(r).__name__ for _, recs in segments for r in recs}
    if kinds != {"Snapshot", "EpochRecord", "ProgressRecord"}:
        out.append(f"B has only {sorted(kinds)}")
    for at, recs in segments:
        for r in recs:
            key = (type(r).__name__, r.step)
            if comparable(r, header) != by_step.get(key):
                out.append(f"B forked at {at}: {key[0]} at step {r.step} differs from the unforked run's")
    return out


@pytest.fixture(scope="module")
def few(digits):
    """1,000 of the digits to train on, 200 to test on: 20 steps an epoch of 50."""
    return TensorData(digits.name, digits.x_train[:1000], digits.y_train[:1000], digits.x_test[:200],
                      digits.y_test[:200])


@pytest.fixture
def cfg(small):
    return small.replace(epochs=2, max_steps=30, probe_every=5, batch_size=50, width=32)


def test_a_fork_is_the_run_number_for_number(cfg, few):
    assert fork_differences(cfg, few) == []


def test_the_nan_step_not_yet_seen_is_forked_too(few, small):
    """A step went non-finite (ReLU + Kaiming at lr 1.0: step 5 here) and no check has read it yet (a clock that
    never moves: no tick, no snapshot before the epoch's last step) when the run forks: B knows it too, and the
    kept B ends where the unforked run does, naming the same step and layer."""
    cfg = small.replace(activation="relu", init="kaiming", lr=1.0, depth=5, max_steps=20, probe_every=None,
                        batch_size=50)
    plain = train(cfg, few, per_step=0.0)[-1]
    assert plain.status == "diverged" and plain.steps == 5
    seen: list[str] = []
    checked = []

    def after(t: Trainer) -> None:
        if t.step == 7:
            assert math.isnan(t.main.sums.acc_loss.item())  # the bad step (5), not yet read
            seen.extend(sums_differences(t.main.sums, t.fork.sums, "step 7"))
            checked.append(t.step)

    recs = train(cfg, few, {6: [Fork(True)], 7: [Fork(False, keep="B")]}, after, per_step=0.0)
    assert checked == [7] and seen == []
    end = recs[-1]
    assert (end.status, end.steps, end.layer, end.message) == (plain.status, plain.steps, plain.layer, plain.message)


def _clone_without(name: str):
    def clone(self: RunningSums) -> RunningSums:
        c = copy.deepcopy(self)
        fresh = RunningSums.start(self.acc_loss.device, self.acc_loss.dtype, 0.0)
        setattr(c, name, getattr(fresh, name))
        return c

    return clone


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(RunningSums)])
def test_the_comparison_sees_any_sum_left_out_of_the_clone(name, cfg, few, small, monkeypatch):
    """Each field of RunningSums, left out of the clone (B starts with a fresh run's value for it): the
    comparison above fails."""
    monkeypatch.setattr(RunningSums, "clone", _clone_without(name))
    diffs = fork_differences(cfg, few)
    assert any(f"sums.{name} " in d for d in diffs), diffs  # B's sums as it starts
    assert any(d.startswith("B forked at") for d in diffs), diffs  # and what B records
