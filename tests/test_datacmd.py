"""`vgtui data download` (against a local server and a closed port) and damaged IDX files."""

import gzip
import hashlib
import http.server
import io
import socket
import threading
import time

import pytest
import torchvision.datasets as tvd

from conftest import run_cli
from vgtui.commands import data as datacmd
from vgtui.engine.data import CorruptData, load_dataset, load_mnist5k_arrays, write_idx

FILES = {"train-images-idx3-ubyte": "x_train", "train-labels-idx1-ubyte": "y_train",
         "t10k-images-idx3-ubyte": "x_test", "t10k-labels-idx1-ubyte": "y_test"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


def test_offline_says_so_within_seconds(tmp_path, capsys):
    start = time.monotonic()
    rc = datacmd.main(["download", "mnist", "--data-dir", str(tmp_path), "--mirror",
                       f"http://127.0.0.1:{closed_port()}/"])
    took = time.monotonic() - start
    err = capsys.readouterr().err
    assert rc == 2 and took < 5
    assert err.count("\n") == 1 and err.startswith("vgtui: error: cannot download mnist: no mirror answered")
    assert "Connection refused" in err and "offline" in err


def test_offline_through_the_cli(tmp_path):
    r = run_cli(["data", "download", "fashion-mnist", "--data-dir", str(tmp_path), "--mirror",
                 f"http://127.0.0.1:{closed_port()}/"], timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("vgtui: error: cannot download fashion-mnist")
    assert "Traceback" not in r.stderr


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local HTTP server with the embedded digits as MNIST's four .gz files; torchvision's MD5s patched to
    theirs (the real files are not here)."""
    served = tmp_path / "served"
    served.mkdir()
    arrays = load_mnist5k_arrays()
    resources = []
    for name, key in FILES.items():
        buf = tmp_path / name
        write_idx(buf, arrays[key])
        gz = served / f"{name}.gz"
        gz.write_bytes(gzip.compress(buf.read_bytes()))
        resources.append((gz.name, hashlib.md5(gz.read_bytes()).hexdigest()))
    monkeypatch.setattr(tvd.MNIST, "resources", resources)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_into_torchvisions_layout(tmp_path, mirror, capsys, digits):
    data_dir = tmp_path / "data"
    assert datacmd.main(["download", "mnist", "--data-dir", str(data_dir), "--mirror", mirror]) == 0
    raw = data_dir / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted([*FILES, *(f + ".gz" for f in FILES)])
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and "100%" in err  # the progress bar's last state
    data = load_dataset("mnist", str(data_dir), offline=True)
    assert data.name == "mnist" and len(data.x_train) == 4000 and (data.x_train == digits.x_train).all()
    # a second time: nothing to fetch
    assert datacmd.main(["download", "mnist", "--data-dir", str(data_dir), "--mirror", mirror]) == 0
    assert capsys.readouterr().err.count("already there") == 4


def test_progress_bar_on_a_terminal():
    out = io.StringIO()
    out.isatty = lambda: True
    bar = datacmd.Bar("MNIST x.gz", out)
    bar.update(5_000_000, 10_000_000)
    bar.update(10_000_000, 10_000_000, final=True)
    assert out.getvalue() == ("\r\033[KMNIST x.gz ████████████░░░░░░░░░░░░  50%  5.0/10.0 MB"
                              "\r\033[KMNIST x.gz ████████████████████████ 100%  10.0/10.0 MB\n")


def _write_mnist(root):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = load_mnist5k_arrays()
    for name, key in FILES.items():
        write_idx(raw / name, arrays[key])
    return raw


def test_truncated_idx_file_is_a_one_line_error_exit_2_and_no_metrics(tmp_path):
    raw = _write_mnist(tmp_path)
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:100_000])  # a download cut short
    metrics = tmp_path / "m.jsonl"
    r = run_cli(["--headless", "--dataset", "mnist", "--data-dir", str(tmp_path), "--offline", "--metrics",
                 str(metrics)], timeout=60)
    assert r.returncode == 2 and not metrics.exists()
    (line,) = [l for l in r.stderr.splitlines() if l.startswith("vgtui:")]
    assert line == (f"vgtui: error: {images} is damaged (truncated: 100,000 bytes where its header says "
                    f"3,136,016); delete it and run `vgtui data download mnist --data-dir {tmp_path}`")
    assert "Traceback" not in r.stderr


def test_idx_file_with_a_bad_header(tmp_path):
    raw = _write_mnist(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(CorruptData, match=r"t10k-labels-idx1-ubyte is damaged \(not an IDX file of bytes"):
        load_dataset("mnist", str(tmp_path), offline=True)
