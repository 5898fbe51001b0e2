"""Highway networks: Srivastava, Greff, Schmidhuber, "Training Very Deep Networks", NIPS 2015
(the full version of "Highway Networks", ICML Deep Learning Workshop 2015).

Layers y = H(x)·T(x) + x·(1 − T(x)) of Eq. 2–3 (`visionzoo.layers.highway`), in two networks:

`highway_fc` — the MNIST optimisation experiment of Sec. 3.1 (Fig. 1): a fully-connected plain
layer 784 → 50, then depth − 1 fully-connected highway layers of 50 units, then a softmax layer
(10 classes). The paper's depths are 10, 20, 50 and 100 (default ``depth=10``). ``plain=True``
builds the paper's plain twin instead, 71 units a layer, so that both have ≈5000 parameters per
layer. The activation of H was a hyperparameter of the paper's random search, ReLU or tanh; we
default to ReLU (``act="tanh"`` for the other). The input is flattened, so the first layer has
in_chans·image_size² inputs (image_size defaults to 28).

`highway_conv` — a CIFAR-style convolutional highway network, our own documented configuration
(the paper's CIFAR-10 networks follow FitNets, whose exact layer tables the notes do not give):
three stages of widths 32, 64, 128, each a plain 3×3 conv + ReLU that sets the width followed by
``blocks=5`` 3×3 convolutional highway layers, 2×2 max-pooling between stages, global average
pooling and a linear classifier — 19 weight layers like the paper's deeper CIFAR-10 network
(2.0M parameters against its 2.3M), no batch normalisation, as in 2015. Any input of 4×4 or more
works unchanged (28×28 ends at 7×7).

Feature stages: the last highway layer of each convolutional stage; the fully connected network
has no feature maps, its one stage is its last layer as a 1×1 map (reduction: the input side).

Gate biases start at ``gate_bias=-2`` (the notes: −1 … −3; the paper searched −1 … −10); plain
layers get He initialisation and zero biases.
"""
from __future__ import annotations

from torch import nn

from ..layers.highway import HighwayConv2d, HighwayLinear, activation
from ..registry import register_model
from .base import ImageClassifier

_PAPER = "Srivastava, Greff, Schmidhuber. Training Very Deep Networks. NIPS 2015"


def _he_init(layer: nn.Module, act: str) -> nn.Module:
    nn.init.kaiming_normal_(layer.weight, nonlinearity=act)
    nn.init.zeros_(layer.bias)
    return layer


class _HighwayNet(ImageClassifier):
    """features → (global average pool) → linear classifier."""

    classifier_name = "classifier"

    def __init__(self, layers, num_features, num_classes, feature_stages):
        super().__init__()
        self.num_classes, self.num_features = num_classes, num_features
        self.features = nn.Sequential(*layers)
        self.feature_stages = feature_stages
        self.classifier = _he_init(nn.Linear(num_features, num_classes), "linear")

    def stage_modules(self):
        return self.feature_stages

    def forward_features(self, x):
        return self.features(x)


class HighwayMLP(_HighwayNet):
    """Flatten → plain fully-connected layer → depth − 1 highway (or plain) layers → classifier."""
    fixed_input_size = True

    def __init__(self, num_classes=10, in_chans=1, image_size=28, depth=10, width=None,
                 plain=False, act="relu", gate_bias=-2.0):
        width = width or (71 if plain else 50)
        layers = [nn.Flatten(), _he_init(nn.Linear(in_chans * image_size ** 2, width), act),
                  activation(act)]
        for _ in range(depth - 1):
            layers += ([_he_init(nn.Linear(width, width), act), activation(act)] if plain
                       else [HighwayLinear(width, act, gate_bias)])
        super().__init__(layers, width, num_classes, [f"features.{len(layers) - 1}"])


class HighwayConvNet(_HighwayNet):
    """Stages of [plain 3×3 conv, `blocks` highway 3×3 convs], max-pooled between stages."""

    def __init__(self, num_classes=10, in_chans=3, widths=(32, 64, 128), blocks=5, act="relu",
                 gate_bias=-2.0):
        layers, cin, stage_ends = [], in_chans, []
        for i, width in enumerate(widths):
            layers += [nn.MaxPool2d(2)] if i else []
            layers += [_he_init(nn.Conv2d(cin, width, 3, padding=1), act), activation(act)]
            layers += [HighwayConv2d(width, 3, act, gate_bias) for _ in range(blocks)]
            stage_ends.append(f"features.{len(layers) - 1}")
            cin = width
        super().__init__(layers, cin, num_classes, stage_ends)


@register_model(family="highway", paper=_PAPER + " (Sec. 3.1, MNIST)", year=2015,
                input_size=(1, 28, 28), num_classes=10, dataset="mnist")
def highway_fc(num_classes=10, in_chans=1, image_size=None, **kwargs):
    return HighwayMLP(num_classes, in_chans, image_size or 28, **kwargs)


@register_model(family="highway", paper=_PAPER + " (Sec. 3.2, CIFAR-10; our configuration)",
                year=2015, input_size=(3, 32, 32), num_classes=10, dataset="cifar10")
def highway_conv(num_classes=10, in_chans=3, **kwargs):
    return HighwayConvNet(num_classes, in_chans, **kwargs)
