"""`--download`: fetch a data set from its public address into the data root.

Each file is written to a temporary name and renamed when complete, and checked against its
published MD5 when one is known, so an interrupted download never looks like a data set.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from pathlib import Path

from ..errors import DataError, UsageError

_IDX_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]

# name → (base address, [(file, md5 or None)], archive to unpack or None)
SOURCES: dict[str, tuple[str, list[tuple[str, str | None]], str | None]] = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              [("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
               ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
               ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
               ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")], None),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      [(f, None) for f in _IDX_FILES], None),
    "kmnist": ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/", [(f, None) for f in _IDX_FILES], None),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",
                [("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")], "cifar-10-python.tar.gz"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/",
                 [("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85")], "cifar-100-python.tar.gz"),
    "svhn": ("http://ufldl.stanford.edu/housenumbers/",
             [("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
              ("test_32x32.mat", "eb5a983be6a315427106f1b69d6b8ac4")], None),
}


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, target: Path, md5: str | None = None) -> Path:
    """Download `url` to `target` atomically, verifying the MD5 when given."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UsageError(f"cannot download {url}: {exc}; fetch it by hand into {target.parent}") from None
    if md5 is not None and _md5(partial) != md5:
        partial.unlink(missing_ok=True)
        raise DataError(f"{target}: checksum mismatch after download from {url}; try again")
    os.replace(partial, target)
    return target


def download(name: str, folder: Path, base_url: str | None = None) -> None:
    base, files, archive = SOURCES[name]
    base = base_url or os.environ.get(f"VISIONZOO_MIRROR_{name.upper().replace('-', '_')}") or base
    for file, md5 in files:
        target = folder / file
        if not target.exists():
            fetch(base + file, target, md5)
    if archive:
        with tarfile.open(folder / archive) as tar:
            tar.extractall(folder, filter="data")
