"""Binary-weight networks and XNOR-Nets: Rastegari, Ordonez, Redmon, Farhadi, "XNOR-Net: ImageNet
Classification Using Binary Convolutional Neural Networks", ECCV 2016.

The paper binarises AlexNet and ResNet-18 on ImageNet (Table 1 / the notes' table: AlexNet top-1
56.8 % BWN, 44.2 % XNOR; ResNet-18 60.8 % and 51.2 %) and NiN on CIFAR-10. Each network here is
the zoo's own real-valued network (`alexnet`, `resnet18`, `nin_cifar10`) passed through
`layers.binary.binarize`, which swaps every convolution and linear layer but the first and the
last for its binary-weight (``bwn``) or XNOR twin. Parameter names stay those of the real
network; XNOR layers add the BatchNorm of the paper's BN → BinActiv → BinConv block. Small-input
adaptation and feature stages are those of the real network. The paper prints accuracies, not
parameter or MAC counts.
"""
from __future__ import annotations

from ..layers.binary import binarize
from ..layers.residual import BasicBlock
from ..registry import register_model
from .alexnet import alexnet
from .nin import nin_cifar10
from .resnet import imagenet_resnet

_PAPER = ("Rastegari, Ordonez, Redmon, Farhadi. XNOR-Net: ImageNet Classification Using Binary "
          "Convolutional Neural Networks. ECCV 2016")


def _binary_alexnet(num_classes=1000, in_chans=3, image_size=None, mode="bwn"):
    return binarize(alexnet(num_classes, in_chans, image_size), mode)


def _binary_resnet18(num_classes=1000, in_chans=3, image_size=None, mode="bwn", **kwargs):
    model = imagenet_resnet(num_classes, in_chans, image_size, block=BasicBlock, layers=(2, 2, 2, 2),
                            **kwargs)
    return binarize(model, mode)


def _binary_nin_cifar10(num_classes=10, in_chans=3, mode="xnor"):
    return binarize(nin_cifar10(num_classes, in_chans), mode)


for _mode in ("bwn", "xnor"):
    register_model(f"{_mode}_alexnet", family="xnor_net", paper=_PAPER, year=2016,
                   mode=_mode)(_binary_alexnet)
    register_model(f"{_mode}_resnet18", family="xnor_net", paper=_PAPER, year=2016,
                   mode=_mode)(_binary_resnet18)
register_model("xnor_nin_cifar10", family="xnor_net", paper=_PAPER, year=2016, input_size=(3, 32, 32),
               num_classes=10, dataset="cifar10", mode="xnor")(_binary_nin_cifar10)
