"""Whether a network runs on images of a given size, and the smallest square side it runs on.

Reliability pass, issue 29, family 5 ("one line, exit 2, for every bad input"): an image smaller than
a network can take — a 1×1 picture, `--image-size 2` under LeNet's 5×5 kernels, 8×8 digits given to
a network trained on 28×28 — is refused before any work, naming its size and the smallest the network
takes, instead of ending in the first convolution's RuntimeError. The forward passes that find out run
on the meta device with meta stand-ins for the network's tensors (`torch.func.functional_call`):
shapes are propagated, nothing is computed or allocated, and the network itself is left untouched.
"""
from __future__ import annotations

from collections.abc import Callable
from itertools import chain

import torch
from torch import nn

from .errors import UsageError
from .runtime import evaluating


def runs_on(model: nn.Module, input_size) -> bool:
    """True when one image of `input_size` (C, H, W) passes through `model`'s forward (in eval mode)."""
    stand_ins = {name: torch.empty_like(tensor, device="meta")
                 for name, tensor in chain(model.named_parameters(remove_duplicate=False),
                                           model.named_buffers(remove_duplicate=False))}
    x = torch.empty(1, *input_size, device="meta")
    try:
        with torch.no_grad(), evaluating(model):
            torch.func.functional_call(model, stand_ins, (x,))
    except Exception:   # a shape error, or anything else the meta device cannot do: the caller tells them apart
        return False
    return True


def smallest_side(runs: Callable[[int], bool], largest: int) -> int | None:
    """The smallest side s ≤ `largest` with `runs(s)`, by bisection: the sides below one a network runs
    on that it also runs on form one interval (kernels and strides only shrink maps); None when it
    does not run at `largest` itself (then the meta device cannot tell)."""
    if not runs(largest):
        return None
    low, high = 1, largest
    while low < high:
        middle = (low + high) // 2
        if runs(middle):
            high = middle
        else:
            low = middle + 1
    return low


def check_trained_input(model: nn.Module, input_size, trained_size, what: str) -> None:
    """UsageError unless a trained network, which runs on `trained_size` (C, H, W), runs on `input_size`."""
    channels, height, width = input_size
    if tuple(input_size) == tuple(trained_size) or runs_on(model, input_size):
        return
    side = smallest_side(lambda s: runs_on(model, (channels, s, s)), min(trained_size[1:]))
    if side is None:
        return
    trained = "×".join(str(v) for v in trained_size[1:])
    if min(height, width) < side:
        raise UsageError(f"{what}: its images are {height}×{width} pixels, smaller than the {side}×{side} the "
                         f"network takes at least (it was trained on {trained}); give images of that size")
    raise UsageError(f"{what}: its images are {height}×{width} pixels, which the network does not take (it "
                     f"was trained on {trained}); give images of that size")


def check_buildable_input(model: nn.Module, build: Callable[[int], nn.Module], input_size, largest: int,
                          what: str) -> None:
    """UsageError when `model` (built by `build(side)` for square images of that side) cannot run on
    `input_size` because its images are smaller than the smallest side ≤ `largest` it can be built and
    run at; `what` names the cause (an option or a data set) and is followed by what to give instead."""
    channels, height, width = input_size
    if runs_on(model, input_size):
        return

    def built_runs(side: int) -> bool:
        try:
            with torch.device("meta"):
                network = build(side)
        except Exception:   # a builder refusing a side (patches larger than the image, ...)
            return False
        return runs_on(network, (channels, side, side))
    side = smallest_side(built_runs, max(largest, height, width))
    if side is not None and min(height, width) < side:
        raise UsageError(f"{what}: images of {height}×{width} pixels, smaller than the {side}×{side} the network "
                         f"takes at least; give --image-size {side} or more")
    if built_runs(largest):   # the meta device tells: it runs at its card's size, not at this one (fixed layers)
        raise UsageError(f"{what}: images of {height}×{width} pixels, which the network does not take (its layers "
                         f"are sized for its paper's {largest}×{largest}); give --image-size {largest}")
