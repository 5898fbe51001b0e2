"""Loading weights: visionzoo safetensors checkpoints and torchvision/timm twin state_dicts.

Nothing from outside is unpickled: safetensors is read as tensors, and a `.pth`/`.pt` file is
read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from .core.errors import UsageError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.exists():
        raise UsageError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise UsageError(f"cannot read weights from {path}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"{path} does not hold a state_dict")
    return state


def load_pretrained(model: nn.Module, name: str, path: str | Path) -> None:
    """Load our own checkpoint, or a twin's state_dict converted from whichever source fits."""
    from .registry import convert_state_dict, get_entry
    state = read_state_dict(path)
    own = model.state_dict()
    candidates = [("visionzoo", state)]
    for source in get_entry(name).twins:
        try:
            candidates.append((source, convert_state_dict(name, state, source)))
        except (KeyError, ValueError):
            continue
    for source, converted in candidates:
        if set(converted) == set(own) and all(converted[k].shape == own[k].shape for k in own):
            model.load_state_dict(converted)
            return
    missing = sorted(set(own) - set(state))[:3]
    if missing:
        why = f"keys such as {missing} are missing"
    else:
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                  if state[k].shape != own[k].shape][:2]
        why = (f"shapes differ ({'; '.join(shapes)}); build the model with the file's settings, "
               f"e.g. its num_classes")
    raise UsageError(f"{path} does not fit {name}: {why} "
                     f"(twins: {', '.join(get_entry(name).twins) or 'none'})")


def model_from_meta(meta: dict) -> nn.Module:
    """The untrained network that `model.json`'s description names, with the trained variant's modules."""
    from .registry import create_model
    model = create_model(meta["name"], **meta["kwargs"])
    if meta.get("options"):  # the trained variant's modules (--act, --norm, …)
        from .layers.variants import rebuild_model
        rebuild_model(model, meta["options"], meta["input_size"])
    return model


# Readers of the other containers a trained model is saved in, by file suffix (a toolkit above
# adds its own: compress/fileformat.py registers ".vzc" when visionzoo is imported).
CHECKPOINT_READERS: dict[str, Callable[[Path], tuple[nn.Module, dict]]] = {}


def register_checkpoint_reader(suffix: str, read: Callable[[Path], tuple[nn.Module, dict]]) -> None:
    CHECKPOINT_READERS[suffix] = read


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild a trained model from `model.json` + `model.safetensors` alone (run dir or file),
    or from another registered container such as `model.vzc` (a file or its directory)."""
    import json
    path = Path(path)
    for suffix, read in CHECKPOINT_READERS.items():
        if path.suffix == suffix or (path.is_dir() and (path / f"model{suffix}").exists()
                                     and not (path / "model.safetensors").exists()):
            return read(path)
    weights = path / "model.safetensors" if path.is_dir() else path
    meta_path = weights.with_name("model.json")
    if not weights.exists():
        raise UsageError(f"{weights} does not exist; give a run directory or its model.safetensors")
    if not meta_path.exists():
        raise UsageError(f"{meta_path} is missing: it says how to rebuild the model")
    try:
        meta = json.loads(meta_path.read_text())
        model = model_from_meta(meta)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(f"{meta_path}: not a visionzoo model description ({exc})") from None
    model.load_state_dict(read_state_dict(weights))
    model.eval()
    return model, meta
