"""Residual blocks: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, and
"Identity Mappings in Deep Residual Networks", ECCV 2016.

Post-activation (CVPR 2016): y = F(x, {W_i}) + W_s x, then ReLU (Eq. 1–2). The basic block
stacks two 3×3 convolutions, the bottleneck block 1×1 → 3×3 → 1×1 with expansion 4 (Fig. 5);
its 3×3 may be grouped (ResNeXt, Xie et al. CVPR 2017, Fig. 3(c)). Shortcut options of Sec. 4.1:
A — identity, zero-padding the extra channels when the shape changes (parameter-free);
B — projection (1×1 conv + BN) only when the shape changes;
C — projection on every block;
D — average-pool then 1×1 projection + BN, only when the shape changes (ResNet-D of He et al.,
"Bag of Tricks for Image Classification", CVPR 2019; timm's ``avg_down``, used by ResNeSt).
`residual=False` gives the "plain" twin of the same depth (no shortcut at all).

Pre-activation (ECCV 2016, Fig. 1(b), Eq. 3): x_{l+1} = x_l + F(x_l), with F a stack of
BN → ReLU → conv units and nothing after the addition. One `PreActBlock` covers the basic block
(3,3), the bottleneck (1,3,1) with expansion 4, and the block types B(3,3), B(3,1,3), B(1,3,1),
B(1,3), B(3,1), B(3,1,1) of Wide ResNets (Zagoruyko & Komodakis, BMVC 2016, Sec. 2.1), with
their dropout between the convolutions.

Every block takes `drop_path`, its stochastic-depth drop probability (layers/drop.py).
Post-activation blocks take `attention`, a factory ``channels -> module`` placed on the residual
branch just before the addition (SE-ResNet, Hu et al. CVPR 2018, Fig. 3; CBAM, Woo et al. ECCV 2018,
Fig. 3); extra keyword arguments go to `make_branch` (a subclass's branch options, e.g. ResNeSt's radix).
Parameter names follow torchvision so its weights load unchanged.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .drop import DropPath


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


def make_shortcut(cin: int, cout: int, stride: int, option: str, norm: bool = True) -> nn.Module | None:
    """The shortcut branch for one block, or None for a plain identity.

    A projection is a 1×1 convolution followed by BN (`norm=False`, as in pre-activation
    blocks whose input is already normalised, drops the BN).
    """
    changes = stride != 1 or cin != cout
    if option == "A":
        return ZeroPadShortcut(cin, cout, stride) if changes else None
    if option == "C" or (option == "B" and changes):
        return nn.Sequential(conv1x1(cin, cout, stride), *([nn.BatchNorm2d(cout)] if norm else []))
    if option == "D" and changes:
        # Pooling before a stride-1 projection keeps the 3/4 of the input a strided 1×1 drops.
        pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
        return nn.Sequential(pool, conv1x1(cin, cout), nn.BatchNorm2d(cout))
    if option not in ("B", "C", "D"):
        raise ValueError(f"shortcut option must be 'A', 'B', 'C' or 'D', not {option!r}")
    return None


class BasicBlock(nn.Module):
    """Post-activation block: relu(drop_path(A(F(x))) + shortcut(x)), F = conv-BN-ReLU-conv-BN,
    A the optional attention module (identity by default). Every rectifier is a module of its own
    (`relu1`, `relu2` in the branch, `relu` after the addition), so `--act prelu` learns one set
    of slopes per layer, as He et al. (ICCV 2015) do."""
    expansion = 1
    preact = False

    def __init__(self, cin: int, planes: int, stride: int = 1, shortcut: str = "B",
                 residual: bool = True, groups: int = 1, base_width: int = 64, drop_path: float = 0.0,
                 attention=None, **branch_args):
        super().__init__()
        if drop_path and not residual:
            raise ValueError("stochastic depth drops residual branches; a plain network has none")
        self.out_channels = planes * self.expansion
        self.make_branch(cin, planes, stride, groups, base_width, **branch_args)
        self.attention = attention(self.out_channels) if attention else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual
        self.downsample = make_shortcut(cin, self.out_channels, stride, shortcut) if residual else None
        self.drop_path = DropPath(drop_path)

    def make_branch(self, cin, planes, stride, groups, base_width):
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, self.out_channels)
        self.bn2 = nn.BatchNorm2d(self.out_channels)

    def residual_branch(self, x):
        return self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))

    def forward(self, x):
        out = self.drop_path(self.attention(self.residual_branch(x)))
        if self.residual:  # in place, as torchvision: no new activation-sized tensor per block
            out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class Bottleneck(BasicBlock):
    """1×1 reduce → 3×3 (grouped for ResNeXt) → 1×1 expand; stride on the 3×3 (torchvision's v1.5).

    The 3×3 has ``groups × int(planes · base_width / 64)`` channels: ResNeXt's C × d template
    (groups=C, base_width=d), and Wide ResNet-50-2's doubled bottleneck (base_width=128); the first
    1×1 reduces to `reduce_ratio` of that width (SENet-154 halves it).
    """
    expansion = 4
    reduce_ratio = 1.0

    def make_branch(self, cin, planes, stride, groups, base_width):
        width = int(planes * (base_width / 64.0)) * groups
        reduced = int(width * self.reduce_ratio)
        self.conv1 = conv1x1(cin, reduced)
        self.bn1 = nn.BatchNorm2d(reduced)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(reduced, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(width, self.out_channels)
        self.bn3 = nn.BatchNorm2d(self.out_channels)

    def residual_branch(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class BNReLU(nn.BatchNorm2d):
    """BN followed by ReLU, the pre-activation unit (one module, so BN parameter names stay plain)."""

    def forward(self, x):
        return F.relu(super().forward(x))


class PreActBlock(nn.Module):
    """x + drop_path(F(x)), F = [BN → ReLU → (dropout) → conv_k] for k in `kernels`.

    All convolutions have `planes` outputs except the last, which has ``planes · expansion``;
    the stride sits on the first of the largest kernels (the 3×3). The first activation is
    shared: a shortcut module (projection or option A) reads the pre-activated input, an
    identity shortcut carries x itself (the paper's appendix for the first unit; timm's ResNetV2
    and the WRN code for every projection). Projections here have no BN. Dropout, when set,
    comes before every convolution but the first (WRN Sec. 2.4: "between convolutions").
    """
    preact = True

    def __init__(self, cin: int, planes: int, stride: int = 1, kernels=(3, 3), expansion: int = 1,
                 shortcut: str = "B", dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.num_convs = len(kernels)
        strided = kernels.index(max(kernels))
        channels = cin
        for i, k in enumerate(kernels):
            out = planes * expansion if i == self.num_convs - 1 else planes
            self.add_module(f"bn{i + 1}", BNReLU(channels))
            self.add_module(f"conv{i + 1}", nn.Conv2d(channels, out, k, stride if i == strided else 1,
                                                      k // 2, bias=False))
            channels = out
        self.out_channels = channels
        self.dropout = nn.Dropout(dropout)
        self.downsample = make_shortcut(cin, channels, stride, shortcut, norm=False)
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        pre = self.bn1(x)
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        for i in range(2, self.num_convs + 1):
            out = getattr(self, f"conv{i}")(self.dropout(getattr(self, f"bn{i}")(out)))
        return self.drop_path(out) + shortcut
