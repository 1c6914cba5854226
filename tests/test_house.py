"""The house rules that a reading of the code checks (issue 15): no screen or widget dispatches on a mode string,
no decision is taken by reading a message's words, no branch is the letter B in the UI, no running state is copied by
attribute-name strings. Each check is also shown a line that breaks it, so that a check that sees nothing fails."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "vgtui"
UI = sorted((PKG / "ui" / "screens").glob("*.py")) + sorted((PKG / "ui" / "widgets").glob("*.py"))
PROSE = ("message", "msg", "why", "text", "notice", "reason")  # names that hold words for people
# Where words are all there is: a download's failure is told apart by the text of torchvision's and urllib's
# exceptions (they carry no code for "timed out"); vgtui's own records carry their cause as a field.
FOREIGN_TEXT = {"vgtui/engine/data.py": ["'timed out' in text"]}


def mode_dispatch(source: str) -> list[str]:
    """Comparisons of a `kind`/`mode` with a string, and hasattr() probes: a screen told apart by a string."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = any(isinstance(s, (ast.Attribute, ast.Name)) and (getattr(s, "attr", None) or getattr(s, "id", ""))
                        in ("kind", "mode") for s in sides)
            literal = any(isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides) or any(
                isinstance(s, (ast.Tuple, ast.Set, ast.List)) and any(isinstance(e, ast.Constant) for e in s.elts)
                for s in sides)
            if named and literal:
                out.append(f"line {node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr":
            out.append(f"line {node.lineno}: {ast.unparse(node)}")
    return out


def prose_decisions(source: str) -> list[str]:
    """`x.message.startswith(...)`, `"..." in why`: a decision read from words written for people."""
    out = []

    def prose(n: ast.AST) -> bool:
        name = n.attr if isinstance(n, ast.Attribute) else n.id if isinstance(n, ast.Name) else ""
        return name in PROSE

    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("startswith", "endswith") and prose(node.func.value)):
            out.append(f"line {node.lineno}: {ast.unparse(node)}")
        if (isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
                and isinstance(node.left, ast.Constant) and any(prose(c) for c in node.comparators)):
            out.append(f"line {node.lineno}: {ast.unparse(node)}")
    return out


def branch_letters(source: str) -> list[str]:
    """The branch written as a letter: "B" or "AB" compared or indexed (the records carry a branch id)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and node.value in ("AB", "B", "BA"):
            out.append(f"line {getattr(node, 'lineno', '?')}: {node.value!r}")
    return out


def copied_by_name(source: str) -> list[str]:
    """setattr with a name that is not written out (or getattr of one's own): state copied by a list of
    attribute-name strings."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "getattr")
                and len(node.args) >= 2 and not isinstance(node.args[1], (ast.Constant, ast.JoinedStr))
                and (node.func.id == "setattr" or ast.unparse(node.args[0]) == "self")):
            out.append(f"line {node.lineno}: {ast.unparse(node)}")
    return out


def test_the_checks_see_what_they_look_for():
    assert mode_dispatch('if self.kind == "trainer":\n    pass\n')
    assert mode_dispatch('x = self.kind in ("file", "stream")\n')
    assert mode_dispatch('if hasattr(self.source, "death"):\n    pass\n')
    assert not mode_dispatch('if isinstance(s, TrainerSource):\n    pass\n')
    assert prose_decisions('if end.message.startswith("exploded"):\n    pass\n')
    assert prose_decisions('if "offline" in why:\n    pass\n')
    assert not prose_decisions('if end.cause == "exploded":\n    pass\n')
    assert branch_letters('if rec.branch == "B":\n    pass\n') and branch_letters('tag = "AB"[i]\n')
    assert copied_by_name('for n in _SUMS:\n    setattr(b, n, getattr(a, n))\n')
    assert copied_by_name('vals = getattr(self, attr)\n')
    assert not copied_by_name('setattr(self, f"fc{i}", layer)\n') and not copied_by_name('getattr(tvd, name)\n')


@pytest.mark.parametrize("path", UI, ids=[f"{p.parent.name}/{p.name}" for p in UI])
def test_no_screen_or_widget_dispatches_on_a_mode_string(path):
    assert len(UI) >= 9  # screens/ and widgets/ are read (a check over no files passes anything)
    found = mode_dispatch(path.read_text())
    assert not found, f"{path.relative_to(ROOT)}: {found}"


@pytest.mark.parametrize("layer", ["core", "engine", "sources", "ui", "commands"])
def test_no_decision_reads_a_message(layer):
    files = sorted((PKG / layer).rglob("*.py"))
    assert files
    found = {}
    for p in files:
        rel = str(p.relative_to(ROOT))
        left = [f for f in prose_decisions(p.read_text()) if not any(a in f for a in FOREIGN_TEXT.get(rel, ()))]
        if left:
            found[rel] = left
    assert not found, found


@pytest.mark.parametrize("layer", ["ui", "sources", "commands"])
def test_the_branch_is_data_not_a_letter(layer):
    """The UI names runs by position (vgtui.ui.state.TAGS, from the records' branch ids); the literal is nowhere."""
    found = {str(p.relative_to(ROOT)): f for p in sorted((PKG / layer).rglob("*.py"))
             if (f := branch_letters(p.read_text()))}
    assert not found, found


def test_no_running_state_is_copied_by_name():
    files = sorted((PKG / "engine").glob("*.py")) + [PKG / "watching.py"]
    found = {str(p.relative_to(ROOT)): f for p in files if (f := copied_by_name(p.read_text()))}
    assert not found, found
