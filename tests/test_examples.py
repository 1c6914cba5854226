"""The examples train with vgtui.watch as a user would run them (subprocesses, a few steps each), and the files
they write hold the models' own layer names, snapshots and the end record."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT
from vgtui.core.metrics import read_metrics

EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    r = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_cnn_mnist(tmp_path):
    path = tmp_path / "cnn.jsonl"
    r = run_example("cnn_mnist.py", "--max-steps", "12", "--every", "5", "--metrics", str(path))
    assert f"vgtui.watch: writing {path} (follow it live: vgtui follow {path})" in r.stderr
    assert re.search(r"epoch 1: 12 steps, loss [\d.]+, test accuracy [\d.]+", r.stdout)
    (run,) = read_metrics(path)
    assert run.header.source == "vgtui.watch" and run.header.model.startswith("SmallCNN, ")
    assert run.header.total_steps == 12
    assert [(l.name, l.kind, l.activation) for l in run.header.layers] == [
        ("features.0", "Conv2d", "relu"), ("features.3", "Conv2d", "relu"), ("classifier.1", "Linear", "relu"),
        ("classifier.3", "Linear", None)]
    assert [s.step for s in run.snapshots] == [1, 5, 10]
    assert all(s.layer("features.0").grad_norm > 0 and s.loss > 0 for s in run.snapshots)
    assert run.end.status == "completed" and run.end.steps == 12


def test_resnet18_shows_its_21_layers(tmp_path):
    path = tmp_path / "resnet.jsonl"
    run_example("resnet.py", "--steps", "3", "--every", "2", "--batch-size", "4", "--size", "32",
                "--device", "cpu", "--metrics", str(path))
    (run,) = read_metrics(path)
    names = run.header.layer_names
    assert len(names) == 21 and names[0] == "conv1" and names[-1] == "fc"
    assert {"layer3.1.conv2", "layer2.0.downsample.0", "layer4.0.conv1"} <= set(names)
    assert run.header.model.startswith("ResNet, 11,181,642 parameters")
    assert [s.step for s in run.snapshots] == [1, 2]
    assert [l.name for l in run.snapshots[-1].layers] == list(names)
    assert run.end.status == "completed" and run.end.steps == 3


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), EXAMPLES / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ddp_two_processes_rank0_writes_the_averaged_gradients(tmp_path):
    path = tmp_path / "ddp.jsonl"
    r = run_example("ddp_cpu.py", "--steps", "2", "--every", "1", "--batch-size", "16", "--metrics", str(path))
    pids = {int(rank): (int(pid), active == "True")
            for rank, pid, active in re.findall(r"rank (\d): pid (\d+), \d+ steps, writes the file: (\w+)", r.stdout)}
    assert set(pids) == {0, 1} and pids[0][1] and not pids[1][1]
    assert r.stderr.count("vgtui.watch: writing") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ddp.jsonl"]
    (run,) = read_metrics(path)  # one run header: rank 1 neither wrote nor truncated the file
    assert run.header.pid == pids[0][0]
    assert run.header.layer_names == ("0", "2", "4")  # the model's names, not DDP's module.0
    assert [s.step for s in run.snapshots] == [1, 2] and run.end.status == "completed"

    # step 1 in one process: the mean loss over the whole batch has the ranks' averaged gradient
    ex = _load_example("ddp_cpu.py")
    x, y = ex.batches(2, 16)[0]
    full, half = ex.build_model(), ex.build_model()
    F.cross_entropy(full(x), y).backward()
    F.cross_entropy(half(x[:8]), y[:8]).backward()  # rank 0's own half, before the all-reduce
    for s in run.snapshots[0].layers:
        g_full, g_half = full.get_submodule(s.name).weight.grad, half.get_submodule(s.name).weight.grad
        assert s.grad_norm == pytest.approx(g_full.norm().item(), rel=1e-5)
        assert abs(s.grad_norm - g_half.norm().item()) > 1e-3 * g_half.norm().item()
    # the snapshot's loss is the whole batch's: the mean of the ranks' losses on their halves (each rank's own
    # is in the snapshot's ranks)
    assert run.snapshots[0].loss == pytest.approx(F.cross_entropy(full(x), y).item(), rel=1e-5)
    assert run.snapshots[0].ranks[0].loss == pytest.approx(F.cross_entropy(half(x[:8]), y[:8]).item(), rel=1e-5)
    assert torch.isfinite(torch.tensor([s.loss for s in run.snapshots])).all()
