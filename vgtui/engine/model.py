"""The seed's network: a deep MLP (784-1000x5-10 by default) with switchable activations and the remedies."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vgtui.core.activations import ACTIVATION_NAMES
from vgtui.core.config import ACTIVATIONS, RunConfig

# The torch function of each activation of the table (vgtui.core.activations: its range, derivative and the
# derivative's maximum); tests/test_summary.py checks the table's formulas against these.
_TORCH_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softsign": F.softsign,  # Glorot & Bengio's x / (1 + |x|)
    "hardtanh": F.hardtanh,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,  # slope 0.01
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "swish": F.silu,
    "mish": F.mish,
    "softplus": F.softplus,
    "linear": lambda x: x,
}
ACTIVATION_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {n: _TORCH_FNS[n] for n in ACTIVATION_NAMES}
assert set(_TORCH_FNS) == set(ACTIVATION_NAMES)


class Activation(nn.Module):
    """An elementwise activation that can be switched by name on a live model (no weights to touch)."""

    def __init__(self, name: str):
        super().__init__()
        self.set(name)

    def set(self, name: str) -> None:
        if name not in ACTIVATION_FNS:
            raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
        self.name = name
        self.fn = ACTIVATION_FNS[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class MLP(nn.Module):
    """fc1..fc{depth} hidden layers of `width` units, each Linear -> [BatchNorm1d] -> activation, optionally
    with residual connections around hidden layers 2..depth (whose input and output shapes match), then the
    output layer fc{depth+1}. Modules are registered in forward order, so hooks see them in that order."""

    def __init__(self, in_features: int = 784, depth: int = 5, width: int = 1000, classes: int = 10,
                 activation: str = "sigmoid", batchnorm: bool = False, skip: bool = False):
        super().__init__()
        self.depth, self.skip, self.batchnorm = depth, skip, batchnorm
        d = in_features
        for i in range(1, depth + 1):
            setattr(self, f"fc{i}", nn.Linear(d, width))
            if batchnorm:
                setattr(self, f"bn{i}", nn.BatchNorm1d(width))
            setattr(self, f"act{i}", Activation(activation))
            d = width
        setattr(self, f"fc{depth + 1}", nn.Linear(d, classes))

    @property
    def layer_names(self) -> list[str]:
        return [f"fc{i}" for i in range(1, self.depth + 2)]

    def activations(self) -> list[Activation]:
        return [m for m in self.modules() if isinstance(m, Activation)]

    def set_activation(self, name: str) -> None:
        for m in self.activations():
            m.set(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for i in range(1, self.depth + 1):
            z = getattr(self, f"fc{i}")(h)
            if self.batchnorm:
                z = getattr(self, f"bn{i}")(z)
            a = getattr(self, f"act{i}")(z)
            h = a + h if self.skip and i >= 2 and a.shape == h.shape else a
        return getattr(self, f"fc{self.depth + 1}")(h)


def init_weights(model: nn.Module, scheme: str) -> None:
    """Re-initialise every Linear/Conv layer: default (PyTorch's own), xavier (uniform, Glorot's "normalised
    init"), xavier-normal, kaiming (normal, fan_in, ReLU gain), lecun (normal, std 1/sqrt(fan_in): the init SELU's
    self-normalisation assumes), orthogonal. Biases go to zero except for 'default', which keeps PyTorch's."""
    if scheme == "default":
        return
    fns = {
        "xavier": nn.init.xavier_uniform_,
        "xavier-normal": nn.init.xavier_normal_,
        "kaiming": lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"),
        "lecun": lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="linear"),  # gain 1
        "orthogonal": nn.init.orthogonal_,
    }
    if scheme not in fns:
        raise ValueError(f"unknown init {scheme!r}")
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            with torch.no_grad():
                fns[scheme](m.weight)
                if m.bias is not None:
                    m.bias.zero_()


def build_model(config: RunConfig, in_features: int = 784, classes: int = 10) -> MLP:
    """The network for `config`, initialised from `config.seed` (same seed, same weights)."""
    torch.manual_seed(config.seed)
    model = MLP(in_features, config.depth, config.width, classes, config.activation, config.batchnorm, config.skip)
    init_weights(model, config.init)
    return model


def build_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


__all__ = ["Activation", "MLP", "ACTIVATION_FNS", "build_model", "build_optimizer", "init_weights"]
