"""Atomic writes: every file appears whole or not at all (temporary name, fsync, rename)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from .errors import DataError

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, write) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp's 0600 (kept by writers that recreate the file) is private
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:             # the rename itself survives a power cut only once the directory is synced
        os.fsync(directory)
    finally:
        os.close(directory)


def strict_json(obj):
    """`obj` with every NaN or infinite float replaced by None: JSON has no NaN, and a reader of
    `--json` output or of our files (jq, JavaScript, Python's strict mode) refuses Python's `NaN`."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: strict_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(value) for value in obj]
    return obj


def json_text(obj, **dumps_options) -> str:
    """Standard JSON text of `obj`; NaN and ±inf become null (see `strict_json`)."""
    return json.dumps(strict_json(obj), allow_nan=False, **dumps_options)


def write_json(path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(json_text(obj, indent=2) + "\n")
    write_atomic(path, write)


def write_text(path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_bytes(path, blob: bytes) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(blob))


def write_safetensors(path, state_dict: dict) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    write_atomic(path, lambda tmp: save_file(tensors, tmp))


def write_torch(path, obj) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def read_torch(path):
    """A file written by `write_torch`, loaded without unpickling anything but tensors and plain containers.

    Raises DataError in one line: truncated (no zip directory at its end), refused (it holds other
    Python objects; torch's advice to load it with weights_only=False is not passed on) or corrupt.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: truncated, or not a file written by visionzoo (no zip directory at its end)")
    return torch_load_refusing_pickles(path)


def torch_load_refusing_pickles(path):
    """`torch.load(weights_only=True)` whose failures are one line naming `path`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DataError(f"{path}: holds Python objects other than tensors; refused, as nothing but weights "
                        "is ever unpickled") from None
    except (RuntimeError, EOFError, ValueError, KeyError, zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: corrupt ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def file_digest(path, algorithm: str) -> str:
    """The hex digest (hashlib's `algorithm`: "sha256", "md5", …) of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
