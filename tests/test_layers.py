"""The layering of the package, over every module there is: core -> engine -> sources -> ui, the commands at the
top, each importing only from its own layer and those below (checked statically, imports inside functions
included); the UI never imports torch or the engine; the engine never textual, plotext or rich; core none of them;
`import vgtui` nothing heavy. Static checks read the source (every import, however late); the import checks run
a fresh interpreter (what importing a layer's modules really loads)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PKG = ROOT / "vgtui"

# Each module's layer, by its first folder under vgtui/ (or its name, for a top-level module). A module in none of
# these fails test_every_module_has_a_layer: say where it belongs.
LAYERS = {"core": 0, "engine": 1, "sources": 2, "ui": 3, "commands": 4,
          "data": 0,  # the embedded digits (package data, read by the engine)
          "integrations": 1}  # vgtui.watch as the HF Trainer's and Lightning's callbacks (beside watching)
TOP_LEVEL = {
    "signals": 0,  # one shutdown path for every signal: the standard library only, used by sources, ui, commands
    "watching": 1,  # vgtui.watch: the engine's probes in the user's own loop (a library API, nothing imports it)
    "cli": 4, "__main__": 4,  # the command line: parses, then dispatches to a module of vgtui/commands
}
NAMES = {0: "core", 1: "engine", 2: "sources", 3: "ui", 4: "commands"}
# An import across the layers, known and why (each one is still checked to exist, so that a fixed one goes).
KNOWN: dict[tuple[str, str], str] = {}
HEAVY = ("torch", "textual", "plotext", "rich")
NEVER = {  # what a layer never imports, however late (on top of the layers above it)
    "core": HEAVY,
    "engine": ("textual", "plotext", "rich"),
    "sources": ("textual", "plotext", "rich"),  # torch only through the engine, inside the trainer it starts
    "ui": ("torch", "vgtui.engine"),  # the trainer runs wherever its source puts it
}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (the root package left out: it is the facade, checked below)."""
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if len(parts) > 1 and not any(x.startswith(".") for x in parts):
            out[".".join(parts)] = p
    return out


def layer_of(name: str) -> int | None:
    """The layer of module `name` ("vgtui.ui.screens.live"); None for the root package and for what is not vgtui's."""
    parts = name.split(".")
    if parts[0] != "vgtui" or len(parts) == 1:
        return None
    return LAYERS.get(parts[1], TOP_LEVEL.get(parts[1], -1))


def imports(path: Path, name: str) -> set[str]:
    """Every module `path` imports anywhere (`from a import b` counts as a.b where a.b is a module)."""
    known = modules()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in known else base)
    return found


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in modules() if layer_of(m) == -1)
    assert not unplaced, f"put these in a layer in tests/test_layers.py (LAYERS or TOP_LEVEL): {unplaced}"
    found = {m.split(".")[1] for m in modules()}
    assert {"core", "engine", "sources", "ui", "commands"} <= found  # the test reads the real tree
    stray = sorted(p.stem for p in PKG.glob("*.py") if p.stem not in TOP_LEVEL and p.stem != "__init__")
    assert not stray, f"a command belongs in vgtui/commands, a library module in its layer: {stray}"


@pytest.mark.parametrize("layer", sorted(NAMES), ids=[NAMES[k] for k in sorted(NAMES)])
def test_a_layer_imports_only_from_itself_and_below(layer):
    wrong, used = [], set()
    for name, path in modules().items():
        if layer_of(name) != layer:
            continue
        for imp in sorted(imports(path, name)):
            target = layer_of(imp)
            if target is not None and target > layer:
                if (name, imp) in KNOWN:
                    used.add((name, imp))
                else:
                    wrong.append(f"{name} ({NAMES[layer]}) imports {imp} ({NAMES.get(target, '?')})")
            for never in NEVER.get(NAMES[layer], ()):
                if imp == never or imp.startswith(never + "."):
                    wrong.append(f"{name} ({NAMES[layer]}) imports {imp}")
    assert not wrong, "\n".join(wrong)
    stale = {k for k in KNOWN if layer_of(k[0]) == layer} - used
    assert not stale, f"these known imports are gone: remove them from KNOWN: {sorted(stale)}"


def test_the_layer_check_sees_a_late_import(tmp_path):
    """The static check reads imports inside functions and relative ones (a check that cannot see them passes
    anything)."""
    p = tmp_path / "viewer.py"
    p.write_text("def f():\n    import torch\n    from ..engine import trainer\n    from . import keymap\n")
    assert imports(p, "vgtui.ui.viewer") >= {"torch", "vgtui.engine.trainer", "vgtui.ui.keymap"}


def _loaded_by(mods: list[str], watch: tuple[str, ...]) -> list[str]:
    code = (f"import sys\nimport {', '.join(mods)}\n"
            f"print(sorted(m for m in {watch!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    return eval(r.stdout.strip())


# The trainers' integrations import transformers or lightning, whose own imports load rich: what their modules
# import is checked statically above (no textual, plotext, rich or UI of vgtui's own); the package itself is loaded.
THIRD_PARTY = ("vgtui.integrations.hf", "vgtui.integrations.lightning", "vgtui.integrations.pytorch_lightning")


def _of(layer: str) -> list[str]:
    return [m for m in modules() if layer_of(m) == LAYERS[layer] and not m.endswith("__main__")
            and m not in THIRD_PARTY]


CASES = {  # importing a layer's modules loads none of these
    "core": ("core", HEAVY + ("vgtui.engine", "vgtui.sources", "vgtui.ui")),
    "engine": ("engine", ("textual", "plotext", "rich", "vgtui.sources", "vgtui.ui")),
    "sources": ("sources", HEAVY + ("vgtui.engine", "vgtui.ui")),  # the engine only inside the trainer it starts
    "ui": ("ui", ("torch", "vgtui.engine")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_importing_a_layer_loads_nothing_above_it(case):
    layer, forbidden = CASES[case]
    mods = _of(layer) + (["vgtui.watching"] if layer == "engine" else [])
    assert _loaded_by(mods, forbidden) == [], f"importing {layer} loaded it"


def test_import_vgtui_stays_light():
    watch = HEAVY + ("numpy", "vgtui.core", "vgtui.engine", "vgtui.sources", "vgtui.ui", "vgtui.watching")
    assert _loaded_by(["vgtui"], watch) == []


def test_compare_refuses_before_it_imports_torch():
    """Every module of the compare package (spec, presets, collect, table, command): the runs import the engine
    inside the function that starts them, after the SPECs and options are checked."""
    package = sorted(m for m in modules() if m.startswith("vgtui.commands.compare"))
    assert {f"vgtui.commands.compare.{m}" for m in ("spec", "presets", "collect", "table", "command")} < set(package)
    assert _loaded_by(package, HEAVY + ("vgtui.engine", "vgtui.ui")) == []


def test_the_commands_load_only_what_they_use():
    """Importing every command module (what `vgtui NAME` does before parsing) loads neither torch nor the UI:
    each imports them inside the function that needs them, after its arguments are checked."""
    assert _loaded_by(_of("commands"), HEAVY + ("vgtui.engine", "vgtui.ui")) == []


def test_the_layer_check_sees_a_command_imported_below_it(tmp_path):
    """A UI module importing a command (as the viewer's `e` once imported vgtui.export) is one the check names."""
    p = tmp_path / "viewer.py"
    p.write_text("def f():\n    from vgtui.commands.export import main\n")
    found = imports(p, "vgtui.ui.viewer")
    assert "vgtui.commands.export" in found
    assert layer_of("vgtui.commands.export") == LAYERS["commands"] > LAYERS["ui"]


SCREENS = ("vgtui.ui.app", "vgtui.ui.screens")


def test_no_widget_imports_a_screen():
    """The panels are handed their data (a RunView) and never read the screen: no screen <-> widgets circle."""
    widgets = {n: p for n, p in modules().items() if n.startswith("vgtui.ui.widgets")}
    assert len(widgets) >= 5  # the package, one module per panel: the check reads the real files
    wrong = {f"{n} imports {imp}" for n, p in widgets.items() for imp in imports(p, n) if imp.startswith(SCREENS)}
    assert not wrong, sorted(wrong)
    assert "vgtui.ui.widgets" in imports(PKG / "ui" / "screens" / "base.py", "vgtui.ui.screens.base")
