"""`vgtui export FILE --csv OUT`: one row per snapshot and layer, every value as in the metrics file."""

import csv
import dataclasses
import math

import pytest

from conftest import ROOT, run_cli
from test_format import BAD
from vgtui.core.metrics import MetricsIndex
from vgtui.core.records import LayerStats, RecordEncoder
from vgtui.core.csvfile import COLUMNS, write_csv

FIXTURES = ROOT / "tests" / "ui" / "fixtures"


def check_csv_against(csv_path, run) -> int:
    """Every row and every value of the CSV equals the metrics file's (read through the index)."""
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS
    body = iter(rows[1:])
    n = 0
    for snap in run.iter_snapshots():
        for layer in snap.layers:
            row = dict(zip(COLUMNS, next(body)))
            n += 1
            expect = {"step": snap.step, "epoch": snap.epoch, "elapsed_s": snap.elapsed_s, "loss": snap.loss,
                      "loss_avg": snap.loss_avg, "steps_per_s": snap.steps_per_s, "activation": snap.activation,
                      "layer": layer.name, "layer_activation": layer.activation,
                      **{k: getattr(layer, k) for k in LayerStats._FLOATS}}
            for k, v in expect.items():
                cell = row[k]
                if v is None:
                    assert cell == "", (snap.step, layer.name, k)
                elif isinstance(v, str):
                    assert cell == v
                elif isinstance(v, int):
                    assert int(cell) == v
                else:
                    assert float(cell) == v or (math.isnan(v) and cell == "nan"), (snap.step, layer.name, k, cell)
    assert next(body, None) is None
    return n


def test_export_writes_every_snapshot_and_layer(tmp_path):
    out = tmp_path / "run.csv"
    r = run_cli(["export", str(FIXTURES / "sigmoid.jsonl"), "--csv", str(out)])
    assert r.returncode == 0, r.stderr
    assert "72 rows (12 snapshots x 6 layers) of run 1" in r.stderr
    (run,) = MetricsIndex(FIXTURES / "sigmoid.jsonl").runs
    assert check_csv_against(out, run) == 72
    with open(out, newline="") as f:
        last = list(csv.DictReader(f))[-1]
    assert last["layer"] == "fc6" and last["layer_activation"] == "" and last["act_mean"] == ""  # the output layer


def test_export_of_non_finite_values_and_the_run_chosen(tmp_path):
    """A diverged run's inf/nan are written as such; a file of two runs exports the last unless told."""
    enc, path = RecordEncoder(), tmp_path / "two.jsonl"
    (a,) = MetricsIndex(FIXTURES / "sigmoid.jsonl").runs
    (b,) = MetricsIndex(FIXTURES / "relu-diverged.jsonl").runs
    bad = b.snapshot(-1)
    bad = dataclasses.replace(bad, loss=math.nan, layers=(
        dataclasses.replace(bad.layers[0], grad_norm=math.inf, grad_data_ratio=-math.inf, act_mean=math.nan),
        *bad.layers[1:]))
    with open(path, "w") as f:
        f.writelines(enc.line(r) for r in [a.header, *a.iter_snapshots(), b.header, *b.iter_snapshots(0, 2), bad])
    out = tmp_path / "b.csv"
    r = run_cli(["export", str(path), "--csv", str(out)])
    assert r.returncode == 0 and "holds 2 runs; exporting run 2, the last (--run N for another)" in r.stderr
    index = MetricsIndex(path)
    assert check_csv_against(out, index.runs[1]) == 18
    with open(out, newline="") as f:
        row = list(csv.DictReader(f))[12]
    assert (row["loss"], row["grad_norm"], row["grad_data_ratio"], row["act_mean"]) == ("nan", "inf", "-inf", "nan")
    assert run_cli(["export", str(path), "--csv", str(out), "--run", "1"]).returncode == 0
    assert check_csv_against(out, index.runs[0]) == 72
    assert write_csv(path, tmp_path / "api.csv", run=0) == 72 and write_csv(index.runs[1], out) == 18


@pytest.mark.parametrize("case", [*BAD, "directory-out", "no-folder", "itself", "run"])
def test_export_refuses_with_one_line(tmp_path, case):
    src, out, extra = FIXTURES / "sigmoid.jsonl", tmp_path / "out.csv", []
    said = {"directory-out": "is a directory", "no-folder": "does not exist", "itself": "is the metrics file itself",
            "run": "--run 3: "}.get(case)
    if case in BAD:  # every bad metrics file of tests/test_format.py
        make, said = BAD[case]
        src = tmp_path / "in" / "run.jsonl"
        src.parent.mkdir()
        make(src)
    elif case == "directory-out":
        out = tmp_path
    elif case == "no-folder":
        out = tmp_path / "no" / "out.csv"
    elif case == "itself":
        out = src
    else:
        extra = ["--run", "3"]
    r = run_cli(["export", str(src), "--csv", str(out), *extra])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("vgtui: error: ") and said in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert case not in BAD or r.stderr.startswith(f"vgtui: error: {src}: ")
    assert not (tmp_path / "out.csv").exists() and not list(tmp_path.glob(".*.part"))


def test_export_help_explains():
    r = run_cli(["export", "--help"])
    assert r.returncode == 0 and "one row per snapshot and layer" in r.stdout and 'pd.read_csv("run.csv")' in r.stdout


def test_export_a_forked_run_and_its_fork(tmp_path):
    src = FIXTURES / "forked.jsonl"  # sigmoid, forked at step 40 where B swapped to relu
    r = run_cli(["export", str(src), "--csv", str(tmp_path / "a.csv")])
    assert r.returncode == 0 and "forked at step 40; exporting the run itself (--branch B for its fork)" in r.stderr
    r = run_cli(["export", str(src), "--csv", str(tmp_path / "b.csv"), "--branch", "B"])
    assert r.returncode == 0 and "of run 1 (its fork, branch B)" in r.stderr
    a = list(csv.DictReader(open(tmp_path / "a.csv")))
    b = list(csv.DictReader(open(tmp_path / "b.csv")))
    assert sorted({int(x["step"]) for x in a}) == [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]
    assert sorted({int(x["step"]) for x in b}) == [50, 60, 70, 80, 90, 100, 110, 120]
    assert {x["activation"] for x in b} == {"relu"} and {x["activation"] for x in a} == {"sigmoid"}
    r = run_cli(["export", str(FIXTURES / "sigmoid.jsonl"), "--csv", str(tmp_path / "c.csv"), "--branch", "B"])
    assert r.returncode == 2 and "was never forked" in r.stderr and not (tmp_path / "c.csv").exists()
