"""The trainer: runs the experiment, probes it, emits records, and takes commands between steps.

    trainer = Trainer(config, sinks=[MetricsWriter(path), print])
    trainer.prepare()          # loads data and builds the model; raises DataError / ValueError before anything
    end = trainer.run()        # emits RunRecord, Snapshot..., EpochRecord..., EndRecord; returns the EndRecord

Commands (vgtui.core.records: Pause, StepOnce, SetActivation, SetLR, SetSpeedCap, Restart, Stop, Fork) go through
`trainer.send(cmd)` from any thread; the trainer drains them between steps. With `hold=True` (the UI's mode) a
run that ends (completed, diverged, failed) waits for a Restart or a Stop instead of returning.

A run is a list of branches (vgtui.engine.branch.Branch: one network each, with its optimiser, probes, running
sums and last good state); the Trainer is the loop over them, plus commands and pacing. The first branch is the
run itself (branch A: its records carry no branch). The fork (`Fork(True)`) adds a branch that starts as an exact
copy of the run (weights, optimiser state, step, `RunningSums.clone()` of its sums, last good state) and trains in
lockstep with it: each step of A is followed by the same step of every other branch on the same batch, and all are
probed at the same steps. A fork's records carry its id (vgtui.core.records.BRANCHES: "B", "C", "D"; up to three
branches beside the run, MAX_BRANCHES in all). `Fork(True, config=...)` forks with a change (see Fork).
Commands with a branch change that branch only (SetActivation, SetLR: at once, weights kept); Restart with a
branch starts every branch again from the same seed, each with its own configuration and that branch with the new
one, still forked. `Fork(False, keep)` ends the fork: keeping A, the forks end; keeping a fork's branch, the others
end and the run goes on from its state under a new run header (`forked_at` = that step). `Fork(False, branch=X)`
drops branch X only.

Host syncs. On a GPU, turning a device tensor into a Python value blocks the host until the device has caught
up, so an ordinary step does none (tests/test_sync.py checks it): its loss and accuracy are added up on the
device, and a non-finite loss (or, on probe steps, weight gradient) stays in the loss's sum as a NaN or an
infinity, which the next check reads. The only device -> host copies are, each marked `# sync:` in
vgtui/engine/branch.py:
  - a snapshot (`Probes.finish`, one copy that also carries the loss sums);
  - a progress tick, at most every PROGRESS_EVERY_S (one copy of two scalars: the sums);
  - an epoch end (the evaluation, the same kind of single copy);
  - after a divergence has been seen, the replay that locates it (one scalar per replayed step, once per run).
A run whose mean training loss since the last check is over 100x chance has exploded without a NaN (sigmoid at lr
1e30, Adam at lr 10): it ends there too, like a divergence (status "diverged", the message says it exploded).
The run stops at the first of these after a non-finite step, and names that step and the layer: it goes back to
the last good state it kept (a copy of the weights and optimiser state on the device, taken at a check at most
once a second and at each epoch start) and replays the steps until the first bad one.
"""

from __future__ import annotations

import math
import queue
import time
import traceback
from typing import Callable, Iterable

import torch

from vgtui.core.config import (DEFAULT_PROBE_EVERY, PROBE_MIN_INTERVAL_S, PROGRESS_EVERY_S, PROGRESS_FILE_EVERY_S,
                               RunConfig)
from vgtui.core.records import (BRANCHES, Command, EndRecord, EventRecord, Fork, Note, NoticeRecord, Pause,
                                ProgressRecord, Record, Restart, RunRecord, SetActivation, SetLR, SetSpeedCap, StatusRecord, StepOnce,
                                Stop)
from vgtui import signals
from vgtui.engine.branch import Branch, RunningSums, RunSetting
from vgtui.engine.data import TensorData, load_dataset, resolve_device

Sink = Callable[[Record], None]
CHECKPOINT_EVERY_S = 1.0  # the last good state is copied at most this often (it bounds the replay after a NaN); a
# fork of k branches, each k times slower, copies every k seconds
MAX_BRANCHES = 1 + len(BRANCHES)  # the run and three forks (a fork takes the next free id of BRANCHES)
# a branch's configuration changes these live, its weights kept; a change of any other field of NETWORK starts it
# from fresh weights; SHARED are the run's for every branch (one dataset, one order of batches, one clock)
LIVE = ("activation", "lr")
NETWORK = ("depth", "width", "init", "batchnorm", "skip", "optimizer", "momentum")
SHARED = ("dataset", "data_dir", "offline", "batch_size", "epochs", "max_steps", "seed", "device", "probe_every")


class _Interrupt(Exception):
    """Raised inside a run when a command ends it (Stop or Restart)."""

    def __init__(self, cmd: Command):
        self.cmd = cmd


class Trainer:
    def __init__(self, config: RunConfig, sinks: Iterable[Sink] = (), data: TensorData | None = None,
                 hold: bool = False, on_step: Callable[["Trainer"], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self._config = config.validate()  # the next run's (the running one's is its first branch's)
        self.clock = clock  # for elapsed times and the steps/s windows (tests inject a fake one)
        self.sinks = list(sinks)
        self.hold = hold
        self.on_step = on_step
        self.commands: "queue.Queue[Command]" = queue.Queue()
        self.data = data
        self.device: torch.device | None = None
        self.device_notice: str | None = None  # why `--device auto` fell back to the CPU, if it did
        self.setting: RunSetting | None = None  # what the run's branches share (set by prepare)
        self.branches: list[Branch] = []  # the run itself first, then its forks (in lockstep with it)
        self.generator: torch.Generator | None = None  # the order of examples, epoch after epoch
        self.paused = False
        self.speed_cap: float | None = None
        self.last_end: EndRecord | None = None
        self._steps_pending = 0
        self._prepared = False
        self._fork_configs: list[tuple[str, RunConfig]] = []  # a restart of a fork: its branches' configurations
        self._ended_forks: list[tuple[str, RunConfig]] = []  # the branches the last run ended with (for a restart)
        self._next_batch = 0  # the index in this epoch of the next step's batch
        self._perm: torch.Tensor | None = None  # this epoch's order of examples
        self._pace_t, self._pace_step = 0.0, 0  # the speed cap's schedule
        self._snap_t, self._snap_step = 0.0, 0  # the last snapshot (the cadence is the run's, for every branch)

    # ------------------------------------------------------------------ the run's first branch, and the fork
    @property
    def main(self) -> Branch:
        return self.branches[0]

    @property
    def config(self) -> RunConfig:
        return self.branches[0].config if self.branches else self._config

    @property
    def model(self):
        return self.branches[0].model if self.branches else None

    @property
    def optimizer(self):
        return self.main.optimizer

    @property
    def probes(self):
        return self.main.probes

    @property
    def step(self) -> int:
        return self.branches[0].step if self.branches else 0

    @property
    def epoch(self) -> int:
        return self.branches[0].epoch if self.branches else 0

    @property
    def fork(self) -> Branch | None:
        """The first fork's branch (B) while the run is forked."""
        return self.branches[1] if len(self.branches) > 1 else None

    @property
    def steps_per_epoch(self) -> int:
        return self.setting.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.setting.total_steps

    @property
    def layer_names(self) -> list[str]:
        return self.main.probes.names

    def model_description(self) -> str:
        return self.main.model_description()

    def branch(self, id: str | None) -> Branch | None:
        """The branch whose records carry `id` (None, "A": the run itself)."""
        if id in (None, "A"):
            return self.branches[0] if self.branches else None
        return next((b for b in self.branches if b.id == id), None)

    # ------------------------------------------------------------------ set-up
    def send(self, cmd: Command) -> None:
        """Thread-safe: queue a command for the trainer to apply between steps."""
        self.commands.put(cmd)

    def prepare(self) -> None:
        """Resolve the device, load the data (unless given), build model, optimiser and probes."""
        self.device, self.device_notice = resolve_device(self._config.device)
        if self.data is None or not self._data_matches(self._config):
            self.data = load_dataset(self._config.dataset, self._config.data_dir, self._config.offline, self.device)
        else:
            self.data = self.data.to(self.device)
        self._build()
        self._prepared = True

    def _data_matches(self, cfg: RunConfig) -> bool:
        return self.data is not None and (self.data.name == cfg.dataset or
                                          (cfg.dataset == "mnist" and self.data.name == "mnist-5k"))

    def _build(self) -> None:
        for b in self.branches:
            b.close()
        self.branches = []
        cfg, data = self._config, self.data
        n = len(data.x_train)
        steps_per_epoch = max(1, n // cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        self.setting = RunSetting(data=data, device=self.device, device_notice=self.device_notice,
                                  n_classes=int(data.y_train.max()) + 1, steps_per_epoch=steps_per_epoch,
                                  total_steps=min(total, cfg.max_steps) if cfg.max_steps else total, clock=self.clock)
        self.branches = [Branch(None, cfg, self.setting, self._emit)]
        self.generator = torch.Generator().manual_seed(cfg.seed)

    # ------------------------------------------------------------------ running
    def _emit(self, rec: Record) -> None:
        for sink in self.sinks:
            sink(rec)

    def _elapsed(self) -> float:
        return self.setting.elapsed()

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
                    self.last_end = self._end("failed", f"restart refused: {type(e).__name__}: {e}", cause="refused")
                    cmd = None

    def _restart(self, cmd: Restart) -> None:
        config = RunConfig.from_dict(cmd.config).validate()  # a branch's, when a fork restarts: refused before A
        if cmd.branch is not None:  # a forked run starts again: every branch as it is, `branch` with the new one
            forks = dict(self._fork_list() or self._ended_forks)
            if cmd.branch != "A":
                if cmd.branch not in BRANCHES:
                    raise ValueError(f"no branch {cmd.branch!r} (a fork's branches are {', '.join(BRANCHES)})")
                forks[cmd.branch] = self._branch_config(config)
                config = self.config
            self._fork_configs = sorted(forks.items(), key=lambda kv: BRANCHES.index(kv[0]))
        old_config, old_data = self._config, self.data
        self._config = config
        if not self._data_matches(config):
            self.data = None
        try:
            self.prepare()
        except Exception:
            self._config, self.data = old_config, old_data
            self._fork_configs = []
            raise
        self.paused = False

    def _fork_list(self) -> list[tuple[str, RunConfig]]:
        """The forks now: (id, configuration) of every branch beside the run."""
        return [(b.id, b.config) for b in self.branches[1:]]

    def _branch_config(self, config: RunConfig, base: RunConfig | None = None) -> RunConfig:
        """`config` as a branch of the run can have it: what the branches share is the run's (`base`: A's)."""
        base = base or self.config
        return config.replace(**{f: getattr(base, f) for f in SHARED})

    def _wait_after_end(self) -> Command:
        while True:
            cmd = self.commands.get()
            if isinstance(cmd, (Restart, Stop)):
                return cmd
            self._apply(cmd, running=False)

    def _run_once(self) -> tuple[EndRecord, Command | None]:
        cfg, data, setting = self.config, self.data, self.setting
        main = self.main
        setting.t0 = self.clock()
        main.step = main.epoch = main.step_in_epoch = 0
        main.sums = RunningSums.start(setting.device, main.acc_dtype, self.clock())
        main.ckpt, main.activations = None, []
        if main.flight is not None:
            main.flight.reset()
        self._emit(main.header())
        self._snap_t, self._snap_step = main.sums.window_t, 0
        self._pace_t, self._pace_step = time.perf_counter(), 0
        del self.branches[1:]
        for id, config in self._fork_configs:  # a forked run restarted: its branches from the same seed, at step 0
            self._start_fork(config, id)
        self._fork_configs, self._ended_forks, self._next_batch = [], [], 0
        try:
            for epoch in range(1, cfg.epochs + 1):
                self._perm = perm = torch.randperm(len(data.x_train), generator=self.generator).to(setting.device)
                for b in self.branches:  # the same order of examples for every branch
                    b.epoch_start(epoch, perm)
                last = setting.steps_per_epoch if not cfg.max_steps else min(setting.steps_per_epoch,
                                                                             cfg.max_steps - self.step)
                for i in range(last):
                    self._next_batch = i
                    manual = self._between_steps()
                    idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                    x, y = data.x_train[idx], data.y_train[idx]
                    probe = manual or i == last - 1 or self._snapshot_due()
                    losses = []
                    for b in self.branches:  # the same step on the same batch, one branch after the other
                        b.step_in_epoch = i
                        losses.append(b.train_step(x, y, probe))
                    tick = self.clock() - self.main.sums.prog_t >= PROGRESS_EVERY_S
                    if probe or tick:
                        for b, loss in zip(list(self.branches), losses):
                            verdict = b.snapshot(loss) if probe else b.check()
                            if verdict is None:
                                continue
                            if b is self.main:
                                return self._end(verdict.status, verdict.message, layer=verdict.layer,
                                                 cause=verdict.cause), None
                            self.branches.remove(b)  # a fork diverged: its end record says where; the rest go on
                            b.close()
                            b.emit(verdict)
                        if probe:
                            self._snap_t, self._snap_step = self.main.sums.window_t, self.step
                        if tick:
                            for b in self.branches:
                                b.progress()
                        # k branches step k times slower: a copy each every k seconds bounds the replay after a
                        # NaN by the same number of steps as one run's every second, at one run's cost in copies
                        if self.clock() - self.main.ckpt.taken_t >= CHECKPOINT_EVERY_S * len(self.branches):
                            for b in self.branches:
                                b.save_checkpoint(perm, i + 1)
                    if self.on_step is not None:
                        self.on_step(self)
                    self._pace()
                for b in self.branches:
                    b.emit(b.evaluate())
                if cfg.max_steps and self.step >= cfg.max_steps:
                    break
        except _Interrupt as stop:
            if isinstance(stop.cmd, Restart) and stop.cmd.branch is not None:
                ids = ["A", *sorted({*(i for i, _ in self._fork_list()), *([stop.cmd.branch] if stop.cmd.branch
                                                                            in BRANCHES else [])})]
                msg = (f"restarted {', '.join(ids[:-1])} and {ids[-1]} from fresh weights (seed {self.config.seed}): "
                       f"{stop.cmd.branch} = " + RunConfig.from_dict(stop.cmd.config).describe())
            elif isinstance(stop.cmd, Restart):
                msg = "restarted: " + RunConfig.from_dict(stop.cmd.config).describe()
            else:
                msg = stop.cmd.message
            cause = "restarted" if isinstance(stop.cmd, Restart) else getattr(stop.cmd, "cause", "quit")
            return self._end("interrupted", msg, cause=cause), stop.cmd
        except KeyboardInterrupt as e:  # Ctrl+C, or a signal turned into one (headless: see vgtui.commands.headless)
            self._end("interrupted", getattr(e, "message", None) or "interrupted by Ctrl+C",
                      cause=getattr(e, "cause", "interrupted"))
            raise
        except Exception as e:
            end = self._end("failed", f"{type(e).__name__}: {e}", tb=traceback.format_exc())
            if not self.hold:
                raise
            return end, None
        return self._end("completed", f"{self.step} steps, {self.epoch} epochs"), None

    def _end(self, status: str, message: str, layer: str | None = None, tb: str | None = None,
             cause: str = "") -> EndRecord:
        """The run ends, its forks with it. `cause`: one of END_CAUSES ("" for the status's own: completed,
        diverged, error, interrupted)."""
        main, forks = self.main, self.branches[1:]
        self._ended_forks = self._fork_list()
        del self.branches[1:]
        for fork in forks:
            if status == "diverged":
                fork.end("interrupted", f"run A diverged at step {main.step}", cause="fork-ended")
            else:
                fork.end(status, message, tb=tb, cause=cause)
            fork.close()
        return main.end(status, message, layer=layer, tb=tb, cause=cause)

    # ------------------------------------------------------------------ commands
    def _apply(self, cmd: Command, running: bool = True) -> None:
        if isinstance(cmd, Pause):
            if self.paused and not cmd.paused:  # the time paused counts neither in steps/s nor in pacing
                for b in self.branches:
                    b.restart_windows()
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
        elif isinstance(cmd, (SetActivation, SetLR)):
            target = self.branch(cmd.branch)
            if target is None or (target is not self.branches[0] and not running):
                return  # no such branch (the fork ended), or a fork's change after the run ended
            if isinstance(cmd, SetLR):
                target.set_lr(cmd.lr, running)
            else:
                target.set_activation(cmd.name, running)
        elif isinstance(cmd, Note):
            if running:
                self._emit(EventRecord(step=self.step, set=dict(cmd.set), elapsed_s=self._elapsed()))
        elif isinstance(cmd, (Restart, Stop)) and running:
            raise _Interrupt(cmd)

    # ------------------------------------------------------------------ the fork
    def _start_fork(self, config: RunConfig | None = None, id: str | None = None, fresh: bool = True) -> Branch:
        """A new branch. Without `config`: an exact copy of the run now (weights, optimiser state, step, sums).
        With it and `fresh`: fresh weights from that configuration and this run's seed (a forked run that started
        again, or a fork that changes the network). With it and not `fresh`: an exact copy, then its LIVE fields
        (activation, learning rate) set as the configuration has them, weights kept."""
        taken = {b.id for b in self.branches}
        id = id or next(i for i in BRANCHES if i not in taken)
        if config is not None and fresh:
            b = self.main.fork(id, config)
            if self._perm is not None and self.step > 0:  # mid-run: its last good state is its first
                b.save_checkpoint(self._perm, self._next_batch)
                b.restart_windows()  # its steps/s from now
            elif self._perm is not None and self.main.ckpt is not None:  # at step 0 of a run under way
                b.epoch_start(self.main.epoch, self._perm)
        else:
            b = self.main.fork(id)
            if config is not None:  # the change is the branch's from its first record (its header says it)
                if config.lr != b.config.lr:
                    b.set_lr(config.lr, running=False)
                if config.activation != b.config.activation:
                    b.set_activation(config.activation, running=False)
                    b.activations.append((b.step, config.activation))  # the replay after a NaN redoes it
        self.branches.append(b)
        b.emit(b.header(forked_at=self.step))
        return b

    def _notice(self, message: str) -> None:
        self._emit(NoticeRecord(message=message, level="warning", step=self.step))

    def _fork_command(self, cmd: Fork) -> None:
        if cmd.on:
            self._fork_on(cmd)
            return
        if len(self.branches) < 2:
            return
        if cmd.branch is not None and cmd.branch != "A":  # drop one branch; the others go on
            drop = self.branch(cmd.branch)
            if drop is None:
                return
            self.branches.remove(drop)
            drop.end("interrupted", f"{drop.id} was dropped from the fork at step {self.step}", cause="fork-ended")
            drop.close()
            what = f"{drop.id} dropped at step {self.step}" if len(self.branches) > 1 else "ended, A kept"
            self._emit(EventRecord(step=self.step, set={"fork": what}, elapsed_s=self._elapsed()))
            return
        keep = self.branch(cmd.keep) or self.main
        if keep is self.main:  # the forks end; the run goes on as it was
            forks = self.branches[1:]
            del self.branches[1:]
            for fork in forks:
                fork.end("interrupted", f"the fork ended at step {self.step}: A was kept", cause="fork-ended")
                fork.close()
            self._emit(EventRecord(step=self.step, set={"fork": "ended, A kept"}, elapsed_s=self._elapsed()))
            return
        # a fork's branch is kept: the run (and any other fork) ends here, and the run goes on from the kept
        # branch's state under a new header
        step, main = self.step, self.main
        self.branches.remove(keep)
        for other in self.branches[1:]:
            other.end("interrupted", f"the fork ended at step {step}: {keep.id} was kept", cause="fork-ended")
            other.close()
        main.end("interrupted", f"the fork ended at step {step}: {keep.id} was kept and goes on as the run",
                 cause="fork-ended")
        keep.end("completed", f"the fork ended at step {step}: {keep.id} goes on as the run", cause="fork-kept")
        main.close()
        keep.become_run()
        self.branches = [keep]
        self._emit(keep.header(forked_at=step))

    def _fork_on(self, cmd: Fork) -> None:
        """A new branch, or a notice saying why not."""
        taken = {b.id for b in self.branches}
        if len(self.branches) >= MAX_BRANCHES or all(i in taken for i in BRANCHES):
            self._notice(f"fork refused: the run has {len(self.branches) - 1} branches beside A already, the most "
                         f"there can be ({', '.join(BRANCHES)}); drop one or end the fork first")
            return
        if cmd.branch is not None and (cmd.branch not in BRANCHES or cmd.branch in taken):
            why = "is in the fork already" if cmd.branch in taken else f"is none of {', '.join(BRANCHES)}"
            self._notice(f"fork refused: branch {cmd.branch!r} {why}")
            return
        config, fresh = None, False
        if cmd.config is not None:
            try:
                config = RunConfig.from_dict(cmd.config).validate()
            except Exception as e:  # a ConfigError names the option; anything else its type
                self._notice(f"fork refused: {e}")
                return
            differs = [f for f in ("dataset", "batch_size") if getattr(config, f) != getattr(self.config, f)]
            if differs:
                self._notice(f"fork refused: a branch trains on the run's batches; its {differs[0]} must be the "
                             f"run's ({getattr(self.config, differs[0])!r}, not {getattr(config, differs[0])!r})")
                return
            config = self._branch_config(config)
            fresh = any(getattr(config, f) != getattr(self.config, f) for f in NETWORK)
        b = self._start_fork(config, cmd.branch, fresh=fresh)
        what = f"{b.id} forked at step {self.step}"
        if config is not None:
            what += f" ({b.config.describe()}{', fresh weights' if fresh else ''})"
        self._emit(EventRecord(step=self.step, set={"fork": what}, elapsed_s=self._elapsed()))

    def _between_steps(self) -> bool:
        """Drain commands; block while paused. True when the next step is a single step asked for while paused. A
        signal whose exception a library swallowed (vgtui.signals.pending) ends the run here, as it would have."""
        while True:
            if (signum := signals.pending()) is not None:
                raise signals.Interrupted(signum)
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
