"""VGG: Simonyan, Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015.

The ConvNet configurations of Table 1: A (`vgg11`), A-LRN (`vgg11_lrn`), B (`vgg13`),
C (`vgg16_c`, whose third conv layer in blocks 3–5 is 1×1), D (`vgg16`) and E (`vgg19`).
3×3 stride-1 convolutions padded by 1, ReLU, a 2×2/2 max-pool after each of the five blocks of
64-128-256-512-512 channels, then FC-4096 → FC-4096 → FC-1000 with dropout 0.5 on the two
hidden FC layers (Sec. 3.1). A-LRN adds AlexNet's local response normalisation after the first
layer. Table 2 counts 133, 133, 133, 134, 138 and 144 million parameters. The `*_bn` variants
put batch normalisation after every convolution (torchvision's vgg*_bn; not in the paper).
Layout and parameter names are torchvision's (`features.N`, `avgpool`, `classifier.N`), so its
vgg*/vgg*_bn state_dicts load unchanged; timm's convolutional head is converted.

Dense evaluation (Sec. 3.2): `model.dense()` returns a fully convolutional copy, the first FC
layer turned into a 7×7 convolution and the other two into 1×1 ones, that runs on any input of
at least 224×224 and averages its class score map spatially (the paper also averages the scores
of the horizontally flipped image). At 224×224 it equals the model itself.

Initialisation: the paper trains A from N(0, 0.01²) and the deeper nets from A's layers, and
notes that Glorot initialisation works as well; visionzoo's choice is He (MSRA) initialisation,
N(0, 2/fan_out), for the convolutions, N(0, 0.01²) for the FC layers, biases 0, BN γ = 1, β = 0
(torchvision's too).

Small inputs: the stem already is 3×3 stride 1. With a known ``image_size``, a max-pool that
would leave a map smaller than 2×2 is dropped (`nn.Identity` keeps the layer indices) and the
adaptive pool before the classifier pools to min(7, last map side): 28×28 inputs end at 3×3,
32×32 at 2×2, instead of a 1×1 map blown up to 7×7.
"""
from __future__ import annotations

import copy
from functools import partial

import torch
from torch import nn

from ..registry import register_model
from .alexnet import AlexNet, fc_classifier, make_features
from .resnet import msra_init

_PAPER = "Simonyan, Zisserman. Very Deep Convolutional Networks for Large-Scale Image Recognition. ICLR 2015"

_WIDTHS = (64, 128, 256, 512, 512)
# Table 1, one pair per block: (number of conv3 layers, number of conv1 layers).
_TABLE1 = {
    "A": ((1, 0), (1, 0), (2, 0), (2, 0), (2, 0)),
    "B": ((2, 0), (2, 0), (2, 0), (2, 0), (2, 0)),
    "C": ((2, 0), (2, 0), (2, 1), (2, 1), (2, 1)),
    "D": ((2, 0), (2, 0), (3, 0), (3, 0), (3, 0)),
    "E": ((2, 0), (2, 0), (4, 0), (4, 0), (4, 0)),
}


def _plan(cfg: str, lrn: bool) -> list:
    plan = []
    for width, (conv3, conv1) in zip(_WIDTHS, _TABLE1[cfg]):
        plan += [(width, 3, 1, 1)] * conv3 + [(width, 1, 1, 0)] * conv1 + ["pool"]
    return plan[:1] + ["lrn"] + plan[1:] if lrn else plan


class DenseEvaluation(nn.Module):
    """features → convolutional classifier → class score map → spatial average."""

    def __init__(self, features: nn.Module, classifier: nn.Module):
        super().__init__()
        self.features, self.classifier = features, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).mean((2, 3))


def _as_conv(linear: nn.Linear, kernel: int) -> nn.Conv2d:
    conv = nn.Conv2d(linear.in_features // kernel ** 2, linear.out_features, kernel,
                     device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.view_as(conv.weight))
        conv.bias.copy_(linear.bias)
    return conv


class VGG(AlexNet):
    """AlexNet's features → adaptive pool → FC layout, with dense evaluation."""

    def dense(self) -> DenseEvaluation:
        """A fully convolutional copy: first FC → k×k convolution (k = the pooled side, 7), the
        others → 1×1; its output is the spatial mean of the class score map."""
        kernel, layers = self.avgpool.output_size, []
        for layer in self.classifier:
            if isinstance(layer, nn.Linear):
                layers.append(_as_conv(layer, kernel))
                kernel = 1
            else:
                layers.append(copy.deepcopy(layer))
        return DenseEvaluation(copy.deepcopy(self.features), nn.Sequential(*layers)).train(self.training)


def _init(model: VGG) -> None:
    msra_init(model)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.zeros_(m.bias)


def _vgg(num_classes=1000, in_chans=3, image_size=None, cfg="D", batch_norm=False, lrn=False):
    features, channels, side = make_features(_plan(cfg, lrn), in_chans, partial(nn.MaxPool2d, 2, 2),
                                             batch_norm, image_size)
    pool_size = 7 if side is None else min(7, side)
    model = VGG(features, pool_size, fc_classifier(channels * pool_size ** 2, num_classes), num_classes)
    _init(model)
    return model


_TIMM_NAMES = (("pre_logits.fc1.", "classifier.0."), ("pre_logits.fc2.", "classifier.3."),
               ("head.fc.", "classifier.6."))


def _from_timm(state: dict) -> dict:
    """timm's head is convolutional (pre_logits.fc1 7×7, pre_logits.fc2 1×1, head.fc): flatten it."""
    out = {}
    for key, value in state.items():
        for theirs, ours in _TIMM_NAMES:
            if key.startswith(theirs):
                key, value = ours + key[len(theirs):], value.flatten(1) if value.dim() == 4 else value
        out[key] = value
    return out


def _register(name, cfg, paper_params, paper_macs=None, batch_norm=False, lrn=False):
    twin = cfg != "C" and not lrn
    register_model(name, family="vgg", paper=_PAPER, year=2014, paper_params=paper_params,
                   paper_macs=paper_macs, twins={"torchvision": name, "timm": name} if twin else None,
                   converters={"timm": _from_timm} if twin else None,
                   cfg=cfg, batch_norm=batch_norm, lrn=lrn)(_vgg)


# Table 2's parameters; vgg16's 15.47 G multiply-adds are those the notes' SE tables list.
for _name, _cfg, _params, _macs in (("vgg11", "A", "133M", None), ("vgg13", "B", "133M", None),
                                    ("vgg16_c", "C", "134M", None), ("vgg16", "D", "138M", "15.47G"),
                                    ("vgg19", "E", "144M", None)):
    _register(_name, _cfg, _params, _macs)
    _register(_name + "_bn", _cfg, _params, _macs, batch_norm=True)
_register("vgg11_lrn", "A", "133M", lrn=True)
