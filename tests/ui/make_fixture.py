"""Re-create the recorded runs the snapshot tests replay (real training, seeded): python tests/ui/make_fixture.py
(`python tests/ui/make_fixture.py why`: only the why view's two, sigmoid-why.jsonl and resnet18-why.jsonl;
`python tests/ui/make_fixture.py overlay`: only the three runs of the five-file overlay, OVERLAY)

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


# The overlay's runs (`vgtui replay` of five files, with sigmoid.jsonl and relu-diverged.jsonl): the seed's network
# with each remedy, short and without progress ticks, so that the files stay small
OVERLAY = {
    "tanh-xavier": RunConfig(dataset="mnist-5k", activation="tanh", init="xavier", max_steps=120, probe_every=20,
                             epochs=3, seed=0),
    "relu-kaiming": RunConfig(dataset="mnist-5k", activation="relu", init="kaiming", max_steps=120, probe_every=20,
                              epochs=3, seed=0),
    "sigmoid-bn": RunConfig(dataset="mnist-5k", batchnorm=True, max_steps=120, probe_every=20, epochs=3, seed=0),
}


def overlay_runs() -> None:
    from vgtui.core.records import ProgressRecord

    for name, cfg in OVERLAY.items():
        recs: list = []
        Trainer(cfg, [recs.append]).run()
        write(HERE / f"{name}.jsonl", [r for r in recs if not isinstance(r, ProgressRecord)])
        print(name, len(recs), "records")


def main() -> None:
    HERE.mkdir(exist_ok=True)
    if sys.argv[1:] == ["why"]:
        why_runs()
        return
    if sys.argv[1:] == ["overlay"]:
        overlay_runs()
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
