"""The trainer: runs the experiment, probes it, emits records, and takes commands between steps.

    trainer = Trainer(config, sinks=[MetricsWriter(path), print])
    trainer.prepare()          # loads data and builds the model; raises DataError / ValueError before anything
    end = trainer.run()        # emits RunRecord, Snapshot..., EpochRecord..., EndRecord; returns the EndRecord

Commands (vgtui.core.records: Pause, StepOnce, SetActivation, SetSpeedCap, Restart, Stop) go through
`trainer.send(cmd)` from any thread; the trainer drains them between steps. With `hold=True` (the UI's mode) a
run that ends (completed, diverged, failed) waits for a Restart or a Stop instead of returning.
"""

from __future__ import annotations

import datetime
import os
import queue
import time
import traceback
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from vgtui import __version__
from vgtui.core.config import ACTIVATIONS, RunConfig
from vgtui.engine.data import TensorData, device_name, load_dataset, resolve_device
from vgtui.engine.model import build_model, build_optimizer
from vgtui.engine.probes import (ACT_RANGES, DEFAULT_ACT_RANGE, GRAD_EDGES_LOG10, Probes,
                                 locate_nonfinite)
from vgtui.core.records import (Command, EndRecord, EpochRecord, EventRecord, LayerInfo, Pause, Record, Restart,
                                RunRecord, SetActivation, SetSpeedCap, Snapshot, StatusRecord, StepOnce, Stop)

Sink = Callable[[Record], None]
EVAL_BATCH = 1000


class _Interrupt(Exception):
    """Raised inside a run when a command ends it (Stop or Restart)."""

    def __init__(self, cmd: Command):
        self.cmd = cmd


class Trainer:
    def __init__(self, config: RunConfig, sinks: Iterable[Sink] = (), data: TensorData | None = None,
                 hold: bool = False, on_step: Callable[["Trainer"], None] | None = None):
        self.config = config.validate()
        self.sinks = list(sinks)
        self.hold = hold
        self.on_step = on_step
        self.commands: "queue.Queue[Command]" = queue.Queue()
        self.data = data
        self.device: torch.device | None = None
        self.model = None
        self.paused = False
        self.speed_cap: float | None = None
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.last_snapshot: Snapshot | None = None
        self.last_end: EndRecord | None = None
        self._steps_pending = 0
        self._prepared = False

    # ------------------------------------------------------------------ set-up
    def send(self, cmd: Command) -> None:
        """Thread-safe: queue a command for the trainer to apply between steps."""
        self.commands.put(cmd)

    def prepare(self) -> None:
        """Resolve the device, load the data (unless given), build model, optimiser and probes."""
        self.device = resolve_device(self.config.device)
        if self.data is None or not self._data_matches(self.config):
            self.data = load_dataset(self.config.dataset, self.config.data_dir, self.config.offline, self.device)
        else:
            self.data = self.data.to(self.device)
        self._build()
        self._prepared = True

    def _data_matches(self, cfg: RunConfig) -> bool:
        return self.data is not None and (self.data.name == cfg.dataset or
                                          (cfg.dataset == "mnist" and self.data.name == "mnist-5k"))

    def _build(self) -> None:
        if getattr(self, "probes", None) is not None:
            self.probes.close()
        cfg = self.config
        self.model = build_model(cfg, self.data.in_features, int(self.data.y_train.max()) + 1).to(self.device)
        self.optimizer = build_optimizer(cfg, self.model)
        self.probes = Probes(self.model)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        n = len(self.data.x_train)
        self.steps_per_epoch = max(1, n // cfg.batch_size)
        total = self.steps_per_epoch * cfg.epochs
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total

    @property
    def layer_names(self) -> list[str]:
        return self.probes.names

    # ------------------------------------------------------------------ running
    def _emit(self, rec: Record) -> None:
        for sink in self.sinks:
            sink(rec)

    def _elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def run(self) -> EndRecord:
        if not self._prepared:
            self.prepare()
        while True:
            end, cmd = self._run_once()
            self.last_end = end
            while True:
                if not isinstance(cmd, Restart):
                    if isinstance(cmd, Stop) or not self.hold:
                        return self.last_end
                    cmd = self._wait_after_end()  # hold: a finished run waits for Restart or Stop
                    continue
                try:
                    self._restart(cmd)
                    break
                except Exception as e:  # e.g. a dataset that cannot be loaded: say so, keep the old run
                    self.last_end = self._end("failed", f"restart refused: {type(e).__name__}: {e}")
                    cmd = None

    def _restart(self, cmd: Restart) -> None:
        config = RunConfig.from_dict(cmd.config).validate()
        old_config, old_data = self.config, self.data
        self.config = config
        if not self._data_matches(config):
            self.data = None
        try:
            self.prepare()
        except Exception:
            self.config, self.data = old_config, old_data
            raise
        self.paused = False

    def _wait_after_end(self) -> Command:
        while True:
            cmd = self.commands.get()
            if isinstance(cmd, (Restart, Stop)):
                return cmd
            self._apply(cmd, running=False)

    def _header(self) -> RunRecord:
        cfg, data = self.config, self.data
        hidden = len(self.layer_names) - 1
        layers = tuple(LayerInfo(n, type(m).__name__, cfg.activation if i < hidden else None)
                       for i, (n, m) in enumerate(self.probes.layers))
        return RunRecord(layers=layers, device=str(self.device), version=__version__, config=cfg.to_dict(),
                         source="vgtui", model=self.model_description(), dataset=data.name,
                         device_name=device_name(self.device), steps_per_epoch=self.steps_per_epoch,
                         total_steps=self.total_steps, train_size=len(data.x_train), test_size=len(data.x_test),
                         probe_every=cfg.probe_every, notice=data.notice,
                         started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                         pid=os.getpid(), grad_edges=GRAD_EDGES_LOG10,
                         act_edges={a: np.linspace(*ACT_RANGES.get(a, DEFAULT_ACT_RANGE), self.probes.act_bins + 1)
                                    for a in ACTIVATIONS})  # every activation `a` can switch to

    def model_description(self) -> str:
        c, d = self.config, self.data
        extras = "".join(f" + {x}" for x in ((c.init if c.init != "default" else ""),
                                             "batchnorm" if c.batchnorm else "", "skip" if c.skip else "") if x)
        return f"MLP {d.in_features}-{c.width}x{c.depth}-{int(d.y_train.max()) + 1} {c.activation}{extras}"

    def _run_once(self) -> tuple[EndRecord, Command | None]:
        cfg, data = self.config, self.data
        self._t0 = time.perf_counter()
        self.step = self.epoch = self.step_in_epoch = 0
        self._emit(self._header())
        self._window_loss = torch.zeros((), device=self.device)
        self._window_n = 0
        self._window_t, self._window_step = time.perf_counter(), 0
        self._pace_t, self._pace_step = self._window_t, 0
        try:
            for epoch in range(1, cfg.epochs + 1):
                self.epoch = epoch
                self._ep_loss = torch.zeros((), device=self.device)
                self._ep_correct = torch.zeros((), device=self.device, dtype=torch.long)
                self._ep_n = 0
                self._ep_examples = 0
                perm = torch.randperm(len(data.x_train), generator=self.generator).to(self.device)
                self.model.train()
                last = self.steps_per_epoch if not cfg.max_steps else min(self.steps_per_epoch,
                                                                          cfg.max_steps - self.step)
                for b in range(last):
                    self.step_in_epoch = b
                    manual = self._between_steps()
                    idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                    probe = manual or (self.step + 1) % cfg.probe_every == 0 or b == last - 1
                    diverged = self._train_step(data.x_train[idx], data.y_train[idx], probe)
                    if diverged is not None:
                        return diverged, None
                    if self.on_step is not None:
                        self.on_step(self)
                    self._pace()
                self._emit(self._evaluate())
                if cfg.max_steps and self.step >= cfg.max_steps:
                    break
        except _Interrupt as stop:
            msg = ("restarted: " + RunConfig.from_dict(stop.cmd.config).describe()
                   if isinstance(stop.cmd, Restart) else stop.cmd.message)
            return self._end("interrupted", msg), stop.cmd
        except KeyboardInterrupt as e:  # Ctrl+C, or a signal turned into one (headless: see vgtui.headless)
            self._end("interrupted", getattr(e, "message", None) or "interrupted by Ctrl+C")
            raise
        except Exception as e:
            end = self._end("failed", f"{type(e).__name__}: {e}", tb=traceback.format_exc())
            if not self.hold:
                raise
            return end, None
        return self._end("completed", f"{self.step} steps, {self.epoch} epochs"), None

    def _end(self, status: str, message: str, layer: str | None = None, tb: str | None = None) -> EndRecord:
        end = EndRecord(status=status, steps=self.step, elapsed_s=self._elapsed(), message=message, layer=layer,
                        traceback=tb)
        self._emit(end)
        return end

    # ------------------------------------------------------------------ commands
    def _apply(self, cmd: Command, running: bool = True) -> None:
        if isinstance(cmd, Pause):
            if self.paused and not cmd.paused:  # the time paused counts neither in steps/s nor in pacing
                self._window_t, self._window_step = time.perf_counter(), self.step
                self._pace_t, self._pace_step = self._window_t, self.step
            if cmd.paused != self.paused:
                self.paused = cmd.paused
                self._emit(StatusRecord(paused=self.paused, step=self.step))
        elif isinstance(cmd, StepOnce):
            if running and self.paused:
                self._steps_pending += 1
        elif isinstance(cmd, SetSpeedCap):
            self.speed_cap = cmd.steps_per_s if cmd.steps_per_s and cmd.steps_per_s > 0 else None
            self._pace_t, self._pace_step = time.perf_counter(), self.step
        elif isinstance(cmd, SetActivation):
            if cmd.name != self.config.activation and self.model is not None:
                self.model.set_activation(cmd.name)
                self.config = self.config.replace(activation=cmd.name)
                if running:
                    self._emit(EventRecord(step=self.step, set={"activation": cmd.name}, elapsed_s=self._elapsed()))
        elif isinstance(cmd, (Restart, Stop)) and running:
            raise _Interrupt(cmd)

    def _between_steps(self) -> bool:
        """Drain commands; block while paused. True when the next step is a single step asked for while paused."""
        while True:
            try:
                while True:
                    self._apply(self.commands.get_nowait())
            except queue.Empty:
                pass
            if not self.paused:
                return False
            if self._steps_pending:
                self._steps_pending -= 1
                return True
            try:
                self._apply(self.commands.get(timeout=0.25))
            except queue.Empty:
                pass

    def _pace(self) -> None:
        """Honour the steps/s cap, still answering commands while waiting. A step that ran late moves the
        schedule instead of being caught up with a burst, so no window ever runs faster than the cap."""
        if not self.speed_cap:
            return
        due = self._pace_t + (self.step - self._pace_step) / self.speed_cap
        if due <= time.perf_counter():
            self._pace_t, self._pace_step = time.perf_counter(), self.step
            return
        while (wait := due - time.perf_counter()) > 0:
            try:
                self._apply(self.commands.get(timeout=min(wait, 0.1)))
            except queue.Empty:
                pass
            if self.paused or not self.speed_cap:
                return
            due = self._pace_t + (self.step - self._pace_step) / self.speed_cap

    # ------------------------------------------------------------------ one step
    def _train_step(self, x: torch.Tensor, y: torch.Tensor, probe: bool) -> EndRecord | None:
        model, opt = self.model, self.optimizer
        if probe:
            self.probes.arm()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        loss_d = loss.detach()
        if probe:
            self.probes.collect_grads(opt)
        # One scalar check per step (free on the CPU): divergence is caught at the step where it appears,
        # before the optimiser spreads it. Probe steps also check the weight gradients.
        if not bool(torch.isfinite(loss_d)) or (probe and not self.probes.grads_finite()):
            self.probes.disarm()
            layer, what = locate_nonfinite(model, x)
            self.step += 1
            where = f"{layer} ({what})" if layer else "the loss"
            return self._end("diverged", f"non-finite values at step {self.step}, first in {where}; try a "
                             "lower --lr, batchnorm, or a different init", layer=layer)
        self._window_loss += loss_d
        self._window_n += 1
        self._ep_loss += loss_d
        self._ep_correct += (logits.detach().argmax(1) == y).sum()
        self._ep_n += 1
        self._ep_examples += len(y)
        opt.step()
        self.step += 1
        if probe:
            self.probes.collect_update()
            self._snapshot(loss_d)
        return None

    def _snapshot(self, loss: torch.Tensor) -> None:
        layers, (loss_v, window) = self.probes.finish(extra=[loss, self._window_loss / max(self._window_n, 1)])
        now = time.perf_counter()
        dt, ds = now - self._window_t, self.step - self._window_step
        snap = Snapshot(step=self.step, epoch=self.epoch, elapsed_s=self._elapsed(), loss=float(loss_v),
                        loss_avg=float(window), steps_per_s=ds / dt if dt > 0 and ds > 0 else 0.0,
                        activation=self.config.activation, layers=layers)
        self._window_loss = torch.zeros((), device=self.device)
        self._window_n = 0
        self._window_t, self._window_step = now, self.step
        self.last_snapshot = snap
        self._emit(snap)

    @torch.no_grad()
    def _evaluate(self) -> EpochRecord:
        model, data = self.model, self.data
        model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for i in range(0, len(data.x_test), EVAL_BATCH):
            logits = model(data.x_test[i:i + EVAL_BATCH])
            y = data.y_test[i:i + EVAL_BATCH]
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        model.train()
        vals = torch.stack([loss_sum.float(), correct.float(), self._ep_loss.float(),
                            self._ep_correct.float()]).cpu().tolist()
        n_test, n_train = len(data.x_test), max(self._ep_examples, 1)  # examples seen, not steps x batch size
        return EpochRecord(epoch=self.epoch, step=self.step, train_loss=vals[2] / max(self._ep_n, 1),
                           train_acc=vals[3] / n_train, test_loss=vals[0] / n_test, test_acc=vals[1] / n_test,
                           elapsed_s=self._elapsed())


__all__ = ["Trainer"]
