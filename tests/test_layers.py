"""The layering of the package, checked per folder: core imports neither torch nor textual; the UI never imports
the engine or torch; the engine never imports textual, plotext or rich."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

CASES = [
    ("vgtui.core.config, vgtui.core.records, vgtui.core.metrics, vgtui.core.writer, vgtui.core.diagnosis",
     ("torch", "textual", "plotext", "rich", "vgtui.engine", "vgtui.ui")),
    ("vgtui.sources.base, vgtui.sources.trainer, vgtui.sources.file",
     ("torch", "textual", "plotext", "vgtui.engine", "vgtui.ui")),
    ("vgtui.ui.app, vgtui.ui.viewer, vgtui.ui.keymap, vgtui.ui.widgets, vgtui.ui.charts, vgtui.ui.screens, "
     "vgtui.ui.state, vgtui.ui.replay_cmd",
     ("torch", "vgtui.engine")),
    ("vgtui.engine.trainer, vgtui.engine.probes, vgtui.engine.data, vgtui.headless, vgtui.watching",
     ("textual", "plotext", "rich", "vgtui.ui")),
    ("vgtui.compare", ("torch", "textual", "plotext", "rich", "vgtui.engine", "vgtui.ui")),  # refuses before torch
]


@pytest.mark.parametrize("modules, forbidden", CASES, ids=["core", "sources", "ui", "engine", "compare"])
def test_layer_imports(modules, forbidden):
    code = (f"import sys\nimport {modules}\n"
            f"print(sorted(m for m in {forbidden!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"{modules} imported {r.stdout.strip()}"
