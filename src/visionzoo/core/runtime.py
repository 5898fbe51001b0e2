"""Where and how a run computes: the device, bf16/fp16 autocast, seeding, evaluation mode."""
from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .errors import UsageError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available; use --device cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def autocast(device: torch.device, enabled: bool):
    """bf16 where the hardware has it (no loss scaling needed), else fp16."""
    dtype = torch.bfloat16 if bf16_supported(device) else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


@contextmanager
def evaluating(model: nn.Module):
    """Eval mode inside the block; afterwards every submodule gets back its own previous mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
