"""Readers for the on-disk formats of the data sets, each validating what it reads.

IDX (MNIST family; LeCun's format: magic 0x00000803 images / 0x00000801 labels, big-endian
sizes), CIFAR python batches (pickles parsed with an allow-list that admits only NumPy array
reconstruction, so no arbitrary object is ever created), SVHN .mat (MATLAB v5, via SciPy).
Every problem raises `DataError` naming the file. Every size a file declares is checked against
the file's own length and a ceiling (`MAX_IDX_BYTES`, PIL's `MAX_IMAGE_PIXELS`) before anything of
that size is allocated or decompressed.
"""
from __future__ import annotations

import gzip
import math
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


MAX_IDX_BYTES = 4 << 30   # an IDX payload (EMNIST's largest is 0.55 GB)


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _cannot_read(path: Path, exc: Exception) -> DataError:
    return DataError(f"{path}: cannot read ({exc or type(exc).__name__}); delete it and fetch it again")


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """An IDX file as an array; checks the magic number, rank, element type (uint8 images, integer
    labels) and payload length, the length before reading (a .gz is inflated only that far)."""
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
                raise DataError(f"{path}: not an IDX file (bad magic number {head.hex() or 'empty'})")
            ndim = head[3]
            if ndim != expected_ndim:
                raise DataError(f"{path}: IDX file of rank {ndim}, expected {expected_ndim} "
                                f"({'images' if expected_ndim == 3 else 'labels'})")
            dtype = np.dtype(_IDX_DTYPES[head[2]])
            if expected_ndim == 3 and dtype != np.uint8:
                raise DataError(f"{path}: IDX images of type {dtype}; visionzoo reads 8-bit images (type 0x08)")
            if dtype.kind not in "iu":
                raise DataError(f"{path}: IDX labels of type {dtype}; labels must be integers")
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header")
            shape = struct.unpack(f">{ndim}I", dims)
            expected = math.prod(shape) * dtype.itemsize   # Python integers: no overflow
            if expected > MAX_IDX_BYTES:
                raise DataError(f"{path}: the IDX header promises {expected:,} bytes ({shape}), above the "
                                f"{MAX_IDX_BYTES:,} this reader accepts (corrupt file)")
            if path.suffix != ".gz" and path.stat().st_size != 4 + 4 * ndim + expected:
                raise DataError(f"{path}: IDX payload has {path.stat().st_size - 4 - 4 * ndim} bytes, the header "
                                f"promises {expected} (truncated or corrupt file)")
            payload = f.read(expected + 1)   # one byte more tells a longer file
    except (OSError, EOFError, zlib.error) as exc:
        raise _cannot_read(path, exc) from None
    if len(payload) != expected:
        raise DataError(f"{path}: IDX payload has {len(payload)}{'+' if len(payload) > expected else ''} bytes, "
                        f"the header promises {expected} (truncated or corrupt file)")
    return np.frombuffer(payload, dtype=dtype).reshape(shape)


def read_image(path: Path, channels: int) -> torch.Tensor:
    """An image file as uint8 (channels, H, W): 1 (grey) or 3 (RGB) channels; 16-bit images scaled to 8 bits
    (not clipped at 255). An image of more pixels than PIL's `MAX_IMAGE_PIXELS` (a decompression bomb)
    is refused before it is decoded."""
    from PIL import Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > (Image.MAX_IMAGE_PIXELS or math.inf):
                    raise DataError(f"{path}: {image.width}×{image.height} pixels, above PIL's limit of "
                                    f"{Image.MAX_IMAGE_PIXELS:,} (a decompression bomb?)")
                if image.mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
                    # 16-bit grey: scale 0..65535 to 0..255 (PIL's convert("L") clips at 255)
                    wide = np.asarray(image, dtype=np.int64)
                    grey = Image.fromarray((wide.clip(0, 65535) >> 8).astype(np.uint8), "L")
                    image = grey.convert("RGB") if channels == 3 else grey
                else:
                    image = image.convert("RGB" if channels == 3 else "L")
                pixels = np.array(image, dtype=np.uint8)
    except DataError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: {exc}") from None
    except Exception as exc:
        raise DataError(f"{path}: cannot decode image ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None
    tensor = torch.from_numpy(pixels)
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


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


def check_images(files, channels: int) -> None:
    """Decode every image of a folder split once (DataError naming the first that fails)."""
    for path in files:
        read_image(path, channels)
