"""Watch your own model: vgtui's probes on any nn.Module in any PyTorch training loop, written to a metrics file in
the app's own format, so that `vgtui follow run.jsonl` shows it live (and replay and compare read it unchanged).

    import vgtui
    with vgtui.watch(model, metrics="run.jsonl", every=50, optimizer=opt) as probe:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(); loss.backward(); opt.step()
            probe.step(loss=loss)      # with optimizer=, optional: it only adds the loss (and metrics=)

Steps: with `optimizer=` the optimiser's step hooks count them (gradients are read just before its step, the update
just after, so a GradScaler's skipped step is no step); without it, each `probe.step()` is one, called after
optimizer.step() and before the next zero_grad() (the gradients are read from .grad then, the update from a copy
of the weights taken when the probed step began). Step 1 and every `every`-th step are probed; the probes' hooks
exist only during those steps, and each snapshot costs one device-to-host copy.

Nothing here stops the user's training: a hook that fails switches the probes off with a one-line warning, and
a NaN or Inf is written as such, named in an event.

In a distributed job (DDP, FSDP2's fully_shard, launched by torchrun or spawned) every rank calls vgtui.watch the
same way. At a probed step each rank sums its own shards and its own micro-batch; the ranks add their sums on the
watch's own gloo group (vgtui.engine.distributed: one all_reduce, one all_gather, with a timeout) and rank 0 alone
writes the file, with every rank's loss, step time and weight checksum. Ordinary steps make no collective call. A
rank that never calls vgtui.watch, or stops, costs the others one timeout and a warning line: their probes go off
and training goes on.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import math
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Union

import torch
from torch import nn

from vgtui.core.layermatch import matches
from vgtui.core.records import EndRecord, EventRecord, LayerStats, RankStats, Record, SpikeRecord
from vgtui.core.spikes import spike_words, spikes_summary
from vgtui.core.writer import MetricsWriter, check_writable
from vgtui.engine import recorder
from vgtui.engine.distributed import DEFAULT_TIMEOUT_S, Link, LinkError, world
from vgtui.engine.flight import CAPACITY as FLIGHT_CAPACITY, FlightRecorder
from vgtui.engine.probes import GRAD_EDGES_LOG10, LAYER_TYPES, Probes, activation_edges

LayerSpec = Union[str, type, Callable[[str, nn.Module], bool]]

# A snapshot's user metrics (probe.step(metrics=...)) are bounded: the viewer draws a curve per name, and 10,000
# names (a dict built per parameter or per example by mistake) made each snapshot a megabyte line that spun the
# viewer. 256 names leaves room for per-class or per-layer metrics of a real model (a few dozen is the most a
# panel shows at once) while a snapshot's metrics stay under 256 * (100 + 25) bytes, about 32 KB. Names past
# the cap, new in the run, and names over MAX_METRIC_NAME characters (wider than any panel) are left out, with
# one warning line each time the run first meets either.
MAX_METRICS = 256
MAX_METRIC_NAME = 100

COMPILED_NOTICE = ("torch.compile'd model: activation statistics are off (module hooks do not run under "
                   "compile); weight gradients are read from .grad")



class WatchWarning(UserWarning):
    """What vgtui.watch cannot do for this model or loop, said in one line; training goes on."""


def _warn(msg: str) -> None:
    warnings.warn(f"vgtui.watch: {msg}", WatchWarning, stacklevel=3)


# ------------------------------------------------------------------------------------------ the model
def _unwrap(model: nn.Module) -> tuple[nn.Module, bool]:
    """The module whose names the user knows (inside DDP, DataParallel and torch.compile wrappers), and whether
    it runs compiled."""
    compiled = False
    while True:
        if type(model).__name__ == "OptimizedModule" and isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model, compiled = model._orig_mod, True
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            break
    return model, compiled or getattr(model, "_compiled_call_impl", None) is not None


def _rank() -> int:
    """This process's rank in a distributed job (0 when there is none)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def _has_weight(module: nn.Module) -> bool:
    return isinstance(getattr(module, "weight", None), torch.Tensor)


def select_layers(model: nn.Module, layers: LayerSpec | Iterable[LayerSpec] | None = None
                  ) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs to probe: every Linear/Conv by default; else each module matched by one of
    `layers`: a name, a glob pattern ("layer3.*.conv2"), a module type, or a predicate(name, module). A name or
    pattern that matches nothing, or names a module without a weight, is an error (a typo, most likely)."""
    named = [(n, m) for n, m in model.named_modules() if n] or [(type(model).__name__, model)]  # a bare nn.Linear
    if layers is None:
        return [(n, m) for n, m in named if isinstance(m, LAYER_TYPES)]
    specs = list(layers) if isinstance(layers, (list, tuple, set, frozenset)) else [layers]
    for s in specs:
        if not isinstance(s, (str, type)) and not callable(s):
            raise TypeError(f"vgtui.watch: layers= takes names, glob patterns, module types or a predicate, "
                            f"not {s!r}")
    for s in (s for s in specs if isinstance(s, str)):
        hits = [(n, m) for n, m in named if matches(n, s)]
        if not hits:
            raise ValueError(f"vgtui.watch: no module of {type(model).__name__} matches layers={s!r}")
        if s in dict(named) and not _has_weight(dict(named)[s]):
            raise ValueError(f"vgtui.watch: {s} ({type(dict(named)[s]).__name__}) has no weight to probe")

    def chosen(name: str, module: nn.Module) -> bool:
        for s in specs:
            if isinstance(s, str):
                if matches(name, s):
                    return True
            elif isinstance(s, type):
                if isinstance(module, s):
                    return True
            elif s(name, module):
                return True
        return False

    picked = [(n, m) for n, m in named if _has_weight(m) and chosen(n, m)]
    if not picked:
        raise ValueError(f"vgtui.watch: layers={layers!r} matches no module with a weight in {type(model).__name__}")
    return picked


def describe_model(model: nn.Module) -> str:
    """The class name and the parameter count: "ResNet, 11,689,512 parameters"."""
    return f"{type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters"


# ------------------------------------------------------------------------------------------ the probes
class _WatchProbes(Probes):
    """vgtui's probes for a model vgtui does not know: no module hooks at all for a compiled model, and a hook
    that raises switches off that module's statistics with a warning instead of stopping the forward pass."""

    def __init__(self, model: nn.Module, layers: list[tuple[str, nn.Module]], hooks: bool = True):
        super().__init__(model, layers=layers)
        self.hooks = hooks
        self._off: set[int] = set()

    def _attach(self) -> None:
        if self.hooks:
            super()._attach()

    def _safe(self, fn: Callable, module: nn.Module, *args: Any) -> None:
        if id(module) in self._off:
            return
        try:
            fn(module, *args)
        except Exception as e:  # the user's forward pass goes on; only this module's statistics stop
            self._off.add(id(module))
            name = next((n for n, m in self.model.named_modules() if m is module), type(module).__name__)
            _warn(f"statistics at {name} ({type(module).__name__}) are off: {type(e).__name__}: {e}")

    def _on_layer(self, module, inputs, out):
        self._safe(super()._on_layer, module, inputs, out)

    def _on_act_input(self, module, inputs):
        self._safe(super()._on_act_input, module, inputs)

    def _on_act(self, module, inputs, out):
        self._safe(super()._on_act, module, inputs, out)

    @property
    def fired(self) -> bool:
        """Did a layer's forward hook run since arm()?"""
        return bool(self._fired)

    def activations(self) -> dict[str, str]:
        """Layer name -> the activation seen after it in the current probed step (ordered layers)."""
        self._order_layers()
        return {self.layers[i][0]: v[0] for i, v in self._act.items()}


# ------------------------------------------------------------------------------------------ the watch
class Watch:
    """The probes on a user's model and the metrics file they write; see `watch()`. Use it as a context
    manager, or call close() at the end (an exit without it still ends the file, at interpreter exit)."""

    def __init__(self, model: nn.Module, metrics: str | os.PathLike = "vgtui-run.jsonl", every: int = 50,
                 optimizer: torch.optim.Optimizer | None = None,
                 layers: LayerSpec | Iterable[LayerSpec] | None = None, scaler: Any = None, total_steps: int = 0,
                 quiet: bool = False, timeout: float = DEFAULT_TIMEOUT_S, flight: bool = True,
                 axes: dict[str, str] | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"vgtui.watch: expected a torch.nn.Module, got {type(model).__name__}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"vgtui.watch: every={every!r}: a whole number of steps, 1 or more")
        self.every = every
        self.axes = _check_axes(axes)
        self.optimizer = optimizer
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.path = Path(metrics).expanduser()
        self.steps = 0
        self.rank = _rank()
        self.active = self.rank == 0  # this rank writes the file (every rank probes, in a distributed job)
        self.closed = False
        self.last_metrics: dict[str, float] = {}  # the metrics of the last snapshot, as written
        self.last_ranks: tuple[RankStats, ...] | None = None  # every rank's view at the last snapshot
        self.snapshots = 0
        # a rank other than 0 with no process group to add its sums on (RANK set, torch.distributed not started)
        # records nothing: no hook, no file
        self._idle = self.rank != 0 and world()[1] == 1
        if self._idle:
            return
        self.model, self.compiled = _unwrap(model)
        self._probes = _WatchProbes(self.model, select_layers(self.model, layers), hooks=not self.compiled)
        if self.active:
            try:
                check_writable(self.path)
            except ValueError as e:
                raise ValueError(f"vgtui.watch: {str(e).replace('--metrics ', 'metrics=', 1)}") from None
        p = next(self.model.parameters())
        self.device = p.device
        self.total_steps = total_steps
        self._writer = MetricsWriter(self.path) if self.active else None
        self._started = recorder.started_now()
        self._t0 = time.perf_counter()
        self._header_written = False
        self._want = False  # the current step is probed: hooks attached, statistics being gathered
        self._pending = False  # a probed step whose statistics await the one host copy (its loss may follow)
        self._pending_t = 0.0
        self._w_before: list[torch.Tensor | None] | None = None
        self._scale: float | None = None  # the GradScaler's scale as a probed step began (without optimizer=)
        self._last_snap = (0, self._t0)
        self._loss_last: Any = None
        self._loss_sum: Any = 0.0
        self._loss_n = 0
        self._metrics_now: dict[str, Any] = {}
        self._metric_names: dict[str, None] = {}  # every metric name recorded so far, in order (MAX_METRICS)
        self._capped: set[str] = set()  # the metric caps already said ("long", "many")
        self._opt_steps = self._opt_steps_seen = 0
        self._calls = 0  # probe.step() calls: once there are some, a probed step waits for its loss
        self._nonfinite = False
        self._failed: str | None = None
        self._warned_no_hooks = False
        self._handles: list[Any] = []
        self._counter: list[Any] = []  # the optimiser's post-step hook: it counts steps until close()
        self._fwd_t: float | None = None  # when this rank's probed step began (its first forward)
        self._end_t: float | None = None  # when this rank's previous step ended (host clock)
        self._departed: frozenset[tuple[int, str]] = frozenset()  # (rank, reason) flagged at the last snapshot
        self._flight = FlightRecorder(self._probes.layers, optimizer, self.device,
                                      elapsed=lambda: time.perf_counter() - self._t0) if flight else None
        self.spikes: list[SpikeRecord] = []  # the flight recorder's spike records, as written
        self._quiet = quiet
        if self.compiled:
            _warn(COMPILED_NOTICE)
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._pre_step))
            self._counter.append(optimizer.register_step_post_hook(self._post_step))  # counts, even when off
        if not self.compiled:  # the only hook outside probed steps: one call per forward, to skip eval passes
            self._handles.append(self.model.register_forward_pre_hook(self._on_forward))
        atexit.register(self._at_exit)
        self._link: Link | None = None
        try:  # every rank meets here once (within `timeout` s); then only at probed steps
            self._link = Link.create(timeout, kind=f"{every} {self._probes.names}")
        except LinkError as e:
            self._fail(e)
        else:
            self._probes.world = self._link.size if self._link is not None else 1
            self._arm()  # step 1 is always probed: the first snapshot shows the model as it starts
        if not quiet and self.active:
            print(f"vgtui.watch: writing {self.path} (follow it live: vgtui follow {self.path})", file=sys.stderr)

    # ---------------------------------------------------------------------------------- public
    def step(self, loss: Any = None, metrics: dict[str, Any] | None = None) -> None:
        """After optimizer.step(): the step's loss and any metrics ({"acc": 0.9}; floats or 0-d tensors, left
        on the device). Without optimizer= it also counts the step; with it, a call with no optimiser step
        since the previous call notes a skipped step (a GradScaler that found inf/NaN gradients)."""
        if self.closed or self._idle:
            return
        if self._failed:  # the probes are off; the end record still counts the steps
            self.steps += self.optimizer is None
            return
        metrics = self._admit(metrics) if metrics else {}
        try:
            self._step(loss, metrics)
        except Exception as e:
            self._fail(e)

    def _admit(self, metrics: dict[Any, Any]) -> dict[str, Any]:
        """The metrics this snapshot may hold: the run's first MAX_METRICS names, none over MAX_METRIC_NAME
        characters (each cap said once, in one line). A value that is not a number is the caller's error."""
        kept: dict[str, Any] = {}
        long = over = 0
        for k, v in metrics.items():
            name = k if isinstance(k, str) else str(k)
            if len(name) > MAX_METRIC_NAME:
                long += 1
                continue
            new = name not in self._metric_names
            if new and len(self._metric_names) >= MAX_METRICS:
                over += 1
                continue
            # a tensor's numel is its shape (no sync); its value stays on the device until the snapshot's one copy
            if not isinstance(v, (int, float, torch.Tensor)) or (isinstance(v, torch.Tensor) and v.numel() != 1):
                what = f"a tensor of shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else repr(v)[:80]
                raise TypeError(f"vgtui.watch: metrics[{name[:40]!r}] = {what} is not a number")
            if new:
                self._metric_names[name] = None
            kept[name] = v
        step = self.steps + (self.optimizer is None)  # with optimizer=, its step hook has counted this one
        if long and "long" not in self._capped:
            self._capped.add("long")
            _warn(f"{long} metric name{'s' * (long > 1)} over {MAX_METRIC_NAME} characters left out at step "
                  f"{step} (and from then on)")
        if over and "many" not in self._capped:
            self._capped.add("many")
            _warn(f"{over:,} metric{'s' * (over > 1)} left out at step {step}: a run records at most "
                  f"{MAX_METRICS} metric names (the first {MAX_METRICS} given; any new name from then on is left out)")
        return kept

    def close(self, exc: BaseException | None = None) -> None:
        """Remove every hook and end the file: completed, or with `exc`, failed (KeyboardInterrupt:
        interrupted). Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if self._idle:
            return
        atexit.unregister(self._at_exit)
        # Nothing below may raise: close() runs as the user's own exception leaves the with block (or at exit),
        # and vgtui's failure to write must never take that exception's place; without one, the training is done
        # and the code after the block (saving the model) must still run. A failure is one warning line.
        lost: Exception | None = None  # the last snapshot, when it could not be written
        try:
            if self._pending and not self._failed:
                try:
                    self._flush()
                except Exception as e:
                    self._pending, self._failed, lost = False, f"{type(e).__name__}: {e}", e
            self._remove_hooks(counting=True)
            if self._flight is not None and not self._failed:
                try:
                    self._write_spikes(self._flight.finish())  # sync: once, at the end
                except Exception as e:
                    _warn(f"the flight recorder's last spikes are not in {self.path} ({_reason(e)})")
            self._write(self._end_record(exc))
        except Exception as e:
            also = " and its last snapshot" if lost is not None else ""
            _warn(f"the end of the run{also} could not be written to {self.path} ({_reason(e)}); the file ends "
                  "at its last whole record")
        else:
            if lost is not None:
                _warn(f"the last snapshot (step {self.steps}) is not in {self.path} ({_reason(lost)}); the end is")
        finally:
            if self._flight is not None and not self._quiet:  # how many loss spikes, which layer led each
                print(f"vgtui.watch: {spikes_summary(self.spikes)}", file=sys.stderr)
                for rec in self.spikes[:5]:
                    print(f"vgtui.watch:   {spike_words(rec)}", file=sys.stderr)
            try:
                if self._writer is not None:
                    self._writer.close()
            except Exception:  # pragma: no cover - closing a descriptor we opened
                pass
            link, self._link = self._link, None  # the watch's own gloo group goes now, not at the interpreter's exit
            if link is not None:
                link.close()

    def _end_record(self, exc: BaseException | None) -> EndRecord:
        """How the run ended: completed, or with `exc`, failed (KeyboardInterrupt: interrupted)."""
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            status, cause, message, tb = "completed", "completed", f"{self.steps} steps", None
        elif isinstance(exc, KeyboardInterrupt):  # a signal vgtui.signals turned into one says which
            status, cause, tb = "interrupted", getattr(exc, "cause", "interrupted"), None
            message = getattr(exc, "message", None) or "interrupted by Ctrl+C"
        else:
            status, cause, message = "failed", "error", f"{type(exc).__name__}: {exc}"
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if self._failed:
            message += f" (vgtui's probes stopped: {self._failed})"
        return EndRecord(status=status, steps=self.steps, elapsed_s=time.perf_counter() - self._t0,
                         message=message, traceback=tb, cause=cause)

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self.close(exc)
        except Exception as e:  # pragma: no cover - close() says its own failures; this guards the promise
            _warn(f"closing failed: {_reason(e)}")
        return False  # the user's exception, if any, goes on unchanged

    # ---------------------------------------------------------------------------------- steps
    def _due(self, n: int) -> bool:
        return n == 1 or n % self.every == 0

    def _arm(self) -> None:
        self._probes.arm()
        self._want = True
        if self.optimizer is None:  # the update is measured against the weights as the step begins
            # a frozen layer's weights (requires_grad False) cannot move: no copy, and no update in the snapshot
            self._w_before = [m.weight.detach().clone() if m.weight.requires_grad else None
                              for _, m in self._probes.layers]
            self._scale = self.scaler.get_scale() if self.scaler is not None else None

    def _arm_if_due(self) -> None:
        if not self._want and not self._pending and self._due(self.steps + 1):
            self._arm()

    def _on_forward(self, module: nn.Module, args: Any) -> None:
        """Before each forward pass of the model: finish a probed step still waiting, arm a due one, and
        gather nothing from an eval() or no_grad pass (validation)."""
        if self._failed:
            return
        try:
            training = module.training and torch.is_grad_enabled()
            if self._pending and training and not self._calls:  # a loop without probe.step(): the next step began
                self._flush()
            self._arm_if_due()
            if self._want:
                self._probes.armed = training
                if training and self._fwd_t is None:
                    self._fwd_t = time.perf_counter()  # the host clock: no sync
        except Exception as e:
            self._fail(e)

    def _pre_step(self, optimizer, args, kwargs) -> None:
        if self._failed:
            return
        try:
            if self._pending:
                self._flush()
            self._arm_if_due()
            if self._want:
                self._probes.collect_grads(optimizer)
        except Exception as e:
            self._fail(e)

    def _post_step(self, optimizer, args, kwargs) -> None:
        self.steps += 1
        self._opt_steps += 1
        if self._failed:
            return
        try:
            if self._want and self._probes._grad_stats is not None:
                self._probes.collect_update()
                self._want, self._pending, self._pending_t = False, True, time.perf_counter()
            self._arm_if_due()
            self._mark_end()
        except Exception as e:
            self._fail(e)

    def _step(self, loss: Any, metrics: dict[str, Any]) -> None:
        self._calls += 1
        if loss is not None:
            self._loss_last = loss.detach() if isinstance(loss, torch.Tensor) else float(loss)
            self._loss_sum = self._loss_sum + self._loss_last
            self._loss_n += 1
        self._metrics_now.update({k: (v.detach() if isinstance(v, torch.Tensor) else float(v))
                                  for k, v in metrics.items()})
        if self.optimizer is not None:
            if self._opt_steps == self._opt_steps_seen:
                self.steps += 1
                self._skipped()
            self._opt_steps_seen = self._opt_steps
        else:
            self.steps += 1
            if self._want and self._scale is not None and self.scaler.get_scale() < self._scale:
                self._skipped()  # the scaler lowered its scale: it found inf/NaN gradients and skipped the step
            elif self._want:
                self._probes.collect_grads(weights_before=self._w_before)
                self._probes.collect_update()
                self._want, self._pending, self._pending_t = False, True, time.perf_counter()
        if self._pending:
            self._flush()
        if self._flight is not None and isinstance(loss, torch.Tensor):
            self._flight.record(self.steps, self._loss_last)  # on the device: no sync
            if self.steps % min(self.every, FLIGHT_CAPACITY // 2) == 0:  # with the probed step's copy, when every <= 128
                self._write_spikes(self._flight.check())  # sync: the flight buffer
        self._arm_if_due()
        self._mark_end()

    def _mark_end(self) -> None:
        """The next step is probed: note when this one ended (the host clock, no sync), for its wait_s."""
        if self._want and self._end_t is None and self._fwd_t is None:
            self._end_t = time.perf_counter()

    def _write_spikes(self, spikes: list[SpikeRecord]) -> None:
        for rec in spikes:
            self._write(rec)
            self.spikes.append(rec)

    def _skipped(self) -> None:
        """No optimiser step since the last probe.step(): say so, and gather the probed step afresh."""
        self._write(EventRecord(step=self.steps, elapsed_s=time.perf_counter() - self._t0,
                                set={"skipped": "no optimizer step (a GradScaler found inf/NaN gradients)"}))
        if self._want:
            self._arm()

    # ---------------------------------------------------------------------------------- snapshots
    def _flush(self) -> None:
        """The pending probed step's snapshot: statistics, loss and metrics in one device-to-host copy."""
        self._pending = False
        if self._probes.hooks and not self._probes.fired and not self._warned_no_hooks:
            self._warned_no_hooks = True
            _warn(f"no layer's forward hook ran in train mode during probed step {self.steps}: activation "
                  "statistics are off (a compiled or scripted model, or one trained in eval()?)")
        nan = float("nan")
        names = list(self._metrics_now)
        extra = [self._loss_last if self._loss_last is not None else nan,
                 self._loss_sum / self._loss_n if self._loss_n else nan, *self._metrics_now.values()]
        dev = self._probes._grad_stats[0].device
        dtype = torch.float32 if dev.type == "mps" else torch.float64
        extra = [v.to(dev, dtype) if isinstance(v, torch.Tensor) else torch.tensor(v, device=dev, dtype=dtype)
                 for v in extra]
        acts = self._probes.activations()
        # this rank's probed step (forward to optimiser step) and its wait before it (host clocks: no sync)
        fwd, end = self._fwd_t, self._end_t
        timing = [self._pending_t - fwd if fwd is not None else nan,
                  fwd - end if fwd is not None and end is not None else nan]
        self._fwd_t = self._end_t = None
        # sync: the one device -> host copy; in a distributed job also the watch's two collectives (finish())
        ranks = dict(link=self._link, shared=2, host_row=timing) if self._link is not None else {}
        stats, vals = self._probes.finish(extra=[v.reshape(()) for v in extra], **ranks)
        rows = self._probes.rows  # per rank: loss, mean loss since the last snapshot, step_s, wait_s, checksum
        if not self.active:  # another rank: its part is in rank 0's snapshot
            self._loss_sum, self._loss_n, self._metrics_now = 0.0, 0, {}
            return
        if not self._header_written:
            self._write_header(stats, acts)
        steps0, t0 = self._last_snap
        dt, ds = self._pending_t - t0, self.steps - steps0
        self.last_metrics = dict(zip(names, vals[2:]))  # rank 0's metrics
        used = [s.activation for s in stats if s.activation]
        # the loss of the whole (global) batch: the mean of the ranks' losses over their equal micro-batches
        loss, loss_avg = (float(rows[:, 0].mean()), float(rows[:, 1].mean())) if len(rows) > 1 else vals[:2]
        snap = recorder.snapshot(step=self.steps, epoch=0, elapsed_s=self._pending_t - self._t0, loss=loss,
                                 loss_avg=loss_avg, rate=recorder.steps_per_s(dt, ds) if steps0 else 0.0,
                                 activation=collections.Counter(used).most_common(1)[0][0] if used else "",
                                 layers=stats, metrics=self.last_metrics, device=dev)
        if self._link is not None:
            self.last_ranks = rank_view(rows)
            snap = dataclasses.replace(snap, ranks=self.last_ranks)
            self._say_departed(self.last_ranks)
        self._write(snap)
        self.snapshots += 1
        self._last_snap = (self.steps, self._pending_t)
        self._loss_sum, self._loss_n, self._metrics_now = 0.0, 0, {}
        self._check_finite(stats)

    def _say_departed(self, ranks: tuple[RankStats, ...]) -> None:
        """An event (and a warning) when a rank first departs from the others, or the ranks or reasons change."""
        now = frozenset((r.rank, part.split()[0]) for r in ranks if r.flag for part in r.flag.split("; "))
        if now and now != self._departed:
            text = "; ".join(f"rank {r.rank}: {r.flag}" for r in ranks if r.flag)
            self._write(EventRecord(step=self.steps, elapsed_s=time.perf_counter() - self._t0, set={"ranks": text}))
            _warn(f"{text} at step {self.steps} (recorded; training goes on)")
        self._departed = now

    def _check_finite(self, stats: tuple[LayerStats, ...]) -> None:
        """A NaN or Inf is in the snapshot as it is; when one first appears, an event (and a warning) names
        the layers. Training goes on: what to do about it is the user's call."""
        bad = [(s.name, what) for s in stats if not s.finite and (what := _what_nonfinite(s))]
        if bad and not self._nonfinite:
            (name, what), more = bad[0], len(bad) - 1
            text = f"non-finite {what} in {name}" + (f" and {more} more layer{'s' * (more > 1)}" if more else "")
            self._write(EventRecord(step=self.steps, elapsed_s=time.perf_counter() - self._t0,
                                    set={"nonfinite": text}))
            _warn(f"{text} at step {self.steps} (recorded; training goes on)")
        self._nonfinite = bool(bad)

    def _write_header(self, stats: tuple[LayerStats, ...] | None, acts: dict[str, str]) -> None:
        kinds = {n: type(m).__name__ for n, m in self._probes.layers}
        order = [s.name for s in stats] if stats else [n for n, _ in self._probes.layers]
        self._header_written = True
        # the histograms' edges, once: the snapshots then leave them out (an activation first seen later writes
        # its own with each histogram)
        seen = sorted({a for a in acts.values() if a})  # the activations the probes met (those of `stats`)
        self._writer.write(recorder.run_header(
            ((n, kinds[n], acts.get(n)) for n in order), source="vgtui.watch", device=self.device,
            model=describe_model(self.model), started=self._started, total_steps=self.total_steps,
            probe_every=self.every, notice=COMPILED_NOTICE if self.compiled else None, axes=self.axes,
            grad_edges=GRAD_EDGES_LOG10,
            act_edges={a: activation_edges(a, self._probes.act_bins) for a in seen} or None))

    def _write(self, rec: Record) -> None:
        if not self.active:  # another rank of a distributed job: rank 0 writes
            return
        if not self._header_written:
            self._write_header(None, {})
        self._writer.write(rec)

    # ---------------------------------------------------------------------------------- the end
    def _remove_hooks(self, counting: bool = False) -> None:
        """Remove the probes' hooks; `counting`: the optimiser's step counter too (at the end)."""
        for h in self._handles + (self._counter if counting else []):
            h.remove()
        self._handles.clear()
        if counting:
            self._counter.clear()
        self._probes.disarm()
        self._want = False

    def _fail(self, e: Exception) -> None:
        """vgtui's own failure: off with a warning and an event; the user's training goes on."""
        self._failed = f"{type(e).__name__}: {e}"
        self._remove_hooks()
        self._pending = False
        _warn(f"probes off from step {self.steps}: {self._failed} (training goes on)")
        try:
            self._write(EventRecord(step=self.steps, elapsed_s=time.perf_counter() - self._t0,
                                    set={"probes": f"off: {self._failed}"}))
        except Exception:  # the file itself failed: nothing more to say in it
            pass

    def _at_exit(self) -> None:
        """The interpreter exits without close(): end the file (an uncaught exception makes it a failure)."""
        self.close(getattr(sys, "last_exc", None) or getattr(sys, "last_value", None))


# A rank departs from the others when its loss is further from the ranks' median than LOSS_MADS robust standard
# deviations (1.4826 * the median absolute deviation) and than LOSS_REL of the median (needs 3 ranks or more: of
# two, neither is the odd one out); when its wait before the step exceeds the median wait by more than
# WAIT_REL of the median step time and WAIT_MIN_S (a straggler: slow data, a busy host); when its replica's
# weight checksum differs from the one most ranks hold (DDP replicas that drift apart are a bug).
LOSS_MADS, LOSS_REL = 6.0, 0.2
WAIT_REL, WAIT_MIN_S = 0.5, 0.05


def rank_view(rows: Any) -> tuple[RankStats, ...]:
    """Every rank's view from the rows finish() gathered (loss, mean loss, step_s, wait_s, checksum), each
    departing rank flagged with the reason."""
    import numpy as np

    loss, step_s, wait_s, check = rows[:, 0], rows[:, 2], rows[:, 3], rows[:, 4]
    n = len(rows)
    flags: list[list[str]] = [[] for _ in range(n)]
    finite = np.isfinite(loss)
    if finite.any() and not finite.all():
        for r in np.flatnonzero(~finite):
            flags[r].append(f"loss {loss[r]} where the others' is finite")
    if n >= 3 and finite.sum() >= 3:
        med = float(np.median(loss[finite]))
        mad = 1.4826 * float(np.median(np.abs(loss[finite] - med)))
        for r in np.flatnonzero(finite):
            if abs(loss[r] - med) > max(LOSS_MADS * mad, LOSS_REL * abs(med)):
                flags[r].append(f"loss {loss[r]:.4g} far from the ranks' median {med:.4g}")
    if np.isfinite(wait_s).all() and np.isfinite(step_s).all():
        med_w, med_s = float(np.median(wait_s)), float(np.median(step_s))
        for r in range(n):
            if wait_s[r] - med_w > max(WAIT_REL * med_s, WAIT_MIN_S):
                flags[r].append(f"straggler: waited {wait_s[r]:.3g} s before the step (median {med_w:.3g} s)")
    if np.isfinite(check).all():
        values, counts = np.unique(check, return_counts=True)
        if len(values) > 1:
            # the checksum most ranks hold (a tie: rank 0's)
            common = values[counts == counts.max()]
            ref = check[0] if check[0] in common else common[0]
            for r in np.flatnonzero(check != ref):
                flags[r].append(f"replica weights differ (checksum {check[r]:.17g}, most ranks {ref:.17g})")
    return tuple(RankStats(rank=r, loss=float(loss[r]), step_s=float(step_s[r]), wait_s=float(wait_s[r]),
                           checksum=float(check[r]) if np.isfinite(check[r]) else None,
                           flag="; ".join(flags[r]) or None) for r in range(n))


def _reason(e: BaseException) -> str:
    """A write failure in a few words: the system's ("No space left on device"), else the exception's."""
    reason = getattr(e, "reason", "") or (isinstance(e, OSError) and e.strerror) or f"{type(e).__name__}: {e}"
    return " ".join(str(reason).split())


def _what_nonfinite(s: LayerStats) -> str | None:
    """What holds a NaN or Inf in the layer, or None. Ratios are left out: constant weights (a fresh BatchNorm's
    ones) have no spread to divide by, which is no fault of the training."""
    if not (math.isfinite(s.grad_norm) and math.isfinite(s.grad_mean_abs)):
        return "weight gradient"
    if not math.isfinite(s.weight_norm):
        return "weights"
    if s.act_mean is not None and not (math.isfinite(s.act_mean) and math.isfinite(s.act_std or 0.0)):
        return "activations"
    return None


def watch(model: nn.Module, metrics: str | os.PathLike = "vgtui-run.jsonl", every: int = 50,
          optimizer: torch.optim.Optimizer | None = None, layers: LayerSpec | Iterable[LayerSpec] | None = None,
          scaler: Any = None, total_steps: int = 0, quiet: bool = False,
          timeout: float = DEFAULT_TIMEOUT_S, flight: bool = True, axes: dict[str, str] | None = None) -> Watch:
    """Probe `model` as it trains and write the run to `metrics` (JSON Lines; `vgtui follow PATH` shows it live).

    - every: probe step 1 and every `every`-th step (the hooks exist only on those steps).
    - optimizer: count steps with its step hooks; else call `probe.step()` after each optimizer.step().
    - scaler: without optimizer=, a GradScaler lets a probed step that it skipped be told apart (its scale is
      read once per probed step); with optimizer=, a skipped step is one the optimiser never took.
    - layers: which modules to probe, by name, glob pattern, type or predicate(name, module); default every
      Linear and Conv layer. Activation statistics come from the activation module that follows each one.
    - total_steps: the run's length if known (the viewer shows progress).
    - quiet: no line on stderr naming the file.
    - timeout: in a distributed job, how long (seconds) a rank waits for the others at vgtui.watch() and at a
      probed step before it says that one did not come, switches its probes off and lets training go on.
    - flight: the flight recorder (vgtui.engine.flight): with the loss passed to `probe.step(loss)`, every step's
      loss and per-layer gradient and update norms go into a ring buffer on the device, and a loss spike is written
      as a spike record naming the layer that led (`probe.spikes`); False turns it off.
    - axes: where the viewer draws metrics= names, e.g. {"lr": "log"}: "acc" (the accuracy axis, values 0..1),
      "loss" (the loss's axis), "log" or "linear" (a chart of its own); by default an accuracy-named metric in 0..1
      goes on the accuracy axis and any other on a chart of its own.

    Use it as `with vgtui.watch(...) as probe:` or call `probe.close()`; either removes every hook and writes
    the end record (completed, failed with the exception, or interrupted).
    """
    return Watch(model, metrics, every, optimizer, layers, scaler, total_steps, quiet, timeout, flight=flight, axes=axes)


def _check_axes(axes: dict[str, str] | None) -> dict[str, str] | None:
    """watch(axes=...): metric name -> "acc" | "loss" | "log" | "linear" (vgtui.core.records.METRIC_AXES)."""
    from vgtui.core.records import METRIC_AXES

    if axes is None:
        return None
    if not isinstance(axes, dict) or any(not isinstance(k, str) or a not in METRIC_AXES for k, a in axes.items()):
        raise ValueError(f"vgtui.watch: axes={axes!r}: a dict of metric name -> one of {', '.join(METRIC_AXES)}")
    return dict(axes) or None
