"""The vanishing-gradient phenomenon and its remedies, measured on the embedded digits.

Each case: the seed's network (784-1000x5-10), 40 steps of SGD lr 0.01 momentum 0.9, batch 100, a snapshot at
every step; the median over those 40 steps of fc1's weight-gradient norm over fc6's. The README's table quotes
these, each reproducible with `vgtui --headless --dataset mnist-5k --max-steps 40 --probe-every 1 ...`.
"""

import statistics

import pytest

from vgtui.core.config import RunConfig
from vgtui.core.records import Snapshot
from vgtui.engine.trainer import Trainer


def median_ratio(data, **options) -> float:
    cfg = RunConfig(dataset="mnist-5k", max_steps=40, probe_every=1, device="cpu", **options)
    snaps = []
    end = Trainer(cfg, [lambda r: snaps.append(r) if isinstance(r, Snapshot) else None], data=data).run()
    assert end.status == "completed" and len(snaps) == 40
    assert [s.layers[0].name for s in snaps[:1]] == ["fc1"] and snaps[0].layers[-1].name == "fc6"
    return statistics.median(s.ratio("grad_norm") for s in snaps)


@pytest.fixture(scope="module")
def ratios(digits):
    return {
        "sigmoid": median_ratio(digits),
        "relu+kaiming": median_ratio(digits, activation="relu", init="kaiming"),
        "sigmoid+batchnorm": median_ratio(digits, batchnorm=True),
        "sigmoid+skip": median_ratio(digits, skip=True),
    }


def test_sigmoid_gradients_vanish(ratios):
    assert ratios["sigmoid"] < 1e-2


def test_relu_kaiming_is_healthy(ratios):
    assert ratios["relu+kaiming"] > 0.1


def test_batchnorm_restores_the_flow(ratios):
    assert ratios["sigmoid+batchnorm"] > 0.1


def test_skip_connections_restore_the_flow(ratios):
    assert ratios["sigmoid+skip"] > 1e-2
    assert ratios["sigmoid+skip"] >= 30 * ratios["sigmoid"]
