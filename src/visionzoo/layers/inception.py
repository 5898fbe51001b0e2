"""Inception branches, written once for the whole family.

* GoogLeNet module — Szegedy et al., "Going Deeper with Convolutions", CVPR 2015, Fig. 2(b):
  1×1 | 1×1 → 3×3 | 1×1 → 5×5 | 3×3 max-pool → 1×1, concatenated (widths in Table 1);
  its naïve version, Fig. 2(a): 1×1 | 3×3 | 5×5 | 3×3 max-pool, without the 1×1 reductions;
  auxiliary classifier of Sec. 5: 5×5/3 average pool → 1×1 conv 128 → FC 1024 → dropout 0.7 → FC.
* BN-Inception module — Ioffe & Szegedy, "Batch Normalization", ICML 2015, Fig. 5: the 5×5 becomes
  two 3×3; the 3c/4e modules reduce the grid with stride-2 convolutions beside a max-pool.
* Inception-v3 — Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
  CVPR 2016: module A (Fig. 5, 5×5 → two 3×3), C (Fig. 6, n×n → 1×n and n×1, n = 7), E (Fig. 7,
  expanded 1×3 / 3×1 filter banks on the 8×8 grid), grid reductions B and D (Fig. 10: stride-2
  convolutions in parallel with a stride-2 pool), auxiliary head with BN (Secs. 4, 10).
* Inception-v4 / Inception-ResNet — Szegedy, Ioffe, Vanhoucke, Alemi, AAAI 2017: v4 stem (Fig. 3),
  Inception-A/B/C (Figs. 4–6), Reduction-A with k, l, m, n of Table 1 (Fig. 7), Reduction-B
  (Fig. 8); residual Inception blocks (Figs. 10–13, 16–19) whose branch output is scaled by
  0.1–0.3 before the addition (Sec. 3.3), and their Reduction-B (Figs. 12, 18).

Every convolution is `BasicConv2d` (conv → BN → ReLU; the pre-BN GoogLeNet drops the BN and keeps
the bias). Names follow torchvision (GoogLeNet, Inception-v3) and timm (Inception-v4,
Inception-ResNet-v2), so their state_dicts load unchanged. A branch is written as a list of
``(out_channels, kernel[, stride[, padding]])`` convolutions, optionally led by a pooling module;
padding defaults to "same" (k // 2), and 0 is the papers' "V" (valid).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _same(kernel):
    return tuple(k // 2 for k in kernel) if isinstance(kernel, tuple) else kernel // 2


class BasicConv2d(nn.Module):
    """Convolution → BN (ε = 1e-3) → ReLU; ``norm=False``: convolution with bias → ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=None, norm: bool = True):
        super().__init__()
        padding = _same(kernel_size) if padding is None else padding
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, bias=not norm)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3) if norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class SeparableConv2d(nn.Sequential):
    """Depthwise k×k with `depth_multiplier` filters per input channel, pointwise 1×1 with bias, ReLU.

    GoogLeNet's first layer as Table 1 counts it: 2.7K params and 34M ops for "convolution 7×7/2"
    are 7·7·3·8 + 24·64 = 2712 weights applied at 112×112 (a dense 7×7×3×64 would be 9.4K, 118M).
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, depth_multiplier: int):
        width = cin * depth_multiplier
        depthwise = nn.Conv2d(cin, width, kernel_size, stride, kernel_size // 2, groups=cin, bias=False)
        super().__init__(depthwise, nn.Conv2d(width, cout, 1), nn.ReLU(inplace=True))


def make_branch(cin: int, spec, norm: bool = True) -> tuple[nn.Module, int]:
    """One branch from its spec (a module, or a list of modules and conv tuples) and its width."""
    layers = []
    for item in spec if isinstance(spec, list) else [spec]:
        if isinstance(item, nn.Module):
            layers.append(item)
        else:
            cout, *conv = item
            layers.append(BasicConv2d(cin, cout, *conv, norm=norm))
            cin = cout
    return (layers[0] if len(layers) == 1 else nn.Sequential(*layers)), cin


class Mixed(nn.Module):
    """Named parallel branches on one input, concatenated along channels ("filter concatenation")."""

    def __init__(self, cin: int, branches: dict, norm: bool = True):
        super().__init__()
        self.branch_names = list(branches)
        self.out_channels = 0
        for name, spec in branches.items():
            module, width = make_branch(cin, spec, norm)
            self.add_module(name, module)
            self.out_channels += width

    def forward(self, x):
        return torch.cat([getattr(self, name)(x) for name in self.branch_names], 1)


def numbered(*specs) -> dict:
    """timm's branch names: branch0, branch1, …"""
    return {f"branch{i}": spec for i, spec in enumerate(specs)}


def _path(module: nn.Module, x, *names):
    for name in names:
        x = getattr(module, name)(x)
    return x


# ---- GoogLeNet and BN-Inception -------------------------------------------------------------

def googlenet_module(cin, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, norm=True, k5=5) -> Mixed:
    """Fig. 2(b); torchvision's googlenet has a 3×3 where the paper has the 5×5 (``k5=3``)."""
    return Mixed(cin, {"branch1": [(ch1x1, 1)],
                       "branch2": [(ch3x3red, 1), (ch3x3, 3)],
                       "branch3": [(ch5x5red, 1), (ch5x5, k5)],
                       "branch4": [nn.MaxPool2d(3, 1, 1), (pool_proj, 1)]}, norm)


def naive_inception_module(cin, ch1x1, ch3x3, ch5x5, norm=True) -> Mixed:
    """Fig. 2(a), the naïve version: 1×1 | 3×3 | 5×5 | 3×3 max-pool, no 1×1 reductions. The pooled
    input passes unprojected, so the module is ch1x1 + ch3x3 + ch5x5 + cin wide: stacked, the widths
    grow from stage to stage (Sec. 4's argument for the reductions of Fig. 2(b))."""
    return Mixed(cin, {"branch1": [(ch1x1, 1)], "branch2": [(ch3x3, 3)], "branch3": [(ch5x5, 5)],
                       "branch4": nn.MaxPool2d(3, 1, 1)}, norm)


def bn_inception_module(cin, ch1x1, ch3x3red, ch3x3, dbl_red, dbl, pool, proj, stride=1) -> Mixed:
    """A row of Fig. 5: 1×1 | 1×1 → 3×3 | 1×1 → 3×3 → 3×3 | avg/max pool → 1×1 projection.

    The stride-2 rows (3c, 4e) have no 1×1 branch, stride their last convolutions, and pass the
    max-pooled input through unprojected (``proj=0``).
    """
    pooling = (nn.MaxPool2d if pool == "max" else nn.AvgPool2d)(3, stride, 1)
    branches = {"branch1": [(ch1x1, 1)]} if ch1x1 else {}
    branches.update({"branch2": [(ch3x3red, 1), (ch3x3, 3, stride)],
                     "branch3": [(dbl_red, 1), (dbl, 3), (dbl, 3, stride)],
                     "branch4": [pooling, (proj, 1)] if proj else pooling})
    return Mixed(cin, branches)


def aux_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """The auxiliary heads' 5×5/3 average pool; a map too small for it to leave `size`×`size`
    (small-input networks) is pooled adaptively to `size`×`size` instead."""
    if min(x.shape[-2:]) >= 3 * size + 2:
        return F.avg_pool2d(x, 5, 3)
    return F.adaptive_avg_pool2d(x, size)


class AuxHead(nn.Module):
    """An auxiliary classifier whose last linear layer is `classifier_name`."""
    classifier_name = "fc"

    def reset_classifier(self, num_classes: int) -> None:
        old = getattr(self, self.classifier_name)
        new = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)
        setattr(self, self.classifier_name, new)


class GoogLeNetAux(AuxHead):
    """5×5/3 avg-pool (4×4 from the 14×14 grid) → 1×1 conv 128 → FC 1024 → ReLU → dropout 0.7 → FC."""
    classifier_name = "fc2"

    def __init__(self, cin: int, num_classes: int, norm: bool = True):
        super().__init__()
        self.conv = BasicConv2d(cin, 128, 1, norm=norm)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(0.7)

    def forward(self, x):
        x = self.conv(F.adaptive_avg_pool2d(aux_pool(x, 4), 4)).flatten(1)
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


# ---- Inception-v3 (torchvision's names) -----------------------------------------------------

class InceptionV3A(nn.Module):
    """Fig. 5 on the 35×35 grid: 1×1 | 1×1 → 5×5 | 1×1 → 3×3 → 3×3 | avg-pool → 1×1."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x),
                          _path(self, x, "branch5x5_1", "branch5x5_2"),
                          _path(self, x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                          self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionV3B(nn.Module):
    """Grid reduction 35 → 17 (Fig. 10): 3×3/2 | 1×1 → 3×3 → 3×3/2 | 3×3/2 max-pool."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, 2, 0)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, 2, 0)

    def forward(self, x):
        return torch.cat([self.branch3x3(x),
                          _path(self, x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                          F.max_pool2d(x, 3, 2)], 1)


class InceptionV3C(nn.Module):
    """Fig. 6 on the 17×17 grid, n = 7: 1×1 | 1×n → n×1 | (n×1 → 1×n) twice | avg-pool → 1×1."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x),
                          _path(self, x, *(f"branch7x7_{i}" for i in range(1, 4))),
                          _path(self, x, *(f"branch7x7dbl_{i}" for i in range(1, 6))),
                          self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionV3D(nn.Module):
    """Grid reduction 17 → 8: 1×1 → 3×3/2 | 1×1 → 1×7 → 7×1 → 3×3/2 | 3×3/2 max-pool."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, 2, 0)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, 2, 0)

    def forward(self, x):
        return torch.cat([_path(self, x, "branch3x3_1", "branch3x3_2"),
                          _path(self, x, *(f"branch7x7x3_{i}" for i in range(1, 5))),
                          F.max_pool2d(x, 3, 2)], 1)


class InceptionV3E(nn.Module):
    """Fig. 7 on the 8×8 grid: 1×1 | 1×1 → [1×3, 3×1] | 1×1 → 3×3 → [1×3, 3×1] | avg-pool → 1×1."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        a = self.branch3x3_1(x)
        b = _path(self, x, "branch3x3dbl_1", "branch3x3dbl_2")
        return torch.cat([self.branch1x1(x),
                          self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b),
                          self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionV3Aux(AuxHead):
    """5×5/3 avg-pool → 1×1 conv 128 → 5×5 conv 768 (valid) → global pool → FC, BN throughout."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.conv0 = BasicConv2d(cin, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5, padding=0)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x):
        x = self.conv1(self.conv0(aux_pool(x, 5)))
        return self.fc(x.mean((2, 3)))


# ---- Inception-v4 (timm's names) ------------------------------------------------------------

def _reduce(small: bool) -> tuple[int, int]:
    """Stride and padding of a stem's "3×3/2 V" layer; a small-input stem keeps the grid."""
    return (1, 1) if small else (2, 0)


class Mixed3a(Mixed):
    """Fig. 3: 3×3/2 max-pool | 3×3/2 conv 96 (V), 64 → 160 channels."""

    def __init__(self, small: bool = False):
        s, p = _reduce(small)
        super().__init__(64, {"maxpool": nn.MaxPool2d(3, s, p), "conv": [(96, 3, s, p)]})


class Mixed4a(Mixed):
    """Fig. 3: 1×1 → 3×3 (V) | 1×1 → 1×7 → 7×1 → 3×3 (V), 160 → 192 channels."""

    def __init__(self, small: bool = False):
        p = 1 if small else 0
        super().__init__(160, numbered([(64, 1), (96, 3, 1, p)],
                                       [(64, 1), (64, (1, 7)), (64, (7, 1)), (96, 3, 1, p)]))


class Mixed5a(Mixed):
    """Fig. 3: 3×3/2 conv 192 (V) | 3×3/2 max-pool, 192 → 384 channels."""

    def __init__(self, small: bool = False):
        s, p = _reduce(small)
        super().__init__(192, {"conv": [(192, 3, s, p)], "maxpool": nn.MaxPool2d(3, s, p)})


def _avg_pool():
    return nn.AvgPool2d(3, 1, 1, count_include_pad=False)


def inception_v4_a() -> Mixed:
    """Fig. 4, 35×35×384."""
    return Mixed(384, numbered([(96, 1)], [(64, 1), (96, 3)], [(64, 1), (96, 3), (96, 3)],
                               [_avg_pool(), (96, 1)]))


def inception_v4_b() -> Mixed:
    """Fig. 5, 17×17×1024."""
    return Mixed(1024, numbered([(384, 1)], [(192, 1), (224, (1, 7)), (256, (7, 1))],
                                [(192, 1), (192, (7, 1)), (224, (1, 7)), (224, (7, 1)), (256, (1, 7))],
                                [_avg_pool(), (128, 1)]))


class InceptionV4C(nn.Module):
    """Fig. 6, 8×8×1536: 1×1 | 1×1 → [1×3, 3×1] | 1×1 → 3×1 → 1×3 → [1×3, 3×1] | avg-pool → 1×1."""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(1536, 256, 1)
        self.branch1_0 = BasicConv2d(1536, 384, 1)
        self.branch1_1a = BasicConv2d(384, 256, (1, 3))
        self.branch1_1b = BasicConv2d(384, 256, (3, 1))
        self.branch2_0 = BasicConv2d(1536, 384, 1)
        self.branch2_1 = BasicConv2d(384, 448, (3, 1))
        self.branch2_2 = BasicConv2d(448, 512, (1, 3))
        self.branch2_3a = BasicConv2d(512, 256, (1, 3))
        self.branch2_3b = BasicConv2d(512, 256, (3, 1))
        self.branch3 = nn.Sequential(_avg_pool(), BasicConv2d(1536, 256, 1))

    def forward(self, x):
        a = self.branch1_0(x)
        b = _path(self, x, "branch2_0", "branch2_1", "branch2_2")
        return torch.cat([self.branch0(x), self.branch1_1a(a), self.branch1_1b(a),
                          self.branch2_3a(b), self.branch2_3b(b), self.branch3(x)], 1)


def reduction_a(cin: int, k: int, l: int, m: int, n: int) -> Mixed:
    """Fig. 7: 3×3/2 n (V) | 1×1 k → 3×3 l → 3×3/2 m (V) | 3×3/2 max-pool; k, l, m, n of Table 1."""
    return Mixed(cin, numbered([(n, 3, 2, 0)], [(k, 1), (l, 3), (m, 3, 2, 0)], nn.MaxPool2d(3, 2)))


def reduction_v4_b() -> Mixed:
    """Fig. 8: 1×1 → 3×3/2 (V) | 1×1 → 1×7 → 7×1 → 3×3/2 (V) | 3×3/2 max-pool, 1024 → 1536."""
    return Mixed(1024, numbered([(192, 1), (192, 3, 2, 0)],
                                [(256, 1), (256, (1, 7)), (320, (7, 1)), (320, 3, 2, 0)],
                                nn.MaxPool2d(3, 2)))


# ---- Inception-ResNet ----------------------------------------------------------------------

class InceptionResNetBlock(Mixed):
    """ReLU(x + scale · W·concat(branches(x))) (Figs. 10–13, 16–19).

    W is the 1×1 "linear" convolution restoring the input width: it has a bias and no BN (BN sits
    only on top of the traditional layers, Sec. 3.2). Scaling the branch by 0.1–0.3 keeps wide
    residual Inception networks from dying early in training (Sec. 3.3, Fig. 20).
    """

    def __init__(self, channels: int, *branches, scale: float, activate: bool = True):
        super().__init__(channels, numbered(*branches))
        self.conv2d = nn.Conv2d(self.out_channels, channels, 1)
        self.out_channels = channels
        self.scale = scale
        self.relu = nn.ReLU() if activate else nn.Identity()

    def forward(self, x):
        return self.relu(x + self.scale * self.conv2d(super().forward(x)))


def reduction_resnet_b(cin: int, a: int, b: int, c: tuple[int, int]) -> Mixed:
    """Figs. 12, 18: 1×1 → 3×3/2 a | 1×1 → 3×3/2 b | 1×1 → 3×3 → 3×3/2 (V) | 3×3/2 max-pool."""
    return Mixed(cin, numbered([(256, 1), (a, 3, 2, 0)], [(256, 1), (b, 3, 2, 0)],
                               [(256, 1), (c[0], 3), (c[1], 3, 2, 0)], nn.MaxPool2d(3, 2)))
