"""The Fire module: Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer, "SqueezeNet: AlexNet-level
accuracy with 50x fewer parameters and <0.5MB model size", arXiv 2016, Sec. 3.2 and Fig. 1.

A squeeze layer of s₁ₓ₁ 1×1 filters feeds an expand layer of e₁ₓ₁ 1×1 and e₃ₓ₃ 3×3 filters,
whose outputs are concatenated (e₁ₓ₁ + e₃ₓ₃ channels), every convolution followed by ReLU.
Keeping s₁ₓ₁ < e₁ₓ₁ + e₃ₓ₃ limits the input channels of the 3×3 filters (strategy 2).

Bypass connections (Sec. 6, Fig. 2): "simple" adds the module's input to its output (only
where both have the same channels), "complex" adds a 1×1 convolution of the input.
Parameter names follow torchvision's Fire so its SqueezeNet weights load unchanged.
"""
from __future__ import annotations

import torch
from torch import nn


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand1x1: int, expand3x3: int,
                 bypass: str | None = None):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        self.out_channels = expand1x1 + expand3x3
        if bypass == "simple" and cin != self.out_channels:
            raise ValueError(f"a simple bypass needs equal widths, not {cin} → {self.out_channels}")
        if bypass not in (None, "simple", "complex"):
            raise ValueError(f"bypass must be None, 'simple' or 'complex', not {bypass!r}")
        self.bypass_kind = bypass
        if bypass == "complex":
            self.bypass = nn.Conv2d(cin, self.out_channels, 1)

    def forward(self, x):
        squeezed = self.squeeze_activation(self.squeeze(x))
        out = torch.cat([self.expand1x1_activation(self.expand1x1(squeezed)),
                         self.expand3x3_activation(self.expand3x3(squeezed))], 1)
        if self.bypass_kind == "simple":
            return out + x
        if self.bypass_kind == "complex":
            return out + self.bypass(x)
        return out
