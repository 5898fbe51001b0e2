"""Readers for the on-disk formats of the data sets, each validating what it reads.

IDX (MNIST family; LeCun's format: magic 0x00000803 images / 0x00000801 labels, big-endian
sizes), CIFAR python batches (pickles parsed with an allow-list that admits only NumPy array
reconstruction, so no arbitrary object is ever created), SVHN .mat (MATLAB v5, via SciPy).
Every problem raises `DataError` naming the file.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from ..core.errors import DataError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read ({exc}); delete it and fetch it again") from None


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """An IDX file as an array; checks the magic number, rank and payload length."""
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    if ndim != expected_ndim:
        raise DataError(f"{path}: IDX file of rank {ndim}, expected {expected_ndim} "
                        f"({'images' if expected_ndim == 3 else 'labels'})")
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    payload = data[4 + 4 * ndim:]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(payload) != expected:
        raise DataError(f"{path}: IDX payload has {len(payload)} bytes, the header promises "
                        f"{expected} (truncated or corrupt file)")
    return np.frombuffer(payload, dtype=dtype).reshape(shape)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Admits NumPy's array reconstruction and nothing else."""
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"),
                ("_codecs", "encode")}  # how protocol-2 pickles written by Python 3 spell bytes

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch → (N, 3, 32, 32) uint8 images and int64 labels."""
    try:
        with open(path, "rb") as f:
            batch = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except Exception as exc:
        raise DataError(f"{path}: not a CIFAR batch ({exc})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR batch (no dictionary inside)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path}: CIFAR batch lacks 'data' or '{label_key}'")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: CIFAR data must be uint8 rows of 3072 values, got {data.dtype} {data.shape}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar_names(path: Path, key: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            meta = _ArrayOnlyUnpickler(f, encoding="bytes").load()
        names = meta.get(key.encode()) or meta.get(key)
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except Exception as exc:
        raise DataError(f"{path}: cannot read class names ({exc})") from None


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN cropped digits: X (32, 32, 3, N), y in 1..10 with 10 meaning the digit 0."""
    from scipy.io import loadmat
    try:
        mat = loadmat(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except Exception as exc:
        raise DataError(f"{path}: not a MATLAB file ({exc})") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path}: SVHN file lacks the X or y array")
    x, y = mat["X"], mat["y"].reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataError(f"{path}: SVHN X must be uint8 of shape (32, 32, 3, N), got {x.dtype} {x.shape}")
    if x.shape[3] != len(y):
        raise DataError(f"{path}: {x.shape[3]} images but {len(y)} labels")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{path}: SVHN labels must lie in 1..10")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y % 10
