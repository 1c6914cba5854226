"""The offline start. `vgtui` with no --dataset runs on the embedded digits and never touches the network (nor
creates the data folder); `--dataset mnist` with MNIST missing and no network falls back to them with one line
that says why in words, never an exception's text (it used to show "<urlopen error [Errno -2] Name or service
not known>", cut at the terminal's width).

No test here may download: torchvision's mirrors are pointed at a `.invalid` host (RFC 2606: a name that never
resolves), so the real loading code meets a real resolver failure on any machine, networked or not."""

import json
import subprocess
import sys

import torchvision.datasets as tvd

from conftest import ROOT, run_cli
from vgtui.engine.data import load_dataset

NOWHERE = ["http://mnist.invalid/"]
EXCEPTION_WORDS = ("urlopen", "Errno", "Error", "Traceback", "Exception", "<", "Name or service")


def expected(data_dir, why="could not be downloaded (no network)"):
    return (f"MNIST {why}: using the embedded digits, mnist-5k (5,000 real MNIST digits); `vgtui data download "
            f"mnist --data-dir {data_dir}` fetches it")


def test_missing_mnist_without_network_is_one_line_in_words(tmp_path, monkeypatch, digits):
    monkeypatch.setattr(tvd.MNIST, "mirrors", NOWHERE)
    data = load_dataset("mnist", str(tmp_path))  # not --offline: it tries, and the name does not resolve
    assert data.name == "mnist-5k" and (data.x_train == digits.x_train).all()
    assert data.notice == expected(tmp_path)
    assert not any(w in data.notice for w in EXCEPTION_WORDS)
    assert len(data.notice.split(":")[0] + ": using the embedded digits") < 80  # why and what, in a cut line


def test_missing_mnist_with_offline_says_so(tmp_path):
    data = load_dataset("mnist", str(tmp_path), offline=True)
    assert data.notice == expected(tmp_path, "is missing and --offline forbids downloading it")


def test_the_command_line_prints_the_one_line_and_nothing_of_the_exception(tmp_path):
    """The real CLI in a real process, MNIST asked for and missing, no network: the one line, exit 0."""
    code = ("import sys, torchvision.datasets as t; t.MNIST.mirrors = %r; from vgtui.cli import main; "
            "sys.exit(main(sys.argv[1:]))" % NOWHERE)
    r = subprocess.run([sys.executable, "-c", code, "--headless", "--dataset", "mnist", "--data-dir", str(tmp_path),
                        "--depth", "2", "--width", "16", "--max-steps", "3"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert [line for line in r.stdout.splitlines() if line.startswith("notice:")] == [f"notice: {expected(tmp_path)}"]
    assert not any(w in r.stdout + r.stderr for w in ("urlopen", "Errno", "Traceback"))


def test_vgtui_without_dataset_starts_on_the_embedded_digits_without_the_network(tmp_path):
    data_dir = tmp_path / "data"
    r = run_cli(["--headless", "--depth", "2", "--width", "16", "--max-steps", "3", "--metrics",
                 str(tmp_path / "m.jsonl")], data_dir=str(data_dir))
    assert r.returncode == 0, r.stderr
    header = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert header["dataset"] == "mnist-5k" and header["config"]["dataset"] == "mnist-5k"
    assert "notice" not in header and "notice:" not in r.stdout and "loading" not in r.stderr
    assert not data_dir.exists()  # no download was tried: the data folder was never made
