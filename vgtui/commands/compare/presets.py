"""The comparisons `vgtui compare --preset NAME` reproduces: the seed's article and four papers, each with its
SPECs, the options it changes from vgtui's defaults, the paper's figures and setup, and the extra view its table
adds; and compare's own defaults, which a preset's override.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """A comparison from the seed's article or a paper: its SPECs, the options it changes from vgtui's defaults,
    the paper's figure per SPEC (None: none to print) and the extra view the table adds."""

    specs: tuple[str, ...]
    about: str
    defaults: dict[str, Any] = field(default_factory=dict)
    paper: str | None = None  # the paper's column header
    paper_values: dict[str, str] = field(default_factory=dict)
    paper_setup: str = ""
    view: str | None = None  # "layers" (per-layer gradient ratio), "actstats" (act mean/std), "pre" (percentiles),
    # "err" (our test error %, beside the paper's)


PRESETS: dict[str, Preset] = {
    "seed": Preset(
        ("sigmoid", "relu", "swish", "sigmoid+skip", "sigmoid+bn", "sigmoid+xavier", "relu+kaiming"),
        "the seed's article: 784-1000x5-10 sigmoid against each remedy it names",
        defaults=dict(epochs=2)),
    "glorot2010": Preset(
        ("softsign", "softsign+xavier", "tanh", "tanh+xavier", "sigmoid"),
        "Glorot & Bengio 2010, Table 1 (MNIST): 5 hidden layers of 1000, standard vs normalised (xavier) init",
        defaults=dict(epochs=3),
        paper="paper test err %",
        paper_values={"softsign": "1.64", "softsign+xavier": "1.72", "tanh": "1.76", "tanh+xavier": "1.64",
                      "sigmoid": "2.21"},
        paper_setup="full MNIST, minibatch 10, trained to convergence; their standard init U[-1/sqrt(n), "
                    "1/sqrt(n)] is PyTorch's default Linear init", view="err"),
    "he2015": Preset(
        ("relu+xavier", "relu+kaiming"),
        "He et al. 2015, Figure 3: 30 layers of ReLU, Xavier's init against theirs (kaiming)",
        defaults=dict(depth=30, width=256, epochs=2),
        paper="paper (30 layers)",
        paper_values={"relu+xavier": "stalls, gradients diminish", "relu+kaiming": "converges"},
        paper_setup="ImageNet, a 30-layer ReLU net (27 conv + 3 fc)", view="layers"),
    "selu2017": Preset(
        ("selu+lecun", "relu", "sigmoid"),
        "Klambauer et al. 2017: SELU with LeCun-normal init keeps activations near mean 0, std 1 through 50 layers "
        "and learns (SGD lr 0.001, momentum 0.9: at vgtui's lr 0.01 the 50-layer SELU net leaves the fixed point, "
        "activation std 2-6, and does not learn)",
        defaults=dict(depth=50, width=100, epochs=3, lr=0.001, momentum=0.9),
        paper="paper",
        paper_values={"selu+lecun": "mean 0, std 1 at every layer (fixed point)"},
        paper_setup="the self-normalising fixed point, proved and measured on deep fully connected nets; it holds "
                    "while training only with a small enough step (here lr 0.001 with momentum 0.9; lr 0.01 leaves it)",
        view="actstats"),
    "bn2015": Preset(
        ("sigmoid", "sigmoid+bn"),
        "Ioffe & Szegedy 2015, section 4.1: 3 hidden layers of 100 sigmoid units, with and without batch norm",
        defaults=dict(depth=3, width=100, batch_size=60, lr=0.1, epochs=10),
        paper="paper (Fig. 1)",
        paper_values={"sigmoid": "percentiles drift", "sigmoid+bn": "percentiles stable, learns faster"},
        paper_setup="full MNIST, 50,000 steps of 60 examples", view="pre"),
}
COMPARE_DEFAULTS = dict(dataset="mnist-5k", epochs=2, probe_every=5)  # vgtui compare's own, before a preset's


def preset_help() -> str:
    lines = []
    for name, p in PRESETS.items():
        opts = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in p.defaults.items())
        lines.append(f"  {name:<11} {p.about}\n  {'':<11} {' '.join(p.specs)}   [{opts}]")
    return "\n".join(lines)
