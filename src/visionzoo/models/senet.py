"""Squeeze-and-Excitation networks: Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018.

The SE block (Eq. 2–4, layers/se.py, reduction r = 16) recalibrates the channels of
- SE-ResNet-18/34/50/101/152 and SE-ResNeXt-50 (32×4d): on the residual branch of every block,
  after its last BN and before the addition with the shortcut (Fig. 3) — the ResNets and the
  ResNeXt of models/resnet.py with ``attention=SqueezeExcite``;
- SE-BN-Inception: on the output of every inception module of BN-Inception (Fig. 2);
- SE-ResNeXt-101 (32×4d) and the CBAM table's SE-WideResNet18 (widen 1.5, 2.0), as the SE-ResNets;
- SE-VGG-16 (with BN): after every convolution's ReLU;
- SE-Inception-ResNet-v2: on the residual branch of every Inception-ResNet module, after its
  1×1 linear convolution, before scaling and addition (Fig. 3's placement).

Figures: parameters from the notes' CBAM table (its "+ SE" rows, the only SE parameter counts in
the notes), GFLOPs from the SE paper's Table 2 (its SENet column), or from the CBAM table for
ResNet-18/34, which Table 2 lacks. timm's SE-ResNets and SE-ResNeXt are twins: their blocks name
the SE module ``se``, ours ``attention``; the converter renames it. (timm's seresnet18/34 round
the 64-channel squeeze of the first stage up to 8 instead of 64/16 = 4, so they are no twins.)

Small inputs: the ResNet stem adaptation of models/resnet.py and the BN-Inception one of
models/inception.py (a 3×3 stride-1 first convolution and no stem max-pools below 64 px).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from functools import partial

from torch import nn

from ..layers.inception import InceptionResNetBlock
from ..layers.residual import BasicBlock, Bottleneck
from ..layers.se import SqueezeExcite
from ..registry import register_model
from .inception import bn_inception, inception_resnet_v2
from .resnet import imagenet_resnet
from .vgg import _vgg as vgg_builder

_SE = dict(family="senet", year=2017,
           paper="Hu, Shen, Sun. Squeeze-and-Excitation Networks. CVPR 2018")
V15_EXTRA_MACS = ("torchvision/timm layout (v1.5): the stride-2 sits on the 3×3 conv, not the first 1×1, "
        "which costs ~0.2 G (+6 %) more MACs than the paper's count")


def wide_resnet18(widen: float) -> dict:
    """The CBAM table's WideResNet18: ResNet-18 with every stage `widen` times wider and the 64-wide
    stem kept (its 25.88M and 3.866 G at widen 1.5 say so; a widened stem would add 0.13 G)."""
    return dict(block=BasicBlock, layers=(2, 2, 2, 2), widths=tuple(int(widen * w) for w in (64, 128, 256, 512)),
                stem_width=64)


def timm_se_to_ours(state_dict: dict) -> dict:
    """timm's residual blocks call their attention module ``se``; ours call it ``attention``."""
    return {re.sub(r"\.se\.", ".attention.", key): value for key, value in state_dict.items()}


def _twin(name):
    return dict(twins={"timm": name}, converters={"timm": timm_se_to_ours})


_SQUEEZE_EXCITE = partial(SqueezeExcite, reduction=16)
for _name, _block, _layers, _params, _macs, _why, _twins in (
        ("seresnet18", BasicBlock, (2, 2, 2, 2), "11.78M", "1.814G", None, {}),
        ("seresnet34", BasicBlock, (3, 4, 6, 3), "21.96M", "3.664G", None, {}),
        ("seresnet50", Bottleneck, (3, 4, 6, 3), "28.09M", "3.87G", V15_EXTRA_MACS, _twin("seresnet50")),
        ("seresnet101", Bottleneck, (3, 4, 23, 3), "49.33M", "7.60G", None, _twin("seresnet101")),
        ("seresnet152", Bottleneck, (3, 8, 36, 3), None, "11.32G", None, _twin("seresnet152"))):
    register_model(_name, **_SE, paper_params=_params, paper_macs=_macs, mismatch_reason=_why,
                   block=_block, layers=_layers, attention=_SQUEEZE_EXCITE, **_twins)(imagenet_resnet)
register_model("seresnext50_32x4d", **_SE, paper_params="27.56M", paper_macs="4.25G",
               block=Bottleneck, layers=(3, 4, 6, 3), groups=32, base_width=4,
               attention=_SQUEEZE_EXCITE, **_twin("seresnext50_32x4d"))(imagenet_resnet)


@register_model(**_SE, paper_macs="2.04G")
def se_bn_inception(num_classes=1000, in_chans=3, image_size=None, small_input=None, reduction=16):
    """BN-Inception with an SE block after every inception module (`inception3a.inception` →
    `inception3a.se`, …)."""
    model = bn_inception(num_classes, in_chans, image_size, small_input)
    for name in model.stage_names:
        module = getattr(model, name)
        if name.startswith("inception"):
            squeeze_excite = SqueezeExcite(module.out_channels, reduction)
            setattr(model, name, nn.Sequential(OrderedDict(inception=module, se=squeeze_excite)))
    return model


register_model("seresnext101_32x4d", **_SE, paper_params="48.96M", paper_macs="8.00G", block=Bottleneck,
               layers=(3, 4, 23, 3), groups=32, base_width=4, attention=_SQUEEZE_EXCITE,
               **_twin("seresnext101_32x4d"))(imagenet_resnet)
for _widen, _params, _macs in ((1.5, "26.07M", "3.867G"), (2.0, "45.97M", "6.696G")):
    register_model(f"se_wide_resnet18_{str(_widen).replace('.', '_')}", **_SE, paper_params=_params,
                   paper_macs=_macs, **wide_resnet18(_widen), attention=_SQUEEZE_EXCITE)(imagenet_resnet)


@register_model(**_SE, paper_macs="15.48G")
def se_vgg16(num_classes=1000, in_chans=3, image_size=None, reduction=16):
    """VGG-16 with BN (the SE paper trains it so) and an SE block after every convolution's ReLU
    (`features.i` → `features.i.relu`, `features.i.se`), so the stage indices stay VGG's."""
    model = vgg_builder(num_classes, in_chans, image_size, cfg="D", batch_norm=True)
    channels = in_chans
    for i, layer in enumerate(model.features):
        if isinstance(layer, nn.Conv2d):
            channels = layer.out_channels
        elif isinstance(layer, nn.ReLU):
            model.features[i] = nn.Sequential(OrderedDict(relu=layer, se=SqueezeExcite(channels, reduction)))
    return model


_IRV2_COUNT = ("the SE table counts 11.75 G for Inception-ResNet-v2 itself; the network as released, built "
               "here, has the 13 G of Szegedy et al. (13.16 G) and SE adds the table's 0.01 G to it")


@register_model(**_SE, input_size=(3, 299, 299), paper_macs="11.76G", mismatch_reason=_IRV2_COUNT)
def se_inception_resnet_v2(num_classes=1000, in_chans=3, image_size=None, small_input=None, reduction=16):
    """Inception-ResNet-v2 with an SE block on the residual branch of every Inception-ResNet module,
    after its 1×1 linear convolution and before the scaling and the addition (Fig. 3's SE-ResNet
    placement; `conv2d` → `conv2d.conv`, `conv2d.se`)."""
    model = inception_resnet_v2(num_classes, in_chans, image_size, small_input)
    for block in model.modules():
        if isinstance(block, InceptionResNetBlock):
            block.conv2d = nn.Sequential(OrderedDict(conv=block.conv2d,
                                                     se=SqueezeExcite(block.out_channels, reduction)))
    return model
