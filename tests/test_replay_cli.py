"""`vgtui replay` / `vgtui follow` on the command line: every bad file gets one line on stderr and exit status 2
(never a traceback); a truncated file shows its usable part with a notice. Without a terminal (as here) a good
file is summarised instead of opening the UI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

FIXTURE = ROOT / "tests" / "ui" / "fixtures" / "sigmoid.jsonl"


def vgtui(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vgtui", *args], capture_output=True, cwd=ROOT, timeout=60,
                          input=stdin)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("vgtui: error: "), err
    return err


def bad_files(tmp_path):
    lines = FIXTURE.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "newer.jsonl").write_text(json.dumps({**header, "schema": 99, "version": "9.0"}) + "\n" +
                                          "".join(lines[1:]))
    (tmp_path / "notes.txt").write_text("just some notes\nnot a metrics file\n")
    (tmp_path / "data.json").write_text(json.dumps({"loss": [1, 2, 3]}) + "\n")
    (tmp_path / "model.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "run.jsonl").write_text("".join(lines))
    (tmp_path / "headless.jsonl").write_text("".join(lines[1:]))  # the header is missing
    return {
        "empty.jsonl": "the file is empty",
        "newer.jsonl": "schema 99",
        "notes.txt": "not a vgtui metrics file",
        "data.json": "not a vgtui metrics file",
        "model.bin": "a binary file",
        "folder": "is a directory: name the file in it (run.jsonl)",
        "missing.jsonl": "no such file",
        "headless.jsonl": "not a run header",
    }


@pytest.mark.parametrize("name", ["empty.jsonl", "newer.jsonl", "notes.txt", "data.json", "model.bin", "folder",
                                  "missing.jsonl", "headless.jsonl"])
def test_bad_file_one_line_and_exit_2(tmp_path, name):
    expected = bad_files(tmp_path)[name]
    err = one_line_error(vgtui("replay", str(tmp_path / name)))
    assert expected in err and str(tmp_path / name) in err


def test_bad_file_on_standard_input_one_line_and_exit_2():
    err = one_line_error(vgtui("follow", "-", stdin=b"just some notes\n"))
    assert "<stdin>" in err and "not a vgtui metrics file" in err
    err = one_line_error(vgtui("follow", "-", stdin=b""))
    assert "the stream is empty" in err


def test_truncated_file_shows_the_usable_part_with_a_notice(tmp_path):
    data = FIXTURE.read_bytes()
    cut = data.rindex(b'{"type":"snapshot"') + 5000  # the last snapshot's line, cut mid-write
    path = tmp_path / "torn.jsonl"
    path.write_bytes(data[:cut])
    r = vgtui("replay", str(path))
    assert r.returncode == 0, r.stderr.decode()
    assert "the last line is incomplete" in r.stderr.decode()
    assert f"{path}: run 1: sigmoid · 6 layers · 11 snapshots · last step 110 · no end record" in r.stdout.decode()


def test_good_file_summary_and_run_choice(tmp_path):
    two = tmp_path / "two.jsonl"
    text = FIXTURE.read_text()
    two.write_text(text + text)
    out = vgtui("replay", str(two)).stdout.decode()
    assert "run 1: sigmoid · 6 layers · 12 snapshots · last step 120 · completed" in out
    assert "run 2: sigmoid" in out
    err = one_line_error(vgtui("replay", str(two), "--run", "3"))
    assert "--run 3: the file holds 2 runs (1..2)" in err


@pytest.mark.parametrize("args, expected", [
    (("replay", *"abcdefghi"), "overlays at most 8 files (got 9)"),  # eight is the most (tests/ui/test_many_runs.py)
    (("replay", "--follow", "a", "b"), "--follow takes one file"),
    (("replay", "-"), "can only be followed"),
    (("replay", "a", "b", "--run", "2"), "--run picks the run of one file"),
])
def test_bad_arguments(args, expected):
    assert expected in one_line_error(vgtui(*args))


def test_help_explains():
    out = vgtui("replay", "--help").stdout.decode()
    assert "two runs side by side" in out and "--run N" in out and "tail -n +1 -f" in out
    assert "follow" in vgtui("--help").stdout.decode()
