"""ResNet: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.

ImageNet ResNet-18/34/50/101/152 of Table 1 (the notes' table, FLOPs 1.8/3.6/3.8/7.6/11.3 G),
the CIFAR-10 ResNets of Sec. 4.2 (6n+2 layers, 16/32/64 filters, option-A shortcuts),
and ResNet-9 (Page, "How to train your ResNet", 2018), the fast small-image network used by
`make demo`. `residual=False` builds the plain twin; `shortcut="A"|"B"|"C"` picks the option.

Small-input adaptation: with ``image_size < 64`` the ImageNet stem (7×7/2 conv + 3×3/2 max-pool,
a 4× reduction) becomes a 3×3 stride-1 convolution without max-pool, so 28×28 inputs reach the
last stage at 4×4 instead of 1×1. It is chosen automatically by the trainer from the data, or
explicitly with ``small_input=True``.
"""
from __future__ import annotations

from torch import nn

from ..layers.residual import BasicBlock, Bottleneck, conv3x3
from ..registry import register_model
from .base import ImageClassifier

_PAPER = "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016"
_PAGE = "Page. How to train your ResNet (DAWNBench CIFAR-10 ResNet-9). Myrtle.ai 2018"


def msra_init(model: nn.Module) -> None:
    """He et al. 2015 initialisation: N(0, 2/n_out) convolutions, BN γ = 1, β = 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(ImageClassifier):
    """Stem → stages of residual blocks → global average pool → fc."""

    def __init__(self, block, layers, widths=(64, 128, 256, 512), num_classes=1000, in_chans=3,
                 stem="imagenet", shortcut="B", residual=True, groups=1, width_per_group=64):
        super().__init__()
        self.num_classes = num_classes
        self.inplanes = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, widths[0], 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        elif stem == "small":
            self.conv1 = conv3x3(in_chans, widths[0])
            self.maxpool = nn.Identity()
        else:
            raise ValueError(f"stem must be 'imagenet' or 'small', not {stem!r}")
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        block_args = dict(shortcut=shortcut, residual=residual, groups=groups, base_width=width_per_group)
        for i, (width, depth) in enumerate(zip(widths, layers)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(depth):
                blocks.append(block(self.inplanes, width, stride if j == 0 else 1, **block_args))
                self.inplanes = width * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.num_features = self.inplanes
        self.fc = nn.Linear(self.num_features, num_classes)
        msra_init(self)

    def forward_features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


def _imagenet_resnet(block, layers, num_classes, in_chans, image_size=None, small_input=None, **kwargs):
    small = small_input if small_input is not None else (image_size is not None and image_size < 64)
    return ResNet(block, layers, num_classes=num_classes, in_chans=in_chans,
                  stem="small" if small else "imagenet", **kwargs)


def _register_imagenet(name, block, layers, paper_macs, **extra):
    def builder(num_classes=1000, in_chans=3, image_size=None, small_input=None, **kwargs):
        return _imagenet_resnet(block, layers, num_classes, in_chans, image_size, small_input, **kwargs)
    builder.__name__ = name
    register_model(name, family="resnet", paper=_PAPER, year=2015, paper_macs=paper_macs,
                   twins={"torchvision": name, "timm": name}, **extra)(builder)


_V15 = ("torchvision layout (v1.5): the stride-2 sits on the 3×3 conv, not the first 1×1, "
        "which costs ~0.3 G more MACs than the paper's Table 1")
_register_imagenet("resnet18", BasicBlock, (2, 2, 2, 2), "1.8G")
_register_imagenet("resnet34", BasicBlock, (3, 4, 6, 3), "3.6G")
_register_imagenet("resnet50", Bottleneck, (3, 4, 6, 3), "3.8G", mismatch_reason=_V15)
_register_imagenet("resnet101", Bottleneck, (3, 4, 23, 3), "7.6G")
_register_imagenet("resnet152", Bottleneck, (3, 8, 36, 3), "11.3G")


def _register_cifar(depth, paper_params):
    n = (depth - 2) // 6

    def builder(num_classes=10, in_chans=3, shortcut="A", residual=True, **kwargs):
        return ResNet(BasicBlock, (n, n, n), (16, 32, 64), num_classes, in_chans, stem="small",
                      shortcut=shortcut, residual=residual, **kwargs)
    name = f"resnet{depth}_cifar"
    builder.__name__ = name
    register_model(name, family="resnet", paper=_PAPER, year=2015, input_size=(3, 32, 32),
                   num_classes=10, paper_params=paper_params)(builder)


for _depth, _params in ((20, "0.27M"), (32, "0.46M"), (44, "0.66M"), (56, "0.85M"), (110, "1.7M"),
                        (1202, "19.4M")):
    _register_cifar(_depth, _params)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, pool=False):
        layers = [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        super().__init__(*layers, *([nn.MaxPool2d(2)] if pool else []))


class Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(ConvBNReLU(channels, channels), ConvBNReLU(channels, channels))

    def forward(self, x):
        return x + self.body(x)


class ResNet9(ImageClassifier):
    """prep → [conv-pool, residual] → conv-pool → [conv-pool, residual] → global max-pool → fc."""

    def __init__(self, num_classes=10, in_chans=3, widths=(64, 128, 256, 512)):
        super().__init__()
        self.num_classes = num_classes
        w0, w1, w2, w3 = widths
        self.features = nn.Sequential(
            ConvBNReLU(in_chans, w0),
            ConvBNReLU(w0, w1, pool=True), Residual(w1),
            ConvBNReLU(w1, w2, pool=True),
            ConvBNReLU(w2, w3, pool=True), Residual(w3))
        self.num_features = w3
        self.fc = nn.Linear(w3, num_classes, bias=False)
        msra_init(self)

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits=False):
        x = x.amax((2, 3))
        return x if pre_logits else self.fc(x)


@register_model(family="resnet", paper=_PAGE, year=2018, input_size=(3, 32, 32), num_classes=10)
def resnet9(num_classes=10, in_chans=3, **kwargs):
    return ResNet9(num_classes, in_chans, **kwargs)


@register_model(family="resnet", paper=_PAGE + " (half width, for 28×28 grey images)", year=2018,
                input_size=(1, 28, 28), num_classes=10)
def resnet9_slim(num_classes=10, in_chans=1, **kwargs):
    return ResNet9(num_classes, in_chans, widths=(32, 64, 128, 256), **kwargs)
