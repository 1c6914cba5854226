"""The device strip: a CUDA snapshot's memory and utilisation, written in the snapshot's `device`, read back
strictly, and shown on the status line. This machine has no GPU: the engine's side is checked to write nothing
on a CPU (a strip of a CPU run would only repeat steps/s); the record and the screen are checked with a file that
holds the fields as a CUDA run writes them."""

from __future__ import annotations

import json

import pytest
import torch

from vgtui.core.records import RecordEncoder, Snapshot, record_from_json
from vgtui.engine.recorder import device_state
from vgtui.ui.widgets.status import device_words

DEV = {"mem_allocated": 3.4e9, "mem_reserved": 4.25e9, "mem_total": 85.0e9, "util": 87.0}


def _snap(device):
    from vgtui.core.records import LayerStats
    layer = LayerStats(name="fc1", grad_norm=1.0, grad_mean_abs=0.1, weight_norm=2.0, grad_data_ratio=0.5,
                       update_data_ratio=0.01, out_grad_norm=None, grad_hist=None)
    return Snapshot(step=5, epoch=0, elapsed_s=1.0, loss=2.3, loss_avg=2.3, steps_per_s=10.0, activation="relu",
                    layers=(layer,), device=device)


def test_a_cpu_run_has_no_device_state():
    assert device_state(torch.device("cpu")) is None
    assert device_state(None) is None


def test_the_device_fields_round_trip_and_are_read_strictly():
    line = RecordEncoder().line(_snap(DEV))
    d = json.loads(line)
    assert d["device"] == {"mem_allocated": 3.4e9, "mem_reserved": 4.25e9, "mem_total": 85.0e9, "util": 87.0}
    back = record_from_json(d)
    assert back.device == DEV
    assert "device" not in json.loads(RecordEncoder().line(_snap(None)))  # a CPU run's snapshot as before
    d2 = dict(d, device={"mem_allocated": 1.0, "newer_field": 5})
    assert record_from_json(d2).device == {"mem_allocated": 1.0}  # a field a newer vgtui adds is left out
    for bad in ({"mem_allocated": -1}, {"util": "nan"}, {"mem_total": "x"}, [1, 2]):
        with pytest.raises(ValueError):
            record_from_json(dict(d, device=bad))


def test_the_strip_words():
    assert device_words(DEV) == "GPU 3.2/79.2 GiB (reserved 4.0) 87%"
    assert device_words({"mem_allocated": 2 ** 30, "mem_reserved": 2 ** 31}) == "GPU 1.0 GiB (reserved 2.0)"
