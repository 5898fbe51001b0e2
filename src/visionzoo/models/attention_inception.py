"""AttentionInception-56: Wang, Jiang, Qian, Yang, Li, Zhang, Wang, Tang, "Residual Attention Network
for Image Classification", CVPR 2017, Sec. 4.2 and Table 5 (the notes' table: 31.9M parameters,
6.3 GFLOPs, 20.36 / 5.29 top-1 / top-5 error at 299 px, below Inception-ResNet-v1's 21.3 / 5.5).

Attention-56 (models/residual_attention.py) with an Inception module as its basic unit: every
residual unit — those between the stages, in the trunk and pre/post-processing of each attention
module, and in its soft mask branch — becomes an Inception-ResNet unit. The paper says only that
the residual unit is replaced by an Inception module and compares the result with
Inception-ResNet-v1; the unit built here is that network's block A (Szegedy, Ioffe, Vanhoucke,
Alemi, "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
AAAI 2017, Fig. 10): three parallel branches, 1×1 | 1×1 → 3×3 | 1×1 → 3×3 → 3×3, concatenated, a
linear 1×1 back to the unit's width, added to the shortcut. As in the network's other units it is
pre-activated (BN-ReLU before every convolution, the input's shared by the branches and a
projection shortcut, which is a 1×1 where width or stride change). A strided unit strides the
1×1 of the first branch, the 3×3 of the second and the first 3×3 of the third (the bottleneck's
stride also sits on its first 3×3), and its shortcut.

Branch widths: block A has 32 channels per branch in a 256-channel unit; here each branch has 30
per 256 output channels (30, 60, 120, 240 in the four stages), the width at which a 256-wide unit
costs what the bottleneck it replaces costs (27w² + 6·256·w ≈ 17/16 · 256² weights). The network
measures 31.80M parameters and 6.26 G MACs at 224 px, against the table's 31.9M and 6.3 G, which
are Attention-56's own figures repeated (as for AttentionNeXt-56, models/attention_next.py); at
the table's 299-px test size, the registered input size, it costs 11.61 G MACs. Block A's 32
would give 34.03M and 6.67 G at 224 px. Inception-ResNet's scaling of the residual by 0.1–0.3
(Sec. 3.3) is not used: Wang et al. name none, and the network's other units have none.

Feature stages and the small-input stem (< 64 px) are Attention-56's.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers.residual import BNReLU, PreActBlock, conv1x1, conv3x3, make_shortcut
from ..registry import register_model
from .residual_attention import _PAPER, residual_attention_net
from .resnet import msra_init


class PreActInceptionResNetUnit(nn.Module):
    """x + F(x), F = 1×1 · BN-ReLU([b₁; b₂; b₃]) on p = BN-ReLU(x), each branch `width` wide:
    b₁ = 1×1(p), b₂ = 3×3(BN-ReLU(1×1(p))), b₃ = 3×3(BN-ReLU(3×3(BN-ReLU(1×1(p))))).

    The final 1×1 (`conv_out`) is linear: nothing follows it before the addition. A projection
    shortcut (`downsample`) reads p, as `PreActBlock`'s does; `stride` sits on b₁'s 1×1, b₂'s 3×3
    and b₃'s first 3×3."""

    def __init__(self, cin: int, cout: int, width: int, stride: int = 1):
        super().__init__()
        self.out_channels = cout
        self.bn1 = BNReLU(cin)
        self.branch1x1 = conv1x1(cin, width, stride)
        self.branch3x3 = nn.Sequential(conv1x1(cin, width), BNReLU(width), conv3x3(width, width, stride))
        self.branch3x3dbl = nn.Sequential(conv1x1(cin, width), BNReLU(width), conv3x3(width, width, stride),
                                          BNReLU(width), conv3x3(width, width))
        self.bn_out = BNReLU(3 * width)
        self.conv_out = conv1x1(3 * width, cout)
        self.downsample = make_shortcut(cin, cout, stride, "B", norm=False)

    def branches(self, pre: torch.Tensor) -> list[torch.Tensor]:
        """b₁, b₂, b₃ of the pre-activated input."""
        return [self.branch1x1(pre), self.branch3x3(pre), self.branch3x3dbl(pre)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.bn1(x)
        shortcut = x if self.downsample is None else self.downsample(pre)
        return self.conv_out(self.bn_out(torch.cat(self.branches(pre), 1))) + shortcut


def inception_units(model: nn.Module, branch_width: int) -> nn.Module:
    """Every pre-activation bottleneck of `model` replaced by an Inception-ResNet unit of the same
    input, output and stride, with ``branch_width`` channels per branch per 256 output channels."""
    for name, module in list(model.named_modules()):
        if isinstance(module, PreActBlock):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            cout = module.out_channels
            unit = PreActInceptionResNetUnit(module.bn1.num_features, cout, max(1, cout * branch_width // 256),
                                             module.conv2.stride[0])
            setattr(parent, child, unit)
    return model


_SAME_AS_ATTENTION56 = ("the table repeats Attention-56's 31.9M and 6.3 G for it, counted at 224 px, where this "
                        "network has 31.80M and 6.26 G; the card counts MACs at the table's 299-px test size")


@register_model(**_PAPER, input_size=(3, 299, 299), paper_params="31.9M", paper_macs="6.3G",
                mismatch_reason=_SAME_AS_ATTENTION56)
def attentioninception56(num_classes=1000, in_chans=3, image_size=None, small_input=None, branch_width=30):
    model = residual_attention_net(num_classes, in_chans, image_size, small_input, modules=(1, 1, 1))
    msra_init(inception_units(model, branch_width))
    return model
