"""The Lightning callback (vgtui.integrations.lightning, and .pytorch_lightning for the older package): a tiny
LightningModule on the embedded digits, a few steps on the CPU through the real Trainer. Lightning runs the forward
and backward inside optimizer.step(closure); the snapshot's gradients are still the step's own (checked against
plain torch), with the training_step's loss, the step's learning rate and the logged val_loss; gradient
accumulation counts optimiser steps; an exception ends the file failed; the file opens in `vgtui replay`."""

from __future__ import annotations

import copy
import signal
import subprocess
import sys

import lightning.pytorch as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import ROOT
from vgtui.core.metrics import read_metrics
from vgtui.integrations.lightning import VgtuiCallback
from vgtui.sources.file import FileSource
from vgtui.ui.app import VgtuiApp
from ui.conftest import shows, status_shows


class Digits(L.LightningModule):
    def __init__(self, fail_at: int | None = None, failure: type = RuntimeError):
        super().__init__()
        self.failure = failure
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(784, 32), nn.Sigmoid(), nn.Linear(32, 32), nn.Sigmoid(), nn.Linear(32, 10))
        self.fail_at, self.losses, self.lrs, self.acts = fail_at, [], [], []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        if batch_idx == self.fail_at:
            raise self.failure(f"bad batch {batch_idx}")
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)  # not self(x): the module's forward never runs
        self.losses.append(loss.item())
        self.acts.append(torch.sigmoid(self.net[0](x)).mean().item())
        self.lrs.append(self.optimizers().param_groups[0]["lr"])
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x) * 3, y))  # activations unlike the training's

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)  # a new rate every step
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def loaders(digits, n=16, size=32):
    ds = torch.utils.data.TensorDataset(digits.x_train[:n * size], digits.y_train[:n * size])
    val = torch.utils.data.TensorDataset(digits.x_test[:64], digits.y_test[:64])
    return torch.utils.data.DataLoader(ds, batch_size=size), torch.utils.data.DataLoader(val, batch_size=32)


def fit(module, digits, callback, trainer_module=L, **kw):
    opts = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, num_sanity_val_steps=0)
    tr = trainer_module.Trainer(callbacks=[callback], **{**opts, **kw})
    tr.fit(module, *loaders(digits))
    return tr


def replay(path):
    return subprocess.run([sys.executable, "-m", "vgtui", "replay", str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)


async def test_lightning_callback_records_the_steps_gradients_loss_lr_and_val_loss(digits, tmp_path):
    module = Digits()
    ref = copy.deepcopy(module.net)
    cb = VgtuiCallback(metrics=tmp_path / "run.jsonl", every=4, quiet=True)
    fit(module, digits, cb, max_steps=12, val_check_interval=3, num_sanity_val_steps=2)

    (run,) = read_metrics(tmp_path / "run.jsonl")
    assert run.header.source == "vgtui.watch" and run.header.total_steps == 12 and run.header.probe_every == 4
    assert [(la.name, la.kind, la.activation) for la in run.header.layers] == [
        ("net.0", "Linear", "sigmoid"), ("net.2", "Linear", "sigmoid"), ("net.4", "Linear", None)]
    assert [s.step for s in run.snapshots] == [1, 4, 8, 12]
    assert run.end.status == "completed" and run.end.steps == 12 and cb.watch.closed
    assert len(module.losses) == 12
    for s in run.snapshots:  # the training_step's loss and the learning rate of the step itself
        assert s.loss == pytest.approx(module.losses[s.step - 1], rel=1e-6)
        assert s.metrics["lr"] == pytest.approx(0.5 * 0.9 ** (s.step - 1), rel=1e-9)
        assert s.metrics["lr"] == pytest.approx(module.lrs[s.step - 1], rel=1e-9)
    assert s.loss_avg == pytest.approx(sum(module.losses[8:12]) / 4, rel=1e-6)
    # validation ran after steps 3, 6, 9 (and 12): its val_loss is in the snapshots that follow it; its forward
    # passes (and the sanity check's before step 1) between a probed step's arming and its forward are no part of
    # that step's activations, though the module's forward never runs
    assert "val_loss" not in run.snapshots[0].metrics
    assert all(0.5 < s.metrics["val_loss"] < 10 for s in run.snapshots[1:])
    for s in run.snapshots:
        assert s.layers[0].act_mean == pytest.approx(module.acts[s.step - 1], rel=1e-5)

    # step 1's gradients are the ones of its own backward pass (inside Lightning's closure), before the update
    x, y = digits.x_train[:32], digits.y_train[:32]
    F.cross_entropy(ref(x), y).backward()
    for la in run.snapshots[0].layers:
        w = ref.get_submodule(la.name.removeprefix("net.")).weight
        assert la.grad_norm == pytest.approx(w.grad.norm().item(), rel=1e-5)
        assert la.weight_norm == pytest.approx(w.norm().item(), rel=1e-5)
    assert run.snapshots[0].layers[0].act_mean == pytest.approx(torch.sigmoid(ref[0](x)).mean().item(), rel=1e-5)

    r = replay(tmp_path / "run.jsonl")
    assert r.returncode == 0, r.stderr
    summary = "run 1: Digits, 26,506 parameters · 3 layers · 4 snapshots · last step 12 · completed"
    assert f"{tmp_path / 'run.jsonl'}: {summary}" in r.stdout

    src = FileSource(str(tmp_path / "run.jsonl"))  # and in the replay screen: the module's names, its numbers
    src.open()
    app = VgtuiApp([src], fps=8)
    async with app.run_test(size=(120, 40)) as pilot:
        await shows(pilot, app.main.query_one("#grads"), "net.4")
        status = await status_shows(pilot, "val_loss")
        assert "lr " in status and "completed" in status


def test_accumulation_counts_optimiser_steps_and_an_exception_ends_the_file_failed(digits, tmp_path):
    module = Digits(fail_at=9)  # batches 0..8 run: four optimiser steps of two batches, then the failure
    cb = VgtuiCallback(metrics=tmp_path / "acc.jsonl", every=2, quiet=True)
    with pytest.raises(RuntimeError, match="bad batch 9"):
        fit(module, digits, cb, max_steps=6, accumulate_grad_batches=2, limit_val_batches=0)
    (run,) = read_metrics(tmp_path / "acc.jsonl")
    assert [s.step for s in run.snapshots] == [1, 2, 4]
    assert run.end.status == "failed" and run.end.message == "RuntimeError: bad batch 9" and run.end.steps == 4
    assert "bad batch" in run.end.traceback
    # each step's loss is its second batch's (the batch that stepped): batches 1, 3, 7
    assert [s.loss for s in run.snapshots] == pytest.approx([module.losses[i] for i in (1, 3, 7)], rel=1e-6)
    assert [s.metrics["lr"] for s in run.snapshots] == pytest.approx([0.5, 0.45, 0.5 * 0.9 ** 3], rel=1e-9)
    r = replay(tmp_path / "acc.jsonl")
    assert r.returncode == 0 and "3 snapshots · last step 4 · failed" in r.stdout, r.stdout + r.stderr

    # Ctrl+C: Lightning catches it, calls on_exception, ignores SIGINT from then on and exits with status 1
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as stop:
            fit(Digits(fail_at=3, failure=KeyboardInterrupt), digits,
                VgtuiCallback(metrics=tmp_path / "int.jsonl", every=2, quiet=True), max_steps=6, limit_val_batches=0)
    finally:
        signal.signal(signal.SIGINT, sigint)
    assert stop.value.code == 1
    (run,) = read_metrics(tmp_path / "int.jsonl")
    assert run.end.status == "interrupted" and run.end.steps == 3 and [s.step for s in run.snapshots] == [1, 2]


def test_pytorch_lightning_package_too(digits, tmp_path):
    import pytorch_lightning as pl

    from vgtui.integrations.pytorch_lightning import VgtuiCallback as PLCallback

    class Old(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = Digits().net

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    fit(Old(), digits, PLCallback(metrics=tmp_path / "pl.jsonl", every=2, quiet=True), trainer_module=pl,
        max_steps=3, limit_val_batches=0)
    (run,) = read_metrics(tmp_path / "pl.jsonl")
    assert [s.step for s in run.snapshots] == [1, 2] and run.end.status == "completed" and run.end.steps == 3
    assert all(s.metrics["lr"] == 0.1 and s.loss > 0 for s in run.snapshots)


@pytest.mark.parametrize("module, install", [("lightning", "'vgtui[lightning]'"),
                                             ("pytorch_lightning", "'pytorch-lightning>=2.0'")])
def test_without_lightning_one_line_names_the_pip_command(module, install):
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            f"try:\n    from vgtui.integrations import {module}\n"
            "except ImportError as e:\n    print(str(e)); print(e.__cause__, e.__suppress_context__)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (f"vgtui.integrations.{module} needs {module}, which is not installed: "
                        f"pip install {install}\nNone True\n")
