"""Atomic writes: every file appears whole or not at all (temporary name, fsync, rename)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    _atomic(path, write)


def write_text(path, text: str) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_safetensors(path, state_dict: dict) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    _atomic(path, lambda tmp: save_file(tensors, tmp))


def write_torch(path, obj) -> None:
    _atomic(path, lambda tmp: torch.save(obj, tmp))


def read_torch(path):
    return torch.load(path, map_location="cpu", weights_only=True)
