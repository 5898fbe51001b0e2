"""Atomic writes: every file appears whole or not at all (temporary name, fsync, rename)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

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


def write_json(path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
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
    return torch.load(path, map_location="cpu", weights_only=True)
