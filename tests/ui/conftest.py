"""Helpers for the UI tests: a real ThreadBackend on small configs, waiting on conditions, and what a widget
shows on the real screen (its rendered lines, border and title included; no frame is forced)."""

from __future__ import annotations

import json
import time

import pytest
from textual.geometry import Region

from vgtui.sources.trainer import ThreadBackend
from vgtui.core.config import RunConfig
from vgtui.core.records import SetSpeedCap

SMALL = RunConfig(dataset="mnist-5k", depth=3, width=64, epochs=500, probe_every=5, device="cpu", seed=0)


@pytest.fixture(scope="session")
def digits():
    from vgtui.engine.data import load_mnist5k

    return load_mnist5k("cpu")


@pytest.fixture
def make_app(digits, tmp_path):
    """make_app(config=SMALL, **app_kw) -> (app, backend): the real app over a real ThreadBackend."""
    from vgtui.ui.app import VgtuiApp

    made = []

    def make(config: RunConfig = SMALL, metrics: bool = True, cap: float | None = 20.0, **kw):
        backend = ThreadBackend(config, str(tmp_path / "metrics.jsonl") if metrics else None, data=digits)
        backend.start()
        if cap:  # a tiny net trains at hundreds of steps/s and its thread would hog the GIL of the test
            backend.send(SetSpeedCap(cap))
        app = VgtuiApp(backend, fps=8, screenshot_dir=str(tmp_path), start_source=False, **kw)
        made.append(backend)
        return app, backend

    yield make
    for b in made:
        b.close(2.0)


def process_app(config: RunConfig, metrics: str) -> tuple:
    """(app, backend): the real app over the real child-process trainer (`ProcessBackend`, what `vgtui` runs),
    capped at 50 steps/s (the child would take both CPUs from the test's UI otherwise). Close it with
    `app.close_sources()`."""
    from vgtui.sources.trainer import ProcessBackend
    from vgtui.ui.app import VgtuiApp

    backend = ProcessBackend(config, metrics)
    backend.start()
    backend.send(SetSpeedCap(50.0))
    return VgtuiApp(backend, fps=8, start_source=False), backend


def metrics_records(backend) -> list[dict]:
    """Every record of the backend's metrics file, parsed."""
    with open(backend.metrics_path) as f:
        return [json.loads(line) for line in f if line.strip()]


async def wait_for(pilot, cond, timeout: float = 15.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def text_of(widget) -> str:
    """What a widget shows on screen now, as plain text: its rendered lines (border and titles included)."""
    w, h = widget.outer_size
    return "\n".join("".join(seg.text for seg in strip) for strip in widget.render_lines(Region(0, 0, w, h)))


async def shows(pilot, widget, text: str, timeout: float = 10.0) -> str:
    """Wait until `widget` shows `text` on screen (the frame timer redraws at --fps); returns what it shows."""
    await wait_for(pilot, lambda: text in text_of(widget), timeout, f"{text!r} on screen")
    return text_of(widget)


async def status_shows(pilot, text: str, timeout: float = 10.0) -> str:
    from vgtui.ui.widgets import StatusBar

    return await shows(pilot, pilot.app.main.query_one(StatusBar), text, timeout)
