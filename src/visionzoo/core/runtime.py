"""Where and how a run computes: the device, bf16/fp16 autocast (also for evaluation), whether torch.compile
can build kernels, seeding, evaluation mode."""
from __future__ import annotations

import random
from contextlib import contextmanager, nullcontext

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


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the hardware has it (no loss scaling needed), else fp16."""
    return torch.bfloat16 if bf16_supported(device) else torch.float16


def autocast(device: torch.device, enabled: bool):
    """The training step's mixed precision (`autocast_dtype`)."""
    return torch.autocast(device.type, dtype=autocast_dtype(device), enabled=enabled)


def evaluation_dtype(device, amp: bool) -> torch.dtype | None:
    """The autocast dtype of a run's per-epoch evaluation, or None for fp32: the training step's on a
    CUDA device with AMP; fp32 on the CPU, as before (CPU results stay as recorded)."""
    device = torch.device(device)
    return autocast_dtype(device) if amp and device.type == "cuda" else None


def evaluation_autocast(device, amp: bool):
    """The context of `evaluation_dtype`: autocast, or nothing at all for fp32."""
    dtype = evaluation_dtype(device, amp)
    return nullcontext() if dtype is None else torch.autocast(torch.device(device).type, dtype=dtype)


def compile_problem(device: torch.device) -> str | None:
    """Why `torch.compile` (its default backend, Inductor) cannot build kernels for `device`, or None.
    Asked before a run starts, so that a missing compiler stops it at once rather than at its first step."""
    try:
        import torch._dynamo
        if not torch._dynamo.is_dynamo_supported():
            return "torch.compile does not support this Python"
        if device.type == "cuda":
            from torch.utils._triton import has_triton
            return None if has_triton() else "Inductor needs the triton package for CUDA kernels"
        from torch._inductor.cpp_builder import get_cpp_compiler
        get_cpp_compiler()   # raises where no C++ compiler is found
    except (ImportError, RuntimeError, OSError) as exc:   # torch's compiler errors are RuntimeErrors
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'no compiler'}"
    return None


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
