"""Context managers that every explanation method runs under; each one leaves the model as it was.

`evaluating` puts the model in eval mode and restores each module's own flag; `capture` records a
layer's activation, from which the gradient reaching it is taken (Selvaraju et al., Grad-CAM,
ICCV 2017, Eq. 1 needs both); `guided_relus` swaps the backward of every ReLU for the guided rule of Springenberg
et al., Striving for Simplicity: The All Convolutional Net, ICLR 2015 workshop (Sec. 3.4, Fig. 1):
a gradient passes a ReLU only where both the input and the incoming gradient are positive.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..core.runtime import evaluating  # noqa: F401  (re-exported: explain's modules import it from here)


def find_layer(model: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    """The named module, or by default the last Conv2d in definition order."""
    if name is None:
        convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise UsageError("the network has no Conv2d layer; give --layer NAME")
        return convs[-1]
    try:
        return name, model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        raise UsageError(f"no layer {name!r}; layers are e.g. {', '.join(names[:8])} "
                         "(see `visionzoo info MODEL --depth 9`)") from None


class Capture:
    """A layer's output, still in the autograd graph (differentiate a score with respect to it)."""

    def __init__(self):
        self.activation: torch.Tensor | None = None

    def _on_forward(self, module, args, output):
        if isinstance(output, torch.Tensor):
            self.activation = output
            # The network goes on with a copy, so that a following inplace op (ReLU) can change
            # neither the captured map nor the graph node its gradient is taken at.
            return output.clone()
        self.activation = output[0] if isinstance(output, (tuple, list)) else None
        return None


@contextmanager
def capture(layer: nn.Module):
    """Record `layer`'s output while the context is open; the hook is removed on exit."""
    record = Capture()
    handle = layer.register_forward_hook(record._on_forward)
    try:
        yield record
    finally:
        handle.remove()


class _GuidedReLU(torch.autograd.Function):
    """relu forward; backward passes grad only where input > 0 and grad > 0."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0).to(grad.dtype)


def _guided_functional_relu(input, inplace=False):
    # The network keeps the returned tensor, so dropping `inplace` changes no value.
    return _GuidedReLU.apply(input)


def _clamp_gradient(module, grad_input, grad_output):
    # ReLU's own backward already zeroes where input ≤ 0; the guided rule also drops negatives.
    return (grad_input[0].clamp(min=0),)


@contextmanager
def guided_relus(model: nn.Module):
    """Guided backprop for nn.ReLU modules (full backward hooks) and torch.nn.functional.relu.

    Full backward hooks cannot wrap an inplace op, so inplace ReLUs run out of place meanwhile;
    `torch.relu` and `Tensor.relu` called directly are not covered.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    inplace = [m.inplace for m in relus]
    handles = []
    original_relu = F.relu
    try:
        for module in relus:
            module.inplace = False
            handles.append(module.register_full_backward_hook(_clamp_gradient))
        F.relu = _guided_functional_relu
        yield model
    finally:
        F.relu = original_relu
        for handle in handles:
            handle.remove()
        for module, flag in zip(relus, inplace):
            module.inplace = flag
