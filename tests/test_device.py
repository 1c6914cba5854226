"""--device: `auto` that falls back to the CPU on a machine with a GPU it cannot use says so, with the reason."""

import warnings

import torch

from vgtui.engine import data as data_mod
from vgtui.engine.data import fallback_reason, resolve_device
from vgtui.engine.trainer import Trainer

# What torch 2.x says (c10/cuda/CUDAFunctions.cpp) when the driver is older than its CUDA build.
TOO_OLD = ("CUDA initialization: The NVIDIA driver on your system is too old (found version 11040). Please update "
           "your GPU driver by downloading and installing a new version from the URL: "
           "http://www.nvidia.com/Download/index.aspx Alternatively, go to: https://pytorch.org to install a PyTorch "
           "version that has been compiled with your version of the CUDA driver. (Triggered internally at "
           "/pytorch/c10/cuda/CUDAFunctions.cpp:109.)")


def test_reasons():
    reason = fallback_reason([TOO_OLD], "13.0", gpu_here=True)
    assert reason.startswith("The NVIDIA driver on your system is too old (found version 11040)")
    assert "\n" not in reason and len(reason) <= 200
    assert fallback_reason([TOO_OLD], "13.0", gpu_here=False) == reason  # too old says a GPU is there
    assert "CPU-only build" in fallback_reason([], None, gpu_here=True)
    # no GPU, nothing to say: a laptop without one falls back silently
    assert fallback_reason([], "13.0", gpu_here=False) is None
    assert fallback_reason(["CUDA initialization: Found no NVIDIA driver on your system."], "13.0", False) is None


def test_auto_on_this_machine_is_quiet_unless_a_gpu_is_missed():
    device, notice = resolve_device("auto")
    if torch.cuda.is_available():
        assert device.type == "cuda" and notice is None
    elif not data_mod.gpu_present():
        assert device.type in ("cpu", "mps") and notice is None


def test_auto_with_a_driver_too_old_says_so_in_the_header(monkeypatch, digits, small):
    """Simulates what this machine lacks (a GPU whose driver is too old): torch's check warns and says no."""
    def too_old():
        warnings.warn(TOO_OLD)
        return False

    monkeypatch.setattr(torch.cuda, "is_available", too_old)
    monkeypatch.setattr(data_mod, "gpu_present", lambda: True)
    device, notice = resolve_device("auto")
    assert device.type in ("cpu", "mps")
    assert notice.startswith("--device auto: running on the CPU; this machine has a GPU that torch cannot use: "
                             "The NVIDIA driver on your system is too old (found version 11040)")
    recs = []
    Trainer(small.replace(device="auto", max_steps=1), [recs.append], data=digits).run()
    assert recs[0].notice == notice and recs[0].device == "cpu"
