"""Make the README's screenshots from the real app and real training (seeded, on the embedded mnist-5k digits).

    python scripts/make_screenshots.py            # writes screenshots/*.svg (about a minute on 2 CPUs)

Each one runs the app through `run_test` at 120x40 over a ThreadBackend training the seed's network
(784-1000x5-10) for 3 epochs (120 steps), waits for the run to complete, and saves the screen with
`save_screenshot`. The numbers are those of a seeded run: they repeat up to timings (steps/s).
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
    app = VgtuiApp(backend, config, fps=2)
    async with app.run_test(size=size) as pilot:
        end = time.monotonic() + 300
        while app.state.end is None or app.state.end.status != "completed":
            if time.monotonic() > end:
                raise RuntimeError(f"{name}: the run did not complete")
            await pilot.pause(0.25)
        for k in keys:
            await pilot.press(k)
        await pilot.pause(0.3)
        app.clear_notifications()
        app._frame(force=True)
        await pilot.pause(0.3)
        path = Path(app.save_screenshot(filename=f"{name}.svg", path=str(OUT)))
        await pilot.press("q")
    backend.close()
    return path


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


if __name__ == "__main__":
    asyncio.run(main())
