"""Offline, the screen says in one line, in words, why the run is on the embedded digits: the real app over the
real trainer loading MNIST for real (in the trainer's thread), with torchvision's mirrors pointed at a `.invalid`
host (a name that never resolves: no test downloads). It used to show "<urlopen error [Errno -2] Name or service
not known>", cut at the terminal's width."""

from __future__ import annotations

import torchvision.datasets as tvd

from vgtui.core.records import SetSpeedCap
from vgtui.sources.trainer import ThreadBackend
from vgtui.ui.app import VgtuiApp

from .conftest import SMALL, status_shows, text_of


async def test_offline_mnist_is_one_line_in_words_on_the_status(tmp_path, monkeypatch):
    monkeypatch.setattr(tvd.MNIST, "mirrors", ["http://mnist.invalid/"])
    backend = ThreadBackend(SMALL.replace(dataset="mnist", data_dir=str(tmp_path)), str(tmp_path / "m.jsonl"))
    backend.start()
    backend.send(SetSpeedCap(20.0))
    app = VgtuiApp(backend, fps=8, start_source=False)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await status_shows(pilot, "MNIST could not be downloaded (no network): using the embedded digits, mnist-5k")
            screen = "\n".join(text_of(w) for w in app.screen.query("*") if w.display)
            assert not any(w in screen for w in ("urlopen", "Errno", "Name or service"))
    finally:
        backend.close(2.0)
