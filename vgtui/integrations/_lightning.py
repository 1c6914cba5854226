"""The Lightning callback's hooks, for either package (lightning.pytorch or the older pytorch_lightning): this
module imports neither; vgtui.integrations.lightning and .pytorch_lightning join it to their Callback class."""

from __future__ import annotations

import os
from typing import Any, Iterable

import torch

from vgtui.integrations._metrics import first_lr, numbers
from vgtui.watching import LayerSpec, Watch


class WatchHooks:
    """vgtui.watch as a Lightning callback: `Trainer(callbacks=[VgtuiCallback(metrics="run.jsonl", every=50)])`.

    metrics, every, layers, quiet: as for vgtui.watch. `watch` is the current fit's Watch (None before one).

    A step is an optimiser step: on_before_optimizer_step (after the backward, gradients unscaled) marks the batch
    as one that steps and reads its learning rate; on_train_batch_end, after the step, hands the watch the step's
    loss (the training_step's, of the batch that stepped) and, on probed steps, the numbers the module has logged
    (trainer.callback_metrics: self.log(...)'s values, val_loss once validated) and the learning rate (metric
    "lr"). Lightning runs the forward and backward inside optimizer.step(closure), so the watch counts steps
    itself (probe.step()) rather than with the optimiser's step hooks, and reads the gradients after the step
    (they stay until the next closure's zero_grad). With gradient accumulation a step is the batch that stepped.
    A 16-bit GradScaler's skipped step is recorded as skipped. on_fit_end ends the file (completed); on_exception
    with the exception (failed; Ctrl+C: interrupted). Only rank 0 writes.
    """

    def __init__(self, metrics: str | os.PathLike = "vgtui-run.jsonl", every: int = 50,
                 layers: LayerSpec | Iterable[LayerSpec] | None = None, quiet: bool = False):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"VgtuiCallback: every={every!r}: a whole number of steps, 1 or more")
        self.metrics, self.every, self.layers, self.quiet = metrics, every, layers, quiet
        self.watch: Watch | None = None
        self._stepped = False  # this batch reached the optimiser
        self._lr: Any = None
        self._n = 0  # steps given to the watch

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self.watch is not None and not self.watch.closed:
            self.watch.close(RuntimeError("a previous fit stopped before its end"))
        scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
        total = trainer.max_steps if isinstance(trainer.max_steps, int) and trainer.max_steps > 0 else 0
        self._stepped, self._lr, self._n = False, None, 0
        self.watch = Watch(pl_module, metrics=self.metrics, every=self.every, layers=self.layers,
                           scaler=scaler if callable(getattr(scaler, "get_scale", None)) else None,  # 16-mixed's
                           total_steps=total, quiet=self.quiet)

    # A training_step that calls self.net(x) rather than self(x) never runs the module's forward, whose hook tells
    # the watch a training pass from a validation pass: these two say it instead, so that a validation between
    # the batches (or the sanity check) never counts as a probed step's activations.
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._forward_begins(pl_module)

    def on_validation_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self._forward_begins(pl_module)

    def _forward_begins(self, pl_module: Any) -> None:
        if self.watch is not None and not self.watch.closed:
            self.watch._on_forward(pl_module, ())  # what the forward pre-hook does (train() or eval(), grad or not)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self._stepped = True
        self._lr = first_lr(optimizer)  # the step's own rate: a per-step scheduler moves it after the batch

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.watch is None or self.watch.closed or not self._stepped:
            return  # an accumulation batch: no optimiser step yet
        self._stepped = False
        self._n += 1
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        loss = loss.detach() if isinstance(loss, torch.Tensor) and loss.numel() == 1 else None
        k = getattr(trainer, "accumulate_grad_batches", 1)
        if loss is not None and getattr(pl_module, "automatic_optimization", False) and isinstance(k, int) and k > 1:
            loss = loss * k  # Lightning hands on the loss divided by the accumulation: the training_step's, again
        metrics: dict[str, Any] = {}
        if self._n == 1 or self._n % self.every == 0:  # a probed step (the same on every rank)
            metrics = numbers(trainer.callback_metrics)
            if self._lr is not None:
                metrics["lr"] = self._lr
        self.watch.step(loss=loss, metrics=metrics)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.watch is not None:
            self.watch.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.watch is not None:
            self.watch.close(exception)
