"""Attention blocks for convolutional networks.

- CBAM: Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018, Eq. 1–3.
  Channel attention M_c(F) = σ(MLP(AvgPool(F)) + MLP(MaxPool(F))), one MLP W₁δ(W₀·) shared by
  both pooled descriptors, W₀ reducing the channels by r; spatial attention
  M_s(F) = σ(f^{7×7}([AvgPool(F); MaxPool(F)])), the pools taken across channels;
  F' = M_c(F) ⊙ F, then F'' = M_s(F') ⊙ F' (sequential, channel first: Sec. 3, Fig. 1).
  f^{7×7} is followed by BN, as in the authors' released code.
- Split attention: Zhang et al., "ResNeSt: Split-Attention Networks", CVPR-W 2022 (arXiv 2020),
  Sec. 3.1–3.2 and Fig. 2 (right, the radix-major form). A grouped 3×3 convolution yields r splits
  of each of k cardinal groups; their sum is pooled to s^k, two 1×1 layers (with BN and ReLU) give
  one logit per split and channel, a softmax across the r splits (sigmoid when r = 1) weights them,
  and the weighted sum V is the block's feature. Parameter names are timm's `SplitAttn`.
- Self-attention (non-local) block: Zhang, Goodfellow, Metaxas, Odena, "Self-Attention Generative
  Adversarial Networks", ICML 2019, Eq. 1–2, as the notes write it: f = W_f x, g = W_g x, h = W_h x,
  β_{j,i} = softmax_i(f(x_i)ᵀ g(x_j)), o_j = v(Σ_i β_{j,i} h(x_i)), output o + x. It is the
  embedded-Gaussian non-local block of Wang, Girshick, Gupta, He, "Non-local Neural Networks",
  CVPR 2018 (Eq. 1–3), whose zero-initialised output projection makes a freshly inserted block the
  identity (Sec. 3.3), so it can enter a pre-trained network without changing it.
- Residual attention module: Wang et al., "Residual Attention Network for Image Classification",
  CVPR 2017, Sec. 3 and Fig. 3: p pre-processing residual units, then a trunk branch of t units
  and a bottom-up top-down soft mask branch (max-pool down with r units after each pooling,
  a residual-unit skip connection at every level but the lowest, bilinear interpolation up with
  element-wise addition of the skip, two 1×1 convolutions and a sigmoid), combined by attention
  residual learning H = (1 + M(x)) · F(x) (Eq. 3), then p post-processing units. Residual units are
  pre-activation bottlenecks (layers/residual.py `PreActBlock`), as in the authors' model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .residual import BNReLU, Bottleneck, PreActBlock, conv1x1


class ChannelAttention(nn.Module):
    """M_c(F) = σ(W₁δ(W₀ AvgPool(F)) + W₁δ(W₀ MaxPool(F))); W₀ = `fc1` reduces by r, W₁ = `fc2`."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def mlp(self, descriptor):
        return self.fc2(F.relu(self.fc1(descriptor)))

    def forward(self, x):
        average, maximum = x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(average) + self.mlp(maximum))


class SpatialAttention(nn.Module):
    """M_s(F) = σ(f^{k×k}([AvgPool_c(F); MaxPool_c(F)])), pools across channels, one map per image."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Module):
    """F' = M_c(F) ⊙ F, F'' = M_s(F') ⊙ F'."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x):
        x = x * self.channel(x)
        return x * self.spatial(x)


class SplitAttention(nn.Module):
    """A k×r-group 3×3 conv (`conv`, `bn0`) → split attention across the r splits of each group.

    The attention MLP is ``fc1`` (to max(32, C·r/4) channels, the paper's reduction 4) → `bn1` →
    ReLU → ``fc2`` (one logit per split and channel), both grouped by cardinality.
    """

    def __init__(self, cin: int, channels: int, stride: int = 1, radix: int = 2, groups: int = 1):
        super().__init__()
        self.radix, self.groups = radix, groups
        hidden = max(32, channels * radix // 4)
        self.conv = nn.Conv2d(cin, channels * radix, 3, stride, 1, groups=groups * radix, bias=False)
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.fc1 = nn.Conv2d(channels, hidden, 1, groups=groups)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, channels * radix, 1, groups=groups)

    def split_weights(self, logits):
        """a_i^k: softmax over the r splits of every channel of every cardinal group (σ if r = 1).

        The logits come grouped by cardinality (k, r, c/k); softmax runs over the r axis and
        the result is laid out radix-major (r, C) like the splits.
        """
        batch = logits.shape[0]
        if self.radix == 1:
            weights = torch.sigmoid(logits)
        else:
            weights = logits.view(batch, self.groups, self.radix, -1).softmax(2).transpose(1, 2)
        return weights.reshape(batch, self.radix, -1, 1, 1)

    def forward(self, x):
        splits = F.relu(self.bn0(self.conv(x)))
        batch, _, height, width = splits.shape
        splits = splits.view(batch, self.radix, -1, height, width)
        gap = splits.sum(1).mean((2, 3), keepdim=True)  # s^k: pooled sum of the splits
        logits = self.fc2(F.relu(self.bn1(self.fc1(gap)))).flatten(1)
        return (splits * self.split_weights(logits)).sum(1)


class SplitAttentionBottleneck(Bottleneck):
    """ResNeSt block (Fig. 2): 1×1 → split-attention 3×3 → (3×3/2 average pool) → 1×1.

    A strided block keeps its 3×3 at stride 1 and downsamples with the average pool after it
    (the paper's "avd", Sec. 4.1, at timm's `avd_last` position); `radix` is r.
    """

    def make_branch(self, cin, planes, stride, groups, base_width, radix=2):
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = SplitAttention(width, width, radix=radix, groups=groups)
        self.avd_last = nn.AvgPool2d(3, stride, 1) if stride > 1 else nn.Identity()
        self.conv3 = conv1x1(width, self.out_channels)
        self.bn3 = nn.BatchNorm2d(self.out_channels)

    def residual_branch(self, x):
        out = self.avd_last(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.bn3(self.conv3(out))


class NonLocalBlock(nn.Module):
    """o_j = v(Σ_i softmax_i(f(x_i)ᵀ g(x_j)) h(x_i)), output o + x; f, g, h: C → C/`reduction`.

    `v` starts at zero, so a new block is the identity until it learns.
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        inner = max(1, channels // reduction)
        self.f, self.g, self.h = (nn.Conv2d(channels, inner, 1, bias=False) for _ in range(3))
        self.v = nn.Conv2d(inner, channels, 1, bias=False)
        nn.init.zeros_(self.v.weight)

    def attention_map(self, x):
        """β of shape (B, N, N), N = H·W: row j is the distribution over positions i for output j."""
        scores = self.f(x).flatten(2).transpose(1, 2) @ self.g(x).flatten(2)  # s_ij = f(x_i)ᵀ g(x_j)
        return scores.transpose(1, 2).softmax(-1)

    def forward(self, x):
        attended = self.h(x).flatten(2) @ self.attention_map(x).transpose(1, 2)
        return self.v(attended.view(*attended.shape[:2], *x.shape[2:])) + x


def residual_unit(channels: int) -> PreActBlock:
    """The attention network's unit: a pre-activation bottleneck keeping `channels` (Table 2)."""
    return PreActBlock(channels, channels // 4, kernels=(1, 3, 1), expansion=4)


def _units(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(residual_unit(channels) for _ in range(count)))


class SoftMaskBranch(nn.Module):
    """Bottom-up top-down mask: `levels` max-pools down, as many interpolations up, M ∈ (0, 1).

    Level l pools, runs r units (`down.l`), and, above the lowest level, keeps a skip unit
    (`skips.l`) whose output is added to the upsampled result of the levels below, followed by
    r units (`up.l`). The lowest level runs 2r units in all. The full-resolution result passes
    BN-ReLU-1×1-BN-ReLU-1×1 and a sigmoid (`output`).
    """

    def __init__(self, channels: int, levels: int, r: int = 1):
        super().__init__()
        self.levels = levels
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.down = nn.ModuleList(_units(channels, r) for _ in range(levels))
        self.skips = nn.ModuleList(residual_unit(channels) for _ in range(levels - 1))
        self.up = nn.ModuleList(_units(channels, r) for _ in range(levels))
        self.output = nn.Sequential(BNReLU(channels), conv1x1(channels, channels), BNReLU(channels),
                                    conv1x1(channels, channels), nn.Sigmoid())

    def descend(self, x, level):
        """Pool x to the next level, process it there (and below), and bring it back to x's size."""
        y = self.down[level](self.pool(x))
        if level + 1 < self.levels:
            y = self.descend(y, level + 1) + self.skips[level](y)
        y = self.up[level](y)
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=True)

    def forward(self, x):
        return self.output(self.descend(x, 0))


class ResidualAttentionModule(nn.Module):
    """p units → [trunk: t units | soft mask] → H = (1 + M) · F → p units (Fig. 3, Eq. 3)."""

    def __init__(self, channels: int, levels: int, p: int = 1, t: int = 2, r: int = 1):
        super().__init__()
        self.pre = _units(channels, p)
        self.trunk = _units(channels, t)
        self.mask = SoftMaskBranch(channels, levels, r)
        self.post = _units(channels, p)

    def forward(self, x):
        x = self.pre(x)
        return self.post((1 + self.mask(x)) * self.trunk(x))
