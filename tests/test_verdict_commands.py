"""One verdict everywhere (issue 16): `vgtui compare`'s row and `vgtui replay` without a terminal say what
diagnosis.judge_run says, and what `vgtui --headless` ends with, on real (short) training on the embedded digits."""

import io
import json
import math
import statistics

import pytest
import torch

from vgtui.cli import main as vgtui_main
from vgtui.commands import compare
from vgtui.commands.headless import run_headless
from vgtui.core.config import RunConfig
from vgtui.core.diagnosis import judge_run, layer_factors
from vgtui.core.metrics import read_metrics


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _geomean(xs):
    return math.exp(statistics.fmean(math.log(x) for x in xs))


def test_compare_row_verdict_is_judge_runs_on_its_metrics_file(capsys, one_thread, tmp_path):
    small = ["--depth", "3", "--width", "64", "--max-steps", "15", "--probe-every", "1"]
    status = compare.main(["sigmoid", "relu+kaiming", *small, "--json", "--metrics-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0
    rows = {r["configuration"]: r for r in json.loads(out)["rows"]}
    for name, row in rows.items():
        (run,) = read_metrics(tmp_path / f"{name}.jsonl")
        assert len(run.snapshots) == 15 and run.end.status == "completed"
        v = judge_run(run.header.layers, run.snapshots, accuracy=run.epochs[-1].test_acc if run.epochs else None)
        assert row["diagnosis"] == v.badge and row["verdict_line"] == v.line, name
        assert row["regimes"] == [lv.regime for lv in v.layers] and len(row["regimes"]) == 4
        worst = [lv.name for lv in v.layers if v.line.startswith(f"{lv.name}: ")]
        assert row["worst_layer"] == (worst[0] if worst else "")
        # the factor column: each snapshot's geometric-mean per-layer factor, the median over the snapshots
        factors = [_geomean([f.factor for f in layer_factors(s)]) for s in run.snapshots]
        assert len(layer_factors(run.snapshots[0])) == 3
        # (the file holds float32-rounded numbers)
        assert row["factor"] == pytest.approx(statistics.median(factors), rel=1e-6)
        derivs = [statistics.fmean(l.deriv_mean for l in s.layers[:-1]) for s in run.snapshots]
        assert row["deriv_mean"] == pytest.approx(statistics.median(derivs), rel=1e-6)
    # a 3-layer sigmoid net: the derivative is at most 0.25; relu's is 0 or 1 (about half the units on)
    assert rows["sigmoid"]["deriv_mean"] <= 0.25 and 0.3 < rows["relu+kaiming"]["deriv_mean"] < 0.8
    assert rows["sigmoid"]["factor"] < rows["relu+kaiming"]["factor"]

    # the text table: the factor and the worst layer columns, and each row's line under it
    status = compare.main(["sigmoid", *small])
    text = capsys.readouterr().out
    head, _, first = text.splitlines()[:3]
    assert head.split("  ")[:3] == ["configuration", "fc1/last", "factor/layer"] and "worst layer" in head
    assert f"{rows['sigmoid']['factor']:.2f}" in first and rows["sigmoid"]["diagnosis"] in first
    assert f"  sigmoid: {rows['sigmoid']['verdict_line']}" in text


def test_compare_csv_has_the_new_fields_and_the_old_ones(capsys, one_thread):
    import csv

    status = compare.main(["sigmoid", "--depth", "2", "--width", "32", "--max-steps", "4", "--probe-every", "2",
                           "--csv"])
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert status == 0
    for k in ("configuration", "ratio", "diagnosis", "saturated_pct", "dead_pct", "test_acc", "steps_per_s",
              "worst_layer", "verdict_line", "factor", "deriv_mean", "regimes"):
        assert k in row, k
    assert len(row["regimes"].split()) == 3 and 0 < float(row["factor"]) and 0 < float(row["deriv_mean"]) <= 0.25


def test_replay_without_a_terminal_prints_headless_verdict_lines(tmp_path, capsys):
    path = tmp_path / "run.jsonl"
    cfg = RunConfig(dataset="mnist-5k", depth=3, width=64, epochs=1, max_steps=12, probe_every=2, device="cpu")
    report = io.StringIO()
    assert run_headless(cfg, metrics=str(path), out=report) == 0
    ended = [l for l in report.getvalue().splitlines()
             if l.startswith(("layers: ", "factors: ", "preflight: ", "spikes: "))]
    assert [l.split(":")[0] for l in ended] == ["layers", "factors", "preflight", "spikes"]
    assert ended[1].startswith("factors: each layer multiplies the gradient by about ")
    assert ended[2].startswith("preflight: loss at init ")

    # the file twice: two runs, each with the verdict lines headless printed, under its own line
    twice = tmp_path / "twice.jsonl"
    twice.write_bytes(path.read_bytes() * 2)
    assert vgtui_main(["replay", str(twice)]) == 0
    out = capsys.readouterr().out.splitlines()
    for i in (1, 2):
        mine = [l.split(f"{twice}: run {i}: ", 1)[1] for l in out if l.startswith(f"{twice}: run {i}: ")]
        assert mine[0] == "MLP 784-64x3-10 sigmoid · 4 layers · 7 snapshots · last step 12 · completed"
        assert mine[1:] == ended

    # a damaged snapshot line (the index took it from its first bytes): left out of the verdict and said so
    lines = path.read_bytes().splitlines(keepends=True)
    k = next(i for i, l in enumerate(lines) if l.startswith(b'{"type":"snapshot"') and i > 3)
    lines[k] = lines[k][:200] + b"garbage" + lines[k][200:]
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(b"".join(lines))
    assert vgtui_main(["replay", str(torn)]) == 0
    out = capsys.readouterr().out
    assert f"{torn}: run 1: layers: " in out
    assert f"{torn}: run 1: (1 damaged snapshot line left out of the verdict)" in out
    assert "MLP 784-64x3-10 sigmoid · 4 layers · 7 snapshots" in out  # the index counts it: the verdict leaves it out
