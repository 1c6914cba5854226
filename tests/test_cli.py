"""The command line as users run it: `python -m vgtui --headless ...` in a subprocess."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_cli

FAST = ["--headless", "--dataset", "mnist-5k", "--depth", "2", "--width", "32"]


@pytest.mark.parametrize("args, option, hint", [
    (["--activation", "sigmoidd"], "--activation", "tanh"),
    (["--init", "he"], "--init", "kaiming"),
    (["--depth", "0"], "--depth", "positive"),
    (["--width", "-5"], "--width", "positive"),
    (["--batch-size", "0"], "--batch-size", "positive"),
    (["--lr", "0"], "--lr", "positive"),
    (["--lr", "-0.1"], "--lr", "positive"),
    (["--momentum", "1.0"], "--momentum", "[0, 1)"),
    (["--momentum", "-0.5"], "--momentum", "[0, 1)"),
    (["--epochs", "0"], "--epochs", "positive"),
    (["--dataset", "cifar"], "--dataset", "mnist-5k"),
    (["--optimizer", "rmsprop"], "--optimizer", "adam"),
    (["--depth", "three"], "--depth", "invalid int"),
])
def test_bad_arguments_are_refused_with_the_option_named(args, option, hint, tmp_path):
    metrics = tmp_path / "m.jsonl"
    r = run_cli([*FAST, "--metrics", str(metrics), *args], timeout=60)
    assert r.returncode == 2, r.stderr
    assert option in r.stderr and hint in r.stderr
    assert not metrics.exists()  # refused before anything was written
    assert r.stdout == ""


@pytest.mark.parametrize("path, why", [
    ("{tmp}/no/such/folder/m.jsonl", "does not exist"),
    ("{tmp}", "is a directory"),
    ("/proc/vgtui-m.jsonl", "cannot write"),
])
def test_unwritable_metrics_path_is_refused(path, why, tmp_path):
    r = run_cli([*FAST, "--metrics", path.format(tmp=tmp_path)], timeout=60)
    assert r.returncode == 2 and "--metrics" in r.stderr and why in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_dataset_offline_is_refused(tmp_path):
    r = run_cli(["--headless", "--dataset", "fashion-mnist", "--offline", "--data-dir", str(tmp_path),
                 "--metrics", str(tmp_path / "m.jsonl")], timeout=60)
    assert r.returncode == 2
    assert "FashionMNIST is not in" in r.stderr and "--offline" in r.stderr and "--data-dir" in r.stderr
    assert not (tmp_path / "m.jsonl").exists()


def test_missing_mnist_offline_falls_back_to_the_embedded_digits(tmp_path):
    r = run_cli(["--headless", "--dataset", "mnist", "--offline", "--data-dir", str(tmp_path), "--depth", "2",
                 "--width", "16", "--max-steps", "3", "--metrics", str(tmp_path / "m.jsonl")], timeout=60)
    assert r.returncode == 0, r.stderr
    notices = [l for l in r.stdout.splitlines() if l.startswith("notice:")]
    assert len(notices) == 1 and "mnist-5k" in notices[0] and "--data-dir" in notices[0]
    header = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert header["dataset"] == "mnist-5k" and header["config"]["dataset"] == "mnist"


def test_headless_run_prints_progress_summary_and_diagnosis(tmp_path):
    metrics = tmp_path / "m.jsonl"
    r = run_cli(["--headless", "--dataset", "mnist-5k", "--epochs", "2", "--metrics", str(metrics)], timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.count("epoch ") >= 2 and "test acc" in out
    assert out.count("grad norm  fc1") == 2 and "fc6" in out
    assert "fc1/fc6 gradient-norm ratio" in out and "VANISHING" in out
    lines = [json.loads(l) for l in metrics.read_text().splitlines()]
    assert lines[0]["type"] == "run" and [l["name"] for l in lines[0]["layers"]] == [f"fc{i}" for i in range(1, 7)]
    assert lines[0]["layers"][0] == {"name": "fc1", "kind": "Linear", "activation": "sigmoid"}
    assert lines[0]["layers"][-1] == {"name": "fc6", "kind": "Linear"} and lines[0]["source"] == "vgtui"
    assert set(lines[0]["config"]) >= {"activation", "init", "batchnorm", "skip", "lr", "momentum", "seed", "depth"}
    assert lines[-1]["type"] == "end" and lines[-1]["status"] == "completed" and lines[-1]["steps"] == 80
    snap = next(l for l in lines if l["type"] == "snapshot")
    fc1 = snap["layers"][0]
    assert {"grad_norm", "grad_mean_abs", "act_mean", "act_std", "saturated_frac", "dead_frac", "act_hist"} <= set(fc1)
    assert "act_hist" not in snap["layers"][-1]
    assert [l["type"] for l in lines].count("epoch") == 2


def test_divergence_exits_3_and_names_the_layer(tmp_path):
    metrics = tmp_path / "m.jsonl"
    r = run_cli(["--headless", "--dataset", "mnist-5k", "--activation", "relu", "--init", "kaiming", "--lr", "1.0",
                 "--metrics", str(metrics)], timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr
    lines = [json.loads(l) for l in metrics.read_text().splitlines()]
    end = lines[-1]
    assert end["type"] == "end" and end["status"] == "diverged" and end["layer"].startswith("fc")
    # the loss passes 1e4 at step 2 and goes non-finite a few steps later: the first check to see either ends it
    assert end["message"].startswith("exploded: ") or "non-finite values at step" in end["message"]
    assert end["message"] in r.stdout and end["layer"] in r.stdout


def test_ctrl_c_exits_130_within_2s_with_the_end_record(tmp_path):
    metrics = tmp_path / "m.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "vgtui", "--headless", "--dataset", "mnist-5k", "--metrics",
                          str(metrics)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if metrics.exists() and '"snapshot"' in metrics.read_text():
                break
            time.sleep(0.05)
        else:
            pytest.fail("no snapshot within 60 s")
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=10)
        took = time.monotonic() - t0
    finally:
        p.kill()
    out = p.stdout.read()
    assert rc == 130 and took < 2.0, (rc, took)
    lines = [json.loads(l) for l in metrics.read_text().splitlines()]  # every line parses
    assert lines[-1]["type"] == "end" and lines[-1]["status"] == "interrupted"
    assert "interrupted" in out


def test_help_explains_and_imports_no_torch():
    code = ("import sys, contextlib, io\nfrom vgtui.cli import main\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n    try: main(['--help'])\n    except SystemExit: pass\n"
            "print('torch' in sys.modules, 'textual' in sys.modules)\nprint(buf.getvalue())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    first, _, text = r.stdout.partition("\n")
    assert first == "False False"
    for word in ("--headless", "--activation", "swish", "--init", "kaiming", "--batchnorm", "--skip", "--metrics",
                 "exit status", "mnist-5k", "--probe-every"):
        assert word in text


def test_without_a_terminal_the_ui_falls_back_to_headless():
    r = run_cli(["--dataset", "mnist-5k", "--depth", "2", "--width", "16", "--max-steps", "3"], timeout=60,
                stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "no terminal here, running --headless" in r.stderr
    assert "done: 3 steps" in r.stdout


def test_python_dash_m_and_console_script_agree():
    r = run_cli(["--version"], timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("vgtui ")


def test_version_names_torch_cuda_and_the_device():
    import torch

    from vgtui import __version__

    r = run_cli(["--version"], timeout=60)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0].startswith(f"vgtui {__version__} (python ")
    cuda = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    assert lines[1] == f"torch {torch.__version__} ({cuda})"
    expect = "cuda (" + torch.cuda.get_device_name(0) + ")" if torch.cuda.is_available() else "cpu"
    assert lines[2] == f"device: {expect} (what --device auto picks here)"
