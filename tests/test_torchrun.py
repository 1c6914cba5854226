"""examples/fsdp_cpu.py under the real `torchrun --nproc_per_node 2` on the CPU: one metrics file, written by rank 0,
with every rank's column, in a child process with a timeout."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vgtui.core.metrics import read_metrics

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))


@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun is not installed with this torch")
def test_torchrun_two_processes_write_one_file_from_rank_0(tmp_path):
    path = tmp_path / "fsdp.jsonl"
    r = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", str(ROOT / "examples" / "fsdp_cpu.py"),
                        "--steps", "4", "--every", "2", "--batch-size", "8", "--metrics", str(path)],
                       capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    ranks = dict(re.findall(r"rank (\d): pid \d+, 4 steps, writes the file: (\w+)", r.stdout))
    assert ranks == {"0": "True", "1": "False"}
    assert [p.name for p in tmp_path.iterdir()] == ["fsdp.jsonl"]
    (run,) = read_metrics(path)
    assert [s.step for s in run.snapshots] == [1, 2, 4] and run.end.status == "completed"
    for s in run.snapshots:
        assert [x.rank for x in s.ranks] == [0, 1] and all(x.checksum is None for x in s.ranks)
