"""The trainer: records, determinism, commands between steps, divergence, the metrics file."""

import json
import math
import threading

import numpy as np
import pytest

from vgtui.core.config import RunConfig
from vgtui.core.metrics import read_metrics
from vgtui.core.writer import MetricsWriter
from vgtui.core.records import (EndRecord, EpochRecord, EventRecord, Pause, Restart, RunRecord, SetActivation,
                                  SetSpeedCap, Snapshot, StepOnce, Stop)
from vgtui.engine.trainer import Trainer


def kinds(records):
    return [type(r).__name__ for r in records]


def test_records_of_a_run(digits, small):
    recs = []
    end = Trainer(small.replace(max_steps=None, epochs=2), [recs.append], data=digits).run()
    assert end.status == "completed" and end.steps == 80
    assert isinstance(recs[0], RunRecord) and isinstance(recs[-1], EndRecord)
    header = recs[0]
    assert header.layer_names == ("fc1", "fc2", "fc3", "fc4") and header.steps_per_epoch == 40
    assert header.total_steps == 80 and header.config["depth"] == 3 and header.device == "cpu"
    snaps = [r for r in recs if isinstance(r, Snapshot)]
    # step 1 (numbers at once), then every 5 steps; the epoch's last step (40, 80) is one of them anyway
    assert [s.step for s in snaps] == [1] + list(range(5, 81, 5))
    assert header.probe_every == 5 and header.probe_min_interval_s is None  # explicit: exact
    epochs = [r for r in recs if isinstance(r, EpochRecord)]
    assert [(e.epoch, e.step) for e in epochs] == [(1, 40), (2, 80)]
    assert all(0 <= e.test_acc <= 1 and e.train_loss > 0 for e in epochs)
    assert [s.elapsed_s for s in snaps] == sorted(s.elapsed_s for s in snaps)
    # depth-3 ReLU-free sigmoid net learns something in 2 epochs of 4,000 digits? at least the loss moves
    assert snaps[-1].loss_avg < snaps[0].loss_avg


def test_same_seed_same_numbers(digits, small):
    def run(seed):
        recs = []
        Trainer(small.replace(seed=seed), [recs.append], data=digits).run()
        return [(s.loss, [l.grad_norm for l in s.layers]) for s in recs if isinstance(s, Snapshot)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_max_steps_mid_epoch_still_evaluates(digits, small):
    recs = []
    end = Trainer(small.replace(max_steps=7, probe_every=100), [recs.append], data=digits).run()
    assert end.steps == 7
    assert [r.step for r in recs if isinstance(r, Snapshot)] == [1, 7]
    assert [r.step for r in recs if isinstance(r, EpochRecord)] == [7]


@pytest.mark.parametrize("flight", [True, False])
def test_divergence_is_caught_and_named(digits, flight):
    """ReLU + Kaiming at lr 1.0 goes non-finite within a few steps (../shared/FACTS.md). With a clock that never
    moves there is no progress tick, so the first check after step 1 is the snapshot at step 40: the trainer sees
    a bad step there (a NaN in the loss's sum), replays from its last good state to the first bad one (the flight
    recorder's rows bound it; without the recorder the replay's own checks find it), and names the same step and
    layer as a plain loop that checks every step."""
    import torch
    import torch.nn.functional as F

    from vgtui.engine.probes import locate_nonfinite

    cfg = RunConfig(dataset="mnist-5k", activation="relu", init="kaiming", lr=1.0, max_steps=50, device="cpu",
                    flight=flight)
    recs = []
    end = Trainer(cfg, [recs.append], data=digits, clock=lambda: 0.0).run()
    assert end.status == "diverged"
    assert end.layer in ("fc1", "fc2", "fc3", "fc4", "fc5", "fc6")
    assert f"non-finite values at step {end.steps}, first in {end.layer} (" in end.message
    # the step where it appears: all snapshots before it are finite
    assert all(s.layers[0].finite for s in recs if isinstance(s, Snapshot))

    # the reference: plain torch on the same model, optimiser and batches, checking every step
    ref = Trainer(cfg, [], data=digits)
    ref.prepare()
    perm = torch.randperm(len(digits.x_train), generator=ref.generator)
    model, opt = ref.model, ref.optimizer
    for step in range(1, 51):
        idx = perm[(step - 1) * 100:step * 100]
        x, y = digits.x_train[idx], digits.y_train[idx]
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if not torch.isfinite(loss) or not all(torch.isfinite(p.grad).all() for p in model.parameters()):
            break
        opt.step()
    assert (end.steps, end.layer) == (step, locate_nonfinite(model, x)[0])
    assert 2 < end.steps < 40  # found by the replay, not at a check


@pytest.mark.parametrize("flight", [True, False])
def test_the_replay_after_a_divergence_is_bounded_by_the_recorders_rows(digits, flight, monkeypatch):
    """The check that sees the NaN (the snapshot at step 40 here) hands the replay the first step the flight
    recorder held not finite: the step named is then the original run's even if a replay's rounding drifted (a GPU's
    kernels are not all deterministic). Without the recorder, the bound is the check's own step."""
    from vgtui.engine.branch import Branch

    bounds = []
    replay = Branch._replay
    monkeypatch.setattr(Branch, "_replay", lambda self, bad_step: bounds.append(bad_step) or replay(self, bad_step))
    cfg = RunConfig(dataset="mnist-5k", activation="relu", init="kaiming", lr=1.0, max_steps=50, device="cpu",
                    flight=flight)
    end = Trainer(cfg, [], data=digits, clock=lambda: 0.0).run()
    assert end.status == "diverged" and 2 < end.steps < 40
    assert bounds == ([end.steps] if flight else [40])


def _run_in_thread(trainer):
    t = threading.Thread(target=trainer.run, daemon=True)
    t.start()
    return t


def _wait_for(records, pred, timeout=30.0):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for r in list(records):
            if pred(r):
                return r
        time.sleep(0.01)
    raise AssertionError("record never came")


def test_set_activation_keeps_weights_and_is_recorded(digits, small, tmp_path):
    path = tmp_path / "m.jsonl"
    recs = []
    writer = MetricsWriter(path)
    trainer = Trainer(small.replace(max_steps=None, epochs=3, probe_every=1), [writer, recs.append], data=digits,
                      hold=True)
    trainer.prepare()
    trainer.send(Pause(True))
    t = _run_in_thread(trainer)
    trainer.send(StepOnce())
    _wait_for(recs, lambda r: isinstance(r, Snapshot) and r.step == 1)
    assert trainer.paused and trainer.step == 1
    w = trainer.model.fc1.weight.detach().clone()
    trainer.send(SetActivation("tanh"))
    trainer.send(StepOnce())
    snap = _wait_for(recs, lambda r: isinstance(r, Snapshot) and r.step == 2)
    ev = _wait_for(recs, lambda r: isinstance(r, EventRecord))
    assert ev.set == {"activation": "tanh"} and ev.step == 1
    assert snap.activation == "tanh" and snap.layers[0].activation == "tanh"
    assert snap.layers[0].act_hist.edges[0] == -1.0  # tanh's fixed range
    # the switch itself kept the weights: step 2's gradient was taken at w (then one SGD step moved it)
    assert trainer.model.fc1.weight.grad is not None
    assert trainer.config.activation == "tanh"
    moved = (trainer.model.fc1.weight.detach() - w).abs().max().item()
    assert 0 < moved < 0.01
    assert trainer.step == 2  # paused: nothing more ran
    trainer.send(Stop())
    t.join(5)
    assert not t.is_alive()
    writer.close()
    (run,) = read_metrics(path)
    assert run.events[0].set == {"activation": "tanh"}
    assert run.end.status == "interrupted"


def test_restart_ends_the_run_and_starts_a_new_one(digits, small):
    recs = []
    trainer = Trainer(small.replace(max_steps=None, epochs=50), [recs.append], data=digits, hold=True)
    t = _run_in_thread(trainer)
    _wait_for(recs, lambda r: isinstance(r, Snapshot))
    trainer.send(Restart(small.replace(batchnorm=True, max_steps=10).to_dict()))
    second = _wait_for(recs, lambda r: isinstance(r, RunRecord) and r.config["batchnorm"])
    end1 = next(r for r in recs if isinstance(r, EndRecord))
    assert end1.status == "interrupted" and end1.message == "restarted: sigmoid + batchnorm"
    assert recs.index(end1) < recs.index(second)
    done = _wait_for(recs, lambda r: isinstance(r, EndRecord) and r.status == "completed")
    assert done.steps == 10
    assert hasattr(trainer.model, "bn1")
    assert t.is_alive()  # hold: a finished run waits for a Restart or a Stop
    trainer.send(Stop())
    t.join(5)
    assert not t.is_alive()


def test_speed_cap_slows_training(digits, small):
    recs = []
    trainer = Trainer(small.replace(max_steps=12, probe_every=4), [recs.append], data=digits)
    trainer.send(SetSpeedCap(20.0))
    end = trainer.run()
    assert end.steps == 12 and end.elapsed_s >= 0.5  # 12 steps at <= 20 steps/s
    rates = [r.steps_per_s for r in recs if isinstance(r, Snapshot)][1:]
    assert rates and all(r < 25 for r in rates)


def test_ctrl_c_inside_a_run_writes_the_end_record(digits, small, tmp_path):
    path = tmp_path / "m.jsonl"

    def interrupt(trainer):
        if trainer.step == 3:
            raise KeyboardInterrupt

    with MetricsWriter(path) as writer:
        trainer = Trainer(small, [writer], data=digits, on_step=interrupt)
        with pytest.raises(KeyboardInterrupt):
            trainer.run()
    lines = path.read_text().splitlines()
    assert all(json.loads(l) for l in lines)
    assert json.loads(lines[-1]) == {**json.loads(lines[-1]), "type": "end", "status": "interrupted", "steps": 3}


def test_metrics_roundtrip_keeps_non_finite_values(tmp_path):
    from vgtui.core.records import Hist, LayerStats, record_from_json, to_json

    layer = LayerStats(name="fc1", grad_norm=math.inf, grad_mean_abs=math.nan, weight_norm=1.0,
                       grad_data_ratio=-math.inf, update_data_ratio=0.5, out_grad_norm=None,
                       grad_hist=Hist(np.array([0.0, 1.0]), np.array([3]), zeros=2))
    snap = Snapshot(step=1, epoch=1, elapsed_s=0.1, loss=math.nan, loss_avg=2.0, steps_per_s=0.0,
                    activation="relu", layers=(layer,))
    text = json.dumps(to_json(snap), allow_nan=False)  # strict JSON: no bare NaN
    back = record_from_json(json.loads(text))
    l = back.layers[0]
    assert math.isinf(l.grad_norm) and math.isnan(l.grad_mean_abs) and l.grad_data_ratio == -math.inf
    assert math.isnan(back.loss) and l.grad_hist.zeros == 2 and list(l.grad_hist.counts) == [3]


def test_reader_skips_a_torn_last_line(tmp_path, digits, small):
    path = tmp_path / "m.jsonl"
    with MetricsWriter(path) as w:
        Trainer(small, [w], data=digits).run()
    with open(path, "a") as f:
        f.write('{"type": "snapshot", "st')  # a run killed mid-write
    (run,) = read_metrics(path)
    assert run.end.status == "completed" and len(run.snapshots) == 5 and len(run.epochs) == 1
