"""The vanishing-gradient phenomenon and its remedies, measured on the embedded digits.

Each case: the seed's network (784-1000x5-10), 40 steps of SGD lr 0.01 momentum 0.9, batch 100, a snapshot at
every step, trained as the README's "What the remedies do" says (`vgtui --headless --max-steps 40 --probe-every 1
OPTIONS`, through scripts/phenomenon_table.py, which prints that table): the median over those 40 steps of fc1's
weight-gradient norm over fc6's, of the per-layer gradient factor (the geometric mean over the layers of |dL/dz| at a
layer over the one above it) and of the hidden layers' mean |act'(z)|. Each configuration trains once per module;
the README's first four rows are asserted against these runs.
"""

import importlib.util
import re
import sys

import pytest

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("phenomenon_table", ROOT / "scripts" / "phenomenon_table.py")
phenomenon = sys.modules["phenomenon_table"] = importlib.util.module_from_spec(_spec)  # a dataclass needs it there
_spec.loader.exec_module(phenomenon)

CASES = {"sigmoid": "", "relu+kaiming": "--activation relu --init kaiming", "sigmoid+batchnorm": "--batchnorm",
         "sigmoid+skip": "--skip"}


def measure(data, options: str):
    records = phenomenon.train(options, data)
    snaps = [r for r in records if type(r).__name__ == "Snapshot"]
    assert len(snaps) == 40 and snaps[0].layers[0].name == "fc1" and snaps[0].layers[-1].name == "fc6"
    return phenomenon.figures(records)


@pytest.fixture(scope="module")
def runs(digits):
    return {name: measure(digits, options) for name, options in CASES.items()}


@pytest.fixture(scope="module")
def ratios(runs):
    return {name: f.ratio for name, f in runs.items()}


def test_sigmoid_gradients_vanish(ratios):
    assert ratios["sigmoid"] < 1e-2


def test_relu_kaiming_is_healthy(ratios):
    assert ratios["relu+kaiming"] > 0.1


def test_batchnorm_restores_the_flow(ratios):
    assert ratios["sigmoid+batchnorm"] > 0.1


def test_skip_connections_restore_the_flow(ratios):
    assert ratios["sigmoid+skip"] > 1e-2
    assert ratios["sigmoid+skip"] >= 30 * ratios["sigmoid"]


def test_sigmoid_each_layer_multiplies_the_gradient_by_a_small_factor(runs):
    """The seed's argument: sigmoid's derivative is at most 0.25, so each layer shrinks the gradient."""
    f = runs["sigmoid"]
    assert 0.05 <= f.factor <= 0.3
    assert 0 < f.deriv <= 0.25
    for name in ("relu+kaiming", "sigmoid+batchnorm"):  # the remedies keep the factor near 1
        assert runs[name].factor > 3 * f.factor, name


def _readme_rows() -> dict[str, list[str]]:
    """The README's "What the remedies do" table: its first cell -> the row's cells."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## What the remedies do", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| OPTIONS"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            rows[cells[0]] = cells
    return rows


def test_readme_first_four_rows_are_these_runs(runs):
    rows = _readme_rows()
    assert rows[phenomenon.ROWS[0][1]][0] == "(none: sigmoid, PyTorch's default init)"
    assert [cell for _, cell in phenomenon.ROWS] == list(rows)  # the script's rows are the README's, in order
    for (options, cell), name in zip(phenomenon.ROWS, CASES):
        assert CASES[name] == options
        _, ratio, factor, deriv, diagnosis = rows[cell]
        f = runs[name]
        assert float(ratio) == pytest.approx(f.ratio, rel=0.1), name
        assert float(factor) == pytest.approx(f.factor, abs=0.02), name
        assert float(deriv) == pytest.approx(f.deriv, abs=0.02), name
        assert diagnosis.split(":")[0] == f.badge, name
