"""The trainer: runs the experiment, probes it, emits records, and takes commands between steps.

    trainer = Trainer(config, sinks=[MetricsWriter(path), print])
    trainer.prepare()          # loads data and builds the model; raises DataError / ValueError before anything
    end = trainer.run()        # emits RunRecord, Snapshot..., EpochRecord..., EndRecord; returns the EndRecord

Commands (vgtui.core.records: Pause, StepOnce, SetActivation, SetLR, SetSpeedCap, Restart, Stop, Fork) go through
`trainer.send(cmd)` from any thread; the trainer drains them between steps. With `hold=True` (the UI's mode) a
run that ends (completed, diverged, failed) waits for a Restart or a Stop instead of returning.

The fork (`Fork(True)`): a second network, branch B, starts as an exact copy of the run (weights, optimiser
state, step, sums) and trains in lockstep with it: each step of A is followed by the same step of B on the same
batch, and both are probed at the same steps. Its records carry branch "B". Commands with branch "B" change B only
(SetActivation, SetLR: at once, weights kept); Restart with branch "B" starts A and B again from the same seed, B
with the new configuration, still forked. `Fork(False, keep)` ends it: keeping A, B ends; keeping B, A ends and the
run goes on from B's state under a new run header (`forked_at` = that step).

Host syncs. On a GPU, turning a device tensor into a Python value blocks the host until the device has caught
up, so an ordinary step does none (tests/test_sync.py checks it): its loss and accuracy are added up on the
device, and a non-finite loss (or, on probe steps, weight gradient) is recorded on the device as the number of
the first bad step. The only device -> host copies are, each marked `# sync:` below:
  - a snapshot (`Probes.finish`, one copy that also carries the loss sums and the first bad step);
  - a progress tick, at most every PROGRESS_EVERY_S (one copy of three scalars: the sums and the first bad step);
  - an epoch end (the evaluation, the same kind of single copy);
  - after a divergence has been seen, the replay that locates it (one scalar per replayed step, once per run).
A run whose mean training loss since the last check is over 100x chance has exploded without a NaN (sigmoid at lr
1e30, Adam at lr 10): it ends there too, like a divergence (status "diverged", the message says it exploded).
The run stops at the first of these after a non-finite step, and names that step and the layer: it goes back to
the last good state it kept (a copy of the weights and optimiser state on the device, taken at a check at most
once a second and at each epoch start) and replays the steps up to the bad one.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import math
import os
import queue
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from vgtui import __version__
from vgtui.core.config import (ACTIVATIONS, DEFAULT_PROBE_EVERY, PROBE_MIN_INTERVAL_S, PROGRESS_EVERY_S,
                               PROGRESS_FILE_EVERY_S, RunConfig)
from vgtui.core.diagnosis import chance_loss, exploded
from vgtui.engine.data import TensorData, device_name, load_dataset, resolve_device
from vgtui.engine.model import build_model, build_optimizer
from vgtui.engine.probes import ACT_RANGES, DEFAULT_ACT_RANGE, GRAD_EDGES_LOG10, Probes, locate_nonfinite
from vgtui.core.records import (Command, EndRecord, EpochRecord, EventRecord, Fork, LayerInfo, Pause, ProgressRecord,
                                Record, Restart, RunRecord, SetActivation, SetLR, SetSpeedCap, Snapshot, StatusRecord,
                                StepOnce, Stop)

Sink = Callable[[Record], None]
EVAL_BATCH = 1000
CHECKPOINT_EVERY_S = 1.0  # the last good state is copied at most this often (it bounds the replay after a NaN)
# What a run keeps of its own besides model, optimiser and probes: the sums and clocks of one network's training.
# A fork's branch B starts with a copy of them (it has trained exactly what A has).
_SUMS = ("_first_bad", "_acc_loss", "_acc_correct", "_acc_n", "_win_loss", "_win_n", "_prog_loss", "_prog_n",
         "_window_t", "_window_step", "_prog_t", "_prog_step", "_snap_t", "_snap_step", "_ep_loss", "_ep_correct",
         "_ep_n", "_ep_examples")


@dataclass
class _Checkpoint:
    """A known-finite state on the device, and what is needed to replay the steps that followed it."""

    step: int  # steps done when it was taken
    next_batch: int  # index in the epoch of the batch after it
    perm: torch.Tensor  # that epoch's order of examples
    activation: str
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]


class _Interrupt(Exception):
    """Raised inside a run when a command ends it (Stop or Restart)."""

    def __init__(self, cmd: Command):
        self.cmd = cmd


class Trainer:
    def __init__(self, config: RunConfig, sinks: Iterable[Sink] = (), data: TensorData | None = None,
                 hold: bool = False, on_step: Callable[["Trainer"], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.config = config.validate()
        self.clock = clock  # for elapsed times and the steps/s windows (tests inject a fake one)
        self.sinks = list(sinks)
        self.hold = hold
        self.on_step = on_step
        self.commands: "queue.Queue[Command]" = queue.Queue()
        self.data = data
        self.device: torch.device | None = None
        self.device_notice: str | None = None  # why `--device auto` fell back to the CPU, if it did
        self.model = None
        self.paused = False
        self.speed_cap: float | None = None
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.last_end: EndRecord | None = None
        self._steps_pending = 0
        self._prepared = False
        self.fork: Trainer | None = None  # branch B while the run is forked
        self._fork_config: RunConfig | None = None  # a restart of a fork: B's configuration for the next run

    # ------------------------------------------------------------------ set-up
    def send(self, cmd: Command) -> None:
        """Thread-safe: queue a command for the trainer to apply between steps."""
        self.commands.put(cmd)

    def prepare(self) -> None:
        """Resolve the device, load the data (unless given), build model, optimiser and probes."""
        self.device, self.device_notice = resolve_device(self.config.device)
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
        self.n_classes = int(self.data.y_train.max()) + 1
        self.model = build_model(cfg, self.data.in_features, self.n_classes).to(self.device)
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
        return self.clock() - self._t0

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
        config = RunConfig.from_dict(cmd.config).validate()  # B's, when a fork restarts: refused before A restarts
        if cmd.branch == "B":  # a forked run starts again: A as it is, B with the new configuration and A's seed
            self._fork_config = config.replace(seed=self.config.seed)
            config = self.config
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
                         probe_every=cfg.probe_every or DEFAULT_PROBE_EVERY,
                         probe_min_interval_s=None if cfg.probe_every else PROBE_MIN_INTERVAL_S,
                         notice="; ".join(n for n in (self.device_notice, data.notice) if n) or None,
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
        self._t0 = self.clock()
        self.step = self.epoch = self.step_in_epoch = 0
        self._emit(self._header())
        self._init_sums()
        self._pace_t, self._pace_step = time.perf_counter(), 0
        self.fork = None
        if self._fork_config is not None:  # a forked run restarted: B from the same seed, at step 0
            self._start_fork(self._fork_config)
            self._fork_config = None
        try:
            for epoch in range(1, cfg.epochs + 1):
                self._perm = perm = torch.randperm(len(data.x_train), generator=self.generator).to(self.device)
                self._epoch_start(epoch, perm)
                if self.fork is not None:  # B: the same order of examples
                    self.fork._epoch_start(epoch, perm)
                last = self.steps_per_epoch if not cfg.max_steps else min(self.steps_per_epoch,
                                                                          cfg.max_steps - self.step)
                for b in range(last):
                    self.step_in_epoch = b
                    manual = self._between_steps()
                    idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                    probe = manual or b == last - 1 or self._snapshot_due()
                    loss = self._train_step(data.x_train[idx], data.y_train[idx], probe)
                    fork = self.fork
                    if fork is not None:  # B: the same step on the same batch, right after A's
                        fork.step_in_epoch = b
                        loss_b = fork._train_step(data.x_train[idx], data.y_train[idx], probe)
                    tick = self.clock() - self._prog_t >= PROGRESS_EVERY_S
                    if probe or tick:
                        diverged = self._snapshot(loss) if probe else self._check()
                        if diverged is not None:
                            return diverged, None
                        if fork is not None and (fork._snapshot(loss_b) if probe else fork._check()) is not None:
                            self.fork = None  # B diverged: its end record says where; A goes on alone
                        if tick:
                            self._progress()
                            if self.fork is not None:
                                self.fork._progress()
                        if self.clock() - self._ckpt_t >= CHECKPOINT_EVERY_S:
                            self._save_checkpoint(perm, b + 1)
                            if self.fork is not None:
                                self.fork._save_checkpoint(perm, b + 1)
                    if self.on_step is not None:
                        self.on_step(self)
                    self._pace()
                self._emit(self._evaluate())
                if self.fork is not None:
                    self.fork._emit(self.fork._evaluate())
                if cfg.max_steps and self.step >= cfg.max_steps:
                    break
        except _Interrupt as stop:
            if isinstance(stop.cmd, Restart) and stop.cmd.branch == "B":
                msg = (f"restarted A and B from fresh weights (seed {self.config.seed}): B = "
                       + RunConfig.from_dict(stop.cmd.config).describe())
            elif isinstance(stop.cmd, Restart):
                msg = "restarted: " + RunConfig.from_dict(stop.cmd.config).describe()
            else:
                msg = stop.cmd.message
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
        if self.fork is not None:  # the run ends: its fork with it
            fork, self.fork = self.fork, None
            if status == "diverged":
                fork._end("interrupted", f"run A diverged at step {self.step}")
            else:
                fork._end(status, message, tb=tb)
        end = EndRecord(status=status, steps=self.step, elapsed_s=self._elapsed(), message=message, layer=layer,
                        traceback=tb)
        self._emit(end)
        return end

    # ------------------------------------------------------------------ commands
    def _apply(self, cmd: Command, running: bool = True) -> None:
        if isinstance(cmd, Pause):
            if self.paused and not cmd.paused:  # the time paused counts neither in steps/s nor in pacing
                self._window_t, self._window_step = self.clock(), self.step
                self._prog_t, self._prog_step = self._window_t, self.step
                self._pace_t, self._pace_step = time.perf_counter(), self.step
            if cmd.paused != self.paused:
                self.paused = cmd.paused
                self._emit(StatusRecord(paused=self.paused, step=self.step))
        elif isinstance(cmd, StepOnce):
            if running and self.paused:
                self._steps_pending += 1
        elif isinstance(cmd, SetSpeedCap):
            self.speed_cap = cmd.steps_per_s if cmd.steps_per_s and cmd.steps_per_s > 0 else None
            self._pace_t, self._pace_step = time.perf_counter(), self.step
        elif isinstance(cmd, Fork):
            if running:
                self._fork_command(cmd)
        elif cmd.__class__ in (SetActivation, SetLR) and cmd.branch == "B":
            if self.fork is not None and running:
                self.fork._apply(dataclasses.replace(cmd, branch=None))
        elif isinstance(cmd, SetLR):
            if cmd.lr != self.config.lr and self.model is not None:
                for group in self.optimizer.param_groups:
                    group["lr"] = cmd.lr
                self.config = self.config.replace(lr=cmd.lr)
                if running:
                    self._emit(EventRecord(step=self.step, set={"lr": cmd.lr}, elapsed_s=self._elapsed()))
        elif isinstance(cmd, SetActivation):
            if cmd.name != self.config.activation and self.model is not None:
                self.model.set_activation(cmd.name)
                self.config = self.config.replace(activation=cmd.name)
                if running:
                    self._activations.append((self.step, cmd.name))
                    self._emit(EventRecord(step=self.step, set={"activation": cmd.name}, elapsed_s=self._elapsed()))
        elif isinstance(cmd, (Restart, Stop)) and running:
            raise _Interrupt(cmd)

    # ------------------------------------------------------------------ the fork
    def _init_sums(self) -> None:
        """A run's sums and clocks, at its start."""
        dev = self.device
        self._acc_dtype = acc = torch.float32 if dev.type == "mps" else torch.float64  # MPS has no float64
        # Device-side accumulators (no sync per step), folded into the host sums below at each check.
        self._first_bad = torch.zeros((), device=dev, dtype=torch.long)  # first non-finite step; 0: none yet
        self._acc_loss = torch.zeros((), device=dev, dtype=acc)
        self._acc_correct = torch.zeros((), device=dev, dtype=torch.long)
        self._acc_n = 0
        self._win_loss, self._win_n = 0.0, 0  # since the previous snapshot (host)
        self._prog_loss, self._prog_n = 0.0, 0  # since the previous progress record (host)
        self._window_t, self._window_step = self.clock(), 0
        self._prog_t, self._prog_step = self._window_t, 0
        self._snap_t, self._snap_step = self._window_t, 0
        self._ep_loss, self._ep_correct, self._ep_n, self._ep_examples = 0.0, 0, 0, 0
        self._ckpt: _Checkpoint | None = None
        self._ckpt_t = self.clock()
        self._activations: list[tuple[int, str]] = []  # activation changes since the checkpoint (for the replay)

    def _emit_b(self, rec: Record) -> None:
        """Branch B's sink: its records, marked "B", go where the run's go."""
        if isinstance(rec, (RunRecord, Snapshot, EpochRecord, EventRecord, EndRecord, ProgressRecord)):
            self._emit(dataclasses.replace(rec, branch="B"))

    def _start_fork(self, config: RunConfig | None = None) -> None:
        """Branch B. Without `config`: an exact copy of this run now (weights, optimiser state, step, sums). With
        it: fresh weights from that configuration and this run's seed (a forked run that started again)."""
        b = Trainer(config or self.config, sinks=[self._emit_b], data=self.data, clock=self.clock)
        b.device, b.n_classes, b._t0 = self.device, self.n_classes, self._t0
        b.steps_per_epoch, b.total_steps = self.steps_per_epoch, self.total_steps
        if config is None:
            b.model = copy.deepcopy(self.model)  # between steps: the probes' hooks are not attached
            b.optimizer = build_optimizer(b.config, b.model)
            b.optimizer.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))
        else:
            b.model = build_model(b.config, self.data.in_features, self.n_classes).to(self.device)
            b.optimizer = build_optimizer(b.config, b.model)
        b.probes = Probes(b.model)
        b._prepared = True
        b.step, b.epoch, b.step_in_epoch = self.step, self.epoch, self.step_in_epoch
        b._init_sums()
        if config is None:
            for name in _SUMS:
                v = getattr(self, name)
                setattr(b, name, v.clone() if isinstance(v, torch.Tensor) else v)
            b._save_checkpoint(self._perm, self.step_in_epoch)  # between steps: the next batch is step_in_epoch
        self.fork = b
        b._emit(dataclasses.replace(b._header(), forked_at=self.step))

    def _epoch_start(self, epoch: int, perm: torch.Tensor) -> None:
        """The start of an epoch whose order of examples is `perm` (A's, for the fork's branch B)."""
        self.epoch = epoch
        self._ep_loss, self._ep_correct, self._ep_n, self._ep_examples = 0.0, 0, 0, 0
        self.model.train()
        self._save_checkpoint(perm, 0)

    def _fork_command(self, cmd: Fork) -> None:
        if cmd.on:
            if self.fork is None:
                self._start_fork()
                self._emit(EventRecord(step=self.step, set={"fork": f"B forked at step {self.step}"},
                                       elapsed_s=self._elapsed()))
            return
        if self.fork is None:
            return
        fork = self.fork
        if cmd.keep != "B":
            self.fork = None
            fork._end("interrupted", f"the fork ended at step {self.step}: A was kept")
            self._emit(EventRecord(step=self.step, set={"fork": "ended, A kept"}, elapsed_s=self._elapsed()))
            return
        # B is kept: A ends here, and the run goes on from B's state under a new header
        self.fork = None
        self._end("interrupted", f"the fork ended at step {self.step}: B was kept and goes on as the run")
        fork._end("completed", f"the fork ended at step {self.step}: B goes on as the run")
        self.probes.close()
        self.model, self.optimizer, self.probes, self.config = fork.model, fork.optimizer, fork.probes, fork.config
        for name in _SUMS + ("_ckpt", "_ckpt_t", "_activations"):
            setattr(self, name, getattr(fork, name))
        self._emit(dataclasses.replace(self._header(), forked_at=self.step))

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
    def _train_step(self, x: torch.Tensor, y: torch.Tensor, probe: bool) -> torch.Tensor:
        """One optimiser step; returns its loss (a device tensor). No host sync: the loss, the number right and
        the first non-finite step are kept on the device and read at the next check."""
        model, opt = self.model, self.optimizer
        if probe:
            self.probes.arm()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        loss_d = loss.detach()
        finite = torch.isfinite(loss_d)
        if probe:
            self.probes.collect_grads(opt)
            finite = finite & self.probes.grads_finite()
        self.step += 1
        self._first_bad = torch.where((self._first_bad == 0) & ~finite, self.step, self._first_bad)
        self._acc_loss += loss_d
        self._acc_correct += (logits.detach().argmax(1) == y).sum()
        self._acc_n += 1
        self._ep_examples += len(y)  # a shape: no sync
        opt.step()
        if probe:
            self.probes.collect_update()
        return loss_d

    def _snapshot_due(self) -> bool:
        """Is the coming step a snapshot? Step 1 always; then every --probe-every steps exactly, or (automatic)
        every DEFAULT_PROBE_EVERY steps but at least PROBE_MIN_INTERVAL_S apart."""
        nxt, every = self.step + 1, self.config.probe_every
        if nxt == 1:
            return True
        if every:
            return nxt % every == 0
        base = 0 if self._snap_step == 1 else self._snap_step  # step 1 does not shift it: 40, 80, ... when slow
        return nxt - base >= DEFAULT_PROBE_EVERY and self.clock() - self._snap_t >= PROBE_MIN_INTERVAL_S

    def _fold(self, loss_sum: float, correct: float) -> None:
        """Move the device sums just read into the host's per-snapshot, per-progress and per-epoch sums;
        restart them."""
        self._win_loss += loss_sum
        self._win_n += self._acc_n
        self._prog_loss += loss_sum
        self._prog_n += self._acc_n
        self._ep_loss += loss_sum
        self._ep_correct += int(correct)
        self._ep_n += self._acc_n
        self._acc_loss.zero_()
        self._acc_correct.zero_()
        self._acc_n = 0

    def _check(self) -> EndRecord | None:
        """A progress tick's check: read the sums and the first bad step in one copy of three scalars."""
        loss_sum, correct, first_bad = torch.stack(  # sync: one small copy per progress tick
            [self._acc_loss, self._acc_correct.to(self._acc_dtype), self._first_bad.to(self._acc_dtype)]).tolist()
        if first_bad:
            return self._diverged(int(first_bad))
        if self._acc_n and exploded(loss_sum / self._acc_n, self.n_classes):
            return self._exploded(loss_sum / self._acc_n)
        self._fold(loss_sum, correct)
        return None

    def _progress(self) -> None:
        now = self.clock()
        dt, ds = now - self._prog_t, self.step - self._prog_step
        self._emit(ProgressRecord(step=self.step, epoch=self.epoch, elapsed_s=self._elapsed(),
                                  loss=self._prog_loss / self._prog_n if self._prog_n else math.nan,
                                  steps_per_s=ds / dt if dt > 0 and ds > 0 else 0.0))
        self._prog_loss, self._prog_n = 0.0, 0
        self._prog_t, self._prog_step = now, self.step

    def _snapshot(self, loss: torch.Tensor) -> EndRecord | None:
        """Read the probes, the sums and the first bad step in one copy; emit the snapshot, or end the run
        as diverged if a step since the last check was not finite."""
        layers, (loss_v, loss_sum, correct, first_bad) = self.probes.finish(  # sync: one copy per snapshot
            extra=[loss, self._acc_loss, self._acc_correct, self._first_bad])
        if first_bad:
            return self._diverged(int(first_bad))
        if self._acc_n and exploded(loss_sum / self._acc_n, self.n_classes):
            return self._exploded(loss_sum / self._acc_n)
        self._fold(loss_sum, correct)
        now = self.clock()
        dt, ds = now - self._window_t, self.step - self._window_step
        snap = Snapshot(step=self.step, epoch=self.epoch, elapsed_s=self._elapsed(), loss=float(loss_v),
                        loss_avg=self._win_loss / max(self._win_n, 1),
                        steps_per_s=ds / dt if dt > 0 and ds > 0 else 0.0,
                        activation=self.config.activation, layers=layers)
        self._win_loss, self._win_n = 0.0, 0
        self._window_t, self._window_step = now, self.step
        self._snap_t, self._snap_step = now, self.step
        self._emit(snap)
        return None

    # ------------------------------------------------------------------ divergence
    def _save_checkpoint(self, perm: torch.Tensor, next_batch: int) -> None:
        """Keep a copy of the current (checked, finite) state on the device, to replay from after a NaN."""
        self._ckpt = _Checkpoint(step=self.step, next_batch=next_batch, perm=perm,
                                 activation=self.config.activation,
                                 model={k: v.detach().clone() for k, v in self.model.state_dict().items()},
                                 optimizer=copy.deepcopy(self.optimizer.state_dict()))
        self._ckpt_t = self.clock()
        self._activations = []

    def _diverged(self, bad_step: int) -> EndRecord:
        self.probes.disarm()
        layer, what, step = self._replay(bad_step)
        self.step = step
        where = f"{layer} ({what})" if layer else "the loss"
        return self._end("diverged", f"non-finite values at step {step}, first in {where}; try a lower --lr, "
                         "batchnorm, or a different init", layer=layer)

    def _exploded(self, loss: float) -> EndRecord:
        """A loss far above chance with no NaN (sigmoid at lr 1e30, Adam at lr 10): end it like a divergence, naming
        the layer whose weights grew the most since the last good state."""
        self.probes.disarm()
        growth = {}
        for name, m in self.probes.layers:  # sync: once, at the end of the run
            before = self._ckpt.model.get(f"{name}.weight") if self._ckpt else None
            if before is not None:
                growth[name] = float(torch.linalg.vector_norm(m.weight.detach().float())
                                     / torch.linalg.vector_norm(before.float()).clamp_min(1e-30))
        layer = max(growth, key=lambda n: growth[n] if math.isfinite(growth[n]) else math.inf) if growth else None
        where = ""
        if layer:
            where = f", {layer}'s weights " + ("grew most" if math.isfinite(growth[layer]) else "overflowed")
        # short, the advice early: the UI's status line shows the start of it
        return self._end("diverged", f"exploded: loss {loss:.3g} (chance {chance_loss(self.n_classes):.2f}), no "
                         f"NaN{where}; try a much lower --lr (divide by 100), batchnorm, or xavier init",
                         layer=layer)

    def _replay(self, bad_step: int) -> tuple[str | None, str, int]:
        """Go back to the checkpoint and redo the steps up to `bad_step`, checking each (sync: one scalar per
        replayed step, only here), then locate the first non-finite layer on the bad step's batch before its
        update. Returns (layer, what, step)."""
        ck, cfg, model, opt = self._ckpt, self.config, self.model, self.optimizer
        model.load_state_dict(ck.model)
        opt.load_state_dict(ck.optimizer)
        model.set_activation(ck.activation)
        changes = dict(self._activations)
        model.train()
        x = None
        for step in range(ck.step + 1, bad_step + 1):
            if step - 1 in changes:
                model.set_activation(changes[step - 1])
            b = ck.next_batch + step - ck.step - 1
            idx = ck.perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x, y = self.data.x_train[idx], self.data.y_train[idx]
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sums = [loss.detach()] + [p.grad.sum() for p in model.parameters() if p.grad is not None]
            if step == bad_step or not bool(torch.isfinite(torch.stack(sums)).all()):
                return (*locate_nonfinite(model, x), step)
            opt.step()
        return (*locate_nonfinite(model, x), bad_step)

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
        test_loss, test_correct = torch.stack([loss_sum.to(self._acc_dtype), correct.to(self._acc_dtype)]).tolist()  # sync: per epoch
        n_test, n_train = len(data.x_test), max(self._ep_examples, 1)  # examples seen, not steps x batch
        return EpochRecord(epoch=self.epoch, step=self.step, train_loss=self._ep_loss / max(self._ep_n, 1),
                           train_acc=self._ep_correct / n_train, test_loss=test_loss / n_test,
                           test_acc=test_correct / n_test, elapsed_s=self._elapsed())


def progress_at_most(sink: Sink, every_s: float = PROGRESS_FILE_EVERY_S) -> Sink:
    """Wrap a sink (the metrics file's) so that it gets every record but progress records at most once per
    `every_s` of run time: the UI gets them a few times a second, the file a steady, small stream."""
    last = -math.inf

    def thinned(rec: Record) -> None:
        nonlocal last
        if isinstance(rec, ProgressRecord):
            if rec.elapsed_s - last < every_s:
                return
            last = rec.elapsed_s
        elif isinstance(rec, RunRecord):
            last = -math.inf
        sink(rec)

    return thinned


__all__ = ["Trainer", "progress_at_most"]
