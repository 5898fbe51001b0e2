"""Dense connectivity of Huang, Liu, van der Maaten, Weinberger, "Densely Connected
Convolutional Networks", CVPR 2017.

Layer ℓ of a dense block sees the concatenation of all earlier maps, x_ℓ = H_ℓ([x_0, …, x_{ℓ−1}])
(Eq. 2), and adds k of its own (the growth rate), so it has k_0 + k(ℓ − 1) input maps.
H_ℓ is BN-ReLU-conv3×3, or in the bottleneck "B" version BN-ReLU-conv1×1(4k)-BN-ReLU-conv3×3(k).
A transition layer between blocks is BN-ReLU-conv1×1 to ⌊θm⌋ maps (compression θ ∈ (0, 1],
"C" version when θ < 1) followed by a 2×2 average pool. Dropout, when asked for, follows every
convolution (Sec. 4.2, used on the un-augmented data sets).
Parameter names follow torchvision (norm1/conv1/norm2/conv2, norm/conv) so its weights load
unchanged.
"""
from __future__ import annotations

import torch
from torch import nn


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


class DenseLayer(nn.Module):
    """H_ℓ; returns its input with the k new maps appended, [x, H_ℓ(x)]."""

    def __init__(self, in_channels: int, growth_rate: int, bottleneck: bool = True,
                 bn_size: int = 4, drop_rate: float = 0.0):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        if bottleneck:
            width = bn_size * growth_rate
            self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
            self.drop1 = _dropout(drop_rate)
            self.norm2 = nn.BatchNorm2d(width)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(width, growth_rate, 3, padding=1, bias=False)
            self.drop2 = _dropout(drop_rate)
        else:
            self.conv1 = nn.Conv2d(in_channels, growth_rate, 3, padding=1, bias=False)
            self.drop1 = _dropout(drop_rate)
        self.bottleneck = bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.drop1(self.conv1(self.relu1(self.norm1(x))))
        if self.bottleneck:
            new = self.drop2(self.conv2(self.relu2(self.norm2(new))))
        return torch.cat([x, new], 1)


class DenseBlock(nn.Sequential):
    """`num_layers` dense layers; k_0 maps in, k_0 + num_layers·k maps out."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, **layer_kwargs):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            DenseLayer(in_channels + i * growth_rate, growth_rate, **layer_kwargs))
        self.out_channels = in_channels + num_layers * growth_rate


class Transition(nn.Sequential):
    """BN-ReLU-conv1×1 to ⌊θm⌋ maps, then 2×2 average pooling with stride 2."""

    def __init__(self, in_channels: int, compression: float = 0.5, drop_rate: float = 0.0):
        if not 0 < compression <= 1:
            raise ValueError(f"compression θ must lie in (0, 1], not {compression}")
        super().__init__()
        self.out_channels = int(compression * in_channels)
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, self.out_channels, 1, bias=False)
        self.drop = _dropout(drop_rate)
        self.pool = nn.AvgPool2d(2, 2)
