"""`vgtui compare`: SPECs, presets and the table, on short real runs on the embedded digits; and `--init lecun`."""

import csv
import io
import json
import math
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, run_cli
from vgtui.commands import compare
from vgtui.core.config import RunConfig
from vgtui.core.metrics import read_metrics
from vgtui.engine.model import build_model


@pytest.fixture
def one_thread():
    """Small networks on a shared 2-core machine run many times faster on one torch thread (two threads wait on
    each other while other processes hold a core); the numbers do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(capsys, *argv):
    """`vgtui compare ARGV` in this process: (exit status, stdout, stderr)."""
    status = compare.main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def rows_of(text):
    return {r["configuration"]: r for r in json.loads(text)["rows"]}


# ------------------------------------------------------------------------------------------------ --init lecun
def test_lecun_init_has_std_one_over_sqrt_fan_in():
    model = build_model(RunConfig(depth=3, width=400, activation="selu", init="lecun", seed=2))
    for name in model.layer_names:
        layer = getattr(model, name)
        w = layer.weight.detach()
        fan_in = w.shape[1]
        assert w.std().item() == pytest.approx(1 / math.sqrt(fan_in), rel=0.03), name
        assert abs(w.mean().item()) < 0.1 / math.sqrt(fan_in)
        assert torch.count_nonzero(layer.bias) == 0
    # normal, not uniform: about 4.6% of a normal's draws lie beyond 2 std (none of a uniform's with that std)
    w = model.fc2.weight.detach() * math.sqrt(400)
    assert (w.abs() > 2).float().mean().item() == pytest.approx(0.0455, abs=0.005)


# ------------------------------------------------------------------------------------------------ presets
def test_seed_preset_sigmoid_far_below_its_remedies(capsys, one_thread):
    status, out, err = run(capsys, "--preset", "seed", "--dataset", "mnist-5k", "--max-steps", "12",
                           "--probe-every", "2", "--json")
    assert status == 0, err
    rows = rows_of(out)
    assert list(rows) == ["sigmoid", "relu", "swish", "sigmoid+skip", "sigmoid+bn", "sigmoid+xavier", "relu+kaiming"]
    sig = rows["sigmoid"]["ratio"]
    assert sig < 1e-3 and rows["sigmoid"]["diagnosis"] == "VANISHING"
    for name in ("relu", "swish", "sigmoid+bn", "relu+kaiming"):
        assert rows[name]["ratio"] > 1000 * sig, name
        assert rows[name]["diagnosis"] != "VANISHING", name
    assert rows["sigmoid+skip"]["ratio"] > 100 * sig
    assert rows["sigmoid+xavier"]["ratio"] > 5 * sig  # better, still vanishing (the README's table: 1.6e-3)
    for r in rows.values():
        assert r["steps"] == 12 and len(r["saturated_pct"]) == len(r["dead_pct"]) == 5
        assert 0 <= r["test_acc"] <= 1 and r["steps_per_s"] > 0
    assert "(" in err and "[7/7]" in err  # one progress line per configuration on stderr


def test_he2015_xavier_deep_relu_gradient_ratio_far_below_kaiming(capsys, one_thread):
    status, out, err = run(capsys, "--preset", "he2015", "--width", "128", "--max-steps", "20", "--json")
    assert status == 0, err
    doc = json.loads(out)
    rows = {r["configuration"]: r for r in doc["rows"]}
    xavier, kaiming = rows["relu+xavier"], rows["relu+kaiming"]
    assert xavier["ratio"] < kaiming["ratio"] / 30
    assert len(xavier["layer_ratio"]) == 31  # 30 hidden layers and the output layer
    # under Xavier's init every layer below the top few gets about 1/100 of the output layer's gradient; under
    # Kaiming's every layer gets about as much as the output layer
    assert max(xavier["layer_ratio"][:25]) < 0.1 and xavier["layer_ratio"][-2] > 0.2
    assert min(kaiming["layer_ratio"]) > 0.5
    assert xavier["paper"] == "stalls, gradients diminish" and "ImageNet" in doc["paper_setup"]


def test_selu2017_selu_keeps_activation_std_near_one_where_relu_does_not(capsys, one_thread):
    status, out, err = run(capsys, "--preset", "selu2017", "--max-steps", "2", "--probe-every", "1", "--json")
    assert status == 0, err
    rows = rows_of(out)
    selu, relu = rows["selu+lecun"], rows["relu"]
    assert len(selu["act_std"]) == 50
    assert all(0.5 <= s <= 2 for s in selu["act_std"]), selu["act_std"]
    assert all(abs(m) < 0.3 for m in selu["act_mean"])
    assert sum(not 0.5 <= s <= 2 for s in relu["act_std"]) >= 45  # default init: the scale collapses


def test_bn2015_pre_activation_percentiles_steadier_with_batchnorm(capsys, one_thread):
    status, out, err = run(capsys, "--preset", "bn2015", "--max-steps", "300", "--json")
    assert status == 0, err
    rows = rows_of(out)
    plain, bn = rows["sigmoid"], rows["sigmoid+bn"]
    assert bn["pre_drift"] < plain["pre_drift"] / 3, (bn["pre_drift"], plain["pre_drift"])
    assert len(bn["pre_last"]) == 3 and all(p15 < p50 < p85 for p15, p50, p85 in bn["pre_last"])
    assert bn["test_acc"] > plain["test_acc"]


def test_glorot2010_prints_the_papers_errors_beside_ours_with_our_setup(capsys, one_thread):
    status, out, err = run(capsys, "--preset", "glorot2010", "--depth", "2", "--width", "32", "--max-steps", "4")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].endswith("paper test err %")
    body = {l.split()[0]: l for l in lines[2:7]}
    assert list(body) == ["softsign", "softsign+xavier", "tanh", "tanh+xavier", "sigmoid"]
    assert body["softsign"].rstrip().endswith("1.64") and body["sigmoid"].rstrip().endswith("2.21")
    assert " test err % " in lines[0]  # ours, beside theirs
    sigmoid_err = body["sigmoid"].split()[-2]
    assert 50 <= float(sigmoid_err) <= 100  # 4 steps: chance level, nothing like the paper's 2.21
    assert "ours: mnist-5k, at most 4 steps, batch 100, 784-32x2-10" in out
    assert "paper: full MNIST, minibatch 10" in out


# ------------------------------------------------------------------------------------------------ output forms
def test_json_csv_metrics_dir_and_seeds(capsys, one_thread, tmp_path):
    small = ["--depth", "2", "--width", "32", "--max-steps", "6", "--probe-every", "2"]
    status, out, _ = run(capsys, "sigmoid", "relu+kaiming", "tanh+xavier+lr0.05", *small, "--json",
                         "--metrics-dir", str(tmp_path))
    assert status == 0
    doc = json.loads(out)
    assert [r["configuration"] for r in doc["rows"]] == ["sigmoid", "relu+kaiming", "tanh+xavier+lr0.05"]
    assert doc["preset"] is None and doc["setup"].startswith("mnist-5k, at most 6 steps")
    for name in ("sigmoid", "relu+kaiming", "tanh+xavier+lr0.05"):
        runs = read_metrics(tmp_path / f"{name}.jsonl")
        assert len(runs) == 1 and runs[-1].header.config["max_steps"] == 6
        assert [s.step for s in runs[-1].snapshots] == [1, 2, 4, 6]
    assert read_metrics(tmp_path / "tanh+xavier+lr0.05.jsonl")[-1].header.config["lr"] == 0.05

    status, out, _ = run(capsys, "sigmoid", "relu", *small, "--csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and [r["configuration"] for r in table] == ["sigmoid", "relu"]
    assert float(table[1]["ratio"]) > 0 and len(table[0]["saturated_pct"].split()) == 2

    status, out, _ = run(capsys, "sigmoid", "relu", *small, "--seeds", "2")
    assert status == 0
    sig_line = next(l for l in out.splitlines() if l.startswith("sigmoid"))
    assert sig_line.count("..") >= 3  # the ratio, the accuracies and the speed with their ranges
    assert "seeds 0..1 (median, range)" in out
    status, out, _ = run(capsys, "relu", *small, "--seeds", "2", "--json")
    (row,) = json.loads(out)["rows"]
    assert row["seeds"] == [0, 1] and row["ratio_range"][0] < row["ratio_range"][1]


def test_same_seed_same_numbers_whatever_the_neighbours(capsys, one_thread):
    """Every configuration starts from its seed: a row does not depend on what ran before it."""
    small = ["--depth", "2", "--width", "32", "--max-steps", "6", "--probe-every", "2", "--json"]
    _, alone, _ = run(capsys, "relu+kaiming", *small)
    _, after, _ = run(capsys, "sigmoid+bn", "relu+kaiming", *small)
    a, b = rows_of(alone)["relu+kaiming"], rows_of(after)["relu+kaiming"]
    assert a["ratio"] == b["ratio"] and a["test_acc"] == b["test_acc"]


# ------------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("spec, says", [
    ("sigmod", "unknown word 'sigmod'; did you mean 'sigmoid'?"),
    ("relu+kaimng", "unknown word 'kaimng'; did you mean 'kaiming'?"),
    ("relu+deph30", "unknown word 'deph30'; did you mean 'depth30'?"),
    ("sigmoid+bacthnorm", "unknown word 'bacthnorm'; did you mean 'batchnorm'?"),
    ("relu+tanh", "two words for the activation ('relu' and 'tanh')"),
    ("relu+xavier+kaiming", "two words for the init"),
    ("relu++bn", "an empty word"),
    ("relu+depth2.5", "'depth2.5': depth takes a whole number, e.g. depth30"),
    ("relu+lr0.1.2", "'lr0.1.2': lr takes a number, e.g. lr0.1"),
    ("relu+lr-1", "lr: must be a positive number, got -1.0"),
    ("relu+depth0", "depth: must be a positive whole number, got 0"),
    ("sigmoid+bn+batch1", "batch-size: batch normalisation needs at least 2 examples per batch"),
])
def test_bad_spec_is_refused_with_the_grammar(spec, says):
    p = run_cli(["compare", spec], timeout=30)
    assert p.returncode == 2 and p.stdout == ""
    assert f"vgtui compare: error: '{spec}': {says}" in p.stderr
    assert "SPEC: words joined by \"+\"" in p.stderr and "depthN, widthN" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("argv, says", [
    (["--preset", "sed"], "unknown preset 'sed'; did you mean 'seed'?"),
    ([], "give at least one SPEC or --preset NAME"),
    (["relu", "relu"], "'relu' is given twice"),
    (["relu", "--seeds", "0"], "--seeds: must be a positive whole number"),
    (["relu", "--epochs", "0"], "--epochs: must be a positive whole number"),
])
def test_bad_options_are_refused(argv, says):
    p = run_cli(["compare", *argv], timeout=30)
    assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr


def test_help_shows_the_grammar_and_the_presets():
    p = run_cli(["compare", "--help"], timeout=30)
    assert p.returncode == 0
    for word in ("relu+kaiming+depth30", "bn (or batchnorm)", "lecun", "seed", "glorot2010", "he2015", "selu2017",
                 "bn2015", "--seeds N", "--metrics-dir DIR", "--json", "--csv"):
        assert word in p.stdout, word
    assert "compare" in run_cli(["--help"], timeout=30).stdout


# ------------------------------------------------------------------------------------------------ Ctrl+C
def test_ctrl_c_prints_the_table_of_what_finished():
    import os

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vgtui", "compare", "sigmoid+depth1+width8", "sigmoid",
                             "--epochs", "100", "--probe-every", "50", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        err = ""
        deadline = time.monotonic() + 90  # the first configuration: 4,000 steps of a 784-8-10 net
        while "[1/2]" not in err and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            err += line
        assert "[1/2] sigmoid+depth1+width8 (seed 0): completed" in err
        time.sleep(1.0)  # the second configuration is training now
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "interrupted by Ctrl+C (SIGINT); the table of what finished" in rest and "Traceback" not in rest
    assert [r["configuration"] for r in json.loads(out)["rows"]] == ["sigmoid+depth1+width8"]
