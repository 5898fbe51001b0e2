"""Residual Attention Networks: Wang, Jiang, Qian, Yang, Li, Zhang, Wang, Tang, "Residual Attention
Network for Image Classification", CVPR 2017.

Table 2's ImageNet networks: conv 7×7/2 (64) → max-pool 3×3/2 → a residual unit (256) →
attention stage 1 at 56×56 → unit (512, /2) → stage 2 at 28×28 → unit (1024, /2) → stage 3 at
14×14 → three units (2048, the first /2) at 7×7 → average pool → fc. Attention-56 has one
attention module per stage, Attention-92 one, two and three. Every module uses the paper's
p = 1, t = 2, r = 1 (Sec. 3.3), and its soft mask branch pools down to 7×7: three max-pools in
stage 1, two in stage 2, one in stage 3 (layers/attention.py `ResidualAttentionModule`).
Residual units are pre-activation bottlenecks, so a BN-ReLU precedes the pooling. Figures from
the notes' table (Attention-56: 31.9M parameters, 6.3 GFLOPs; Attention-92: 51.3M, 10.4 GFLOPs
— Table 4 gives Attention-92 at 224×224, the size these are counted at).

Feature stages: the stem's ReLU, the three attention stages and the 2048-channel units with
their final BN-ReLU (``final``).

Small inputs (< 64 px): a 3×3 stride-1 stem without max-pool, so 28×28 images meet stage 1 at
28×28; the masks pool with padding (28 → 14 → 7 → 4) and interpolate back to each level's size.
"""
from __future__ import annotations

from torch import nn

from ..layers.attention import ResidualAttentionModule
from ..layers.residual import BNReLU, PreActBlock, conv3x3
from ..registry import register_model
from .base import ImageClassifier
from .resnet import msra_init

_PAPER = dict(family="residual_attention", year=2017,
              paper="Wang, Jiang, Qian, Yang, Li, Zhang, Wang, Tang. Residual Attention Network for "
                    "Image Classification. CVPR 2017")


def _unit(cin: int, channels: int, stride: int = 1) -> PreActBlock:
    return PreActBlock(cin, channels // 4, stride, kernels=(1, 3, 1), expansion=4)


class ResidualAttentionNet(ImageClassifier):
    """Stem → for each stage: a (strided) residual unit and `modules[i]` attention modules →
    three 2048-channel units → BN-ReLU → global average pool → fc."""

    def __init__(self, modules=(1, 1, 1), num_classes=1000, in_chans=3, small=False, p=1, t=2, r=1):
        super().__init__()
        self.num_classes = num_classes
        if small:
            self.stem = nn.Sequential(conv3x3(in_chans, 64), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        cin, stages = 64, []
        for i, count in enumerate(modules):
            channels = 256 * 2 ** i
            levels = len(modules) - i  # the mask pools down to the last stage's grid
            stages.append(nn.Sequential(_unit(cin, channels, 1 if i == 0 else 2),
                                        *(ResidualAttentionModule(channels, levels, p, t, r)
                                          for _ in range(count))))
            cin = channels
        self.stages = nn.Sequential(*stages)
        self.final = nn.Sequential(_unit(cin, 2 * cin, 2), _unit(2 * cin, 2 * cin), _unit(2 * cin, 2 * cin),
                                   BNReLU(2 * cin))
        self.num_features = 2 * cin
        self.fc = nn.Linear(self.num_features, num_classes)
        msra_init(self)

    def stage_modules(self):
        return ["stem.2", *(f"stages.{i}" for i in range(len(self.stages))), "final"]

    def forward_features(self, x):
        return self.final(self.stages(self.stem(x)))


def residual_attention_net(num_classes=1000, in_chans=3, image_size=None, small_input=None, **kwargs):
    small = small_input if small_input is not None else (image_size is not None and image_size < 64)
    return ResidualAttentionNet(num_classes=num_classes, in_chans=in_chans, small=small, **kwargs)


register_model("attention56", **_PAPER, paper_params="31.9M", paper_macs="6.3G",
               modules=(1, 1, 1))(residual_attention_net)
register_model("attention92", **_PAPER, paper_params="51.3M", paper_macs="10.4G",
               mismatch_reason="built by the same rule as Attention-56, which matches its 31.9M "
               "(31.81M, −0.3 %), Attention-92 has 52.47M (+2.3 %); the paper does not say where "
               "its 92-layer network departs from that rule",
               modules=(1, 2, 3))(residual_attention_net)
