"""`vgtui data download [mnist|fashion-mnist|all] [--data-dir DIR]`: fetch the datasets ahead of time.

For a box with network now and none later (or a run that should not wait on a download). Files go into
torchvision's layout (DIR/MNIST/raw/, DIR/FashionMNIST/raw/: the .gz files and their unpacked IDX files), each
checked against torchvision's MD5 and IDX structure. Offline, it says so within seconds instead of hanging.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TextIO

from vgtui.core.config import default_data_dir
from vgtui.core.outfile import write_replacing

CONNECT_TIMEOUT_S = 4.0  # per mirror: offline is reported within seconds
CHUNK = 1 << 16


class Offline(Exception):
    """No mirror could be reached: the message lists what each said."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vgtui data", description="Fetch datasets ahead of time into --data-dir (torchvision's layout), so that "
        "later runs need no network. mnist-5k is built in and needs no download.")
    sub = p.add_subparsers(dest="action", metavar="download", required=True)
    d = sub.add_parser("download", help="download datasets", description="Download datasets into --data-dir.")
    d.add_argument("dataset", nargs="?", default="all", choices=("mnist", "fashion-mnist", "all"),
                   help="which one (default: all)")
    d.add_argument("--data-dir", default=None, metavar="DIR",
                   help=f"where to put them (default: $VGTUI_DATA, else ~/.cache/vgtui; now {default_data_dir()})")
    d.add_argument("--mirror", default=None, metavar="URL",
                   help="fetch the files from URL/<file name> instead of torchvision's mirrors (a local copy)")
    return p


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class Bar:
    """One progress line per file on stderr: redrawn in place on a terminal, printed once when done elsewhere."""

    def __init__(self, label: str, out: TextIO):
        self.label, self.out, self.tty = label, out, out.isatty()
        self._drawn = 0.0

    def update(self, done: int, total: int | None, final: bool = False) -> None:
        now = time.monotonic()
        if not final and (not self.tty or now - self._drawn < 0.1):
            return
        self._drawn = now
        mb = f"{done / 1e6:.1f}" + (f"/{total / 1e6:.1f} MB" if total else " MB")
        if total:
            n = int(24 * min(done / total, 1.0))
            line = f"{self.label} {'█' * n}{'░' * (24 - n)} {100 * done // total:3d}%  {mb}"
        else:
            line = f"{self.label} {mb}"
        self.out.write(("\r\033[K" if self.tty else "") + line + ("\n" if final else ""))
        self.out.flush()


def _fetch(url: str, dest: Path, label: str, out: TextIO) -> None:
    """Download url to dest (through dest.part). Raises Offline when the server cannot be reached at all."""
    try:
        resp = urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise Offline(f"{url}: {reason}") from e
    bar = Bar(label, out)
    total = int(resp.headers.get("Content-Length") or 0) or None

    def copy(f) -> int:
        done = 0
        for block in iter(lambda: resp.read(CHUNK), b""):
            f.write(block)
            done += len(block)
            bar.update(done, total)
        return done

    with resp:  # through an exclusive temporary file, renamed over a regular file only (vgtui.core.outfile)
        done = write_replacing(dest, copy)
    bar.update(done, total, final=True)


def download(name: str, data_dir: str, mirror: str | None = None, out: TextIO | None = None) -> Path:
    """Fetch one dataset ("mnist" or "fashion-mnist") into data_dir, the progress on `out` (stderr); returns its raw
    folder. Raises Offline, or ValueError for a file that arrived damaged."""
    import torchvision.datasets as tvd

    from vgtui.engine.data import TORCHVISION_CLASSES, check_idx

    out = out or sys.stderr
    cls = getattr(tvd, TORCHVISION_CLASSES[name])
    raw = Path(data_dir).expanduser() / cls.__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    mirrors = [mirror.rstrip("/") + "/"] if mirror else list(cls.mirrors)
    for filename, md5 in cls.resources:
        gz, idx = raw / filename, raw / filename.removesuffix(".gz")
        if gz.is_file() and _md5(gz) == md5 and idx.is_file():
            out.write(f"{cls.__name__} {filename}: already there\n")
            continue
        errors = []
        for m in mirrors:
            try:
                _fetch(m + filename, gz, f"{cls.__name__} {filename}", out)
                break
            except Offline as e:
                errors.append(str(e))
        else:
            raise Offline("; ".join(errors))
        if _md5(gz) != md5:
            gz.unlink()
            raise ValueError(f"{filename} arrived damaged (MD5 mismatch); run the command again")
        with gzip.open(gz, "rb") as src:
            write_replacing(idx, lambda dst: shutil.copyfileobj(src, dst))
        check_idx(idx)
    return raw


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    names = ["mnist", "fashion-mnist"] if args.dataset == "all" else [args.dataset]
    for name in names:
        try:
            raw = download(name, data_dir, args.mirror)
        except Offline as e:
            print(f"vgtui: error: cannot download {name}: no mirror answered ({e}). Is this machine offline? "
                  f"Run this where there is network and copy {Path(data_dir).expanduser()} here, or use "
                  f"--dataset mnist-5k (built in).", file=sys.stderr)
            return 2
        except (ValueError, OSError) as e:
            print(f"vgtui: error: cannot download {name}: {e}", file=sys.stderr)
            return 2
        print(f"{name}: ready in {raw}")
    return 0
