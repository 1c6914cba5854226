"""One key map for everything: the screen's bindings, the footer, the help, the palette and the README's table
all come from vgtui.ui.keymap.KEYMAP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vgtui.ui import keymap
from vgtui.ui.screens import SCREENS

ROOT = Path(__file__).resolve().parents[2]


def readme_key_table() -> str:
    """The README's key table: everything between its keys:start and keys:end markers (section "Keys")."""
    text = (ROOT / "README.md").read_text()
    return text[text.index("<!-- keys:start -->") + len("<!-- keys:start -->"):text.index("<!-- keys:end -->")].strip()


def test_readme_key_table_is_the_key_map():
    assert readme_key_table() == keymap.markdown(), "regenerate it: python scripts/readme_keys.py"


def test_markdown_command_prints_the_table():
    out = subprocess.run([sys.executable, "-m", "vgtui.ui.keymap", "--markdown"], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == keymap.markdown()


@pytest.mark.parametrize("kind", ["trainer", "file", "stream"])
def test_bindings_come_from_the_key_map(kind):
    class Fake:
        config, label, follow, metrics_path = None, "x", False, None

    Fake.kind = kind
    screen = SCREENS[kind]([Fake()])  # the screen for that kind (the App picks it by the source's kind)
    assert screen.KIND == kind
    bound = {(key, b.action) for key, bs in screen._bindings.key_to_bindings.items() for b in bs}
    for k in keymap.KEYMAP:
        for key in k.keys.split(","):
            action = k.action if k.applies(kind) else f"unavailable({k.label!r}, {keymap.NEEDS[k.sources]!r})"
            assert (key, action) in bound
    shown = {b.action for bs in screen._bindings.key_to_bindings.values() for b in bs if b.show}
    assert ("activation(1)" in shown) == (kind == "trainer")
    assert ("seek(1)" in shown) == (kind == "file")
