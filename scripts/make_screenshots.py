"""Make the README's screenshots from the real app and real training (seeded, on the embedded mnist-5k digits).

    python scripts/make_screenshots.py            # writes screenshots/*.svg (about a minute on 2 CPUs)
    python scripts/make_screenshots.py replay two-runs    # only those

Each live one runs the app through `run_test` at 120x40 over a ThreadBackend training the seed's network
(784-1000x5-10) for 3 epochs (120 steps), waits for the run to complete, and saves the screen with
`save_screenshot`. The replay ones first record two such runs headless (sigmoid; relu + kaiming) into metrics
files, then open `vgtui replay` on them: one file at its 9th snapshot, and both side by side; overlay records five
(the seed's network and four remedies) and overlays them, the focus on C (`o o`). follow-resnet18 runs
examples/resnet.py (torchvision's resnet18 under `vgtui.watch`) and shows `vgtui follow` on its file (and its why
view: follow-resnet18-why). sigmoid-why and sigmoid-why-80x24 show the why view (`tab` three times). fork forks the
live run and gives branch B batchnorm (`f`, then `b`). lesson-vanishing is `vgtui lesson vanishing` at its first
step's reveal (the class answered 3). The numbers are
those of seeded runs: they repeat up to timings (steps/s, elapsed times).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the UI and the trainer share this process

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "screenshots"

SHOTS = {
    "sigmoid-vanishing": dict(activation="sigmoid"),
    "relu-kaiming-healthy": dict(activation="relu", init="kaiming"),
    "sigmoid-batchnorm": dict(activation="sigmoid", batchnorm=True),
}


async def shoot(name: str, changes: dict, size=(120, 40), keys=()) -> Path:
    from vgtui.sources.trainer import ThreadBackend
    from vgtui.core.config import RunConfig
    from vgtui.ui.app import VgtuiApp

    config = RunConfig(dataset="mnist-5k", epochs=3, max_steps=120, probe_every=10, seed=0, device="cpu",
                       **changes)
    backend = ThreadBackend(config)
    app = VgtuiApp(backend, fps=2)
    async with app.run_test(size=size) as pilot:
        end = time.monotonic() + 300
        while app.main.state.end is None or app.main.state.end.status != "completed":
            if time.monotonic() > end:
                raise RuntimeError(f"{name}: the run did not complete")
            await pilot.pause(0.25)
        for k in keys:
            await pilot.press(k)
        await pilot.pause(0.3)
        path = await save(app, pilot, name)
    backend.close()
    return path


async def save(app, pilot, name: str) -> Path:
    """The screen settled (no toast, every panel drawn its latest) saved as screenshots/NAME.svg; then quit."""
    app.clear_notifications()
    while not app.main.up_to_date():
        await pilot.pause(0.1)
    await pilot.pause(0.3)
    path = Path(app.save_screenshot(filename=f"{name}.svg", path=str(OUT)))
    await pilot.press("q")
    return path


async def shoot_replay(name: str, paths: list[str], keys=(), size=(120, 40), follow: bool = False) -> Path:
    from vgtui.sources.file import FileSource
    from vgtui.ui.app import VgtuiApp

    sources = [FileSource(p, follow=follow) for p in paths]
    for s in sources:
        s.open()
    app = VgtuiApp(sources, fps=4)
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.3)
        for k in keys:
            await pilot.press(k)
        await app.workers.wait_for_complete()
        app.clear_notifications()
        end = time.monotonic() + 30
        while not app.main.up_to_date():
            if time.monotonic() > end:
                raise RuntimeError(f"{name}: the screen did not settle")
            await pilot.pause(0.1)
        await pilot.pause(0.3)
        path = Path(app.save_screenshot(filename=f"{name}.svg", path=str(OUT)))
        await pilot.press("q")
    return path


async def shoot_fork(name: str = "fork", size=(120, 40)) -> Path:
    """The fork: the seed's network starts, `f` forks it, `b` gives B batchnorm (A and B start again together from
    the same seed), and both train 120 steps in lockstep on the same batches."""
    from vgtui.sources.trainer import ThreadBackend
    from vgtui.core.config import RunConfig
    from vgtui.ui.app import VgtuiApp

    config = RunConfig(dataset="mnist-5k", epochs=3, max_steps=120, probe_every=10, seed=0, device="cpu")
    backend = ThreadBackend(config)
    app = VgtuiApp(backend, fps=2)

    async def until(cond, what: str) -> None:
        end = time.monotonic() + 300
        while not cond():
            if time.monotonic() > end:
                raise RuntimeError(f"{name}: timed out waiting for {what}")
            await pilot.pause(0.1)

    async with app.run_test(size=size) as pilot:
        m = app.main
        await until(lambda: m.state.snap is not None, "the first snapshot")
        await pilot.press("f")
        await until(lambda: m.forked, "the fork")
        await pilot.press("b")
        await until(lambda: m.forked and m.states[1].config.batchnorm and m.state.end is not None
                    and m.state.end.status == "completed" and m.states[1].end is not None, "both runs to complete")
        m.notice = ""
        path = await save(app, pilot, name)
    backend.close()
    return path


async def shoot_lesson(name: str = "lesson-vanishing", size=(120, 40)) -> Path:
    """`vgtui lesson vanishing`: its first step, the class's answer 3 ("less than 1/100"), the 40 steps run, and the
    reveal computed from them beside the charts."""
    from vgtui.commands.lesson import figures
    from vgtui.core.lesson import read_lesson
    from vgtui.core.records import Pause
    from vgtui.sources.trainer import ThreadBackend
    from vgtui.ui.lesson_app import LessonApp

    lesson = read_lesson("vanishing", figures())
    backend = ThreadBackend(lesson.steps[0].config.replace(device="cpu"))
    backend.start()
    backend.send(Pause(True))
    app = LessonApp(backend, lesson, fps=2, start_source=False)
    async with app.run_test(size=size) as pilot:
        m = app.main
        end = time.monotonic() + 300
        while m.awaiting or m.state.run is None:
            await pilot.pause(0.1)
        await pilot.press("3")
        while m.phase != "reveal":
            if time.monotonic() > end:
                raise RuntimeError(f"{name}: timed out waiting for the reveal")
            await pilot.pause(0.1)
        while not m.paused:
            await pilot.pause(0.1)
        m.notice = ""
        path = await save(app, pilot, name)
    backend.close()
    return path


def record(path: str, **changes) -> None:
    """A seeded headless run of the seed's network into a metrics file."""
    from vgtui.core.config import RunConfig
    from vgtui.commands.headless import run_headless

    config = RunConfig(dataset="mnist-5k", epochs=3, max_steps=120, probe_every=10, seed=0, device="cpu", **changes)
    with open(os.devnull, "w") as quiet:
        rc = run_headless(config, path, out=quiet)
    if rc != 0:
        raise RuntimeError(f"recording {path} ended with status {rc}")


async def replays() -> list[Path]:
    import tempfile

    tmp = tempfile.mkdtemp(prefix="vgtui-shots-")
    sigmoid, relu = os.path.join(tmp, "sigmoid.jsonl"), os.path.join(tmp, "relu-kaiming.jsonl")
    record(sigmoid)
    record(relu, activation="relu", init="kaiming")
    return [await shoot_replay("replay", [sigmoid], keys=("left", "left", "left")),
            await shoot_replay("two-runs", [sigmoid, relu])]


async def overlay() -> Path:
    """`vgtui replay` of five files: the seed's network and four remedies, overlaid (A to E), the focus on C."""
    import tempfile

    tmp = tempfile.mkdtemp(prefix="vgtui-shots-")
    runs = {"sigmoid": {}, "relu-kaiming": dict(activation="relu", init="kaiming"),
            "tanh-xavier": dict(activation="tanh", init="xavier"), "sigmoid-bn": dict(batchnorm=True),
            "sigmoid-skip": dict(skip=True)}
    paths = []
    for name, changes in runs.items():
        paths.append(os.path.join(tmp, f"{name}.jsonl"))
        record(paths[-1], **changes)
    return await shoot_replay("overlay", paths, keys=("o", "o"))


async def follow_resnet() -> list[Path]:
    """`vgtui follow` on a run of examples/resnet.py (torchvision's resnet18 under vgtui.watch, 40 steps on random
    images, seeded), written first by the example itself."""
    import subprocess
    import tempfile

    path = os.path.join(tempfile.mkdtemp(prefix="vgtui-shots-"), "resnet.jsonl")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, str(ROOT / "examples" / "resnet.py"), "--metrics", path, "--steps", "40",
                    "--every", "2", "--device", "cpu"], env=env, check=True, capture_output=True)
    return [await shoot_replay("follow-resnet18", [path], follow=True),
            await shoot_replay("follow-resnet18-why", [path], keys=("tab", "tab", "tab"), follow=True)]


async def main() -> None:
    OUT.mkdir(exist_ok=True)
    only = set(sys.argv[1:])
    for name, changes in SHOTS.items():
        if only and name not in only:
            continue
        t = time.monotonic()
        path = await shoot(name, changes)
        print(f"{path.relative_to(ROOT)}  ({time.monotonic() - t:.0f} s)")
    if not only or "sigmoid-histograms" in only:
        path = await shoot("sigmoid-histograms", SHOTS["sigmoid-vanishing"], keys=("tab",))
        print(path.relative_to(ROOT))
    for name, size in (("sigmoid-why", (120, 40)), ("sigmoid-why-80x24", (80, 24))):
        if not only or name in only:  # the mechanism: each layer's factor, derivative x weights
            path = await shoot(name, SHOTS["sigmoid-vanishing"], size=size, keys=("tab", "tab", "tab"))
            print(path.relative_to(ROOT))
    if not only or "fork" in only:
        print((await shoot_fork()).relative_to(ROOT))
    if not only or "lesson-vanishing" in only:
        print((await shoot_lesson()).relative_to(ROOT))
    if not only or "follow-resnet18" in only:
        for path in await follow_resnet():
            print(path.relative_to(ROOT))
    if not only or "overlay" in only:
        print((await overlay()).relative_to(ROOT))
    if not only or {"replay", "two-runs"} & only:
        for path in await replays():
            print(path.relative_to(ROOT))


if __name__ == "__main__":
    asyncio.run(main())
