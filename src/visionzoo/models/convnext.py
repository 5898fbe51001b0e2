"""ConvNeXt: Liu, Mao, Wu, Feichtenhofer, Darrell, Xie, "A ConvNet for the 2020s", CVPR 2022.

A ResNet modernised step by step toward a Swin Transformer (Sec. 2): a "patchify" stem (4×4
convolution, stride 4, then LN), stage depths 3:3:9:3 (3:3:27:3 for S/B/L), separate
downsampling layers (LN, then a 2×2 stride-2 convolution), and the block of Fig. 4:

    x + drop_path(γ ⊙ Linear₂(GELU(Linear₁(LN(dwconv7×7(x))))))

a depthwise 7×7 convolution, one LayerNorm, an inverted bottleneck whose hidden layer is four
times as wide (1×1 convolutions, written as Linear layers over the channels), layer scale γ
initialised to 1e-6, and stochastic depth (layers/drop.py; the paper's rates 0.1/0.4/0.5/0.5 for
T/S/B/L are the defaults). Head: global average pool → LN → linear. ConvNeXt-T/S/B/L of Table 1
and Sec. 3 (28.6M/4.5G, 50M/8.7G, 89M/15.4G, 198M/34.4G at 224²) under torchvision's names,
whose parameter names ours share.

Feature stages (timm's convnext): the four stages, ``features.1``, ``.3``, ``.5``, ``.7``.

Small images: with ``image_size < 64`` the stem patchifies 2×2 (stride 2) instead of 4×4, and
a downsampling layer pads an odd map by one row and column (zero) instead of dropping them, so
28×28 inputs go 14 → 7 → 4 → 2 through the four stages (32×32: 16 → 8 → 4 → 2). At 224² every
map is even and the network is exactly the paper's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.drop import DropPath, linear_drop_path_rates
from ..layers.norm import LayerNorm2d
from ..registry import register_model
from .base import ImageClassifier

_LIU = dict(family="convnext", year=2022,
            paper="Liu, Mao, Wu, Feichtenhofer, Darrell, Xie. A ConvNet for the 2020s. CVPR 2022")


class ChannelsLast(nn.Module):
    """(B, C, H, W) → (B, H, W, C), so Linear and LayerNorm act on the channels."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1)


class ChannelsFirst(nn.Module):
    def forward(self, x):
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """Fig. 4's block; `block` keeps torchvision's layer order so its indices name the weights."""

    def __init__(self, dim: int, layer_scale: float = 1e-6, drop_path: float = 0.0):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim),
            ChannelsLast(),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            ChannelsFirst())
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), layer_scale))
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        return x + self.drop_path(self.layer_scale * self.block(x))


class Downsample(nn.Sequential):
    """LN, then a 2×2 stride-2 convolution; an odd map is zero-padded on the bottom/right first
    (never the case at 224², where it changes nothing) so small inputs lose no row."""

    def __init__(self, cin: int, cout: int):
        super().__init__(LayerNorm2d(cin, eps=1e-6), nn.Conv2d(cin, cout, 2, stride=2))

    def forward(self, x):
        x = self[0](x)
        return self[1](F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2)))


class ConvNeXt(ImageClassifier):
    """features = [stem, stage 1, down, stage 2, down, stage 3, down, stage 4] → pool → LN → fc."""
    classifier_name = "classifier.2"

    def __init__(self, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), num_classes=1000,
                 in_chans=3, stem_patch=4, drop_path_rate=0.0, layer_scale=1e-6):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = dims[-1]
        rates = iter(linear_drop_path_rates(sum(depths), drop_path_rate))
        layers = [nn.Sequential(nn.Conv2d(in_chans, dims[0], stem_patch, stride=stem_patch),
                                LayerNorm2d(dims[0], eps=1e-6))]
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            if i > 0:
                layers.append(Downsample(dims[i - 1], dim))
            layers.append(nn.Sequential(*(ConvNeXtBlock(dim, layer_scale, next(rates))
                                          for _ in range(depth))))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1),
                                        nn.Linear(dims[-1], num_classes))
        for m in self.modules():
            # The paper's code: truncated N(0, 0.02²) weights, zero biases.
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def stage_modules(self):
        return [f"features.{i}" for i in range(1, len(self.features), 2)]   # between the downsamplings

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits=False):
        x = self.classifier[1](self.classifier[0](x.mean((2, 3), keepdim=True)))
        return x if pre_logits else self.classifier[2](x)


def convnext(num_classes=1000, in_chans=3, image_size=None, **kwargs):
    """A ConvNeXt with the 4×4 patchify stem, or a 2×2 one for inputs below 64 px."""
    stem_patch = 2 if image_size is not None and image_size < 64 else 4
    return ConvNeXt(num_classes=num_classes, in_chans=in_chans, stem_patch=stem_patch, **kwargs)


_DEEP = (3, 3, 27, 3)
for _name, _depths, _dims, _rate, _params, _macs in (
        ("convnext_tiny", (3, 3, 9, 3), (96, 192, 384, 768), 0.1, "28.6M", "4.5G"),
        ("convnext_small", _DEEP, (96, 192, 384, 768), 0.4, "50M", "8.7G"),
        ("convnext_base", _DEEP, (128, 256, 512, 1024), 0.5, "89M", "15.4G"),
        ("convnext_large", _DEEP, (192, 384, 768, 1536), 0.5, "198M", "34.4G")):
    register_model(_name, **_LIU, paper_params=_params, paper_macs=_macs,
                   twins={"torchvision": _name}, depths=_depths, dims=_dims,
                   drop_path_rate=_rate)(convnext)
