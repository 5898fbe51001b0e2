"""SENet-154: Hu, Shen, Albanie, Sun, Wu, "Squeeze-and-Excitation Networks", CVPR 2018 / TPAMI 2019,
Sec. 6.1 (the ILSVRC 2017 entry, the notes' state-of-the-art table: 18.68 / 4.47 top-1 / top-5 error
at 224 px) and the appendix describing it.

SE blocks (layers/se.py, r = 16) on a 64×4d ResNeXt-152 — ResNeXt-101's 64×4d template with
ResNet-152's block counts (3, 8, 36, 3) — with the appendix's changes to the network:
(a) the first 1×1 convolution of every bottleneck is halved (128, 256, 512, 1024 wide before the
    grouped 3×3 of 256, 512, 1024, 2048 channels in 64 groups);
(b) the 7×7 stem is three 3×3 convolutions (64/2, 64, 128), each followed by BN and ReLU;
(c) the 1×1 stride-2 projection shortcuts are 3×3 stride-2 convolutions (the stride-1 projection
    of the first stage stays 1×1);
(d) dropout 0.2 before the classifier.
BN follows every convolution, and the stride sits on the grouped 3×3. The stem's max-pool rounds
up (Caffe's pooling, which the released model uses), so an even map is pooled from its top-left
pixel rather than from a padded border. Label smoothing and the frozen BN statistics of the
appendix belong to training, not to the network.

Figures: neither the paper nor the notes print SENet-154's parameters or FLOPs (the card has none;
it measures 115.1M parameters, 20.7 G MACs at 224 px). timm's ``legacy_senet154`` (Cadene's port of
the released Caffe model) is a twin: `timm_senet154_to_ours` renames its stem and SE modules.
"""
from __future__ import annotations

import re
from functools import partial

from torch import nn

from ..layers.residual import Bottleneck, conv3x3
from ..layers.se import SqueezeExcite
from ..registry import register_model
from .resnet import imagenet_resnet
from .senet import _SE


class SENet154Bottleneck(Bottleneck):
    """ResNeXt bottleneck whose first 1×1 is half the grouped 3×3's width, and whose stride-2
    projection shortcut is a 3×3 convolution + BN (changes (a) and (c))."""

    reduce_ratio = 0.5

    def __init__(self, cin: int, planes: int, stride: int = 1, **kwargs):
        super().__init__(cin, planes, stride, **kwargs)
        if stride > 1:   # a 1×1 stride-2 projection reads one pixel in four; the 3×3 reads them all
            self.downsample = nn.Sequential(conv3x3(cin, self.out_channels, stride),
                                            nn.BatchNorm2d(self.out_channels))



def timm_senet154_to_ours(state_dict: dict) -> dict:
    """timm's legacy SENet names → ours: layer0.{conv,bn}k → the deep stem's conv1.i (its last BN is
    our bn1), se_module → attention, last_linear → fc."""
    stem = {"conv1": "conv1.0", "bn1": "conv1.1", "conv2": "conv1.3", "bn2": "conv1.4", "conv3": "conv1.6",
            "bn3": "bn1"}
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r"^layer0\.(\w+)\.", lambda m: f"{stem[m.group(1)]}.", key)
        key = key.replace(".se_module.", ".attention.").replace("last_linear.", "fc.")
        out[key] = value
    return out


@register_model(**_SE, twins={"timm": "legacy_senet154"}, converters={"timm": timm_senet154_to_ours})
def senet154(num_classes=1000, in_chans=3, image_size=None, small_input=None, **kwargs):
    """SENet-154; below 64 px (or ``small_input=True``) the stem is models/resnet.py's 3×3 stride-1
    convolution without max-pool, 128 wide."""
    model = imagenet_resnet(num_classes, in_chans, image_size, small_input, stem="deep",
                            block=SENet154Bottleneck, layers=(3, 8, 36, 3), widths=(64, 128, 256, 512),
                            stem_width=128, groups=64, base_width=4,
                            attention=partial(SqueezeExcite, reduction=16), **kwargs)
    if isinstance(model.maxpool, nn.MaxPool2d):
        model.maxpool = nn.MaxPool2d(3, 2, ceil_mode=True)
    model.head_drop = nn.Dropout(0.2)
    return model
