"""Residual blocks of He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.

y = F(x, {W_i}) + W_s x (Eq. 1–2). The basic block stacks two 3×3 convolutions, the bottleneck
block 1×1 → 3×3 → 1×1 with expansion 4 (Fig. 5). Shortcut options of Sec. 4.1:
A — identity, zero-padding the extra channels when the shape changes (parameter-free);
B — projection (1×1 conv + BN) only when the shape changes;
C — projection on every block.
`residual=False` gives the "plain" twin of the same depth (no shortcut at all).
Parameter names follow torchvision so its weights load unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, dilation, groups=groups, bias=False, dilation=dilation)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by striding and pad the new channels with zeros."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.extra, self.stride = cout - cin, stride

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


def make_shortcut(cin: int, cout: int, stride: int, option: str) -> nn.Module | None:
    """The shortcut branch for one block, or None for a plain identity."""
    changes = stride != 1 or cin != cout
    if option == "A":
        return ZeroPadShortcut(cin, cout, stride) if changes else None
    if option == "C" or (option == "B" and changes):
        return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
    if option not in ("B", "C"):
        raise ValueError(f"shortcut option must be 'A', 'B' or 'C', not {option!r}")
    return None


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, shortcut: str = "B",
                 residual: bool = True, groups: int = 1, base_width: int = 64):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual
        self.downsample = make_shortcut(cin, cout, stride, shortcut) if residual else None

    def residual_branch(self, x):
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def forward(self, x):
        out = self.residual_branch(x)
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(BasicBlock):
    """1×1 reduce → 3×3 (grouped for ResNeXt) → 1×1 expand; stride on the 3×3 (torchvision's v1.5)."""
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, shortcut: str = "B",
                 residual: bool = True, groups: int = 1, base_width: int = 64):
        nn.Module.__init__(self)
        width = int(planes * (base_width / 64.0)) * groups
        cout = planes * self.expansion
        self.conv1 = conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, cout)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual
        self.downsample = make_shortcut(cin, cout, stride, shortcut) if residual else None

    def residual_branch(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))
