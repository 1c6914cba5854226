"""Datasets, held whole as tensors on the training device and batched by index (no DataLoader, no PIL).

- mnist-5k: 5,000 real MNIST digits shipped in the package (vgtui/data/mnist_5k.npz, 4,000 train / 1,000 test).
- mnist, fashion-mnist: the full sets through torchvision, from --data-dir, downloaded when the network allows.
  A missing MNIST falls back to mnist-5k with a one-line notice that says why in words (no network, --offline, a
  timeout, an HTTP status), never an exception's text; a missing Fashion-MNIST is an error.
mnist-5k is the default (RunConfig.dataset): `vgtui` opens at once and the same everywhere, without the network.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import socket
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from vgtui.core.config import default_data_dir

DOWNLOAD_TIMEOUT_S = 10.0


class DataError(RuntimeError):
    """A dataset that cannot be had: the message says how to get it; `why`, in a few words, why it is missing
    ("--offline", "no network", ...); `offline`: missing because --offline forbade the download (a field: the
    notice is chosen by it, never by reading `why`)."""

    def __init__(self, message: str, why: str = "", offline: bool = False):
        super().__init__(message)
        self.why = why
        self.offline = offline


class CorruptData(DataError):
    """A dataset file that is there but broken (truncated, say): an error, never a silent fallback."""


# vgtui's dataset names -> torchvision's classes (their folder under --data-dir is the class name).
TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


@dataclass
class TensorData:
    name: str  # the dataset actually used (may differ from the one asked for after a fallback)
    x_train: torch.Tensor  # (N, 784) float32, normalised, on the device
    y_train: torch.Tensor  # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor
    notice: str | None = None  # one line for the user, e.g. the fallback

    @property
    def in_features(self) -> int:
        return self.x_train.shape[1]

    def to(self, device: torch.device | str) -> "TensorData":
        return TensorData(self.name, self.x_train.to(device), self.y_train.to(device), self.x_test.to(device),
                          self.y_test.to(device), self.notice)


def normalise(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float32 (N, 784) in [-1, 1], as in the seed: (x/255 - 0.5)/0.5."""
    x = torch.as_tensor(images).reshape(len(images), -1).float()
    return (x / 255.0 - 0.5) / 0.5


def _from_uint8(name: str, xtr, ytr, xte, yte, device, notice=None) -> TensorData:
    return TensorData(name, normalise(xtr).to(device), torch.as_tensor(ytr).long().to(device),
                      normalise(xte).to(device), torch.as_tensor(yte).long().to(device), notice)


def load_mnist5k_arrays() -> dict[str, np.ndarray]:
    with resources.files("vgtui.data").joinpath("mnist_5k.npz").open("rb") as f:
        with np.load(f) as z:
            return {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}


def load_mnist5k(device: torch.device | str = "cpu", notice: str | None = None) -> TensorData:
    a = load_mnist5k_arrays()
    return _from_uint8("mnist-5k", a["x_train"], a["y_train"], a["x_test"], a["y_test"], device, notice)


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _torchvision(cls_name: str, data_dir: str, offline: bool):
    """(train, test) torchvision datasets from data_dir; downloads unless offline. Raises DataError."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    root = Path(data_dir).expanduser()
    check_raw_files(cls_name, data_dir)
    try:
        return cls(str(root), train=True, download=False), cls(str(root), train=False, download=False)
    except RuntimeError as missing:
        if offline:
            raise DataError(f"{cls_name} is not in {root} and --offline forbids downloading it",
                            "--offline: no download", offline=True) from missing
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _socket_timeout(DOWNLOAD_TIMEOUT_S), open(os.devnull, "w") as devnull, \
                contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
            return cls(str(root), train=True, download=True), cls(str(root), train=False, download=True)
    except Exception as e:  # network errors come in many types (URLError, timeout, RuntimeError, OSError)
        why = download_failure(e)
        raise DataError(f"{cls_name} is not in {root} and could not be downloaded ({why})", why) from e


def download_failure(e: BaseException) -> str:
    """Why a download failed, in a few words for a person, never the exception's own text. torchvision catches
    each mirror's URLError and raises a RuntimeError whose text lists them, so the cause is read from the chain
    of exceptions and from that text."""
    seen: list[BaseException] = []
    while e is not None and e not in seen and len(seen) < 8:
        seen.append(e)
        reason = getattr(e, "reason", None)  # URLError's own cause (a socket error)
        e = reason if isinstance(reason, BaseException) else (e.__cause__ or e.__context__)
    text = " ".join(str(x) for x in seen).lower()
    if any(isinstance(x, socket.gaierror) for x in seen) or any(w in text for w in (
            "name or service not known", "temporary failure in name resolution", "nodename nor servname",
            "network is unreachable", "no route to host", "connection refused", "getaddrinfo failed")):
        return "no network"
    if any(isinstance(x, (TimeoutError, socket.timeout)) for x in seen) or "timed out" in text:
        return f"no answer within {DOWNLOAD_TIMEOUT_S:g} s"
    for x in seen:
        if isinstance(getattr(x, "code", None), int):
            return f"the server answered HTTP {x.code}"
    m = re.search(r"http error (\d{3})", text)
    if m:
        return f"the server answered HTTP {m.group(1)}"
    if any(isinstance(x, OSError) and x.errno == errno.ENOSPC for x in seen):
        return "the disk is full"
    return "the download failed"


def check_idx(path: Path) -> None:
    """Raise ValueError saying what is wrong unless `path` is a whole uint8 IDX file (MNIST's format): the magic
    number, then one 4-byte size per dimension, then exactly that many bytes."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:3] != b"\0\0\x08" or not 1 <= head[3] <= 4:
            raise ValueError("not an IDX file of bytes (bad header)")
        dims = f.read(4 * head[3])
    if len(dims) < 4 * head[3]:
        raise ValueError(f"truncated in its header ({size} bytes)")
    expected = 4 + len(dims) + math.prod(int.from_bytes(dims[i:i + 4], "big") for i in range(0, len(dims), 4))
    if size != expected:
        raise ValueError(f"{'truncated' if size < expected else 'too long'}: {size:,} bytes where its header "
                         f"says {expected:,}")


def check_raw_files(cls_name: str, data_dir: str) -> None:
    """Raise CorruptData naming the first broken IDX file of a torchvision dataset in data_dir, and the fix."""
    import torchvision.datasets as tvd

    raw = Path(data_dir).expanduser() / cls_name / "raw"
    name = next(k for k, v in TORCHVISION_CLASSES.items() if v == cls_name)
    for gz, _ in getattr(tvd, cls_name).resources:
        path = raw / gz.removesuffix(".gz")
        if path.is_file():
            try:
                check_idx(path)
            except ValueError as e:
                raise CorruptData(f"{path} is damaged ({e}); delete it and run `vgtui data download {name} "
                                  f"--data-dir {data_dir}`") from e


def load_dataset(name: str, data_dir: str, offline: bool = False, device: torch.device | str = "cpu") -> TensorData:
    if name == "mnist-5k":
        return load_mnist5k(device)
    if name == "mnist":
        try:
            train, test = _torchvision("MNIST", data_dir, offline)
        except CorruptData:
            raise
        except DataError as e:
            return load_mnist5k(device, notice=fallback_notice(data_dir, e.why, e.offline))
        return _from_uint8("mnist", train.data, train.targets, test.data, test.targets, device)
    if name == "fashion-mnist":
        try:
            train, test = _torchvision("FashionMNIST", data_dir, offline)
        except CorruptData:
            raise
        except DataError as e:
            raise DataError(f"{e}. Get Fashion-MNIST by running once with network access, or copy its files "
                            f"into {Path(data_dir).expanduser() / 'FashionMNIST' / 'raw'} and pass --data-dir "
                            f"{data_dir}.") from e
        return _from_uint8("fashion-mnist", train.data, train.targets, test.data, test.targets, device)
    raise DataError(f"unknown dataset {name!r}")


def fallback_notice(data_dir: str, why: str, offline: bool = False) -> str:
    """The one line a run that asked for MNIST and runs on the embedded digits shows: why, in words (`why`, from
    DataError.why), first, so that a status line cut at 80 columns still says it; then how to get MNIST. Never an
    exception's text."""
    missing = ("is missing and --offline forbids downloading it" if offline else
               f"could not be downloaded ({why or 'the download failed'})")
    if Path(data_dir).expanduser() == Path(default_data_dir()).expanduser():
        home = str(Path.home())
        shown = "~" + data_dir[len(home):] if data_dir.startswith(home + os.sep) else data_dir
        how = f"`vgtui data download mnist` fetches it into {shown}"
    else:
        how = f"`vgtui data download mnist --data-dir {data_dir}` fetches it"
    return f"MNIST {missing}: using the embedded digits, mnist-5k (5,000 real MNIST digits); {how}"


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (MNIST's format): used by tests and to export the embedded digits."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.tobytes())


def device_name(device: torch.device) -> str | None:
    """The accelerator's own name ("NVIDIA H200"), or None on the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return None


def gpu_present() -> bool:
    """Is there an NVIDIA GPU with its kernel driver on this machine, whether or not this torch can use it?"""
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or any(Path("/dev").glob("nvidia[0-9]*"))


def fallback_reason(torch_warnings: list[str], cuda_build: str | None, gpu_here: bool) -> str | None:
    """Why `--device auto` runs on the CPU of a machine that has a GPU: from the warnings torch gave while checking
    for CUDA (e.g. "CUDA initialization: The NVIDIA driver on your system is too old (found version 11040)..."),
    the CUDA version this torch was built for (None: a CPU-only build) and whether a GPU is here. None when
    there is no GPU to miss."""
    said = [w.strip() for w in torch_warnings if "CUDA" in w or "driver" in w]
    if said:
        first = said[0].splitlines()[0].removeprefix("CUDA initialization:").strip()
        if gpu_here or "too old" in first:
            return first[:200]
    if gpu_here and cuda_build is None:
        return "this torch is a CPU-only build (install a CUDA build: https://pytorch.org/get-started/locally/)"
    if gpu_here:
        return "torch.cuda.is_available() is False"
    return None


def _cuda_available() -> tuple[bool, list[str]]:
    """torch.cuda.is_available(), with the warnings torch gives on the way (it gives them once per process)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    return available, [str(w.message) for w in caught]


def resolve_device(device: str) -> tuple[torch.device, str | None]:
    """The device to train on, and a one-line notice when `auto` falls back to the CPU on a machine with a GPU it
    cannot use (a driver too old for this CUDA build, a CPU-only torch), with the reason. 'auto' picks cuda, then
    mps, then cpu. An unavailable explicit choice is a ValueError."""
    if device == "auto":
        available, said = _cuda_available()
        if available:
            return torch.device("cuda"), None
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps"), None
        reason = fallback_reason(said, torch.version.cuda, gpu_present())
        return torch.device("cpu"), (f"--device auto: running on the CPU; this machine has a GPU that torch cannot "
                                     f"use: {reason}" if reason else None)
    if device == "cuda":
        available, said = _cuda_available()
        if not available:
            reason = fallback_reason(said, torch.version.cuda, gpu_present())
            raise ValueError("--device cuda: no CUDA device is available here"
                             f"{' (' + reason + ')' if reason else ''}; use --device cpu or auto")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps: no MPS device is available here; use --device cpu or auto")
    return torch.device(device), None
