"""ViT_C: Xiao, Singh, Mintun, Darrell, Dollár, Girshick, "Early Convolutions Help Transformers See
Better", NeurIPS 2021.

A Vision Transformer (models/vit.py) whose patchify stem — one 16×16 stride-16 convolution, the
baseline the paper calls ViT_P — is replaced by a small convolutional stem (Sec. 3): a stack of
3×3 convolutions, each followed by BN and ReLU, with stride 2 (or 1, to add capacity) until the
total stride is 16, then one 1×1 convolution to the transformer width d. To keep the cost of the
baseline, ViT_C has one transformer block fewer. Table 1's models (hidden size d, MLP multiplier,
heads, blocks; GFLOPs = multiply-adds at 224², parameters):

=========== ====== ======== ===== ====== =================================== ====== =======
model       d      MLP      heads blocks stem channels (strides)             GF     params
=========== ====== ======== ===== ====== =================================== ====== =======
ViT_P-1GF   192    3        3     12     16×16/16                            1.1    4.8M
ViT_P-4GF   384    3        6     12     16×16/16                            (*)    18.5M
ViT_C-1GF   192    3        3     11     24, 48, 96, 192 (2, 2, 2, 2)        1.1    4.6M
ViT_C-4GF   384    3        6     11     48, 96, 192, 384 (2, 2, 2, 2)       4.0    17.8M
ViT_C-18GF  768    4        12    11     64, 128, 128, 256, 256, 512         17.7   81.6M
                                         (2, 2, 1, 2, 1, 2)
ViT_C-36GF  1024   4        16    13     as ViT_C-18GF                       35.0   167.8M
=========== ====== ======== ===== ====== =================================== ====== =======

(*) Not checked: this model has 3.9 G multiply-adds and the figure as we recall it is
not certain, so its card carries none. (ViT_P-18GF is ViT-B/16, `vit_b_16`; ViT_P-36GF, 3/5 of ViT-L, is not registered.) The stem's
convolutions are He-initialised (the paper's stem is a ResNet-style one); the transformer keeps
models/vit.py's initialisation.

Feature stages: every encoder block, as ViT's, at stride 16 (4 for small images).

Small images (< 64 px): only the first two stride-2 convolutions keep their stride (the rest run
at stride 1), so the stem's total stride is 4, ViT's small-image patch size (28×28 → 7×7 tokens).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..registry import register_model
from .vit import SMALL_IMAGE_PATCH, VisionTransformer

_XIAO = dict(family="vit", year=2021,
             paper="Xiao, Singh, Mintun, Darrell, Dollár, Girshick. Early Convolutions Help Transformers "
                   "See Better. NeurIPS 2021")


class ConvStem(nn.Module):
    """(B, C, H, W) → [3×3 conv → BN → ReLU]* → 1×1 conv to d → (B, N, d) tokens."""

    def __init__(self, in_chans: int, channels, strides, embed_dim: int):
        super().__init__()
        layers, cin = [], in_chans
        for cout, stride in zip(channels, strides):
            layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        layers.append(nn.Conv2d(cin, embed_dim, 1))
        self.proj = nn.Sequential(*layers)
        self.patch_size = math.prod(strides)   # the token grid's stride, as PatchEmbed's
        for m in self.proj:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def small_image_strides(strides, total: int = SMALL_IMAGE_PATCH) -> tuple[int, ...]:
    """Keep the first stride-2 convolutions while their product stays within `total`; the rest
    run at stride 1."""
    out, product = [], 1
    for stride in strides:
        keep = stride if product * stride <= total else 1
        out.append(keep)
        product *= keep
    return tuple(out)


def vit_convstem(num_classes=1000, in_chans=3, image_size=None, stem_channels=(24, 48, 96, 192),
                 stem_strides=(2, 2, 2, 2), **kwargs):
    """A ViT whose tokens come from a convolutional stem (ViT_C) for `image_size` inputs (224)."""
    image_size = image_size or 224
    if image_size < 64:
        stem_strides = small_image_strides(stem_strides)
    stem_stride = math.prod(stem_strides)
    model = VisionTransformer(image_size, stem_stride, num_classes=num_classes, in_chans=in_chans, **kwargs)
    model.patch_embed = ConvStem(in_chans, stem_channels, stem_strides, kwargs["embed_dim"])
    return model


def vit_patchify(num_classes=1000, in_chans=3, image_size=None, **kwargs):
    """The ViT_P baseline: the patchify stem (16×16, or 4×4 below 64 px)."""
    image_size = image_size or 224
    patch = SMALL_IMAGE_PATCH if image_size < 64 else 16
    return VisionTransformer(image_size, patch, num_classes=num_classes, in_chans=in_chans, **kwargs)


_1GF = dict(embed_dim=192, num_heads=3, mlp_dim=3 * 192)
_4GF = dict(embed_dim=384, num_heads=6, mlp_dim=3 * 384)
_BIG_STEM = dict(stem_channels=(64, 128, 128, 256, 256, 512), stem_strides=(2, 2, 1, 2, 1, 2))
register_model("vit_p_1gf", **_XIAO, paper_params="4.8M", paper_macs="1.1G", depth=12, **_1GF)(vit_patchify)
register_model("vit_p_4gf", **_XIAO, paper_params="18.5M", depth=12, **_4GF)(vit_patchify)
register_model("vit_c_1gf", **_XIAO, paper_params="4.6M", paper_macs="1.1G", depth=11, **_1GF,
               stem_channels=(24, 48, 96, 192), stem_strides=(2, 2, 2, 2))(vit_convstem)
register_model("vit_c_4gf", **_XIAO, paper_params="17.8M", paper_macs="4.0G", depth=11, **_4GF,
               stem_channels=(48, 96, 192, 384), stem_strides=(2, 2, 2, 2))(vit_convstem)
register_model("vit_c_18gf", **_XIAO, paper_params="81.6M", paper_macs="17.7G", depth=11, embed_dim=768,
               num_heads=12, mlp_dim=3072, **_BIG_STEM)(vit_convstem)
register_model("vit_c_36gf", **_XIAO, paper_params="167.8M", paper_macs="35.0G", depth=13, embed_dim=1024,
               num_heads=16, mlp_dim=4096, **_BIG_STEM)(vit_convstem)
