import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def digits():
    """The embedded mnist-5k digits as tensors on the CPU (loaded once per session)."""
    from vgtui.engine.data import load_mnist5k

    return load_mnist5k("cpu")


@pytest.fixture
def small():
    """A small, fast configuration of the seed's experiment on the embedded digits."""
    from vgtui.core.config import RunConfig

    return RunConfig(dataset="mnist-5k", depth=3, width=64, epochs=1, max_steps=20, probe_every=5, device="cpu")


def run_cli(args, timeout=120, **kw):
    """Run `python -m vgtui ARGS` with the test interpreter; returns CompletedProcess."""
    import subprocess

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VGTUI_DATA": kw.pop("data_dir", "/nonexistent-vgtui-data")}
    return subprocess.run([sys.executable, "-m", "vgtui", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=kw.pop("cwd", ROOT), **kw)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
