"""AttentionNeXt-56: Wang, Jiang, Qian, Yang, Li, Zhang, Wang, Tang, "Residual Attention Network for
Image Classification", CVPR 2017, Table 5 (the notes' table: 31.9M parameters, 6.3 GFLOPs, 21.2 /
5.6 top-1 / top-5 error at 224 px, level with ResNeXt-101 at fewer parameters and FLOPs).

Attention-56 (models/residual_attention.py) with ResNeXt units (Xie et al., CVPR 2017) as its basic
unit: every residual unit — those between the stages, in the trunk and pre/post-processing of each
attention module, and in its soft mask branch — becomes an aggregated-transformation bottleneck,
1×1 → grouped 3×3 → 1×1. The paper names the unit and no more; ResNeXt's own ImageNet template,
32 groups of 4 channels per quarter of the output (32×4d: 128 inner channels for a 256-wide unit),
is used, with the pre-activation order (BN-ReLU before each convolution) of the network's other
units. That template was designed to keep the ResNet bottleneck's cost: the
network measures 31.31M parameters (−1.8 %) and 6.42 G MACs (+2.4 %) against the table's 31.9M and
6.3 G, which are Attention-56's own figures repeated; ResNeXt-50 has the same 2 % fewer parameters
than ResNet-50 (25.0M against 25.5M in ResNeXt's Table 1).

AttentionInception-56 (Inception units in the same network, 299 px) is models/attention_inception.py,
with Inception-ResNet-v1's block A as the unit, since the paper does not say which Inception unit.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers.residual import BNReLU, PreActBlock, make_shortcut
from ..registry import register_model
from .residual_attention import _PAPER, residual_attention_net
from .resnet import msra_init


class PreActResNeXtUnit(nn.Module):
    """x + F(x), F = BN-ReLU → 1×1 → BN-ReLU → grouped 3×3 (stride) → BN-ReLU → 1×1.

    The inner width is ``cardinality · int(planes · base_width / 64)`` with planes = out / 4 (the
    ResNeXt template; cardinality 1, base_width 64 is the pre-activation ResNet bottleneck). A
    projection shortcut reads the pre-activated input, as `PreActBlock`'s does, and the parameter
    names are its names."""

    def __init__(self, cin: int, cout: int, stride: int = 1, cardinality: int = 32, base_width: int = 4):
        super().__init__()
        width = cardinality * int(cout // 4 * base_width / 64)
        self.out_channels = cout
        self.bn1, self.conv1 = BNReLU(cin), nn.Conv2d(cin, width, 1, bias=False)
        self.bn2 = BNReLU(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=cardinality, bias=False)
        self.bn3, self.conv3 = BNReLU(width), nn.Conv2d(width, cout, 1, bias=False)
        self.downsample = make_shortcut(cin, cout, stride, "B", norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.bn1(x)
        shortcut = x if self.downsample is None else self.downsample(pre)
        return self.conv3(self.bn3(self.conv2(self.bn2(self.conv1(pre))))) + shortcut


def resnext_units(model: nn.Module, cardinality: int, base_width: int) -> nn.Module:
    """Every pre-activation bottleneck of `model` replaced by a ResNeXt unit of the same input,
    output and stride."""
    for name, module in list(model.named_modules()):
        if isinstance(module, PreActBlock):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            unit = PreActResNeXtUnit(module.bn1.num_features, module.out_channels, module.conv2.stride[0],
                                     cardinality, base_width)
            setattr(parent, child, unit)
    return model


_SAME_AS_ATTENTION56 = ("the table repeats Attention-56's 31.9M and 6.3 G for it; ResNeXt's 32×4d units cost 1.8 % "
                        "fewer parameters than the pre-activation bottlenecks they replace (ResNeXt-50 has 2 % "
                        "fewer than ResNet-50)")


@register_model(**_PAPER, paper_params="31.9M", paper_macs="6.3G", mismatch_reason=_SAME_AS_ATTENTION56)
def attentionnext56(num_classes=1000, in_chans=3, image_size=None, small_input=None, cardinality=32,
                    base_width=4):
    model = residual_attention_net(num_classes, in_chans, image_size, small_input, modules=(1, 1, 1))
    msra_init(resnext_units(model, cardinality, base_width))
    return model
