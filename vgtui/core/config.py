"""Run configuration: every option of a training run, validated before anything starts.

This module imports neither torch nor textual, so the CLI and the UI can use it cheaply.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# In the order the UI's `a` key cycles through them: the saturating ones first.
ACTIVATIONS: tuple[str, ...] = (
    "sigmoid",
    "tanh",
    "softsign",
    "hardtanh",
    "relu",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "swish",
    "mish",
    "softplus",
    "linear",
)
INITS: tuple[str, ...] = ("default", "xavier", "xavier-normal", "kaiming", "orthogonal")
DATASETS: tuple[str, ...] = ("mnist", "mnist-5k", "fashion-mnist")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")

# Snapshot cadence. Without --probe-every ("auto"), a snapshot every DEFAULT_PROBE_EVERY steps but at least
# PROBE_MIN_INTERVAL_S apart: on a CPU, where 40 steps of the seed's network take over a second, that is every 40
# steps; on a GPU doing thousands of steps a second, it is 4 a second, a steady, small stream. An explicit
# --probe-every N is exact (every N steps), so runs that are compared stay aligned by step. Either way there is
# a snapshot at step 1 (numbers at once) and at each epoch end. 40 costs under 3% of training time on the seed's
# network (bench/overhead.py measures it) and divides both datasets' epochs (40 steps of mnist-5k, 600 of MNIST at
# batch 100), so the epoch-end snapshots coincide with the periodic ones instead of adding to them.
DEFAULT_PROBE_EVERY = 40
PROBE_MIN_INTERVAL_S = 0.25
# Progress records (step, loss, steps/s between snapshots): this often to the UI; the metrics file keeps at most
# one per PROGRESS_FILE_EVERY_S.
PROGRESS_EVERY_S = 0.25
PROGRESS_FILE_EVERY_S = 1.0


def default_data_dir() -> str:
    return os.environ.get("VGTUI_DATA") or str(Path.home() / ".cache" / "vgtui")


class ConfigError(ValueError):
    """A refused option: `option` names it, the message says what is allowed."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


@dataclass(frozen=True)
class RunConfig:
    dataset: str = "mnist"
    data_dir: str = field(default_factory=default_data_dir)
    offline: bool = False
    depth: int = 5
    width: int = 1000
    activation: str = "sigmoid"
    init: str = "default"
    batchnorm: bool = False
    skip: bool = False
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 100
    epochs: int = 10
    max_steps: int | None = None
    seed: int = 0
    device: str = "auto"
    probe_every: int | None = None  # None: automatic (see above)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def describe(self) -> str:
        """A short human summary: 'sigmoid + batchnorm', 'relu + kaiming + skip'."""
        parts = [self.activation]
        if self.init != "default":
            parts.append(self.init)
        if self.batchnorm:
            parts.append("batchnorm")
        if self.skip:
            parts.append("skip")
        return " + ".join(parts)

    def validate(self) -> "RunConfig":
        """Raise ConfigError naming the first bad option; return self when all are good."""

        def choice(option: str, value: str, allowed: tuple[str, ...]) -> None:
            if value not in allowed:
                raise ConfigError(option, f"unknown value {value!r}; choose one of: {', '.join(allowed)}")

        def positive(option: str, value: float) -> None:
            if not value > 0:
                raise ConfigError(option, f"must be a positive number, got {value!r}")

        choice("--dataset", self.dataset, DATASETS)
        choice("--activation", self.activation, ACTIVATIONS)
        choice("--init", self.init, INITS)
        choice("--optimizer", self.optimizer, OPTIMIZERS)
        choice("--device", self.device, DEVICES)
        for option, value in (("--depth", self.depth), ("--width", self.width), ("--batch-size", self.batch_size),
                              ("--epochs", self.epochs)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(option, f"must be a positive whole number, got {value!r}")
        if self.probe_every is not None and (not isinstance(self.probe_every, int) or self.probe_every < 1):
            raise ConfigError("--probe-every", f"must be a positive whole number, got {self.probe_every!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise ConfigError("--max-steps", f"must be a positive whole number, got {self.max_steps!r}")
        positive("--lr", self.lr)
        if not 0 <= self.momentum < 1:
            raise ConfigError("--momentum", f"must be in [0, 1), got {self.momentum!r}")
        return self


def next_choice(current: str, choices: tuple[str, ...], step: int = 1) -> str:
    """The value after (or before, step=-1) `current`, wrapping around."""
    i = choices.index(current) if current in choices else -1
    return choices[(i + step) % len(choices)]
