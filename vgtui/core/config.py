"""Run configuration: every option of a training run, validated before anything starts.

This module imports neither torch nor textual, so the CLI and the UI can use it cheaply.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vgtui.core.activations import ACTIVATION_NAMES

# In the order the UI's `a` key cycles through them: the saturating ones first (one table: vgtui.core.activations).
ACTIVATIONS: tuple[str, ...] = ACTIVATION_NAMES
INITS: tuple[str, ...] = ("default", "xavier", "xavier-normal", "kaiming", "lecun", "orthogonal")
DATASETS: tuple[str, ...] = ("mnist", "mnist-5k", "fashion-mnist")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")

MAX_DEPTH = 1000  # hidden layers: deeper nets are slow to build and no screen shows their layers
SEED_MAX = 2**63 - 1  # torch.manual_seed's range for a non-negative seed
MAX_FPS = 30.0  # redraws a second: a terminal cannot show more, and the UI must keep time for keys
MIN_FPS = 0.1

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
    dataset: str = "mnist-5k"  # the embedded digits: `vgtui` starts at once, offline too (engine/data.py)
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
    flight: bool = True  # the flight recorder of loss spikes (vgtui.engine.flight); --no-flight turns it off

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def shape_text(self, in_features: int | None = None, classes: int | None = None) -> str:
        """The network's shape in the usual notation: '784-1000x5-10' (inputs, width x hidden layers, classes)."""
        return shapes_text([self], in_features, classes)

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
        if self.depth > MAX_DEPTH:
            raise ConfigError("--depth", f"at most {MAX_DEPTH} hidden layers, got {self.depth}")
        if not isinstance(self.seed, int) or not 0 <= self.seed <= SEED_MAX:
            raise ConfigError("--seed", f"must be a whole number from 0 to 2**63-1, got {self.seed!r}")
        if self.batchnorm and self.batch_size < 2:
            raise ConfigError("--batch-size", "batch normalisation needs at least 2 examples per batch "
                              f"(got {self.batch_size}); use a larger --batch-size or drop --batchnorm")
        positive("--lr", self.lr)
        if not math.isfinite(self.lr):
            raise ConfigError("--lr", f"must be a finite number, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ConfigError("--momentum", f"must be in [0, 1), got {self.momentum!r}")
        return self


IN_FEATURES = 784  # a 28x28 image: the input of every dataset vgtui trains on
CLASSES = 10


def shapes_text(configs: "list[RunConfig]", in_features: int | None = None, classes: int | None = None) -> str:
    """The shape of one or more configurations' networks: '784-1000x5-10'; for several, each width and depth once,
    smallest first: '784-100/1000x3/5-10' (inputs and classes: the data's, when given)."""
    widths = "/".join(str(w) for w in sorted({c.width for c in configs}))
    depths = "/".join(str(d) for d in sorted({c.depth for c in configs}))
    return f"{in_features or IN_FEATURES}-{widths}x{depths}-{classes or CLASSES}"


def estimate_bytes(config: RunConfig, in_features: int = 784, classes: int = 10) -> int:
    """Memory the run needs on its device, roughly: weights, their gradients and the optimiser's state (SGD with
    momentum: one buffer; Adam: two), plus the activations of one batch kept for backward (and of the largest
    evaluation batch). Used to refuse a model that cannot fit before anything starts."""
    w, d = config.width, config.depth
    params = in_features * w + w + (d - 1) * (w * w + w) + w * classes + classes
    if config.batchnorm:
        params += 2 * w * d
    states = 2 if config.optimizer == "adam" else (1 if config.momentum else 0)
    per_example = (in_features + w * d * (4 if config.batchnorm else 3) + classes * 2)
    batch = max(config.batch_size, 1000)  # the evaluation batch is 1000
    return 4 * (params * (2 + states) + per_example * batch)


def available_memory() -> int | None:
    """Memory this machine can still give (bytes): MemAvailable from /proc/meminfo, else physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def check_fits(config: RunConfig, available: int | None = None) -> None:
    """Raise ConfigError when the model would not fit in this machine's memory (CPU runs; on a GPU the trainer
    checks the device's memory once it sees it)."""
    need = estimate_bytes(config)
    avail = available_memory() if available is None else available
    if avail is not None and need > avail:
        raise ConfigError("--width/--depth",
                          f"a {config.depth} x {config.width} network needs about {human_bytes(need)} of memory "
                          f"(weights, gradients, optimiser state, one batch); this machine has "
                          f"{human_bytes(avail)} free. Use a smaller --width or --depth.")


def next_choice(current: str, choices: tuple[str, ...], step: int = 1) -> str:
    """The value after (or before, step=-1) `current`, wrapping around."""
    i = choices.index(current) if current in choices else -1
    return choices[(i + step) % len(choices)]
