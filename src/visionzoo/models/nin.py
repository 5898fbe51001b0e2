"""Network In Network: Lin, Chen, Yan, "Network In Network", ICLR 2014.

An mlpconv layer (Sec. 3.1, Eq. 2) is a convolution followed by a small multilayer perceptron
shared over positions, i.e. two 1×1 convolutions, each layer followed by a ReLU. The last
mlpconv layer has one map per class; global average pooling (Sec. 3.2) turns the maps into the
class scores, with no fully connected layer at all. As in the paper (Sec. 4.1), max-pooling
with a downsampling factor 2 (3×3/2, ceil mode as in the authors' Caffe files) and dropout 0.5
follow every mlpconv layer but the last.

`nin_cifar10`: the CIFAR-10 network of Sec. 4.2, three mlpconv layers (5×5 conv 192 → 160 → 96,
5×5 conv 192 → 192 → 192, 3×3 conv 192 → 192 → 10, the widths of the authors' released
definition) on 32×32×3 inputs. `nin_imagenet`: the authors' released ImageNet model (the paper
reports no ImageNet experiment), four mlpconv layers (11×11/4 conv 96 → 96 → 96, 5×5 conv 256,
3×3 conv 384, 3×3 conv 1024 → 1024 → 1000) on 224×224 inputs.

Interface: the last 1×1 convolution (to the class maps) is the classifier, ``classifier``;
`forward_features` returns the map that enters it, `forward_head` applies it (with its ReLU) and
averages the class maps; ``pre_logits=True`` averages the incoming map instead, which
``reset_classifier(0)`` (an identity classifier) reproduces since that map is already rectified.
The paper gives no initialisation; visionzoo uses He (MSRA) initialisation, biases 0.

Feature stages: the output of every mlpconv layer (each ends its resolution).

Small inputs: `nin_cifar10` works at 28×28 as it is (last map 7×7). For `nin_imagenet` with
``image_size < 64`` the first convolution becomes 3×3 stride 1 and the first max-pool is dropped
(28×28 → 7×7 last map).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_model
from .base import ImageClassifier
from .resnet import msra_init

_PAPER = "Lin, Chen, Yan. Network In Network. ICLR 2014"


def mlpconv(cin: int, widths: tuple[int, ...], kernel: int, stride: int = 1,
            padding: int = 0) -> nn.Sequential:
    """kernel×kernel conv to widths[0], then a 1×1 conv to each further width; ReLU after each."""
    layers = [nn.Conv2d(cin, widths[0], kernel, stride, padding), nn.ReLU(inplace=True)]
    for cin, cout in zip(widths, widths[1:]):
        layers += [nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class NiN(ImageClassifier):
    """mlpconv blocks (pool + dropout between) → 1×1 conv to class maps → global average pool."""
    classifier_name = "classifier"

    def __init__(self, blocks, num_classes: int, in_chans: int = 3, drop_first_pool: bool = False,
                 dropout: float = 0.5):
        super().__init__()
        self.num_classes = num_classes
        layers, channels = [], in_chans
        for i, (widths, kernel, stride, padding) in enumerate(blocks):
            if i > 0:
                pool = nn.Identity() if (i == 1 and drop_first_pool) else nn.MaxPool2d(3, 2, ceil_mode=True)
                layers += [pool, nn.Dropout(dropout)]
            layers.append(mlpconv(channels, widths, kernel, stride, padding))
            channels = widths[-1]
        self.features = nn.Sequential(*layers)   # mlpconv i is layer 3·i
        self.num_mlpconvs = len(blocks)
        self.num_features = channels
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        msra_init(self)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.zeros_(m.bias)

    def stage_modules(self):
        return [f"features.{3 * i}" for i in range(self.num_mlpconvs)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return x.mean((2, 3))
        return F.relu(self.classifier(x)).mean((2, 3))

    def reset_classifier(self, num_classes: int) -> None:
        weight = self.features[0][0].weight
        self.classifier = (nn.Conv2d(self.num_features, num_classes, 1, device=weight.device,
                                     dtype=weight.dtype) if num_classes > 0 else nn.Identity())
        self.num_classes = num_classes


# (widths, kernel, stride, padding) per mlpconv; the last width of the last one is the classifier.
_CIFAR10 = (((192, 160, 96), 5, 1, 2), ((192, 192, 192), 5, 1, 2), ((192, 192), 3, 1, 1))
_IMAGENET = (((96, 96, 96), 11, 4, 0), ((256, 256, 256), 5, 1, 2), ((384, 384, 384), 3, 1, 1),
             ((1024, 1024), 3, 1, 1))
_SMALL_STEM = ((96, 96, 96), 3, 1, 1)


@register_model(family="nin", paper=_PAPER, year=2013, input_size=(3, 32, 32), num_classes=10,
                dataset="cifar10")
def nin_cifar10(num_classes=10, in_chans=3):
    return NiN(_CIFAR10, num_classes, in_chans)


@register_model(family="nin", paper=_PAPER, year=2013)
def nin_imagenet(num_classes=1000, in_chans=3, image_size=None):
    small = image_size is not None and image_size < 64
    blocks = (_SMALL_STEM, *_IMAGENET[1:]) if small else _IMAGENET
    return NiN(blocks, num_classes, in_chans, drop_first_pool=small)
