"""Stochastic pooling: Zeiler & Fergus, "Stochastic Pooling for Regularization of Deep
Convolutional Neural Networks", ICLR 2013, Eq. 3–5.

In training, each pooling region R_j outputs one of its activations, a_l with l drawn from the
multinomial p_i = a_i / Σ_{k∈R_j} a_k (Eq. 3–4): zeros are never drawn and a region of zeros
gives 0. At test time the region gives the probability-weighted average s_j = Σ_i p_i a_i (Eq. 5).
The method assumes rectified (non-negative) inputs; negative values count as zero here.
Regions follow the max-pooling layer being replaced (kernel, stride, padding, ceil mode);
padding adds zeros, which no region ever draws.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from .surgery import replace_modules


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class StochasticPool2d(nn.Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride if stride is not None else kernel_size)
        self.padding = _pair(padding)
        self.ceil_mode = ceil_mode

    def _regions(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H', W', k·k): each region's values, negatives set to 0."""
        extra = []
        for size, k, s, p in zip(x.shape[2:], self.kernel_size, self.stride, self.padding):
            span = size + 2 * p - k
            steps = (math.ceil(span / s) if self.ceil_mode else span // s) + 1
            if self.ceil_mode and (steps - 1) * s >= size + p:  # PyTorch: the last window starts inside
                steps -= 1
            extra.append(max(0, (steps - 1) * s + k - (size + 2 * p)))
        ph, pw = self.padding
        x = F.pad(x.clamp(min=0), (pw, pw + extra[1], ph, ph + extra[0]))
        regions = x.unfold(2, self.kernel_size[0], self.stride[0]).unfold(3, self.kernel_size[1], self.stride[1])
        return regions.flatten(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        regions = self._regions(x)
        if self.training:
            # Inverse-CDF draw: the first i with a_1 + … + a_i > u·Σa has probability a_i / Σa.
            cumulative = regions.cumsum(4)
            threshold = torch.rand_like(cumulative[..., :1]) * cumulative[..., -1:]
            index = (cumulative <= threshold).sum(4, keepdim=True).clamp(max=regions.shape[4] - 1)
            return regions.gather(4, index).squeeze(4)
        total = regions.sum(4)
        return (regions * regions).sum(4) / total.clamp(min=torch.finfo(x.dtype).tiny)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}")


def swap_max_pool(model: nn.Module) -> int:
    """Replace every nn.MaxPool2d by stochastic pooling over the same regions; returns the count."""
    def replace(name, module):
        if type(module) is not nn.MaxPool2d:
            return None
        if _pair(module.dilation) != (1, 1):
            raise UsageError("--pool stochastic: dilated max-pooling is not supported")
        return StochasticPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode)

    count = replace_modules(model, replace)
    if not count:
        raise UsageError(f"--pool stochastic: {type(model).__name__} has no max-pooling layers to replace")
    return count
