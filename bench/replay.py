"""How fast `vgtui replay` opens a long run and keeps up with a held key, measured in a real terminal (tmux).

    python bench/replay.py                      # makes a 10,000-snapshot file of the seed's network, then measures
    python bench/replay.py --file long.jsonl    # measures an existing file

It starts `vgtui replay FILE` in a private tmux server at 120x40 and reads the screen as a person sees it
(`tmux capture-pane`, every 20 ms):
- first full screen: from the command's start (Python start-up and imports included) until the status shows
  the position readout of the last snapshot and every panel has drawn (bars, activations, both charts).
- held `right`: from snapshot 1, 100 presses of `right` at a keyboard's auto-repeat rate (30 a second, as when
  the key is held down); it prints how far the screen's readout lagged behind the presses at worst, and how long
  after the last press the screen showed snapshot 101. The screen "kept up" if it showed snapshot 101 within one
  frame (250 ms at the replay's 4 frames a second) of the last press.
- the layer table sorted: a new viewer, and as soon as its view tabs show, `tab tab c c c` (the layer table,
  sorted by ‖∇W‖); from the command's start until the table shows the last snapshot's layers in that order.
Both first screens have the same target, TARGET_S (1 s).
The file is made by scripts/make_long_run.py from the recorded run in tests/ui/fixtures (the seed's network,
784-1000x5-10 sigmoid), its snapshots repeated with new step numbers.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TMUX = ["tmux", "-L", f"vgtui-bench-{os.getpid()}"]
FRAME_S = 0.25
TARGET_S = 1.0  # the first full screen of a 10,000-snapshot file, Python's start-up included (docs/benchmarks.md)


def screen() -> str:
    return subprocess.run([*TMUX, "capture-pane", "-p", "-t", "bench"], capture_output=True, text=True).stdout


def wait(patterns: list[str], timeout: float) -> float | None:
    """Seconds until every regex is on screen (None on timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        s = screen()
        if all(re.search(p, s) for p in patterns):
            return time.monotonic() - t0
        time.sleep(0.02)
    return None


def cpu_seconds() -> float | None:
    """CPU time (user + system) the viewer's process has used so far: on a busy machine the wall time also
    counts the waits for a core, this does not."""
    pane = subprocess.run([*TMUX, "display", "-p", "-t", "bench", "#{pane_pid}"], capture_output=True,
                          text=True).stdout.strip()
    try:
        kids = Path(f"/proc/{pane}/task/{pane}/children").read_text().split()
        fields = Path(f"/proc/{kids[0]}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def shown_index() -> int | None:
    m = re.search(r"snapshot ([\d,]+) / ", screen())
    return int(m.group(1).replace(",", "")) if m else None


def sorted_first_screen(cmd: str, n: int) -> tuple[float, float | None] | None:
    """(Wall seconds, the viewer's CPU seconds) from the command's start until the layer table shows the last snapshot's layers sorted by ‖∇W‖:
    `tab tab` (the layer table) and `c c c` (sort by the third column, ‖∇W‖, ascending) typed as soon as the UI
    is up (its view tabs drawn), as a person who opens a replay to sort its layers does."""
    t0 = time.monotonic()
    subprocess.run([*TMUX, "new-session", "-d", "-s", "bench", "-x", "120", "-y", "40", cmd], check=True)
    if wait([r"tab: next view"], 30) is None:
        return None
    subprocess.run([*TMUX, "send-keys", "-t", "bench", "Tab", "Tab", "c", "c", "c"], check=True)
    done = wait([rf"snapshot {n:,} / {n:,}", r"‖∇W‖ ▲", r"fc6 ", r"fc1 "], 30)
    return None if done is None else (time.monotonic() - t0, cpu_seconds())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", help="a metrics file (default: make one of 10,000 snapshots)")
    ap.add_argument("--snapshots", type=int, default=10_000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="vgtui-bench-")
    path = args.file
    if path is None:
        path = os.path.join(tmp, "long.jsonl")
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_long_run.py"), path, "--from",
                        str(ROOT / "tests" / "ui" / "fixtures" / "sigmoid.jsonl"), "--snapshots",
                        str(args.snapshots)], check=True, cwd=ROOT)
    size = os.path.getsize(path)
    env = f"PYTHONPATH={shlex.quote(str(ROOT))} TERM=xterm-256color"
    cmd = f"{env} {shlex.quote(sys.executable)} -m vgtui replay {shlex.quote(path)}; sleep 3600"
    n = args.snapshots
    try:
        t0 = time.monotonic()
        subprocess.run([*TMUX, "new-session", "-d", "-s", "bench", "-x", "120", "-y", "40", cmd], check=True)
        full = wait([rf"snapshot {n:,} / {n:,}", r"fc6 ", r"sat ", r"loss & accuracy", r"per layer over steps",
                     r"┤.*├"], 30)
        first = None if full is None else time.monotonic() - t0
        cpu = cpu_seconds()
        load = os.getloadavg()[0]
        print(f"file: {path} ({n:,} snapshots, {size / 1e6:.1f} MB); load average {load:.1f} on {os.cpu_count()} CPUs")
        print(f"first full screen: {first:.2f} s ({cpu:.2f} s of CPU in the viewer's process)"
              if first is not None else "first full screen: not within 30 s")
        subprocess.run([*TMUX, "send-keys", "-t", "bench", "Home"], check=True)
        wait([rf"snapshot 1 / {n:,}"], 5)
        lag, t_press = 0, time.monotonic()
        for i in range(1, 101):
            subprocess.run([*TMUX, "send-keys", "-t", "bench", "Right"], check=True)
            seen = shown_index()
            if seen is not None:
                lag = max(lag, i + 1 - seen)
            time.sleep(max(0.0, t_press + i / 30 - time.monotonic()))
        t_last = time.monotonic()
        caught = wait([rf"snapshot 101 / {n:,}"], 10)
        after = None if caught is None else time.monotonic() - t_last
        held = time.monotonic() - t_press
        print(f"100 x right at 30/s ({held - (after or 0):.2f} s of presses): the readout lagged at most {lag} "
              f"snapshots behind; snapshot 101 on screen {after * 1000:.0f} ms after the last press"
              if after is not None else "100 x right: snapshot 101 never shown")
        kept = after is not None and after <= FRAME_S
        print(f"kept up: {'yes' if kept else 'no'} (within one frame, {FRAME_S * 1000:.0f} ms)")
        subprocess.run([*TMUX, "kill-session", "-t", "bench"], check=True)
        table = sorted_first_screen(cmd, n)
        if table is None:
            print("first screen with the layer table sorted: not within 30 s")
        else:
            cpu_said = f"{table[1]:.2f} s of CPU in the viewer's process; " if table[1] is not None else ""
            print(f"first screen with the layer table sorted by ‖∇W‖: {table[0]:.2f} s ({cpu_said}target "
                  f"{TARGET_S:g} s)")
        ok = first is not None and first < TARGET_S and table is not None and table[0] < TARGET_S
        return 0 if ok and kept else 1
    finally:
        subprocess.run([*TMUX, "kill-server"], capture_output=True)


if __name__ == "__main__":
    raise SystemExit(main())
