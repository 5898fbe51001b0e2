"""Squeeze-and-Excitation: Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018.

z = global average pool of U (squeeze, Eq. 2); s = σ(W₂ δ(W₁ z)) with W₁ reducing the channels
by r (excitation, Eq. 3); output = s · U, channel-wise (Eq. 4). W₁, W₂ are 1×1 convolutions
with bias named fc1/fc2, the names torchvision's and timm's SE modules use, so twins load.
"""
from __future__ import annotations

from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, squeeze_channels: int | None = None,
                 act: type[nn.Module] = nn.ReLU, gate: type[nn.Module] = nn.Sigmoid):
        super().__init__()
        squeeze = squeeze_channels or max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = act(inplace=True) if act in (nn.ReLU, nn.SiLU) else act()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = gate()

    def excitation(self, x):
        """s = σ(W₂ δ(W₁ z)): one weight in (0, 1) per channel."""
        return self.gate(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))

    def forward(self, x):
        return x * self.excitation(x)
