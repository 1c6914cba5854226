"""`vgtui compare FILE...`: the table of `vgtui compare --metrics-dir DIR` printed again from DIR's files, number for
number, without training and without torch; several runs and a fork's branch as rows of their own; refusals of a
missing file, a FIFO, a directory, files mixed with SPECs; damaged lines as notices; a file's strings as text."""

import csv
import io
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from vgtui.commands import compare

SPECS = ["sigmoid", "relu+kaiming", "sigmoid+bn", "tanh+xavier+lr0.05"]
SMALL = ["--max-steps", "20", "--depth", "2", "--width", "32"]


def run(capsys, *argv):
    status = compare.main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One real comparison, trained once: its JSON, text and CSV tables and the folder of its metrics files."""
    d = tmp_path_factory.mktemp("runs")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tables = {}
        for form in ("--json", "--csv", None):
            sub = d / (form or "--text").strip("-")
            argv = [*SPECS, *SMALL, "--metrics-dir", str(sub)] + ([form] if form else [])
            out, err = _main(argv)
            tables[form] = out
    finally:
        torch.set_num_threads(before)
    return d, tables


def _main(argv):
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = compare.main(argv)
    assert status == 0, err.getvalue()
    return out.getvalue(), err.getvalue()


def same(a, b):
    """Equal, floats to float32 precision (relative 1e-6)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


def files(d, form):
    return sorted(str(p) for p in (d / form).glob("*.jsonl"))


def test_the_files_print_the_table_the_run_printed(written, capsys):
    d, tables = written
    trained = {r["configuration"]: r for r in json.loads(tables["--json"])["rows"]}
    status, out, err = run(capsys, *files(d, "json"), "--json")
    assert status == 0 and err == ""
    doc = json.loads(out)
    read = {r["configuration"]: r for r in doc["rows"]}
    assert sorted(read) == sorted(SPECS)  # the labels are the SPECs the configurations spell
    # every value, the verdict, its line, the regimes, steps/s (from the end record) too; the floats to float32
    # precision: the file holds the probes' values as the float32s they are on the device (vgtui.core.records)
    for name in SPECS:
        assert same(read[name], trained[name]), name
    assert read["sigmoid"]["deriv_mean"] != trained["sigmoid"]["deriv_mean"]  # the float32 digits, not more
    assert read["sigmoid"]["steps"] == 20 and read["tanh+xavier+lr0.05"]["test_acc"] > 0.5
    assert doc["setup"] == json.loads(tables["--json"])["setup"] + "; read from 4 files"

    status, out, _ = run(capsys, *files(d, "text"))
    assert status == 0
    lines = tables[None].splitlines()
    head, body = lines[:2], lines[2:2 + len(SPECS)]
    again = out.splitlines()
    assert again[:2] == head and sorted(again[2:2 + len(SPECS)]) == sorted(body)  # the same rows, in file order
    assert sorted(l for l in again if l.startswith("  ")) == sorted(l for l in lines if l.startswith("  "))

    status, out, _ = run(capsys, *files(d, "csv"), "--csv")
    trained_csv = {r["configuration"]: r for r in csv.DictReader(io.StringIO(tables["--csv"]))}
    read_csv = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and out.splitlines()[0] == tables["--csv"].splitlines()[0]
    assert sorted(r["configuration"] for r in read_csv) == sorted(SPECS)
    for r in read_csv:
        t = trained_csv[r["configuration"]]
        for k, v in r.items():
            nums = [_float(x) for x in v.split()], [_float(x) for x in t[k].split()]
            assert same(*nums) if all(isinstance(x, float) for x in nums[0] + nums[1]) else v == t[k], k


def test_reading_files_imports_no_torch(written, tmp_path):
    d, _ = written
    code = ("import sys\nfrom vgtui.commands.compare import main\n"
            f"status = main({files(d, 'json')!r} + ['--json'])\n"
            "sys.stderr.write(repr((status, sorted(m for m in ('torch', 'vgtui.engine', 'textual') "
            "if m in sys.modules))))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert eval(r.stderr.strip().splitlines()[-1]) == (0, [])
    assert len(json.loads(r.stdout)["rows"]) == 4


def _float(x):
    try:
        return float(x)
    except ValueError:
        return x


def _lines(path):
    return open(path).read().splitlines(keepends=True)


def test_several_runs_and_a_forks_branch_are_rows_of_their_own(written, tmp_path, capsys):
    d, tables = written
    trained = {r["configuration"]: r for r in json.loads(tables["--json"])["rows"]}
    sig, kai = _lines(d / "json" / "sigmoid.jsonl"), _lines(d / "json" / "relu+kaiming.jsonl")
    branch = []
    for line in kai:
        rec = json.loads(line)
        rec = {"type": rec.pop("type"), "branch": "B", **rec}
        if rec["type"] == "run":
            rec["forked_at"] = 0
        branch.append(json.dumps(rec) + "\n")
    both = tmp_path / "both.jsonl"
    both.write_text("".join(sig[:1] + branch[:1] + sig[1:] + branch[1:] + sig + kai))  # run 1 and its fork, 2, 3
    status, out, err = run(capsys, str(both), "--json")
    assert status == 0, err
    rows = {r["configuration"]: r for r in json.loads(out)["rows"]}
    assert list(rows) == ["sigmoid (run 1)", "relu+kaiming (run 1, branch B from step 0)", "sigmoid (run 2)",
                          "relu+kaiming (run 3)"]
    for label, like in zip(rows, ["sigmoid", "relu+kaiming", "sigmoid", "relu+kaiming"]):
        got = {k: v for k, v in rows[label].items() if k != "configuration"}
        assert same(got, {k: v for k, v in trained[like].items() if k != "configuration"}), label
    status, out, _ = run(capsys, str(d / "json" / "sigmoid.jsonl"), str(d / "csv" / "sigmoid.jsonl"), "--json")
    assert [r["configuration"] for r in json.loads(out)["rows"]] == [f"sigmoid [{d / 'json' / 'sigmoid.jsonl'}]",
                                                                     f"sigmoid [{d / 'csv' / 'sigmoid.jsonl'}]"]
    status, out, _ = run(capsys, str(both), str(d / "json" / "sigmoid.jsonl"), str(both), "--json")
    labels = [r["configuration"] for r in json.loads(out)["rows"]]
    assert labels[0] == f"sigmoid (run 1) [{both}] #1" and labels[5] == f"sigmoid (run 1) [{both}] #6"
    assert labels[4] == "sigmoid" and len(set(labels)) == len(labels) == 9  # one file named twice: numbered


def test_damaged_lines_are_notices_and_strings_are_text(written, tmp_path, capsys):
    d, tables = written
    lines = _lines(d / "json" / "relu+kaiming.jsonl")
    bad = tmp_path / "bad.jsonl"
    hostile = {**json.loads(lines[1]), "step": "\x1b[31m"}  # a step that is a string, with an escape in it
    bad.write_text("".join(lines[:2] + ["{not json\n", json.dumps(hostile) + "\n"]
                           + lines[2:-1]))  # and no end record: a run killed mid-way
    header = json.loads(lines[0])
    header.update(source="vgtui.watch", config=None, model="net\x1b]0;owned\x07")
    evil = tmp_path / "evil\x1b[31m.jsonl"
    evil.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    status, out, err = run(capsys, str(bad), str(evil))
    assert status == 0
    notices = err.splitlines()
    assert notices[0].startswith(f"notice: {bad}: line 3: not JSON") and notices[0].endswith(": skipped")
    assert notices[1].startswith(f"notice: {bad}: line 4: a snapshot record that cannot be read")
    assert "\\x1b[31m" in notices[1]
    assert len(notices) == 2 and "\x1b" not in err
    assert "\x1b" not in out and "\x07" not in out
    rows = [l for l in out.splitlines()[2:4]]
    assert rows[0].startswith("relu+kaiming (unfinished)  ")
    assert rows[1].startswith("evil\\x1b[31m  ")  # a watched run: its file's name, made visible
    assert "net\\x1b]0;owned\\x07" in out  # the model named in the setup line, as text
    status, out, _ = run(capsys, str(evil), "--json")
    assert json.loads(out)["rows"][0]["seeds"] == [None]  # a watched run has no seed
    status, out, _ = run(capsys, str(bad), "--json")
    (row,) = json.loads(out)["rows"]
    trained = {r["configuration"]: r for r in json.loads(tables["--json"])["rows"]}["relu+kaiming"]
    assert row["status"] == "unfinished" and row["steps"] == 20 and row["steps_per_s"] is None
    assert same(row["ratio"], trained["ratio"]) and row["diagnosis"] == trained["diagnosis"]


@pytest.mark.parametrize("make, says", [
    (None, "no such file: check the path"),
    (lambda p: p.mkdir(), "is a directory, not a regular file: name a metrics file (.jsonl)"),
    (lambda p: os.mkfifo(p), "is a FIFO (named pipe), not a regular file: name a metrics file (.jsonl)"),
    (lambda p: os.symlink("/dev/null", p), "is a character device, not a regular file: name a metrics file (.jsonl)"),
])
def test_a_file_that_cannot_be_read_is_refused_in_one_line(make, says, tmp_path, capsys):
    p = tmp_path / "x.jsonl"
    if make:
        make(p)
    status, out, err = run(capsys, str(p))
    assert status == 2 and out == ""
    assert err.splitlines() == [f"vgtui compare: error: {p}: {says}"]


def test_not_a_metrics_file_files_with_specs_and_run_options_are_refused(written, tmp_path, capsys):
    d, _ = written
    notes = tmp_path / "notes.jsonl"
    notes.write_text("my own notes\n")
    status, out, err = run(capsys, str(notes))
    assert status == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"vgtui compare: error: {notes}: line 1 is not JSON: not a vgtui metrics file")
    f = str(d / "json" / "sigmoid.jsonl")
    status, out, err = run(capsys, "relu", f)
    assert status == 2 and out == ""
    assert err.splitlines()[-1] == (f"vgtui compare: error: give metrics files or SPECs, not both ('relu' is a SPEC, "
                                    f"'{f}' a file): train with --metrics-dir DIR, then compare DIR/*.jsonl")
    status, out, err = run(capsys, f, "--epochs", "3")
    assert status == 2 and err.splitlines()[-1] == ("vgtui compare: error: --epochs: metrics files are read as they "
                                                    "were written; the run options are for SPECs")
    status, out, err = run(capsys, "relu.json")  # neither .jsonl nor a path: a SPEC, refused as one
    assert status == 2 and "unknown word 'relu.json'" in err


def test_a_presets_files_with_the_preset_print_its_table(tmp_path):
    """--preset NAME with its files: its columns, the paper's figures and its order of rows, none of it trained."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trained, _ = _main(["--preset", "glorot2010", "--depth", "1", "--width", "8", "--max-steps", "2",
                            "--metrics-dir", str(tmp_path)])
    finally:
        torch.set_num_threads(before)
    read, err = _main(["--preset", "glorot2010", *sorted(str(p) for p in tmp_path.glob("*.jsonl"))])
    assert err == "" and "paper test err %" in read.splitlines()[0]
    ours = next(l for l in trained.splitlines() if l.startswith("ours: "))
    assert read == trained.replace(ours, ours + "; read from 5 files")
