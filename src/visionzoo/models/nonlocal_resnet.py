"""ResNets with self-attention (non-local) blocks: Wang, Girshick, Gupta, He, "Non-local Neural
Networks", CVPR 2018, Sec. 4, with the block of the notes' "self-attention in CNN"
(Zhang, Goodfellow, Metaxas, Odena, SAGAN, ICML 2019, Eq. 1–2; layers/attention.py).

``nonlocal_resnet50``: the paper's single-block variant — one non-local block right before the
last residual block of res4 (our ``layer3``), with the embedded channels halved (Sec. 3.3).
``nonlocal_stages`` names the stages (1–4, our ``layer{i}``) that get one. A new block is the
identity (zero-initialised output projection), so the network starts as the ResNet it extends.
No paper figures: the paper gives costs for its video networks only.

Small inputs: the ResNet stem adaptation of models/resnet.py (< 64 px).
"""
from __future__ import annotations

from torch import nn

from ..layers.attention import NonLocalBlock
from ..layers.residual import Bottleneck
from ..registry import register_model
from .resnet import imagenet_resnet


def nonlocal_resnet(num_classes=1000, in_chans=3, image_size=None, nonlocal_stages=(3,), reduction=2,
                    **kwargs):
    """An ImageNet ResNet with a non-local block before the last block of each listed stage."""
    model = imagenet_resnet(num_classes, in_chans, image_size, **kwargs)
    for stage in nonlocal_stages:
        blocks = list(getattr(model, f"layer{stage}"))
        blocks.insert(len(blocks) - 1, NonLocalBlock(blocks[-1].out_channels, reduction))
        setattr(model, f"layer{stage}", nn.Sequential(*blocks))
    return model


register_model("nonlocal_resnet50", family="nonlocal", year=2017,
               paper="Wang, Girshick, Gupta, He. Non-local Neural Networks. CVPR 2018",
               block=Bottleneck, layers=(3, 4, 6, 3))(nonlocal_resnet)
