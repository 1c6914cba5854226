"""vgtui.watch under the Hugging Face Trainer: one callback.

    from vgtui.integrations.hf import VgtuiCallback       # pip install 'vgtui[hf]'
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val)
    trainer.add_callback(VgtuiCallback(metrics="run.jsonl", every=50))
    trainer.train()                                        # vgtui follow run.jsonl, in another terminal

Steps are the Trainer's optimiser steps (on_optimizer_step); the step hooks of the torch optimiser inside its
accelerate wrapper read the gradients just before each probed step and the update just after (a step the fp16
GradScaler skips never reaches them: the watch writes a "skipped" event for it). Each snapshot also holds what the Trainer knows then: its loss (the mean its log of that step reports:
the callback has the Trainer log at each probed step too), the learning rate of the step (metric "lr"), and its
latest logged numbers (grad_norm, and eval_loss and the other eval_* metrics once it has evaluated). A snapshot is
written after the step's logging and evaluation, just before the next step begins. Its step numbers count this
trainer.train()'s steps from 1 (a run resumed from a checkpoint starts again at 1).

The file ends with on_train_end (completed). An exception out of trainer.train() ends it as failed at interpreter
exit (or at the next trainer.train() with this callback, or with `callback.close(exc)`). Only rank 0 writes.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

try:
    from transformers import TrainerCallback
except ImportError:
    from vgtui.integrations import missing

    raise missing("hf", "transformers", "'vgtui[hf]'") from None

import torch

from vgtui.integrations._metrics import first_lr, numbers
from vgtui.watching import LayerSpec, Watch


def torch_optimizer(optimizer: Any) -> Any:
    """The torch optimiser inside the Trainer's: accelerate's AcceleratedOptimizer wraps it as .optimizer, and only
    the inner one's step() runs the step hooks the watch counts with."""
    for _ in range(8):
        inner = getattr(optimizer, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer):
            break
        optimizer = inner
    return optimizer


class VgtuiCallback(TrainerCallback):
    """vgtui.watch as a Trainer callback: `trainer.add_callback(VgtuiCallback(metrics="run.jsonl", every=50))`.

    metrics, every, layers, quiet: as for vgtui.watch. log: have the Trainer log at each probed step (step 1 and
    every `every`-th), so that each snapshot holds the Trainer's loss of that step (the mean since its previous
    log) rather than the one of its last `logging_steps` log; the Trainer's own logging goes on as set.
    `watch` is the current run's Watch (None before training).
    """

    def __init__(self, metrics: str | os.PathLike = "vgtui-run.jsonl", every: int = 50,
                 layers: LayerSpec | Iterable[LayerSpec] | None = None, quiet: bool = False, log: bool = True):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"VgtuiCallback: every={every!r}: a whole number of steps, 1 or more")
        self.metrics, self.every, self.layers, self.quiet, self.log = metrics, every, layers, quiet, log
        self._n = 0  # the Trainer's optimiser steps in this trainer.train()
        self.watch: Watch | None = None
        self._stepped = 0  # the Trainer's optimiser steps since the last probe.step()
        self._loss: float | None = None  # a loss logged since the last probe.step()
        self._lr: Any = None  # the learning rate of the last step (read before the scheduler moves it)
        self._logged: dict[str, Any] = {}  # the latest of each other logged number (grad_norm, eval_*)
        self._optimizer: Any = None

    # ------------------------------------------------------------------------------ the Trainer's events
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.watch is not None and not self.watch.closed:  # the previous trainer.train() never reached its end
            self.close(RuntimeError("trainer.train() stopped before its end (an exception)"))
        if model is None or optimizer is None:
            raise ValueError("VgtuiCallback: the Trainer gave no model or optimizer at on_train_begin")
        self._optimizer = torch_optimizer(optimizer)
        self._stepped, self._loss, self._lr, self._logged, self._n = 0, None, None, {}, 0
        self.watch = Watch(model, metrics=self.metrics, every=self.every, optimizer=self._optimizer,
                           layers=self.layers, total_steps=max(int(state.max_steps or 0), 0), quiet=self.quiet)

    def on_optimizer_step(self, args, state, control, **kwargs):
        self._stepped += 1
        self._lr = first_lr(self._optimizer)  # the step's own rate: the scheduler steps after this event

    def on_step_end(self, args, state, control, **kwargs):
        self._n += 1
        if self.log and (self._n == 1 or self._n % self.every == 0):  # a probed step: its loss, fresh
            control.should_log = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        loss = logs.get("loss")
        if isinstance(loss, (int, float)) and not isinstance(loss, bool):
            self._loss = float(loss)
        self._logged.update(numbers(logs))

    def on_step_begin(self, args, state, control, **kwargs):
        self._record()  # the previous step's logs and evaluation are in: its snapshot can be written

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    # ------------------------------------------------------------------------------ the watch
    def _record(self) -> None:
        """One probe.step() per optimiser step of the Trainer's, with what it has logged since."""
        if self.watch is None or self.watch.closed or not self._stepped:
            return
        self._stepped = 0
        metrics = dict(self._logged)
        if self._lr is not None:
            metrics["lr"] = self._lr
        loss, self._loss = self._loss, None
        self.watch.step(loss=loss, metrics=metrics)

    def close(self, exc: BaseException | None = None) -> None:
        """End the file: completed, or with `exc`, failed (KeyboardInterrupt: interrupted). Safe to call twice."""
        if self.watch is None or self.watch.closed:
            return
        try:
            self._record()
        finally:
            self.watch.close(exc)
