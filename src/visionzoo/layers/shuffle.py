"""ShuffleNet units and the channel shuffle.

- Zhang, Zhou, Lin, Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural Network for
  Mobile Devices", CVPR 2018. Channel shuffle (Sec. 3.1, the notes): a layer with g groups of
  n channels each reshapes its g·n channels to (g, n), transposes to (n, g) and flattens, so the
  next group convolution sees channels from every group. The ShuffleNet unit (Fig. 2(b), (c)):
  1×1 group conv → BN → ReLU → shuffle → 3×3 depthwise (stride s) → BN → 1×1 group conv → BN,
  added to the input (s = 1) or concatenated with a 3×3 average-pooled input (s = 2), then ReLU.
- Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
  Design", ECCV 2018, Fig. 3(c), (d): channel split in halves, one half kept, the other through
  1×1 conv → 3×3 depthwise → 1×1 conv; concatenate, shuffle with g = 2. The stride-2 unit feeds
  the whole input to both branches (the first gets a depthwise → 1×1 of its own).
  Parameter names follow torchvision's ShuffleNetV2 (`branch1`, `branch2`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mobile import ConvBNAct


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, g·n, H, W) → reshape (N, g, n, H, W) → transpose (N, n, g, H, W) → flatten."""
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


class ShuffleUnit(nn.Module):
    """ShuffleNet v1 unit with `groups` groups in its 1×1 convolutions and bottleneck width
    cout / 4. With stride 2 the branch produces cout − cin channels, the pooled input the rest.
    `group_first=False` makes the first 1×1 ungrouped (stage 2's first unit: its 24 input
    channels are too few to split, Sec. 3.3)."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int, group_first: bool = True):
        super().__init__()
        self.stride, self.groups = stride, groups
        bottleneck = cout // 4
        branch_out = cout - cin if stride == 2 else cout
        self.compress = ConvBNAct(cin, bottleneck, 1, groups=groups if group_first else 1)
        self.depthwise = ConvBNAct(bottleneck, bottleneck, 3, stride, groups=bottleneck, act=None)
        self.expand = ConvBNAct(bottleneck, branch_out, 1, groups=groups, act=None)

    def forward(self, x):
        out = channel_shuffle(self.compress(x), self.groups)
        out = self.expand(self.depthwise(out))
        if self.stride == 1:
            return F.relu(x + out)
        return F.relu(torch.cat([F.avg_pool2d(x, 3, 2, 1), out], 1))


class ShuffleV2Unit(nn.Module):
    """ShuffleNet v2 unit: split (s = 1) or duplicate (s = 2) → two branches → concat → shuffle."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride == 1 and cin != cout:
            raise ValueError(f"a stride-1 ShuffleNet v2 unit keeps its width ({cin} → {cout})")
        if stride == 1:
            self.branch1 = nn.Sequential()
        else:
            self.branch1 = nn.Sequential(*ConvBNAct(cin, cin, 3, stride, groups=cin, act=None),
                                         *ConvBNAct(cin, half, 1))
        branch_in = cin if stride > 1 else half
        self.branch2 = nn.Sequential(*ConvBNAct(branch_in, half, 1),
                                     *ConvBNAct(half, half, 3, stride, groups=half, act=None),
                                     *ConvBNAct(half, half, 1))

    def forward(self, x):
        if self.stride == 1:
            kept, x = x.chunk(2, dim=1)
            out = torch.cat([kept, self.branch2(x)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return channel_shuffle(out, 2)
