"""Model surgery: replace modules of a built network in place, trace what each module sees, and
run it in eval mode for a while without losing each submodule's own mode.

No paper of its own: these are the tools `--norm`, `--act`, `--pool` and the regularisers use to
turn a registered network into its variant (Wu & He's GN, He et al.'s PReLU, Zeiler & Fergus'
stochastic pooling, …) without touching the family's builder.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..core.runtime import evaluating


def replace_modules(model: nn.Module, replace: Callable[[str, nn.Module], nn.Module | None]) -> int:
    """Call ``replace(name, module)`` on every module below `model`, top-down; a returned module
    takes the old one's place (and is not descended into). Returns how many were replaced."""
    count = 0
    for name, child in list(model.named_children()):
        new = replace(name, child)
        if new is not None and new is not child:
            setattr(model, name, new)
            count += 1
        else:
            count += replace_modules(child, replace)
    return count


def placed_like(new: nn.Module, old: nn.Module) -> nn.Module:
    """`new` on the device and floating dtype of `old`'s first parameter or buffer (if it has any)."""
    reference = next(iter(list(old.parameters()) + list(old.buffers())), None)
    if reference is not None:
        new.to(reference.device)
        if reference.is_floating_point():
            new.to(reference.dtype)
    return new


def input_shapes(model: nn.Module, input_size, modules: list[nn.Module]) -> dict[nn.Module, set]:
    """The input shapes (without the batch) each of `modules` sees in a forward pass of two
    zero images of `input_size` (C, H, W): one set per module, empty if it is never called."""
    seen: dict[nn.Module, set] = {m: set() for m in modules}
    handles = [m.register_forward_pre_hook(lambda m, args: seen[m].add(tuple(args[0].shape[1:])))
               for m in modules]
    device = next(model.parameters()).device
    try:
        with torch.no_grad(), evaluating(model):
            model(torch.zeros(2, *input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return seen
