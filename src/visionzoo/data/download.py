"""`--download`: fetch a data set from its public address into the data root.

Nothing half-written ever carries a final name, so an interrupted `--download` never looks like
a data set that is already there:

* each file is downloaded into a unique temporary `.<name>.*` file beside its target, checked
  against its published MD5 (every entry in `SOURCES` has one), and only then renamed into place;
* an archive (CIFAR) is unpacked into a temporary `.extract-*` folder beside its destination, and
  each top-level entry (e.g. `cifar-10-batches-py/`) is renamed into place only once the whole
  archive has been unpacked.

On any failure, Ctrl-C included, the temporary file or folder is removed again.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from ..core.errors import DataError, UsageError
from ..core.io import file_digest, write_atomic

# name → (base address, [(file, md5)], archive to unpack or None)
SOURCES: dict[str, tuple[str, list[tuple[str, str | None]], str | None]] = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              [("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
               ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
               ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
               ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")], None),
    # MD5s as published in the Fashion-MNIST README (zalandoresearch/fashion-mnist).
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      [("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                       ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
                       ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
                       ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")], None),
    "kmnist": ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
               [("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
                ("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
                ("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
                ("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134")], None),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",
                [("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")], "cifar-10-python.tar.gz"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/",
                 [("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85")], "cifar-100-python.tar.gz"),
    "svhn": ("http://ufldl.stanford.edu/housenumbers/",
             [("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
              ("test_32x32.mat", "eb5a983be6a315427106f1b69d6b8ac4")], None),
}


def fetch(url: str, target: Path, md5: str | None = None) -> Path:
    """Download `url` to `target` atomically, verifying the MD5 when given: the bytes go to a
    temporary file beside `target`, renamed only after the download finished and the checksum
    matched; on any failure (Ctrl-C included) it is removed and `target` is left untouched."""
    def write(partial: str) -> None:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
        except OSError as exc:
            raise UsageError(f"cannot download {url}: {exc}; fetch it by hand into {target.parent}") from None
        if md5 is not None and file_digest(partial, "md5") != md5:
            raise DataError(f"{target}: checksum mismatch after download from {url}; try again")
    write_atomic(target, write)
    return target


def _checked_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Fallback for Pythons without extraction filters: only plain files and folders, inside the root."""
    members = tar.getmembers()
    for m in members:
        parts = PurePosixPath(m.name).parts
        if not (m.isfile() or m.isdir()) or m.name.startswith(("/", "\\")) or ".." in parts:
            raise DataError(f"{archive}: refusing to unpack suspicious member {m.name!r}")
    return members


def extract(archive: Path, folder: Path) -> list[Path]:
    """Unpack the tar `archive` into `folder` atomically; return the top-level entries put in place.

    Everything is unpacked into a temporary folder inside `folder` first; each top-level entry is
    renamed into `folder` only once the whole archive has been read, so an interrupted or failed
    unpacking never leaves a final-looking folder behind (nor the temporary one).
    """
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".extract-"))
    try:
        try:
            with tarfile.open(archive) as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(staging, filter="data")
                else:
                    tar.extractall(staging, members=_checked_members(tar, archive))
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DataError(f"{archive}: cannot unpack ({exc}); delete it and download again") from None
        placed = []
        for entry in sorted(staging.iterdir()):
            final = folder / entry.name
            try:
                os.replace(entry, final)    # fails rather than merge into an existing non-empty folder
            except OSError as exc:
                raise DataError(f"{final}: cannot put the unpacked {archive.name} in place ({exc}); "
                                f"move it away and try again") from None
            placed.append(final)
        return placed
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(name: str, folder: Path, base_url: str | None = None) -> None:
    base, files, archive = SOURCES[name]
    base = base_url or os.environ.get(f"VISIONZOO_MIRROR_{name.upper().replace('-', '_')}") or base
    for file, md5 in files:
        target = folder / file
        if not target.exists():
            fetch(base + file, target, md5)
    if archive:
        extract(folder / archive, folder)
