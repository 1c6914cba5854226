"""Distributed jobs for the tests, run once per pytest process and shared by the test modules that read them
(tests/test_fsdp.py, tests/test_ranks.py, tests/test_sync.py): each is `tests/dist_worker.py` in a child process
with a timeout, so a hang fails the test instead of blocking the suite."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from vgtui.core.metrics import read_metrics

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 240  # a job of a few seconds on an idle machine; minutes under load, never for ever

# The modes each world size runs, in one spawn of its processes (spawning is most of a job's time).
MODES = {2: ("fsdp", "fsdp-keep", "fsdp-manual", "ddp", "sync", "quit", "rank0-only"), 4: ("fsdp", "bad-data")}


@functools.lru_cache(maxsize=None)
def job(world: int) -> tuple[Path, str]:
    """Run the job of `world` ranks: (the folder of its metrics files, its standard output and error)."""
    out = Path(tempfile.mkdtemp(prefix=f"vgtui-dist{world}-"))
    atexit.register(shutil.rmtree, out, True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(HERE / "dist_worker.py"), str(world), str(out), *MODES[world]],
                       capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=HERE.parent)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-3000:]
    for mode in MODES[world]:
        for rank in range(world):
            assert f"rank {rank} {mode} done" in r.stdout, text[-3000:]
    return out, r.stdout


@functools.lru_cache(maxsize=None)
def reference(mode: str, folder: str):
    """The same training in this process on the whole batch (dist_worker.reference), read back."""
    sys.path.insert(0, str(HERE)) if str(HERE) not in sys.path else None
    import dist_worker

    path = Path(folder) / f"reference-{mode}.jsonl"
    dist_worker.reference(mode, str(path))
    (run,) = read_metrics(path)
    return run


def the_run(world: int, mode: str):
    """The one run of `mode` in the job of `world` ranks."""
    out, _ = job(world)
    (run,) = read_metrics(out / f"{mode}-{world}.jsonl")
    return run
