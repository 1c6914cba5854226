"""The diagnosis reads the loss as well as the gradients: flowing gradients with a rising or chance-level loss is
not plainly healthy, and a loss far above chance without a NaN is an explosion that ends the run."""

import json
import math
import statistics

import pytest

from conftest import run_cli
from vgtui.core.config import RunConfig
from vgtui.core.diagnosis import badge, chance_loss, diagnose, explain_learning, judge_learning
from vgtui.core.records import EndRecord, EpochRecord, Snapshot
from vgtui.engine.trainer import Trainer


def test_learning_verdicts():
    chance = chance_loss(10)
    assert chance == pytest.approx(2.302585, rel=1e-6)
    assert judge_learning([2.3]) == "too early"
    assert judge_learning([2.3, 1.5, 0.9, 0.5], accuracy=0.85) == "learning"
    assert judge_learning([2.32, 2.31, 2.30, 2.31], accuracy=0.11) == "stalled"
    assert judge_learning([2.0, 1.9, 1.9, 1.9], accuracy=0.10) == "stalled"  # the accuracy says chance
    assert judge_learning([2.67, 11.0, 40.0, 62.0]) == "rising"
    assert judge_learning([2.3, 8e32, 1e33]) == "exploding"
    assert judge_learning([2.3, float("nan"), 0.5, 0.4], accuracy=0.9) == "learning"
    assert badge("healthy", "learning") == "HEALTHY" and badge("healthy", "too early") == "HEALTHY"
    assert badge("healthy", "rising") == "LOSS RISING" and badge("healthy", "stalled") == "NOT LEARNING"
    assert badge("vanishing", "stalled") == "VANISHING" and badge("healthy", "exploding") == "EXPLODING"
    assert badge("diverged", "learning") == "DIVERGED"
    text = explain_learning("rising", [2.67, 11.0], accuracy=0.1, flow="healthy")
    assert text.startswith("LOSS RISING: the loss went from 2.67 to 11 (chance is 2.30), accuracy 10%.")
    assert "lower --lr" in text and "\n" not in text


def test_skip_connections_at_lr_001_flow_but_do_not_learn_at_first(digits):
    """The seed's network with skip connections, SGD lr 0.01 momentum 0.9: fc1 gets ~5% of fc6's gradient (HEALTHY
    by gradient flow) while the first epoch's loss rises from 2.7 to about 11 and the test accuracy is 10%."""
    cfg = RunConfig(dataset="mnist-5k", skip=True, max_steps=40, probe_every=10, device="cpu")
    recs = []
    assert Trainer(cfg, [recs.append], data=digits).run().status == "completed"
    snaps = [r for r in recs if isinstance(r, Snapshot)]
    epoch = next(r for r in recs if isinstance(r, EpochRecord))
    flow = diagnose(statistics.median(s.ratio() for s in snaps), [l.grad_norm for l in snaps[-1].layers])
    losses = [s.loss_avg for s in snaps]
    learning = judge_learning(losses, 10, epoch.test_acc)
    assert flow == "healthy" and learning == "rising"
    assert max(losses) > 5 and epoch.test_acc == pytest.approx(0.1, abs=0.02)
    assert badge(flow, learning) == "LOSS RISING"


def test_sigmoid_at_lr_1e30_explodes_and_ends_like_a_divergence(tmp_path):
    metrics = tmp_path / "m.jsonl"
    r = run_cli(["--headless", "--dataset", "mnist-5k", "--lr", "1e30", "--max-steps", "200", "--metrics",
                 str(metrics)], timeout=180)
    assert r.returncode == 3, r.stdout + r.stderr
    end = json.loads(metrics.read_text().splitlines()[-1])
    assert end["type"] == "end" and end["status"] == "diverged" and end["message"].startswith("exploded: ")
    assert "no NaN" in end["message"] and "lower --lr" in end["message"] and end["steps"] < 200
    assert end["layer"] in end["message"]
    assert "EXPLODING" in r.stdout and "HEALTHY" not in r.stdout and "VANISHING" not in r.stdout


def test_adam_at_lr_10_explodes(digits):
    cfg = RunConfig(dataset="mnist-5k", optimizer="adam", lr=10.0, max_steps=60, probe_every=20, device="cpu")
    recs = []
    end = Trainer(cfg, [recs.append], data=digits).run()
    assert isinstance(end, EndRecord) and end.status == "diverged" and end.message.startswith("exploded")
    loss = float(end.message.split("loss ")[1].split()[0])
    assert loss > 100 * math.log(10) and end.steps <= 20  # caught at the first check after the first steps
