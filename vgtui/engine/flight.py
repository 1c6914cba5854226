"""The flight recorder (issue 18): which layer started a loss spike.

Every step, on the training device and without a host sync, `record(step, loss)` writes one row of a ring buffer of
the last CAPACITY steps: the loss, and per layer the weight gradient's L2 norm and the update's (on an accelerator
one fused `torch._foreach_norm` for every layer's tensors of every kind and one `torch.stack(..., out=row)`; on the
CPU one norm per tensor, each written into its cell of the row). The update norm
is read from the optimiser's own state after its step, never from a copy of the weights (copying every weight every
step costs 10-50% of a step on the CPU; a norm is one read):
  - SGD with momentum: the update is lr * the momentum buffer, so its norm is lr * ||buffer|| ("update_norm");
  - SGD without momentum: lr * ||gradient|| (no kernel of its own; weight decay left out);
  - Adam and AdamW: the norm of Adam's step lr * m_hat / (sqrt(v_hat) + eps) ("step_norm"; AdamW's decay left out),
    computed as sqrt(bc2) * ||m / (sqrt(v) + eps * sqrt(bc2))|| times lr / bc1 (a host factor);
  - any other optimiser: gradient norms only.
The factor of each row (lr and Adam's bias corrections, known on the host) is kept on the host, not multiplied on
the device. On the CPU a layer of more than SAMPLE_CPU weights is measured on a subset of its rows
(its first rows, a contiguous block, scaled to the whole layer: an estimate): a full norm reads every weight, which
there costs several percent of a step of the seed's network; on an accelerator every norm is exact.

`check()` runs at the checks the trainer already makes (progress ticks, snapshots) and in vgtui.watch at its probed
steps: one device-to-host copy of the buffer (`# sync:`), then on the host a robust score of each new step's loss
against the BAND steps before it ((x - median) / (1.4826 * MAD), vgtui.core.spikes). A step whose score passes
LOSS_THRESHOLD is a spike; once AFTER steps have followed it (or at the end of the run), the recorder returns a
SpikeRecord: the window around it, every layer's series, and the layers ranked by the first step (from LOOKBACK
steps before the spike to AFTER after) at which their own number left its band (|score| > LAYER_THRESHOLD against
the BAND steps before that stretch). `finish(explosion)` at the end of a run returns what is pending, and, for a run
that ended diverged, an "explosion" record for the steps it had not yet reported.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from vgtui.core.records import Lead, SpikeRecord
from vgtui.core.spikes import MAD_SCALE, robust_scores
from vgtui.engine.distributed import is_dtensor

CAPACITY = 256  # steps in the ring buffer: a check reads at most this many new steps
BAND = 64  # steps before a step that make its band (median and MAD)
AFTER = 8  # steps after a spike its record waits for
LOOKBACK = 16  # steps before a spike where a layer's lead is looked for
READ_EVERY = 32  # new steps a check waits for before it reads the buffer (CAPACITY is far more)
QUIET = 32  # steps after a spike in which no new spike is reported (the loss comes back down)
# Thresholds, in robust standard deviations, chosen from measurement: the largest loss score of ordinary training
# over 300 steps (the seed's network 2.45, with Adam 1.65, a relu MLP 2.4, the digits MLP 0.54; the small CNN of
# tests/test_flight.py under watch with Adam stays under it too) is far below LOSS_THRESHOLD; the injected faults of
# tests/test_flight.py score 11 to 75. A layer's numbers are noisier (Adam's step norm early in a run moves by
# hundreds of robust deviations), so a layer's band only ranks the layers once the loss has spiked.
LOSS_THRESHOLD = 8.0
LAYER_THRESHOLD = 8.0
LOSS_FLOOR = 0.02  # the loss's band is at least 2% of its median wide (a loss flat to 6 digits is no band)
LAYER_FLOOR = 0.05
MAX_QUIET = 2**62  # after an explosion, nothing more is reported
SAMPLE_CPU = 1 << 15  # on the CPU, a layer of more weights is measured on its first rows (under torch's parallel grain:
# one thread, no wake-up of the others per norm: 0.16 ms a step for the seed's network against 0.42 ms at 1 << 16)


_NO_STATE: dict = {}  # the state of no optimiser (FlightRecorder._static_views)


def _opt_kind(optimizer: torch.optim.Optimizer | None) -> str | None:
    if optimizer is None:
        return None
    if isinstance(optimizer, torch.optim.SGD):
        groups = optimizer.param_groups
        if any(g.get("nesterov") for g in groups):
            return None
        return "sgd-momentum" if any(g.get("momentum", 0) for g in groups) else "sgd"
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return "adam"
    return None


class FlightRecorder:
    """One network's flight recorder: `layers` are (name, module with a .weight) from input to output."""

    def __init__(self, layers: Sequence[tuple[str, torch.nn.Module]], optimizer: torch.optim.Optimizer | None,
                 device: torch.device | str, capacity: int = CAPACITY, elapsed: Callable[[], float] | None = None):
        self.names = [n for n, _ in layers]
        self.weights = [m.weight for _, m in layers]
        self.optimizer = optimizer
        self.device = torch.device(device)
        self.capacity = capacity
        self.elapsed = elapsed or (lambda: 0.0)
        self.kind = _opt_kind(optimizer)
        self.metric = {"sgd-momentum": "update_norm", "sgd": "update_norm", "adam": "step_norm"}.get(self.kind)
        n = len(self.names)
        self.wcol = 1 + n + (n if self.metric else 0)  # the first weight-norm column
        self.ncol = self.wcol + n
        self.buf = torch.zeros((capacity, self.ncol), device=self.device, dtype=torch.float32)
        self._factor = np.ones((capacity, n))  # host: each row's update-norm factor (lr, bias corrections)
        # the rows of each layer that are measured: all of them, or on the CPU its first SAMPLE_CPU weights' rows (a
        # contiguous block: a strided subset reads fewer bytes but costs 7x more time in torch's norm)
        self._rows, self._sample_scale = [], []
        for w in self.weights:
            rows = w.shape[0] if w.dim() else 1
            r = rows
            if self.device.type == "cpu" and w.dim() >= 2 and w.numel() > SAMPLE_CPU:
                r = max(1, SAMPLE_CPU // max(1, w.numel() // rows))
            self._rows.append(r if r < rows else None)
            self._sample_scale.append(math.sqrt(rows / r))
        self._sample_scale = np.array(self._sample_scale)
        self._group = {}
        if optimizer is not None:
            for g in optimizer.param_groups:
                for p in g["params"]:
                    self._group[id(p)] = g
        self._zero = torch.zeros((), device=self.device, dtype=torch.float32)
        self._static_key: tuple[int, int] | None = None  # see _static_views
        self._static: list[torch.Tensor] = []
        self._cells: dict[int, list[torch.Tensor]] = {}  # per row of the buffer: its cells (_row_cells)
        # a row's norms: one fused call and a stack on an accelerator (each kernel is a launch there), one norm per
        # tensor written into its cell on the CPU (record)
        self.fused = self.device.type != "cpu"
        # DTensor parameters (FSDP2): their gradients, states and weights are read on this rank's shard
        self._sharded = [is_dtensor(w) for w in self.weights]
        self._adam_t = 0
        self.reset()

    def reset(self) -> None:
        """Forget what was recorded (a run started again)."""
        self.last_step = 0  # the latest step recorded
        self.read_to = 0  # steps up to this one are on the host
        self.scored_to = 0  # steps up to this one had their loss scored
        self.quiet_to = 0  # no new spike up to this step
        self.h_steps = np.zeros(0, dtype=np.int64)  # the host's copy of the recent steps, in order
        self.h_vals = np.zeros((0, self.ncol))
        self.pending: list[tuple[int, float, str]] = []  # spikes found, waiting for their after part
        self.spikes: list[SpikeRecord] = []  # every spike record returned
        self.finished = False
        self._adam_t = 0

    # ------------------------------------------------------------------ every step (no sync)
    def _view(self, t: torch.Tensor, i: int) -> torch.Tensor:
        # a sharded parameter (FSDP2's DTensor): this rank's own shard. Its norms are this rank's part of the
        # layer's (a whole-layer norm would need a collective on every step); a spike shows in every shard.
        if self._sharded[i]:
            t = t.to_local()
        r = self._rows[i]
        return t.narrow(0, 0, r) if r is not None else t  # narrow: a view, cheaper than t[:r] from Python

    def _static_views(self) -> list[torch.Tensor]:
        """The views of the tensors that live from step to step, made once: the momentum buffers (SGD), then the
        weights. They are made again when the optimiser's state is another dict or holds another number of entries
        (load_state_dict, clear): a buffer is otherwise updated in place."""
        state = self.optimizer.state if self.optimizer is not None else _NO_STATE
        key = (id(state), len(state))
        if self._static_key != key:
            views = []
            if self.kind == "sgd-momentum":
                for i, w in enumerate(self.weights):
                    b = state[w].get("momentum_buffer") if w in state else None
                    views.append(self._view(b, i) if b is not None else self._zero)
            views += [self._view(w.detach(), i) for i, w in enumerate(self.weights)]
            missing = self.kind == "sgd-momentum" and any(v is self._zero for v in views[:len(self.weights)])
            self._static_key = key if not missing else None  # buffers still to come: look again next step
            self._static = views
        return self._static

    @torch.no_grad()
    def record(self, step: int, loss: torch.Tensor) -> None:
        """The step's row: its loss and each layer's numbers, after the optimiser's step. No host sync. On an
        accelerator one fused norm call for the layers' tensors of every kind and one stack into the row; on the CPU,
        where torch's _foreach_norm is a loop of norms that each return a new tensor, each norm is written straight
        into its cell of the row (0.38-0.44 ms a row against 0.46-0.52 for the seed's network,
        bench/flight_cost.py). A row's cost is mostly its Python and its number of calls, not the values it reads."""
        row = step % self.capacity
        ts = [self._view(w.grad, i) if w.grad is not None else self._zero for i, w in enumerate(self.weights)]
        if self.kind == "sgd":
            ts += ts  # the update is lr x the gradient: its norm again
        elif self.kind == "adam":
            ts += self._adam_steps(row)
        if self.kind in ("sgd", "sgd-momentum"):
            self._factor[row] = self._lrs()
        ts += self._static_views()
        if not self.fused and all(t.dtype == torch.float32 for t in ts):
            cells = self._row_cells(row)
            cells[0].copy_(loss.detach().reshape(()))
            for t, cell in zip(ts, cells[1:]):
                torch.linalg.vector_norm(t, out=cell)
        else:
            norms = torch._foreach_norm(ts)
            if norms[0].dtype != torch.float32:
                norms = [t.float() for t in norms]
            torch.stack([loss.detach().reshape(()).float(), *norms], out=self.buf[row])
        self.last_step = step

    def _row_cells(self, row: int) -> list[torch.Tensor]:
        """The cells of the buffer's row, one 0-dim view each, made once per row (a view costs a microsecond or two
        to make, and a row has a few dozen)."""
        cells = self._cells.get(row)
        if cells is None:
            cells = self._cells[row] = list(self.buf[row].unbind())
        return cells

    def _lrs(self) -> list[float]:
        return [self._group[id(w)]["lr"] if id(w) in self._group else 0.0 for w in self.weights]

    def _adam_steps(self, row: int) -> list[torch.Tensor]:
        """Each layer's Adam step without its host factor, m / (sqrt(v) + eps * sqrt(bc2)) (the factor, lr *
        sqrt(bc2) / bc1, goes to the row's factors)."""
        state = self.optimizer.state
        ms, vs, facs = [], [], []
        self._adam_t += 1
        for i, w in enumerate(self.weights):
            st = state.get(w) if w in state else None
            g = self._group.get(id(w))
            if not st or "exp_avg" not in st or g is None:
                ms.append(self._zero)
                vs.append(self._zero)
                facs.append(0.0)
                continue
            t = float(self._adam_t)  # the steps recorded (reading Adam's own step tensor would be a host read)
            b1, b2 = g["betas"]
            bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
            lr = g["lr"] if not torch.is_tensor(g["lr"]) else 0.0
            ms.append(self._view(st["exp_avg"], i))
            vs.append(self._view(st["exp_avg_sq"], i))
            facs.append((lr * math.sqrt(bc2) / bc1, g["eps"] * math.sqrt(bc2)))
        self._factor[row] = [f[0] if isinstance(f, tuple) else 0.0 for f in facs]
        denom = torch._foreach_sqrt(vs)
        torch._foreach_add_(denom, [f[1] if isinstance(f, tuple) else 1.0 for f in facs])
        return torch._foreach_div(ms, denom)

    # ------------------------------------------------------------------ at the checks
    def check(self, end: bool = False, min_new: int = 0) -> list[SpikeRecord]:
        """Read the steps recorded since the last check (one copy) and score them; the spike records that are
        complete now (with `end`: every one pending). With `min_new`, fewer new steps than that wait for a later
        check: the trainer checks at every progress tick (4 a second) with READ_EVERY, as a check's copy and scoring
        cost about 0.5 ms on the CPU whatever the number of new steps (0.2% of the seed's steps/s, 0.05% now)."""
        if not end and self.last_step - self.read_to < min_new:
            return []
        if self.last_step > self.read_to:
            self._read()
        self._score_loss()
        out = []
        keep = []
        for s, score, kind in self.pending:
            if end or self.h_steps[-1] >= s + AFTER:
                out.append(self._spike(s, score, kind))
            else:
                keep.append((s, score, kind))
        self.pending = keep
        self.spikes += out
        return out

    def finish(self, explosion: bool = False) -> list[SpikeRecord]:
        """The end of the run: what is pending, and for a run that ended diverged (`explosion`), an explosion record
        at the first step not yet reported whose loss left its band (or was not finite), if the recorder saw one."""
        if self.finished:
            return []
        self.finished = True
        out = self.check(end=True)
        if explosion and len(self.h_steps):
            start = max(self.quiet_to, self.spikes[-1].step if self.spikes else 0)
            after = self.h_steps > start
            loss = self.h_vals[:, 0]
            scores = robust_scores(loss, BAND, start=1, floor=LOSS_FLOOR)
            hit = np.flatnonzero(after & ((scores > LOSS_THRESHOLD) | ~np.isfinite(loss)))
            if len(hit):
                i = int(hit[0])
                rec = self._spike(int(self.h_steps[i]), float(scores[i]), "explosion")
                self.spikes.append(rec)
                out.append(rec)
            elif out:  # the spike just reported was the start of it
                import dataclasses

                out[-1] = dataclasses.replace(out[-1], kind="explosion")
                self.spikes[-1] = out[-1]
        return out

    def first_not_finite(self, after: int) -> int | None:
        """The first step after `after` held on the host (after a check or finish()) whose loss or a layer's gradient
        norm is not finite, or None: a step where the trainer's replay, which checks the loss and every gradient,
        stops too (or earlier), whatever rounding its numbers take on the way there."""
        n = len(self.names)
        bad = (self.h_steps > after) & ~np.isfinite(self.h_vals[:, :1 + n]).all(axis=1)
        hit = np.flatnonzero(bad)
        return int(self.h_steps[hit[0]]) if len(hit) else None

    def _read(self) -> None:
        first = max(self.read_to + 1, self.last_step - self.capacity + 1)
        steps = np.arange(first, self.last_step + 1)
        rows = steps % self.capacity
        host = self.buf.cpu().numpy().astype(np.float64)  # sync: the flight buffer, once per check (13 KB)
        vals = host[rows]
        n = len(self.names)
        vals[:, 1:1 + n] *= self._sample_scale
        if self.metric:
            vals[:, 1 + n:self.wcol] *= self._factor[rows] * self._sample_scale
        vals[:, self.wcol:] *= self._sample_scale
        keep = 4 * self.capacity
        self.h_steps = np.concatenate([self.h_steps, steps])[-keep:]
        self.h_vals = np.concatenate([self.h_vals, vals])[-keep:]
        self.read_to = self.last_step

    def _score_loss(self) -> None:
        new = self.h_steps > self.scored_to
        if not new.any():
            return
        start = int(np.argmax(new))
        loss = self.h_vals[:, 0]
        scores = robust_scores(loss, BAND, start=max(start, BAND // 2), floor=LOSS_FLOOR)
        for i in range(start, len(loss)):
            s = int(self.h_steps[i])
            if s <= self.quiet_to:
                continue
            if not math.isfinite(loss[i]):  # the loss went non-finite: an explosion (the engine ends the run)
                self.pending.append((s, math.inf, "explosion"))
                self.quiet_to = MAX_QUIET
            elif scores[i] > LOSS_THRESHOLD:
                self.pending.append((s, float(scores[i]), "spike"))
                self.quiet_to = s + QUIET
        self.scored_to = int(self.h_steps[-1])

    def _spike(self, step: int, score: float, kind: str) -> SpikeRecord:
        i = int(np.searchsorted(self.h_steps, step))
        lo, hi = max(0, i - BAND), min(len(self.h_steps), i + AFTER + 1)
        steps = self.h_steps[lo:hi]
        vals = self.h_vals[lo:hi]
        n = len(self.names)
        series = {"grad_norm": {name: tuple(vals[:, 1 + j].tolist()) for j, name in enumerate(self.names)}}
        if self.metric:
            series[self.metric] = {name: tuple(vals[:, 1 + n + j].tolist()) for j, name in enumerate(self.names)}
        series["weight_norm"] = {name: tuple(vals[:, self.wcol + j].tolist()) for j, name in enumerate(self.names)}
        leaders = self._leaders(i, step)
        return SpikeRecord(step=step, kind=kind, score=score, steps=tuple(int(s) for s in steps),
                           loss=tuple(vals[:, 0].tolist()), series=series, leaders=tuple(leaders),
                           elapsed_s=self.elapsed())

    def _leaders(self, i: int, step: int) -> list[Lead]:
        """The layers whose own numbers left their band between LOOKBACK steps before the spike (at index `i`) and
        AFTER steps after it, ranked by the first step they did (then by score): the band is the BAND steps before
        that stretch."""
        a = max(0, i - LOOKBACK)
        band = self.h_vals[max(0, a - BAND):a]
        stretch = self.h_vals[a:min(len(self.h_steps), i + AFTER + 1)]
        if len(band) < BAND // 2 or not len(stretch):
            return []
        n = len(self.names)
        metrics = [("grad_norm", 1)] + ([(self.metric, 1 + n)] if self.metric else []) + [("weight_norm", self.wcol)]
        found: dict[str, Lead] = {}
        for metric, col in metrics:
            for j, name in enumerate(self.names):
                b = band[:, col + j]
                b = b[np.isfinite(b)]
                if len(b) < BAND // 4:
                    continue
                med = float(np.median(b))
                spread = max(MAD_SCALE * float(np.median(np.abs(b - med))), LAYER_FLOOR * abs(med), 1e-30)
                x = stretch[:, col + j]
                with np.errstate(all="ignore"):
                    z = np.where(np.isfinite(x), np.abs(x - med) / spread, np.inf)
                over = np.flatnonzero(z > LAYER_THRESHOLD)
                if not len(over):
                    continue
                k = int(over[0])
                s = int(self.h_steps[a + k])
                lead = Lead(layer=name, metric=metric, step=s, lead=step - s, score=float(z[k]))
                old = found.get(name)
                if old is None or (lead.step, -lead.score) < (old.step, -old.score):
                    found[name] = lead
        return sorted(found.values(), key=lambda l: (l.step, -l.score))


__all__ = ["FlightRecorder", "CAPACITY", "BAND", "AFTER", "LOOKBACK", "LOSS_THRESHOLD", "LAYER_THRESHOLD"]
