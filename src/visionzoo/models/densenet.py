"""DenseNet: Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional Networks",
CVPR 2017.

ImageNet networks of Table 1 (the notes' table): DenseNet-121/169/201/264, growth rate k = 32,
64 stem maps and blocks of (6, 12, 24, 16), (6, 12, 32, 32), (6, 12, 48, 32), (6, 12, 64, 48)
bottleneck layers, plus torchvision's DenseNet-161 (k = 48, 96 stem maps, (6, 12, 36, 24)); all
are DenseNet-BC (bottleneck 4k, compression θ = 0.5). CIFAR networks of Table 2: DenseNet
(L = 40, k = 12) with three blocks of (L − 4)/3 plain layers, θ = 1 and a 16-map 3×3 stem, and
DenseNet-BC (L, k) = (100, 12), (250, 24), (190, 40) with three blocks of (L − 4)/6 bottleneck
layers, θ = 0.5 and a 2k-map stem. `bottleneck`, `compression` and `drop_rate` are keywords of
every builder. Convolutions get He et al.'s N(0, 2/n) initialisation, n = k²·out_channels, as in
the authors' code.

Paper figures: CIFAR parameters from Table 2 (its C10 networks, 10 classes); DenseNet-169 and
DenseNet-264 parameters and multiply-adds as the notes' EfficientNet table quotes them
(14M / 3.5B, 34M / 6.0B). The notes print no figures for 121, 161 and 201.

Feature stages (timm's densenet): the stem's activation ``features.relu0`` (the bare
``features.conv0`` of the CIFAR stem), every dense block but the last (before its transition),
and the final BN-ReLU ``features.relu5``.

Small-input adaptation: with ``image_size < 64`` (or ``small_input=True``) the ImageNet stem
(7×7/2 conv + 3×3/2 max-pool, a 4× reduction) becomes a 3×3 stride-1 conv (still followed by
norm0/relu0, without max-pool), so 28×28 inputs reach the last block at 3×3 instead of 0×0.
The CIFAR networks already use a 3×3 stride-1 stem and need no adaptation.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..layers.dense import DenseBlock, Transition
from ..registry import register_model
from .base import ImageClassifier
from .resnet import msra_init

_PAPER = "Huang, Liu, van der Maaten, Weinberger. Densely Connected Convolutional Networks. CVPR 2017"


class DenseNet(ImageClassifier):
    """Stem → dense blocks separated by transition layers → BN-ReLU → global average pool → fc."""

    classifier_name = "classifier"

    def __init__(self, growth_rate, block_config, num_init_features, bottleneck=True,
                 compression=0.5, bn_size=4, drop_rate=0.0, num_classes=1000, in_chans=3,
                 stem="imagenet"):
        super().__init__()
        self.num_classes = num_classes
        c0 = num_init_features
        if stem == "imagenet":
            stem_layers = [("conv0", nn.Conv2d(in_chans, c0, 7, 2, 3, bias=False)),
                           ("norm0", nn.BatchNorm2d(c0)), ("relu0", nn.ReLU(inplace=True)),
                           ("pool0", nn.MaxPool2d(3, 2, 1))]
        elif stem == "small":
            stem_layers = [("conv0", nn.Conv2d(in_chans, c0, 3, 1, 1, bias=False)),
                           ("norm0", nn.BatchNorm2d(c0)), ("relu0", nn.ReLU(inplace=True))]
        elif stem == "cifar":
            stem_layers = [("conv0", nn.Conv2d(in_chans, c0, 3, 1, 1, bias=False))]
        else:
            raise ValueError(f"stem must be 'imagenet', 'small' or 'cifar', not {stem!r}")
        self.features = nn.Sequential(OrderedDict(stem_layers))
        channels = c0
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, channels, growth_rate, bottleneck=bottleneck,
                               bn_size=bn_size, drop_rate=drop_rate)
            self.features.add_module(f"denseblock{i + 1}", block)
            channels = block.out_channels
            if i < len(block_config) - 1:
                transition = Transition(channels, compression, drop_rate)
                self.features.add_module(f"transition{i + 1}", transition)
                channels = transition.out_channels
        self.num_blocks = len(block_config)
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.features.add_module("relu5", nn.ReLU(inplace=True))
        self.num_features = channels
        self.classifier = nn.Linear(channels, num_classes)
        msra_init(self)
        nn.init.zeros_(self.classifier.bias)

    def stage_modules(self):
        stem = "features.relu0" if hasattr(self.features, "relu0") else "features.conv0"
        return [stem, *(f"features.denseblock{i}" for i in range(1, self.num_blocks)), "features.relu5"]

    def forward_features(self, x):
        return self.features(x)


def _imagenet_densenet(num_classes=1000, in_chans=3, image_size=None, small_input=None, **kwargs):
    small = small_input if small_input is not None else (image_size is not None and image_size < 64)
    return DenseNet(num_classes=num_classes, in_chans=in_chans,
                    stem="small" if small else "imagenet", **kwargs)


def _cifar_densenet(num_classes=10, in_chans=3, depth=40, growth_rate=12, bottleneck=False,
                    compression=1.0, **kwargs):
    convs_per_layer = 2 if bottleneck else 1
    if (depth - 4) % (3 * convs_per_layer):
        raise ValueError(f"depth L must be 3·{convs_per_layer}·n + 4, not {depth}")
    n = (depth - 4) // (3 * convs_per_layer)
    return DenseNet(growth_rate, (n, n, n), 2 * growth_rate if bottleneck else 16, bottleneck,
                    compression, num_classes=num_classes, in_chans=in_chans, stem="cifar", **kwargs)


_D264_REASON = ("the notes quote 34M parameters from the EfficientNet paper's table; Table 1's "
                "DenseNet-264 (k = 32, 64 stem maps, 4k bottleneck, θ = 0.5, as in the authors' code) "
                "counts 33.3M")
for _name, _k, _c0, _blocks, _params, _macs in (
        ("densenet121", 32, 64, (6, 12, 24, 16), None, None),
        ("densenet169", 32, 64, (6, 12, 32, 32), "14M", "3.5G"),
        ("densenet201", 32, 64, (6, 12, 48, 32), None, None),
        ("densenet161", 48, 96, (6, 12, 36, 24), None, None),
        ("densenet264", 32, 64, (6, 12, 64, 48), "34M", "6.0G")):
    _twins = {"torchvision": _name, "timm": _name} if _name != "densenet264" else {}
    register_model(_name, family="densenet", paper=_PAPER, year=2016, paper_params=_params,
                   paper_macs=_macs, twins=_twins,
                   mismatch_reason=_D264_REASON if _name == "densenet264" else None,
                   growth_rate=_k, num_init_features=_c0, block_config=_blocks)(_imagenet_densenet)

for _name, _depth, _k, _bc, _params in (("densenet40_12", 40, 12, False, "1.0M"),
                                        ("densenet_bc_100_12", 100, 12, True, "0.8M"),
                                        ("densenet_bc_250_24", 250, 24, True, "15.3M"),
                                        ("densenet_bc_190_40", 190, 40, True, "25.6M")):
    register_model(_name, family="densenet", paper=_PAPER, year=2016, input_size=(3, 32, 32),
                   num_classes=10, dataset="cifar10", paper_params=_params, depth=_depth, growth_rate=_k,
                   bottleneck=_bc, compression=0.5 if _bc else 1.0)(_cifar_densenet)
