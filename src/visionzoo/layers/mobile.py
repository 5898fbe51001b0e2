"""Mobile convolution blocks.

- Depthwise-separable convolution: Howard et al., "MobileNets: Efficient Convolutional Neural
  Networks for Mobile Vision Applications", arXiv 2017, Sec. 3.1 and Fig. 3. A D_K × D_K
  depthwise convolution (one filter per input channel, cost D_K² · M · D_F²) followed by a 1×1
  pointwise convolution (M · N · D_F²), each with BN and ReLU: total D_K² · M · D_F² + M · N · D_F²
  multiply-adds instead of D_K² · M · N · D_F².
- Inverted residual with linear bottleneck: Sandler et al., "MobileNetV2: Inverted Residuals and
  Linear Bottlenecks", CVPR 2018, Table 1: 1×1 expansion to t·k channels (ReLU6) → 3×3
  depthwise with stride s (ReLU6) → linear 1×1 projection to k'; the shortcut joins the thin
  bottlenecks when s = 1 and k = k'.
- MBConv: the same block with a k×k depthwise kernel, Squeeze-and-Excitation on the expanded
  channels and Swish (SiLU), as used by Tan & Le, "EfficientNet", ICML 2019 (Table 1), with
  stochastic depth on the residual branch.

Parameter names follow torchvision: `InvertedResidual` keeps MobileNetV2's (`conv.i`, the
projection's conv and BN as two entries), `MBConv` EfficientNet's (`block.i`, the projection
one Conv-BN unit), so both twins load unchanged.
"""
from __future__ import annotations

from torch import nn

from .drop import DropPath
from .se import SqueezeExcite


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to the nearest multiple of `divisor`, never more than 10 %
    below it (the rounding of MobileNetV2's and EfficientNet's reference code)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNAct(nn.Sequential):
    """k×k convolution (no bias, 'same' padding) → BN → activation (none when `act` is None)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU, bn_eps: float = 1e-5):
        layers = [nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, groups=groups,
                            bias=False), nn.BatchNorm2d(cout, eps=bn_eps)]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class DepthwiseSeparable(nn.Module):
    """MobileNet Fig. 3(right): 3×3 depthwise conv → BN → ReLU → 1×1 conv → BN → ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, kernel_size: int = 3,
                 act: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.depthwise = ConvBNAct(cin, cin, kernel_size, stride, groups=cin, act=act)
        self.pointwise = ConvBNAct(cin, cout, 1, act=act)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class InvertedResidual(nn.Module):
    """Expand (1×1, t·cin channels; omitted when t = 1) → k×k depthwise with `stride` →
    (Squeeze-and-Excitation) → linear 1×1 projection; x + drop_path(branch) when stride is 1
    and the channels match.

    The projection has no activation: ReLU on a low-dimensional bottleneck destroys
    information (MobileNetV2 Sec. 3.2), so the block's output stays linear.
    """
    branch_name = "conv"
    nested_projection = False

    def __init__(self, cin: int, cout: int, stride: int = 1, expand_ratio: int = 6,
                 kernel_size: int = 3, act: type[nn.Module] = nn.ReLU6, se_channels: int = 0,
                 drop_path: float = 0.0, bn_eps: float = 1e-5):
        super().__init__()
        hidden = cin * expand_ratio
        layers = [] if expand_ratio == 1 else [ConvBNAct(cin, hidden, 1, act=act, bn_eps=bn_eps)]
        layers.append(ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden, act=act,
                                bn_eps=bn_eps))
        if se_channels:
            layers.append(SqueezeExcite(hidden, squeeze_channels=se_channels, act=act))
        projection = ConvBNAct(hidden, cout, 1, act=None, bn_eps=bn_eps)
        layers.extend([projection] if self.nested_projection else list(projection))
        self.add_module(self.branch_name, nn.Sequential(*layers))
        self.out_channels = cout
        self.use_residual = stride == 1 and cin == cout
        # Only a branch with a shortcut beside it can be dropped.
        self.drop_path = DropPath(drop_path if self.use_residual else 0.0)

    def forward(self, x):
        out = getattr(self, self.branch_name)(x)
        return x + self.drop_path(out) if self.use_residual else out


class MBConv(InvertedResidual):
    """EfficientNet's mobile inverted bottleneck: SiLU, SE and torchvision's EfficientNet names."""
    branch_name = "block"
    nested_projection = True

    def __init__(self, cin: int, cout: int, stride: int = 1, expand_ratio: int = 6,
                 kernel_size: int = 3, se_ratio: float = 0.25, drop_path: float = 0.0,
                 bn_eps: float = 1e-5):
        # The SE bottleneck is a quarter of the block's *input* channels, not the expanded ones.
        super().__init__(cin, cout, stride, expand_ratio, kernel_size, act=nn.SiLU,
                         se_channels=max(1, int(cin * se_ratio)), drop_path=drop_path,
                         bn_eps=bn_eps)
