"""Counting a network's cost: parameters, multiply-accumulates and the per-layer table.

MACs are read from `torch.utils.flop_counter.FlopCounterMode`, which counts every op that
multiplies (convolutions of any groups, transposed convolutions, linear, matmul/bmm and
scaled-dot-product attention); one MAC is two FLOPs. Running on the meta device costs nothing.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ..core.runtime import evaluating


def count_params(model: nn.Module) -> int:
    """All parameters, trainable or not (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def _traced_forward(model: nn.Module, input_size):
    # A network whose input is not an image (a token model) says what one example of input_size is.
    example = getattr(model, "example_input", None)
    x = example(input_size) if example else torch.zeros((1, *input_size), device=_device_of(model))
    counter = FlopCounterMode(display=False)
    # the math form of attention: the fused CPU kernel (_scaled_dot_product_flash_attention_for_cpu) has no
    # FLOP formula, so a real model's QKᵀ and AV would go uncounted where the meta device counts them
    with torch.no_grad(), evaluating(model), sdpa_kernel(SDPBackend.MATH), counter:
        model(x)
    return counter


def count_macs(model: nn.Module, input_size) -> int:
    """Multiply-accumulates of one forward pass of ONE image of shape (C, H, W)."""
    return _traced_forward(model, tuple(input_size)).get_total_flops() // 2


def layer_table(model: nn.Module, input_size, depth: int = 2) -> list[dict]:
    """One row per module down to `depth`: output shape, own parameters and MACs."""
    rows: OrderedDict[str, dict] = OrderedDict()
    handles = []
    for name, module in model.named_modules():
        level = 0 if not name else name.count(".") + 1
        if level == 0 or level > depth:
            continue
        is_leaf = level == depth or not any(True for _ in module.children())
        rows[name] = {"layer": name, "type": type(module).__name__, "output": None,
                      "params": count_params(module), "macs": 0, "leaf": is_leaf}

        def hook(mod, args, out, key=name):
            first = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(first, torch.Tensor):
                rows[key]["output"] = list(first.shape[1:])
        handles.append(module.register_forward_hook(hook))
    try:
        counter = _traced_forward(model, tuple(input_size))
    finally:
        for h in handles:
            h.remove()
    root = type(model).__name__
    for key, counts in counter.get_flop_counts().items():
        sub = key[len(root) + 1:] if key.startswith(root + ".") else None
        if sub in rows:
            rows[sub]["macs"] = sum(counts.values()) // 2
    return list(rows.values())
