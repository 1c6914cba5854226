"""What the live UI costs, measured as a person would run it: `vgtui` in a real terminal (tmux, 120x40).

    python bench/tui_cost.py                  # 3 interleaved TUI/headless pairs + a latency run (~3 min)
    python bench/tui_cost.py --pairs 5 --steps 400
    python bench/tui_cost.py --device cuda        # on a GPU: bare loop, headless and TUI steps/s side by side

Prints one table:
- throughput: training steps/s inside the TUI over headless, both read from their --metrics files (step and
  elapsed time of the snapshot and progress records, from step 50 to the end, so start-up and warm-up are left
  out); runs interleaved (TUI, headless, headless, TUI, ...) and the median ratio quoted, since this machine is
  noisy. Target >= 0.90. On CUDA (or with --bare) each pair also runs the bare PyTorch loop of bench/overhead.py
  (a third run), and the table gives bare, headless and TUI steps/s side by side, with headless / bare (target
  >= 0.90) and TUI / bare (target >= 0.80).
- terminal bytes/s: what the TUI wrote to its 120x40 pty (tmux pipe-pane) per second while training, steady
  state. Target <= 64 KB/s.
- key-to-screen latency while training: `space` sent through tmux until the status line shows "paused" (and
  again until "running"), polled every 5 ms; median of --keys presses. Target <= 150 ms.

Needs tmux. Runs `python -m vgtui` with the interpreter running this script, at default settings (--fps and
--probe-every at their defaults) on the embedded mnist-5k digits and the seed's network (784-1000x5-10).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Tmux:
    """A private tmux server with one session running `cmd`, its output counted by pipe-pane."""

    def __init__(self, name: str, width: int, height: int, cmd: list[str], workdir: Path):
        self.sock = f"vgtui-bench-{os.getpid()}-{name}"
        self.name = name
        self.bytes_path = workdir / f"bytes.{name}"
        self.rc_path = workdir / f"rc.{name}"
        line = " ".join(shlex.quote(c) for c in cmd)
        self._tmux("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
                   f"cd {shlex.quote(str(ROOT))}; TERM=xterm-256color {line}; echo $? > {self.rc_path}; sleep 3600")
        self._tmux("pipe-pane", "-o", "-t", name, f"cat >> {self.bytes_path}")
        self.t0 = time.monotonic()

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys)

    def bytes(self) -> int:
        try:
            return self.bytes_path.stat().st_size
        except FileNotFoundError:
            return 0

    def rc(self) -> str | None:
        try:
            return self.rc_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def wait(self, pred, timeout: float, poll: float = 0.2) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(poll)
        return False

    def stop(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


def read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written
    return out


def steps_per_s(records: list[dict], from_step: int = 50) -> float:
    snaps = [r for r in records if r["type"] in ("snapshot", "progress") and r["step"] >= from_step]
    if len(snaps) < 2:
        raise RuntimeError("too few snapshots to time")
    a, b = snaps[0], snaps[-1]
    return (b["step"] - a["step"]) / (b["elapsed_s"] - a["elapsed_s"])


def ended(path: Path) -> bool:
    return any(r["type"] == "end" for r in read_metrics(path))


def run_headless(args, work: Path, i: int) -> float:
    m = work / f"headless{i}.jsonl"
    cmd = [sys.executable, "-m", "vgtui", "--headless", "--dataset", "mnist-5k", "--max-steps", str(args.steps),
           "--epochs", "100000", "--device", args.device, "--metrics", str(m)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=600)
    return steps_per_s(read_metrics(m))


def wait_trained(t: "Tmux", m: Path) -> None:
    """Until the TUI in `t` has trained 50 steps (its metrics file `m` says so); raises with its screen after 2 min."""
    if not t.wait(lambda: any(r["type"] in ("snapshot", "progress") and r["step"] >= 50 for r in read_metrics(m)),
                  120):
        raise RuntimeError("the TUI did not train:\n" + t.screen())


def run_tui(args, work: Path, i: int) -> tuple[float, float]:
    """(steps/s, terminal bytes/s in the steady state)."""
    m = work / f"tui{i}.jsonl"
    cmd = [sys.executable, "-m", "vgtui", "--dataset", "mnist-5k", "--max-steps", str(args.steps), "--epochs",
           "100000", "--device", args.device, "--metrics", str(m)]
    t = Tmux(f"tui{i}", 120, 40, cmd, work)
    try:
        wait_trained(t, m)
        b0, t0 = t.bytes(), time.monotonic()
        if not t.wait(lambda: ended(m), 600):
            raise RuntimeError("the TUI run did not end:\n" + t.screen())
        b1, t1 = t.bytes(), time.monotonic()
        t.keys("q")
        if not t.wait(lambda: t.rc() is not None, 5, 0.05):
            raise RuntimeError("q did not quit within 5 s")
        if t.rc() != "0":
            raise RuntimeError(f"exit status {t.rc()}")
        return steps_per_s(read_metrics(m)), (b1 - b0) / (t1 - t0)
    finally:
        t.stop()


def latency_run(args, work: Path) -> tuple[list[float], list[float], float]:
    """Key-to-screen latencies (s) of `space` while training (the screen answers: "⏸ pausing…" or "⏸ paused"),
    the time until the trainer's acknowledgement shows ("⏸ paused"), and the seconds `q` took to exit."""
    m = work / "latency.jsonl"
    cmd = [sys.executable, "-m", "vgtui", "--dataset", "mnist-5k", "--epochs", "100000", "--device", args.device,
           "--metrics", str(m)]
    t = Tmux("latency", 120, 40, cmd, work)
    lat, ack = [], []
    try:
        if not t.wait(lambda: "steps/s" in t.screen(), 120):
            raise RuntimeError("the TUI did not train:\n" + t.screen())
        for k in range(args.keys):
            answer, want = ("⏸ paus", "⏸ paused") if k % 2 == 0 else ("▶ r", "▶ running")  # resuming, running
            time.sleep(0.7)  # let a snapshot or two land in between, as in real use
            t0 = time.monotonic()
            t.keys("Space")
            if not t.wait(lambda: answer in t.screen(), 5, 0.005):
                raise RuntimeError(f"{answer!r} never showed:\n" + t.screen())
            lat.append(time.monotonic() - t0)
            if not t.wait(lambda: want in t.screen(), 5, 0.005):
                raise RuntimeError(f"{want!r} never showed:\n" + t.screen())
            ack.append(time.monotonic() - t0)
        if args.keys % 2:
            t.keys("Space")
        time.sleep(1.0)
        q0 = time.monotonic()
        t.keys("q")
        t.wait(lambda: t.rc() is not None, 10, 0.02)
        quit_s = time.monotonic() - q0
        if t.rc() != "0":
            raise RuntimeError(f"exit status {t.rc()}")
        return lat, ack, quit_s
    finally:
        t.stop()


def fps_run(args, work: Path, fps: float, seconds: float = 10.0) -> float:
    """Terminal bytes/s at 120x40 while training at `--fps fps` (a slow link wants a low one), steady state."""
    m = work / f"fps{fps:g}.jsonl"
    cmd = [sys.executable, "-m", "vgtui", "--dataset", "mnist-5k", "--epochs", "100000", "--device", args.device,
           "--fps", f"{fps:g}", "--metrics", str(m)]
    t = Tmux(f"fps{str(fps).replace('.', '_')}", 120, 40, cmd, work)
    try:
        wait_trained(t, m)
        b0, t0 = t.bytes(), time.monotonic()
        time.sleep(seconds)
        b1, t1 = t.bytes(), time.monotonic()
        t.keys("q")
        t.wait(lambda: t.rc() is not None, 5, 0.05)
        return (b1 - b0) / (t1 - t0)
    finally:
        t.stop()


def run_bare(args) -> float:
    """The bare PyTorch loop of bench/overhead.py, in its own process like the others: steps/s."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "overhead.py"), "--bare-only", "--steps",
                          str(args.steps), "--device", args.device], cwd=ROOT, check=True, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return float(out.stdout.split()[-1])


def describe_device(name: str) -> tuple[str, str]:
    """(device type, words for it: 'cuda (NVIDIA H200)') as vgtui would resolve --device `name`."""
    sys.path.insert(0, str(ROOT))
    from vgtui.engine.data import device_name, resolve_device

    device, _ = resolve_device(name)
    gpu = device_name(device)
    return device.type, f"{device}{f' ({gpu})' if gpu else ''}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=3, help="TUI/headless pairs, interleaved (default 3)")
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps per run (default 300 on the CPU, 20000 on a GPU)")
    ap.add_argument("--keys", type=int, default=10, help="key presses timed in the latency run (default 10)")
    ap.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, mps")
    ap.add_argument("--bare", action="store_true", help="also time the bare PyTorch loop (always on CUDA)")
    ap.add_argument("--fps-sweep", metavar="LIST", default="",
                    help="also measure terminal bytes/s at each of these --fps (e.g. 0.5,1,2,4), 10 s each")
    args = ap.parse_args()
    if not shutil.which("tmux"):
        print("tui_cost: needs tmux (apt-get install tmux)", file=sys.stderr)
        return 2
    kind, words = describe_device(args.device)
    args.device = kind
    args.steps = args.steps or (300 if kind == "cpu" else 20000)
    bare = args.bare or kind == "cuda"
    print(f"device {words}; {args.steps} steps a run", flush=True)
    work = Path(tempfile.mkdtemp(prefix="vgtui-bench-"))
    ratios, tui_sps, head_sps, bare_sps, bps = [], [], [], [], []
    for i in range(args.pairs):
        order = ("tui", "headless") if i % 2 == 0 else ("headless", "tui")
        got = {}
        if bare:
            got["bare"] = run_bare(args)
            bare_sps.append(got["bare"])
        for what in order:
            if what == "tui":
                got["tui"], b = run_tui(args, work, i)
                bps.append(b)
            else:
                got["headless"] = run_headless(args, work, i)
        tui_sps.append(got["tui"])
        head_sps.append(got["headless"])
        ratios.append(got["tui"] / got["headless"])
        bare_text = f"bare {got['bare']:.1f} steps/s, " if bare else ""
        print(f"pair {i + 1}: {bare_text}TUI {got['tui']:.1f} steps/s, headless {got['headless']:.1f} steps/s, "
              f"ratio {ratios[-1]:.2f}, terminal {bps[-1] / 1024:.1f} KB/s", flush=True)
    lat, ack, quit_s = latency_run(args, work)
    print(f"latencies (ms): {' '.join(f'{x * 1000:.0f}' for x in lat)}; acknowledged (ms): "
          f"{' '.join(f'{x * 1000:.0f}' for x in ack)}; q exited in {quit_s:.2f} s", flush=True)

    med = statistics.median
    rows = [
        ("steps/s inside the TUI / headless (median of pairs)", f"{med(ratios):.2f}",
         f"{min(ratios):.2f}..{max(ratios):.2f}", ">= 0.90", med(ratios) >= 0.90),
        ("  TUI steps/s (median)", f"{med(tui_sps):.1f}", "", "", None),
        ("  headless steps/s (median)", f"{med(head_sps):.1f}", "", "", None),
    ]
    if bare:
        head_bare = [h / b for h, b in zip(head_sps, bare_sps)]
        tui_bare = [t / b for t, b in zip(tui_sps, bare_sps)]
        rows += [
            ("  bare PyTorch loop steps/s (median)", f"{med(bare_sps):.1f}", "", "", None),
            ("headless / bare loop (median of pairs)", f"{med(head_bare):.2f}",
             f"{min(head_bare):.2f}..{max(head_bare):.2f}", ">= 0.90", med(head_bare) >= 0.90),
            ("TUI / bare loop (median of pairs)", f"{med(tui_bare):.2f}",
             f"{min(tui_bare):.2f}..{max(tui_bare):.2f}", ">= 0.80", med(tui_bare) >= 0.80),
        ]
    rows += [
        ("terminal bytes/s at 120x40 (median)", f"{med(bps) / 1024:.1f} KB/s",
         f"{min(bps) / 1024:.1f}..{max(bps) / 1024:.1f}", "<= 64 KB/s", med(bps) <= 64 * 1024),
        ("key-to-screen latency while training (median)", f"{med(lat) * 1000:.0f} ms",
         f"{min(lat) * 1000:.0f}..{max(lat) * 1000:.0f}", "<= 150 ms", med(lat) <= 0.150),
        ("  until the trainer's acknowledgement shows (median)", f"{med(ack) * 1000:.0f} ms",
         f"{min(ack) * 1000:.0f}..{max(ack) * 1000:.0f}", "", None),
        ("q to exit status 0", f"{quit_s:.2f} s", "", "<= 2 s", quit_s <= 2.0),
    ]
    for fps in [float(x) for x in args.fps_sweep.split(",") if x.strip()]:
        b = fps_run(args, work, fps)
        print(f"--fps {fps:g}: terminal {b / 1024:.1f} KB/s", flush=True)
        rows.append((f"terminal bytes/s at 120x40, --fps {fps:g}", f"{b / 1024:.1f} KB/s", "", "", None))
    print()
    print(f"{'measure':52} {'value':>11} {'range':>13} {'target':>11}  ok")
    for name, value, rng, target, ok in rows:
        print(f"{name:52} {value:>11} {rng:>13} {target:>11}  {'' if ok is None else ('yes' if ok else 'NO')}")
    print(f"\n{args.pairs} interleaved pairs of {args.steps} steps, seed network on mnist-5k, default --fps and "
          f"--probe-every; device {words}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
