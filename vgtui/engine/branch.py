"""One network of a run: its model, optimiser, probes, running sums and last good state, and what it does with
them (a training step, a check, a snapshot, an evaluation, its header, a fork into an exact copy).

A run is one branch (id None: the run itself, branch A); a fork adds branches whose records carry their id
(vgtui.core.records.BRANCHES: "B" for the first). The Trainer (vgtui.engine.trainer) is the loop over its
branches: every branch takes the same step on the same batch, and all are probed at the same steps.

Host syncs: see vgtui.engine.trainer; the copies a branch makes are marked `# sync:` here.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from vgtui.core.config import ACTIVATIONS, DEFAULT_PROBE_EVERY, PROBE_MIN_INTERVAL_S, RunConfig
from vgtui.core.diagnosis import chance_loss, exploded
from vgtui.core.records import (EndRecord, EpochRecord, EventRecord, ProgressRecord, Record, RunRecord, Snapshot,
                                SpikeRecord)
from vgtui.engine import recorder
from vgtui.engine.data import TensorData
from vgtui.engine.flight import READ_EVERY, FlightRecorder
from vgtui.engine.model import build_model, build_optimizer
from vgtui.engine.probes import GRAD_EDGES_LOG10, Probes, activation_edges, locate_nonfinite

EVAL_BATCH = 1000


@dataclass
class RunSetting:
    """What every branch of a run shares: the data, the device, the run's shape and its clock. The Trainer owns
    it; `t0` is set as each run starts."""

    data: TensorData
    device: torch.device
    device_notice: str | None
    n_classes: int
    steps_per_epoch: int
    total_steps: int
    clock: Callable[[], float]
    t0: float = 0.0

    def elapsed(self) -> float:
        return self.clock() - self.t0


@dataclass
class RunningSums:
    """The sums and clocks of one network's training: everything a branch adds up between records. A fork's new
    branch starts with `clone()` of its parent's (it has trained exactly what the parent has)."""

    # on the device (no sync per step), folded into the host sums below at each check
    acc_loss: torch.Tensor  # not finite once a step since the last check was not (a NaN or inf stays so)
    acc_correct: torch.Tensor  # per position in the batch (a step adds its hits, no sum of its own): sum() at a check
    acc_n: int
    # on the host
    win_loss: float  # since the previous snapshot
    win_n: int
    prog_loss: float  # since the previous progress record
    prog_n: int
    window_t: float  # the snapshot's steps/s window
    window_step: int
    prog_t: float  # the progress record's steps/s window
    prog_step: int
    ep_loss: float  # this epoch's
    ep_correct: int
    ep_n: int
    ep_examples: int

    @classmethod
    def start(cls, device: torch.device, dtype: torch.dtype, now: float) -> "RunningSums":
        """A run's sums at its start (`now`: its clock then)."""
        return cls(acc_loss=torch.zeros((), device=device, dtype=dtype),
                   acc_correct=torch.zeros(0, device=device, dtype=torch.long), acc_n=0,
                   win_loss=0.0, win_n=0, prog_loss=0.0, prog_n=0, window_t=now, window_step=0, prog_t=now,
                   prog_step=0, ep_loss=0.0, ep_correct=0, ep_n=0, ep_examples=0)

    def clone(self) -> "RunningSums":
        """An independent copy of every field (the device tensors copied on the device): no field can be left out."""
        return copy.deepcopy(self)

    def fold(self, loss_sum: float, correct: float) -> None:
        """Move the device sums just read into the host's per-snapshot, per-progress and per-epoch sums; restart
        them."""
        self.win_loss += loss_sum
        self.win_n += self.acc_n
        self.prog_loss += loss_sum
        self.prog_n += self.acc_n
        self.ep_loss += loss_sum
        self.ep_correct += int(correct)
        self.ep_n += self.acc_n
        self.acc_loss.zero_()
        self.acc_correct.zero_()
        self.acc_n = 0

    def new_epoch(self) -> None:
        self.ep_loss, self.ep_correct, self.ep_n, self.ep_examples = 0.0, 0, 0, 0


@dataclass
class Checkpoint:
    """A known-finite state on the device, and what is needed to replay the steps that followed it. Never
    changed once taken (a fork's new branch shares its parent's)."""

    step: int  # steps done when it was taken
    next_batch: int  # index in the epoch of the batch after it
    perm: torch.Tensor  # that epoch's order of examples
    activation: str
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    taken_t: float  # the run's clock when it was taken


def accumulator_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


class Branch:
    """One network of a run. `id`: None for the run itself, else the fork's id its records carry; `emit`: where
    its records go (the run's sinks), marked with the id here."""

    def __init__(self, id: str | None, config: RunConfig, setting: RunSetting, emit: Callable[[Record], None],
                 model: torch.nn.Module | None = None):
        self.id = id
        self.config = config
        self.setting = setting
        self._emit_run = emit
        s = setting
        self.model = model if model is not None else build_model(config, s.data.in_features,
                                                                 s.n_classes).to(s.device)
        self.optimizer = build_optimizer(config, self.model)
        self.probes = Probes(self.model)
        self.flight = FlightRecorder(self.probes.layers, self.optimizer, s.device, elapsed=s.elapsed) \
            if config.flight else None  # the loss spikes' flight recorder (vgtui.engine.flight)
        self.acc_dtype = accumulator_dtype(s.device)
        self.sums = RunningSums.start(s.device, self.acc_dtype, s.clock())
        self.step = self.epoch = self.step_in_epoch = 0
        self.ckpt: Checkpoint | None = None
        self.activations: list[tuple[int, str]] = []  # activation changes since the checkpoint (for the replay)

    # ------------------------------------------------------------------ records
    def emit(self, rec: Record) -> None:
        if self.id is not None and isinstance(rec, (RunRecord, Snapshot, EpochRecord, EventRecord, EndRecord,
                                                    ProgressRecord, SpikeRecord)):
            rec = dataclasses.replace(rec, branch=self.id)
        self._emit_run(rec)

    def header(self, forked_at: int | None = None) -> RunRecord:
        cfg, s = self.config, self.setting
        data = s.data
        hidden = len(self.probes.names) - 1
        return recorder.run_header(
            ((n, type(m).__name__, cfg.activation if i < hidden else None)
             for i, (n, m) in enumerate(self.probes.layers)),
            source="vgtui", device=s.device, model=self.model_description(), config=cfg.to_dict(),
            dataset=data.name, steps_per_epoch=s.steps_per_epoch, total_steps=s.total_steps,
            train_size=len(data.x_train), test_size=len(data.x_test),
            probe_every=cfg.probe_every or DEFAULT_PROBE_EVERY,
            probe_min_interval_s=None if cfg.probe_every else PROBE_MIN_INTERVAL_S,
            notice="; ".join(n for n in (s.device_notice, data.notice) if n) or None, grad_edges=GRAD_EDGES_LOG10,
            act_edges={a: activation_edges(a, self.probes.act_bins) for a in ACTIVATIONS},  # all it can switch to
            forked_at=forked_at)

    def model_description(self) -> str:
        c, d = self.config, self.setting.data
        extras = "".join(f" + {x}" for x in ((c.init if c.init != "default" else ""),
                                             "batchnorm" if c.batchnorm else "", "skip" if c.skip else "") if x)
        return f"MLP {d.in_features}-{c.width}x{c.depth}-{self.setting.n_classes} {c.activation}{extras}"

    def end(self, status: str, message: str, layer: str | None = None, tb: str | None = None,
            cause: str = "") -> EndRecord:
        """Emit this branch's end record. `cause`: one of END_CAUSES ("" for the status's own)."""
        self.flight_end(explosion=status == "diverged")
        end = EndRecord(status=status, steps=self.step, elapsed_s=self.setting.elapsed(), message=message,
                        layer=layer, traceback=tb, cause=cause)
        self.emit(end)
        return end

    def close(self) -> None:
        self.probes.close()

    # ------------------------------------------------------------------ the fork
    def fork(self, id: str, config: RunConfig | None = None) -> "Branch":
        """A new branch `id`. Without `config`: an exact copy of this one now, between steps (weights, optimiser
        state, step, sums, last good state). With it: fresh weights from that configuration (a forked run that
        started again, at step 0)."""
        if config is not None:
            b = Branch(id, config, self.setting, self._emit_run)
            b.step, b.epoch, b.step_in_epoch = self.step, self.epoch, self.step_in_epoch
            return b
        b = Branch(id, self.config, self.setting, self._emit_run, model=copy.deepcopy(self.model))  # no hooks now
        b.optimizer.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))
        b.step, b.epoch, b.step_in_epoch = self.step, self.epoch, self.step_in_epoch
        b.sums = self.sums.clone()
        b.ckpt, b.activations = self.ckpt, list(self.activations)  # the same history: the same replay after a NaN
        return b

    def become_run(self) -> None:
        """This branch is kept when its fork ends: from now on it is the run itself (its records carry no id)."""
        self.id = None

    # ------------------------------------------------------------------ commands
    def set_lr(self, lr: float, running: bool) -> None:
        if lr != self.config.lr:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.config = self.config.replace(lr=lr)
            if running:
                self.emit(EventRecord(step=self.step, set={"lr": lr}, elapsed_s=self.setting.elapsed()))

    def set_activation(self, name: str, running: bool) -> None:
        if name != self.config.activation:
            self.model.set_activation(name)
            self.config = self.config.replace(activation=name)
            if running:
                self.activations.append((self.step, name))
                self.emit(EventRecord(step=self.step, set={"activation": name}, elapsed_s=self.setting.elapsed()))

    def restart_windows(self) -> None:
        """The time paused counts in no steps/s."""
        now, s = self.setting.clock(), self.sums
        s.window_t, s.window_step = now, self.step
        s.prog_t, s.prog_step = now, self.step

    # ------------------------------------------------------------------ training
    def epoch_start(self, epoch: int, perm: torch.Tensor) -> None:
        """The start of an epoch whose order of examples is `perm` (the same for every branch)."""
        self.epoch = epoch
        self.sums.new_epoch()
        self.model.train()
        self.save_checkpoint(perm, 0)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, probe: bool) -> torch.Tensor:
        """One optimiser step; returns its loss (a device tensor). No host sync: the loss and the number right are
        added up on the device and read at the next check. The loss's sum is also the divergence check: a NaN or
        an infinity added to it stays there (the sum is float64, which float32 losses cannot overflow), so no
        kernel of its own is needed; the check that sees it replays from the last good state to the first bad
        step (_replay), which names it."""
        model, opt, s = self.model, self.optimizer, self.sums
        if probe:
            self.probes.arm()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        loss_d = loss.detach()
        if probe:  # a probed step checks the weight gradients too: one that is not finite makes the sum NaN
            self.probes.collect_grads(opt)
            s.acc_loss += torch.where(self.probes.grads_finite(), loss_d, math.nan)
        else:
            s.acc_loss += loss_d
        self.step += 1
        if len(y) > len(s.acc_correct):  # shapes: no sync (the first step, or a larger batch)
            s.acc_correct = torch.cat([s.acc_correct, s.acc_correct.new_zeros(len(y) - len(s.acc_correct))])
        s.acc_correct[:len(y)].add_(logits.detach().argmax(1) == y)
        s.acc_n += 1
        s.ep_examples += len(y)  # a shape: no sync
        opt.step()
        if probe:
            self.probes.collect_update()
        if self.flight is not None:
            self.flight.record(self.step, loss_d)  # on the device: no sync
        return loss_d

    def check(self) -> EndRecord | None:
        """A progress tick's check: read the sums in one copy of two scalars."""
        s = self.sums
        loss_sum, correct = torch.stack(  # sync: one small copy per progress tick
            [s.acc_loss, s.acc_correct.sum().to(self.acc_dtype)]).tolist()
        return self._verdict(loss_sum, correct)

    def _verdict(self, loss_sum: float, correct: float) -> EndRecord | None:
        s = self.sums
        if not math.isfinite(loss_sum):  # a step since the last check was not finite: the replay finds which
            self.flight_end(explosion=True)  # before the replay names the first non-finite layer
            # the flight recorder's rows (read by flight_end) name the step the replay stops at, at the latest
            seen = self.flight.first_not_finite(self.ckpt.step) if self.flight is not None and self.ckpt else None
            return self._diverged(seen or self.step)
        if s.acc_n and exploded(loss_sum / s.acc_n, self.setting.n_classes):
            self.flight_end(explosion=True)
            return self._exploded(loss_sum / s.acc_n)
        s.fold(loss_sum, correct)
        if self.flight is not None:
            for rec in self.flight.check(min_new=READ_EVERY):  # sync: the flight buffer, after the check's own copy
                self.emit(rec)
        return None

    def flight_end(self, explosion: bool) -> None:
        """Emit the flight recorder's pending spike records (and, for a run that `explosion` ended, the record of
        the explosion), before the end record."""
        if self.flight is not None:
            for rec in self.flight.finish(explosion):  # sync: at the end of the run
                self.emit(rec)

    def snapshot(self, loss: torch.Tensor) -> EndRecord | None:
        """Read the probes and the sums in one copy; emit the snapshot, or end the branch as diverged if a step
        since the last check was not finite."""
        s = self.sums
        layers, (loss_v, loss_sum, correct) = self.probes.finish(  # sync: one copy per snapshot
            extra=[loss, s.acc_loss, s.acc_correct.sum()])
        end = self._verdict(loss_sum, correct)
        if end is not None:
            return end
        now = self.setting.clock()
        snap = recorder.snapshot(step=self.step, epoch=self.epoch, elapsed_s=self.setting.elapsed(),
                                 loss=float(loss_v), loss_avg=s.win_loss / max(s.win_n, 1),
                                 rate=recorder.steps_per_s(now - s.window_t, self.step - s.window_step),
                                 activation=self.config.activation, layers=layers, device=self.setting.device)
        s.win_loss, s.win_n = 0.0, 0
        s.window_t, s.window_step = now, self.step
        self.emit(snap)
        return None

    def progress(self) -> None:
        now, s = self.setting.clock(), self.sums
        self.emit(ProgressRecord(step=self.step, epoch=self.epoch, elapsed_s=self.setting.elapsed(),
                                 loss=s.prog_loss / s.prog_n if s.prog_n else math.nan,
                                 steps_per_s=recorder.steps_per_s(now - s.prog_t, self.step - s.prog_step)))
        s.prog_loss, s.prog_n = 0.0, 0
        s.prog_t, s.prog_step = now, self.step

    @torch.no_grad()
    def evaluate(self) -> EpochRecord:
        model, data, dev = self.model, self.setting.data, self.setting.device
        model.eval()
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        for i in range(0, len(data.x_test), EVAL_BATCH):
            logits = model(data.x_test[i:i + EVAL_BATCH])
            y = data.y_test[i:i + EVAL_BATCH]
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        model.train()
        test_loss, test_correct = torch.stack(  # sync: per epoch
            [loss_sum.to(self.acc_dtype), correct.to(self.acc_dtype)]).tolist()
        s = self.sums
        n_test, n_train = len(data.x_test), max(s.ep_examples, 1)  # examples seen, not steps x batch
        return EpochRecord(epoch=self.epoch, step=self.step, train_loss=s.ep_loss / max(s.ep_n, 1),
                           train_acc=s.ep_correct / n_train, test_loss=test_loss / n_test,
                           test_acc=test_correct / n_test, elapsed_s=self.setting.elapsed())

    # ------------------------------------------------------------------ divergence
    def save_checkpoint(self, perm: torch.Tensor, next_batch: int) -> None:
        """Keep a copy of the current (checked, finite) state on the device, to replay from after a NaN."""
        self.ckpt = Checkpoint(step=self.step, next_batch=next_batch, perm=perm, activation=self.config.activation,
                               model={k: v.detach().clone() for k, v in self.model.state_dict().items()},
                               optimizer=copy.deepcopy(self.optimizer.state_dict()), taken_t=self.setting.clock())
        self.activations = []

    def _diverged(self, last: int) -> EndRecord:
        """A check saw a step not finite, `last` or earlier: the replay finds the first one and its layer."""
        self.probes.disarm()
        layer, what, step = self._replay(last)
        self.step = step
        where = f"{layer} ({what})" if layer else "the loss"
        return EndRecord(status="diverged", steps=step, elapsed_s=self.setting.elapsed(),
                         message=f"non-finite values at step {step}, first in {where}; try a lower --lr, "
                         "batchnorm, or a different init", layer=layer)

    def _exploded(self, loss: float) -> EndRecord:
        """A loss far above chance with no NaN (sigmoid at lr 1e30, Adam at lr 10): end it like a divergence, naming
        the layer whose weights grew the most since the last good state."""
        self.probes.disarm()
        growth = {}
        for name, m in self.probes.layers:  # sync: once, at the end of the run
            before = self.ckpt.model.get(f"{name}.weight") if self.ckpt else None
            if before is not None:
                growth[name] = float(torch.linalg.vector_norm(m.weight.detach().float())
                                     / torch.linalg.vector_norm(before.float()).clamp_min(1e-30))
        layer = max(growth, key=lambda n: growth[n] if math.isfinite(growth[n]) else math.inf) if growth else None
        where = ""
        if layer:
            where = f", {layer}'s weights " + ("grew most" if math.isfinite(growth[layer]) else "overflowed")
        n = self.setting.n_classes
        # short, the advice early: the UI's status line shows the start of it
        return EndRecord(status="diverged", steps=self.step, elapsed_s=self.setting.elapsed(),
                         message=f"exploded: loss {loss:.3g} (chance {chance_loss(n):.2f}), no NaN{where}; try a "
                         "much lower --lr (divide by 100), batchnorm, or xavier init", layer=layer, cause="exploded")

    def _replay(self, bad_step: int) -> tuple[str | None, str, int]:
        """Go back to the checkpoint and redo the steps until the first that is not finite (its loss or a
        gradient), `bad_step` at the latest, checking each (sync: one scalar per replayed step, only here), then
        locate the first non-finite layer on that step's batch before its update. Returns (layer, what, step)."""
        ck, cfg, model, opt, data = self.ckpt, self.config, self.model, self.optimizer, self.setting.data
        model.load_state_dict(ck.model)
        opt.load_state_dict(copy.deepcopy(ck.optimizer))  # it would share (and step) the checkpoint's tensors
        model.set_activation(ck.activation)
        changes = dict(self.activations)
        model.train()
        x = None
        for step in range(ck.step + 1, bad_step + 1):
            if step - 1 in changes:
                model.set_activation(changes[step - 1])
            b = ck.next_batch + step - ck.step - 1
            idx = ck.perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x, y = data.x_train[idx], data.y_train[idx]
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sums = [loss.detach()] + [p.grad.sum() for p in model.parameters() if p.grad is not None]
            if step == bad_step or not bool(torch.isfinite(torch.stack(sums)).all()):
                return (*locate_nonfinite(model, x), step)
            opt.step()
        return (*locate_nonfinite(model, x), bad_step)


__all__ = ["Branch", "Checkpoint", "RunSetting", "RunningSums"]
