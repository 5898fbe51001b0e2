"""AlexNet (Krizhevsky, Sutskever, Hinton, NeurIPS 2012) and ZFNet (Zeiler, Fergus, ECCV 2014).

`alexnet_original` is the network of the AlexNet paper's Fig. 2 and Sec. 3 (the notes' layer
table): conv 96@11×11/4 → 256@5×5 → 384@3×3 → 384@3×3 → 256@3×3 → FC 4096 → 4096 → 1000.
The two GPUs are two groups: conv2, conv4 and conv5 see only the maps of their own GPU
(``groups=2``), conv3 and the FC layers connect across. ReLU follows every layer; response
normalisation (Sec. 3.3, `LocalResponseNorm`) follows the ReLU of conv1 and conv2; overlapping
max-pooling 3×3/2 (Sec. 3.4) follows both normalisations and conv5; dropout 0.5 on the outputs
of FC6 and FC7 (Sec. 4.2). Initialisation of Sec. 5: weights N(0, 0.01²), biases 1 in conv2,
conv4, conv5 and the hidden FC layers, 0 elsewhere. Input 227×227: the paper writes 224, but
11×11/4 without padding gives its 55×55 maps only from 227 (the notes' table), so conv1 is
unpadded and the card uses 227. A 224 input still runs (5×5 last map, resized to 6×6 by the
adaptive average pool before the classifier, as torchvision does).

`alexnet` is torchvision's single-tower layout (Krizhevsky, "One weird trick for parallelizing
convolutional neural networks", 2014): 64-192-384-256-256 filters, no grouping, no
normalisation, conv1 padded by 2 for 224 inputs, dropout before FC6 and FC7; parameter names
are torchvision's, so its weights load unchanged. It is initialised as the 2012 paper says.

`zfnet` is Zeiler & Fergus's Fig. 3 network: conv 96@7×7/2 → max-pool 3×3/2 → contrast
normalisation → 256@5×5/2 → pool → normalisation → 384, 384, 256@3×3 → pool → FC 4096 → 4096.
Padding 1 on conv1 and ceil-mode pooling give the figure's 110, 55, 26, 13 and 6 pixel maps.
The paper names "contrast normalisation across feature maps" without constants; it is the
AlexNet response normalisation here. Initialisation of Sec. 3: weights N(0, 0.01²), biases 0.

Both papers' initialisations leave these networks at chance in the family table (issue 26, item 13;
`benchmarks/alexnet_start.py` and BENCHMARKS.md, "Family table", measured 2026-12-05). N(0, 0.01²)
weights pass on about 0.01·√fan_in of their input (0.03 at the small-input conv1, 0.3–0.6 elsewhere),
so beside AlexNet's biases of 1 the image is nearly invisible at the class scores, and the first
updates only move the classes' offsets, until FC7 dies; BVLC's Caffe reproduction (biases 0.1) keeps
its units alive but not the image. He et al.'s N(0, 2/fan_in) (ICCV 2015, Eq. 10: `--init he_fan_in`)
keeps the image in every layer, and both networks then learn at the papers' rate of 0.01. The builders
keep the papers' initialisation; the family-table benchmark trains these two with `--init he_fan_in`.

Feature stages (timm's vgg, for this family and VGG): the last layer before each max-pool
(its activation, or its response normalisation) and the final max-pool.

Small inputs (``image_size < 64``): the first convolution becomes 3×3 stride 1 and the first
max-pool is dropped; any later max-pool that would leave a map smaller than 2×2 is dropped too
(an `nn.Identity` keeps the layer indices), and the adaptive pool before the classifier pools to
min(6, last map side) instead of blowing a smaller map up. At 28×28 the last map is 6×6.
"""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from ..layers.lrn import LocalResponseNorm
from ..registry import register_model
from .base import ImageClassifier

_KRIZHEVSKY = ("Krizhevsky, Sutskever, Hinton. ImageNet Classification with Deep Convolutional Neural "
               "Networks. NeurIPS 2012")
_ONE_WEIRD_TRICK = (_KRIZHEVSKY + " (single-tower layout of Krizhevsky, One weird trick for parallelizing "
                    "convolutional neural networks, arXiv 2014)")
_ZEILER = "Zeiler, Fergus. Visualizing and Understanding Convolutional Networks. ECCV 2014"

# Feature plans: (out channels, kernel, stride, padding[, groups]) is a conv + ReLU.
_ONE_TOWER = ((64, 11, 4, 2), "pool", (192, 5, 1, 2), "pool",
              (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1), "pool")
_TWO_TOWERS = ((96, 11, 4, 0), "lrn", "pool", (256, 5, 1, 2, 2), "lrn", "pool",
               (384, 3, 1, 1), (384, 3, 1, 1, 2), (256, 3, 1, 1, 2), "pool")
_ZF = ((96, 7, 2, 1), "pool", "lrn", (256, 5, 2, 0), "pool", "lrn",
       (384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1), "pool")


def _side_after(layer: nn.Module, side: int) -> int:
    """Output side of a square map through a conv or max-pool (floor, or ceil in ceil mode)."""
    kernel, stride, padding = (v if isinstance(v, int) else v[0]
                               for v in (layer.kernel_size, layer.stride, layer.padding))
    span = side + 2 * padding - kernel
    return (math.ceil(span / stride) if getattr(layer, "ceil_mode", False) else span // stride) + 1


def make_features(plan, in_chans: int, pool, batch_norm: bool = False, image_size: int | None = None,
                  small_stem: bool = False) -> tuple[list[nn.Module], int, int | None]:
    """The layers of a plan, their output channels and (when `image_size` is known) output side.

    `small_stem` turns the first conv into 3×3/1 and drops the first pool; with a known size, a
    pool that would leave less than 2×2 becomes `nn.Identity`.
    """
    layers, channels, side, first_conv, first_pool = [], in_chans, image_size, True, True
    for item in plan:
        if item == "lrn":
            layers.append(LocalResponseNorm())
        elif item == "pool":
            layer = pool()
            out = None if side is None else _side_after(layer, side)
            if (small_stem and first_pool) or (out is not None and out < 2):
                layer, out = nn.Identity(), side
            layers.append(layer)
            side, first_pool = out, False
        else:
            width, kernel, stride, padding, *groups = item
            if small_stem and first_conv:
                kernel, stride, padding = 3, 1, 1
            conv = nn.Conv2d(channels, width, kernel, stride, padding, groups=groups[0] if groups else 1)
            layers += [conv, nn.BatchNorm2d(width)] if batch_norm else [conv]
            layers.append(nn.ReLU(inplace=True))
            side = None if side is None else _side_after(conv, side)
            channels, first_conv = width, False
    return layers, channels, side


def fc_classifier(in_features: int, num_classes: int, dropout_first: bool = False,
                  p: float = 0.5) -> list[nn.Module]:
    """FC 4096 → ReLU → FC 4096 → ReLU → FC classes, dropout on the hidden layers' outputs
    (`dropout_first`: on their inputs, torchvision's AlexNet order); the last Linear is index 6."""
    hidden = [nn.Linear(in_features, 4096), nn.ReLU(inplace=True), nn.Dropout(p),
              nn.Linear(4096, 4096), nn.ReLU(inplace=True)]
    if dropout_first:
        return [nn.Dropout(p), *hidden, nn.Linear(4096, num_classes)]
    return [*hidden, nn.Dropout(p), nn.Linear(4096, num_classes)]


class AlexNet(ImageClassifier):
    """features → adaptive average pool → flatten → fully connected classifier (ends in Linear)."""
    classifier_name = "classifier.6"

    def __init__(self, features: list[nn.Module], pool_size: int, classifier: list[nn.Module],
                 num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(*features)
        # A dropped pool (nn.Identity) still ends its stage: the indices follow the plan.
        pools = [i for i, layer in enumerate(features) if isinstance(layer, (nn.MaxPool2d, nn.Identity))]
        self.feature_stages = [f"features.{i}" for i in (*(i - 1 for i in pools), len(features) - 1)]
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(*classifier)

    def stage_modules(self):
        return self.feature_stages

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.classifier[:-1](torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.classifier[-1](x)


def _gaussian_init(model: AlexNet, biases_one: tuple[int, ...]) -> None:
    """Weights N(0, 0.01²); biases 1 for the weight layers numbered in `biases_one` (0-based,
    convolutions then FC layers), 0 for the others."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for i, layer in enumerate(layers):
        nn.init.normal_(layer.weight, 0.0, 0.01)
        nn.init.constant_(layer.bias, 1.0 if i in biases_one else 0.0)


def _alexnet(plan, num_classes, in_chans, image_size, biases_one, ceil_mode=False, dropout_first=False):
    small = image_size is not None and image_size < 64
    pool = partial(nn.MaxPool2d, 3, 2, ceil_mode=ceil_mode)
    features, channels, side = make_features(plan, in_chans, pool, image_size=image_size, small_stem=small)
    pool_size = 6 if side is None else min(6, side)
    classifier = fc_classifier(channels * pool_size ** 2, num_classes, dropout_first)
    model = AlexNet(features, pool_size, classifier, num_classes)
    _gaussian_init(model, biases_one)
    return model


# conv2, conv4, conv5, FC6, FC7 start with bias 1 (AlexNet Sec. 5).
_ALEXNET_BIASES_ONE = (1, 3, 4, 5, 6)
_ROUND_60M = "the paper's \"60 million parameters\" is a round figure"


# 0.71G: the figure the notes' tests quote for this layout (torchvision's 0.714 GFLOPS); the
# 2012 paper prints no MAC count.
@register_model(family="alexnet", paper=_ONE_WEIRD_TRICK, year=2012, paper_params="60M",
                paper_macs="0.71G", twins={"torchvision": "alexnet"},
                mismatch_reason=_ROUND_60M + "; the single-tower layout (64-192-384-256-256 filters, "
                "no groups) has 61.1M")
def alexnet(num_classes=1000, in_chans=3, image_size=None):
    return _alexnet(_ONE_TOWER, num_classes, in_chans, image_size, _ALEXNET_BIASES_ONE, dropout_first=True)


@register_model(family="alexnet", paper=_KRIZHEVSKY, year=2012, input_size=(3, 227, 227),
                paper_params="60M", mismatch_reason=_ROUND_60M + "; Fig. 2's network counts 60.97M")
def alexnet_original(num_classes=1000, in_chans=3, image_size=None):
    return _alexnet(_TWO_TOWERS, num_classes, in_chans, image_size, _ALEXNET_BIASES_ONE)


@register_model(family="alexnet", paper=_ZEILER, year=2013)
def zfnet(num_classes=1000, in_chans=3, image_size=None):
    return _alexnet(_ZF, num_classes, in_chans, image_size, (), ceil_mode=True)
