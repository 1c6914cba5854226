"""Re-create the recorded runs the snapshot tests replay (real training, seeded): python tests/ui/make_fixture.py
(`python tests/ui/make_fixture.py why`: only the why view's two, sigmoid-why.jsonl and resnet18-why.jsonl)

resnet18.jsonl is a user's run as `vgtui.watch` writes it: torchvision's resnet18 (21 Conv/Linear layers with
ResNet's own names, some with no activation after them) for 30 steps on random images, with no known length and
the user's own `acc` metric. Its timings and wall-clock fields are made regular (0.5 s a step) so the screens that
follow it repeat exactly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vgtui.core.config import RunConfig
from vgtui.core.records import to_json
from vgtui.engine.trainer import Trainer

HERE = Path(__file__).parent / "fixtures"

RUNS = {
    "sigmoid": RunConfig(dataset="mnist-5k", max_steps=120, probe_every=10, epochs=3, seed=0),
    "relu-diverged": RunConfig(dataset="mnist-5k", activation="relu", init="kaiming", lr=1.0, probe_every=1,
                               seed=0),
}


def train_watched(model, opt, x, y, path: Path, steps: int, every: int, pause: float = 0.0) -> None:
    """A user's loop under vgtui.watch (optimizer=): one batch over and over, its loss and accuracy (`acc`) given
    to probe.step; `pause` seconds after each step (a viewer following it sees the snapshots come one by one)."""
    import time

    import torch.nn.functional as F

    import vgtui

    with vgtui.watch(model, metrics=path, every=every, optimizer=opt, quiet=True) as probe:
        for _ in range(steps):
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            probe.step(loss=loss, metrics={"acc": (out.argmax(1) == y).float().mean()})
            if pause:
                time.sleep(pause)


def resnet18_run(path: Path, steps: int = 30, every: int = 5) -> None:
    """A seeded resnet18 run through vgtui.watch, with no total_steps, then its timings made regular."""
    import torch
    from torchvision.models import resnet18


    path.unlink(missing_ok=True)  # vgtui.watch appends a run to a file that exists
    torch.manual_seed(0)
    model = resnet18(weights=None, num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    train_watched(model, opt, x, y, path, steps, every)
    lines = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        if d["type"] == "run":
            d.update(version="0.0.0", started="2026-01-01T00:00:00+00:00", pid=None)
        if "elapsed_s" in d:
            d["elapsed_s"] = 0.5 * d.get("step", d.get("steps", 0))
        if "steps_per_s" in d:
            d["steps_per_s"] = 2.0
        lines.append(json.dumps(d, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n")


def forked_run(path: Path) -> None:
    """The seed's network (sigmoid) forked at step 40, where B swaps to ReLU live: what `f` then `a a a` record
    (the records of branch B carry "branch": "B")."""
    from vgtui.core.records import Fork, SetActivation

    recs: list = []
    t = Trainer(RunConfig(dataset="mnist-5k", max_steps=120, probe_every=10, epochs=3, seed=0), [recs.append])

    def on_step(tr: Trainer) -> None:
        if tr.step == 40 and tr.fork is None:
            tr.send(Fork(True))
            tr.send(SetActivation("relu", branch="B"))

    t.on_step = on_step
    t.run()
    write(path, recs)


def write(path: Path, recs: list) -> None:
    """Records as a fixture file: each with its edges in full, and nothing of this machine in the headers (data
    folder, version, start time, pid)."""
    with open(path, "w") as f:
        for r in recs:
            d = to_json(r)
            if d["type"] == "run":
                d["config"]["data_dir"] = "~/.cache/vgtui"
                d["version"] = "0.0.0"
                d.pop("started", None), d.pop("pid", None)
            f.write(json.dumps(d, separators=(",", ":")) + "\n")


def why_runs() -> None:
    """The why view's snapshot runs, recorded with the derivative probe (the fields the older fixtures lack):
    the seed's network as the UI's replay shows it (no progress ticks), and resnet18 under vgtui.watch."""
    from vgtui.core.records import ProgressRecord

    recs: list = []
    Trainer(RUNS["sigmoid"], [recs.append]).run()
    write(HERE / "sigmoid-why.jsonl", [r for r in recs if not isinstance(r, ProgressRecord)])
    resnet18_run(HERE / "resnet18-why.jsonl")


def spiky_run(path: Path, steps: int = 300, every: int = 5, k: int = 200, ramp: int = 4) -> None:
    """A loss spike with a known leader, for the spikes view (issue 18): a ReLU MLP (4 hidden layers of 64) trained
    with vgtui.watch on mnist-5k, SGD with momentum, with fc2's weights scaled by 1.8 at each of the `ramp` steps
    before step `k` (fc2's update norm rises first; the loss follows as the logits grow). Every step's loss and
    each layer's weight-gradient norm and update norm ‖ΔW‖ are kept, as the flight recorder keeps them; the spike
    record is made from them with vgtui.core.spikes.robust_scores (the loss's first step scoring over 6 against the
    50 before it; each layer's first step over 6 from 20 steps before it), written before the run's end. Timings
    regular (0.05 s a step)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    import vgtui
    from vgtui.core.records import Lead, SpikeRecord
    from vgtui.core.spikes import robust_scores
    from vgtui.engine.data import load_mnist5k

    path.unlink(missing_ok=True)
    torch.manual_seed(0)
    data = load_mnist5k("cpu")
    x_all, y_all = data.x_train, data.y_train
    layers = [nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
              nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)]
    names = [f"fc{i}" for i in range(1, 6)]
    model = nn.Sequential()
    for i, m in enumerate(layers):
        model.add_module(names[i // 2] if isinstance(m, nn.Linear) else f"act{i // 2 + 1}", m)
    linears = [getattr(model, n) for n in names]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_t, grad, upd = [], [[] for _ in names], [[] for _ in names]
    g = torch.Generator().manual_seed(0)
    with vgtui.watch(model, metrics=path, every=every, optimizer=opt, quiet=True, total_steps=steps) as probe:
        for step in range(1, steps + 1):
            idx = torch.randint(0, len(x_all), (64,), generator=g)
            x, y = x_all[idx], y_all[idx]
            before = [m.weight.detach().clone() for m in linears]  # ‖ΔW‖ of this step: the scaling included
            if k - ramp <= step < k:
                with torch.no_grad():
                    linears[1].weight.mul_(1.8)
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            probe.step(loss=loss, metrics={"acc": (out.argmax(1) == y).float().mean()})
            loss_t.append(loss.item())
            for i, m in enumerate(linears):
                grad[i].append(m.weight.grad.norm().item())
                upd[i].append((m.weight.detach() - before[i]).norm().item())
    loss_a = np.array(loss_t)
    score = robust_scores(loss_a, 50)
    at = int(np.flatnonzero(np.nan_to_num(score, nan=0.0) > 6)[0])
    spike_step = at + 1
    lo, hi = max(0, at - 30), min(len(loss_a), at + 11)
    window = list(range(lo + 1, hi + 1))
    leads = []
    for metric, table in (("grad_norm", grad), ("update_norm", upd)):
        sc = robust_scores(np.array(table), 50)
        for i, name in enumerate(names):
            over = [j for j in range(max(0, at - 20), hi) if np.nan_to_num(sc[i, j], nan=0.0) > 6]
            if over:
                leads.append(Lead(name, metric, over[0] + 1, spike_step - (over[0] + 1), float(sc[i, over[0]])))
    first: dict[str, Lead] = {}
    for l in sorted(leads, key=lambda l: (l.step, -l.score)):
        first.setdefault(l.layer, l)
    rec = SpikeRecord(step=spike_step, kind="spike", score=float(score[at]), steps=tuple(window),
                      loss=tuple(loss_a[lo:hi].tolist()),
                      series={"grad_norm": {n: tuple(grad[i][lo:hi]) for i, n in enumerate(names)},
                              "update_norm": {n: tuple(upd[i][lo:hi]) for i, n in enumerate(names)}},
                      leaders=tuple(first.values()), elapsed_s=0.05 * spike_step)
    lines = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        if d["type"] == "run":
            d.update(version="0.0.0", started="2026-01-01T00:00:00+00:00", pid=None)
        if d["type"] == "end":
            lines.append(json.dumps(to_json(rec), separators=(",", ":")))
        if "elapsed_s" in d:
            d["elapsed_s"] = round(0.05 * d.get("step", d.get("steps", 0)), 3)
        if "steps_per_s" in d:
            d["steps_per_s"] = 20.0
        lines.append(json.dumps(d, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    HERE.mkdir(exist_ok=True)
    if sys.argv[1:] == ["why"]:
        why_runs()
        return
    if sys.argv[1:] == ["spiky"]:
        spiky_run(HERE / "spiky.jsonl")
        return
    forked_run(HERE / "forked.jsonl")
    print("forked", len((HERE / "forked.jsonl").read_text().splitlines()), "records")
    resnet18_run(HERE / "resnet18.jsonl")
    print("resnet18", len((HERE / "resnet18.jsonl").read_text().splitlines()), "records")
    for name, cfg in RUNS.items():
        recs = []
        Trainer(cfg, [recs.append]).run()
        write(HERE / f"{name}.jsonl", recs)
        print(name, len(recs), "records")


if __name__ == "__main__":
    main()
