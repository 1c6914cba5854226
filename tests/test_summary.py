"""Decisions from fields, one run summary, one activation table (issue 15).

- The end record carries why the run ended (`cause`); every writer writes it, an old file without it still reads
  (the cause from the status, never from the message), and the headless report decides "exploded" from it.
- One fold of a run's records (vgtui.core.summary.RunSummary) behind the headless report, compare's rows and
  replay's no-terminal lines.
- One table per activation (vgtui.core.activations): each derivative formula against a finite difference of the
  torch activation the model trains with, and each maximum of the derivative against a dense grid.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT
from vgtui.core.activations import ACTIVATION_NAMES, ACTIVATION_TABLE
from vgtui.core.config import ACTIVATIONS, RunConfig, shapes_text
from vgtui.core.metrics import MetricsIndex
from vgtui.core.records import END_CAUSES, END_STATUSES, EndRecord, Stop, record_from_json, to_json
from vgtui.core.summary import RunSummary
from vgtui.engine.model import ACTIVATION_FNS
from vgtui.engine.trainer import Trainer
from vgtui.commands.headless import Reporter

FIXTURES = ROOT / "tests" / "ui" / "fixtures"


def fixture(name: str) -> list:
    with open(FIXTURES / f"{name}.jsonl") as f:
        return [record_from_json(json.loads(line)) for line in f if line.strip()]


# ---------------------------------------------------------------------------------------------- the activations
POINTS = np.array([-3.7, -1.3, -0.4, 0.3, 0.9, 2.2, 4.1])  # no kink (0, +-1) within a finite difference's reach


def test_config_and_the_model_take_their_activations_from_the_table():
    assert ACTIVATIONS == ACTIVATION_NAMES == tuple(ACTIVATION_FNS)
    assert ACTIVATIONS[:2] == ("sigmoid", "tanh") and len(ACTIVATIONS) == 13


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_each_formula_matches_the_torch_activation_and_its_finite_difference(name):
    a, torch_fn = ACTIVATION_TABLE[name], ACTIVATION_FNS[name]
    z = torch.tensor(POINTS, dtype=torch.float64)
    assert np.allclose(a.fn(POINTS), torch_fn(z).numpy(), rtol=1e-12, atol=1e-12)
    h = 1e-6
    fd = ((torch_fn(z + h) - torch_fn(z - h)) / (2 * h)).numpy()
    assert np.allclose(a.derivative(POINTS), fd, rtol=1e-6, atol=1e-8), (a.derivative(POINTS), fd)
    assert np.allclose(a.derivative(POINTS), (a.fn(POINTS + h) - a.fn(POINTS - h)) / (2 * h), atol=1e-7)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_each_maximum_of_the_derivative_and_range_hold_on_a_dense_grid(name):
    a = ACTIVATION_TABLE[name]
    z = np.linspace(-20.0, 20.0, 400_001)  # step 1e-4, 0 included
    d, y = np.abs(a.derivative(z)), a.fn(z)
    assert d.max() <= a.d_max * (1 + 1e-12)
    assert d.max() == pytest.approx(a.d_max, rel=1e-7, abs=1e-8)  # reached (or, softplus, nearly: 1 - 2e-9)
    y = np.concatenate([y, a.fn(np.array([-1e12, 1e12]))])  # the ends, which softsign nears slowly
    assert y.min() >= a.lo - 1e-12 and y.max() <= a.hi + 1e-12
    for end, got in ((a.lo, y.min()), (a.hi, y.max())):
        if math.isfinite(end):
            assert got == pytest.approx(end, abs=1e-6)  # the range is tight, not merely a bound
    lo, hi = a.hist
    assert max(lo, a.lo) < min(hi, a.hi)  # the histogram shows the outputs' range (a bounded one: all of it)
    assert (lo, hi) == (a.lo, a.hi) if a.saturating else lo < hi


def test_the_famous_maxima():
    t = ACTIVATION_TABLE
    assert t["sigmoid"].d_max == 0.25 and t["tanh"].d_max == 1.0 and t["relu"].d_max == 1.0
    assert t["selu"].d_max == pytest.approx(1.0507009873554805 * 1.6732632423543772)
    assert t["gelu"].d_max == pytest.approx(1.1289041451851543, rel=1e-12)
    assert [n for n, a in t.items() if a.saturating] == ["sigmoid", "tanh", "softsign", "hardtanh"]


# ---------------------------------------------------------------------------------------------- the shape
def test_one_shape_text():
    assert RunConfig().shape_text() == "784-1000x5-10"
    assert shapes_text([RunConfig(width=1000, depth=5), RunConfig(width=100, depth=3)]) == "784-100/1000x3/5-10"


# ---------------------------------------------------------------------------------------------- the end's cause
def test_the_cause_is_written_read_back_and_derived_for_old_records():
    end = EndRecord(status="diverged", steps=9, elapsed_s=1.5, message="whatever words", cause="exploded")
    d = to_json(end)
    assert list(d)[:3] == ["type", "status", "cause"] and d["cause"] == "exploded"
    assert record_from_json(json.loads(json.dumps(d))).cause == "exploded"
    for status in END_STATUSES:  # every status has its own cause, and each cause one status
        assert END_CAUSES[EndRecord(status=status, steps=0, elapsed_s=0.0).cause] == status
    # an old record: no cause; a message that says "exploded" does not make it one (never read from prose)
    old = {"type": "end", "status": "diverged", "steps": 4, "elapsed_s": 0.1, "message": "exploded: loss 1e33"}
    assert record_from_json(old).cause == "diverged"
    assert record_from_json({**old, "status": "failed"}).cause == "error"
    assert record_from_json({**old, "cause": "from-the-future"}).cause == "from-the-future"  # a newer vgtui's
    for bad in ("completed", "EXPLODED", "\x1b[31m", 3, "x" * 41):  # another status's cause; not a cause
        with pytest.raises(ValueError):
            record_from_json({**old, "cause": bad})
    assert Stop().cause == "quit"


def test_an_old_file_without_causes_still_opens(tmp_path):
    lines = (FIXTURES / "relu-diverged.jsonl").read_text()
    assert '"cause"' not in lines
    with MetricsIndex(FIXTURES / "relu-diverged.jsonl") as ix:
        assert ix.runs[-1].end.cause == "diverged"
    head, last = lines.rstrip("\n").rsplit("\n", 1)
    bad = tmp_path / "bad.jsonl"  # the end record's cause does not go with its status: a damaged line, a notice
    bad.write_text(head + "\n" + last.replace('"status":"diverged"', '"status":"diverged","cause":"quit"') + "\n")
    with MetricsIndex(bad) as ix:
        assert ix.runs[-1].end is None and ix.n_damaged == 1 and "cause 'quit'" in ix.notices[0]


def _report(recs: list) -> str:
    out = io.StringIO()
    rep = Reporter(out, tty=False)
    for r in recs:
        rep(r)
    return out.getvalue()


def test_headless_decides_exploded_from_the_cause_not_the_message():
    recs = fixture("relu-diverged")
    end = recs[-1]
    assert isinstance(end, EndRecord) and end.cause == "diverged"
    said = {}
    for cause, message in (("exploded", "no words about it"), ("diverged", "exploded: says the message only")):
        said[cause] = _report([*recs[:-1], EndRecord(status="diverged", steps=end.steps, elapsed_s=1.0,
                                                      message=message, layer=end.layer, cause=cause)])
    assert "EXPLODING: the training loss grew far above chance" in said["exploded"]
    assert "DIVERGED: non-finite gradients" in said["diverged"] and "EXPLODING" not in said["diverged"]


def test_a_real_explosion_is_recorded_as_exploded(digits):
    cfg = RunConfig(dataset="mnist-5k", optimizer="adam", lr=10.0, max_steps=60, probe_every=20, device="cpu",
                    depth=2, width=64)
    recs: list = []
    end = Trainer(cfg, [recs.append], data=digits).run()
    assert end.status == "diverged" and end.cause == "exploded"
    assert "EXPLODING: the training loss grew far above chance" in _report(recs)  # from the field


# ---------------------------------------------------------------------------------------------- the summary
def test_the_summary_folds_a_run_as_the_reports_did():
    recs = fixture("sigmoid")
    s = RunSummary()
    for r in recs:
        s.add(r)
    snaps = [r for r in recs if type(r).__name__ == "Snapshot" and r.branch is None]
    ratios = sorted(x.ratio() for x in snaps)
    assert s.snapshots == len(snaps) > 2 and s.last is snaps[-1] and s.last_step == snaps[-1].step
    assert s.ratio == pytest.approx(np.median(ratios))
    assert s.losses == [x.loss_avg for x in snaps]
    assert s.flow in ("vanishing", "healthy") and s.badge in ("VANISHING", "HEALTHY", "NOT LEARNING", "LOSS RISING")
    with MetricsIndex(FIXTURES / "sigmoid.jsonl") as ix:
        idx = RunSummary.of_index(ix.runs[-1])
    assert (idx.snapshots, idx.last_step, idx.end_text) == (s.snapshots, s.last_step, s.end_text)
    assert idx.last_text == f"step {s.last_step:,}" and RunSummary().end_text == "no end record"


def test_the_summary_of_a_diverged_run():
    s = RunSummary()
    for r in fixture("relu-diverged"):
        s(r)  # a trainer sink
    assert s.diverged and s.flow == "diverged" and s.badge == "DIVERGED"
    assert s.steps_per_s == pytest.approx(s.end.steps / s.end.elapsed_s)


# ---------------------------------------------------------------------------------------------- real processes
SLOW = ["--headless", "--dataset", "mnist-5k", "--depth", "3", "--width", "256", "--epochs", "200"]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_hangup_and_a_closed_stdout_are_causes_in_the_file(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VGTUI_DATA": "/nonexistent-vgtui-data"}
    m = tmp_path / "hup.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "vgtui", *SLOW, "--metrics", str(m)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not (m.exists() and '"type":"snapshot"' in m.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGHUP)
    p.communicate(timeout=60)
    assert p.returncode == 129
    end = _records(m)[-1]
    assert (end["type"], end["status"], end["cause"]) == ("end", "interrupted", "hangup")
    m2 = tmp_path / "pipe.jsonl"
    cmd = f"{sys.executable} -m vgtui {' '.join(SLOW)} --metrics {m2} | head -1"
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 141, r.stderr
    end = _records(m2)[-1]
    assert (end["type"], end["status"], end["cause"]) == ("end", "interrupted", "stdout-closed")
