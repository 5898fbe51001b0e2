"""MobileNets, built from the depthwise-separable and inverted-residual blocks of layers/mobile.py.

- MobileNet v1: Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam, "MobileNets:
  Efficient Convolutional Neural Networks for Mobile Vision Applications", arXiv 2017. The body of
  Table 1 (the notes' table): a 3×3/2 convolution of 32 filters, 13 depthwise-separable layers
  (64 … 1024 channels, stride 2 where the table halves the map), 7×7 average pool, FC; 4.2M
  parameters and 569M multiply-adds (Table 4). Table 1's last depthwise layer (3×3×1024 on the
  7×7 map) is printed "Conv dw / s2", but its output is listed as 7×7 again and the 7×7 average
  pool follows: a typo, so we use stride 1 there (as do the authors' TF-Slim model and timm);
  with stride 2 the map would be 4×4 and the multiply-adds would miss Table 4's 569M. Activations are ReLU6, as the notes say (the
  paper's Fig. 3 draws ReLU). Width multiplier α (``width_mult``, Sec. 3.3): every layer has
  αM inputs and αN outputs, Table 6 (0.75: 2.6M / 325M, 0.5: 1.3M / 149M, 0.25: 0.5M / 41M).
  Resolution multiplier ρ (``resolution_mult``, Sec. 3.4): the network is unchanged, it is fed
  224ρ-pixel images (Table 7: 192: 418M, 160: 290M, 128: 186M); the model keeps that side in
  ``model.input_resolution``. "Conv MobileNet" (Table 4, the notes' table: 29.3M, 4866M) has a
  full 3×3 convolution (BN, ReLU6) in place of each depthwise-separable layer (``separable=False``).
- MobileNet v2: Sandler, Howard, Zhu, Zhmoginov, Chen, "MobileNetV2: Inverted Residuals and Linear
  Bottlenecks", CVPR 2018, Table 2 (t, c, n, s): a 3×3/2 convolution of 32 filters, 17 inverted
  residual bottlenecks with ReLU6 and linear projections, a 1×1 convolution to 1280, average
  pool, classifier; 3.4M parameters and 300M multiply-adds (Table 3). ``width_mult`` scales every
  width (rounded to multiples of 8; the last 1280 is never made thinner). Layout and parameter
  names follow torchvision's mobilenet_v2.

Feature stages (timm's mobilenetv2 and efficientnet): the last block of each resolution; v2's
final 1×1 convolution to 1280 (the head's) is not one.

Small-input adaptation: with ``image_size < 64`` the stem convolution has stride 1 instead of 2,
so a 28×28 input leaves the body at 2×2 (four stride-2 stages remain) rather than 1×1.
"""
from __future__ import annotations

from torch import nn

from ..layers.mobile import ConvBNAct, DepthwiseSeparable, InvertedResidual, make_divisible
from ..registry import register_model
from .base import ImageClassifier
from .features import resolution_ends

_V1 = dict(family="mobilenet", year=2017,
           paper="Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam. MobileNets: "
                 "Efficient Convolutional Neural Networks for Mobile Vision Applications. arXiv 2017")
_V2 = dict(family="mobilenet", year=2018,
           paper="Sandler, Howard, Zhu, Zhmoginov, Chen. MobileNetV2: Inverted Residuals and Linear "
                 "Bottlenecks. CVPR 2018")

# Table 1 of MobileNet v1 after the stem: (pointwise output channels, depthwise stride).
V1_BODY = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           *((512, 1),) * 5, (1024, 2), (1024, 1))
# Table 2 of MobileNet v2: expansion t, output channels c, repeats n, first stride s.
V2_BOTTLENECKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                  (6, 160, 3, 2), (6, 320, 1, 1))


def mobile_init(model: nn.Module, linear_std: float = 0.01) -> None:
    """MSRA (fan-out) convolutions, BN γ = 1, β = 0, classifier N(0, 0.01) (the reference code)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


class DropoutLinearHead(ImageClassifier):
    """Average pool → ``classifier = Sequential(Dropout, Linear)`` (torchvision's layout)."""
    classifier_name = "classifier.1"

    def stage_modules(self):
        return self.feature_stages

    def build_head(self, num_features, num_classes, dropout):
        self.num_features = num_features
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_classes))

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits=False):
        x = self.classifier[0](x.mean((2, 3)))
        return x if pre_logits else self.classifier[1](x)


class MobileNetV1(ImageClassifier):
    """Stem → 13 depthwise-separable layers → average pool → fc."""

    def __init__(self, num_classes=1000, in_chans=3, width_mult=1.0, resolution_mult=1.0,
                 small_input=False, separable=True):
        super().__init__()
        self.num_classes = num_classes
        self.input_resolution = round(224 * resolution_mult)
        channels = int(32 * width_mult)
        layers = [ConvBNAct(in_chans, channels, 3, 1 if small_input else 2, act=nn.ReLU6)]
        for width, stride in V1_BODY:
            out = int(width * width_mult)
            layers.append(DepthwiseSeparable(channels, out, stride, act=nn.ReLU6) if separable
                          else ConvBNAct(channels, out, 3, stride, act=nn.ReLU6))
            channels = out
        self.features = nn.Sequential(*layers)
        self.feature_stages = resolution_ends("features",
                                              [1 if small_input else 2, *(s for _, s in V1_BODY)])
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes)
        mobile_init(self)

    def stage_modules(self):
        return self.feature_stages

    def forward_features(self, x):
        return self.features(x)


class MobileNetV2(DropoutLinearHead):
    """Stem → inverted residual bottlenecks of Table 2 → 1×1 conv to 1280 → pool → dropout → fc."""

    def __init__(self, num_classes=1000, in_chans=3, width_mult=1.0, dropout=0.2,
                 small_input=False):
        super().__init__()
        self.num_classes = num_classes
        channels = make_divisible(32 * width_mult)
        strides = [1 if small_input else 2]
        layers = [ConvBNAct(in_chans, channels, 3, strides[0], act=nn.ReLU6)]
        for t, c, n, s in V2_BOTTLENECKS:
            out = make_divisible(c * width_mult)
            for i in range(n):
                strides.append(s if i == 0 else 1)
                layers.append(InvertedResidual(channels, out, strides[-1], t))
                channels = out
        self.feature_stages = resolution_ends("features", strides)
        head = make_divisible(1280 * max(1.0, width_mult))
        layers.append(ConvBNAct(channels, head, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.build_head(head, num_classes, dropout)
        mobile_init(self)


def _small(image_size):
    return image_size is not None and image_size < 64


def mobilenet_v1(num_classes=1000, in_chans=3, image_size=None, **kwargs):
    return MobileNetV1(num_classes, in_chans, small_input=_small(image_size), **kwargs)


def mobilenet_v2(num_classes=1000, in_chans=3, image_size=None, **kwargs):
    return MobileNetV2(num_classes, in_chans, small_input=_small(image_size), **kwargs)


# Table 6 (width multiplier) and Table 7 (resolution multiplier) of MobileNet v1.
for _suffix, _alpha, _params, _macs in (("", 1.0, "4.2M", "569M"),
                                        ("_0_75", 0.75, "2.6M", "325M"),
                                        ("_0_5", 0.5, "1.3M", "149M"),
                                        ("_0_25", 0.25, "0.5M", "41M")):
    register_model(f"mobilenet_v1{_suffix}", **_V1, paper_params=_params, paper_macs=_macs,
                   width_mult=_alpha)(mobilenet_v1)
for _side, _macs in ((192, "418M"), (160, "290M"), (128, "186M")):
    register_model(f"mobilenet_v1_{_side}", **_V1, input_size=(3, _side, _side),
                   paper_params="4.2M", paper_macs=_macs, resolution_mult=_side / 224)(mobilenet_v1)

register_model("mobilenet_v1_conv", **_V1, paper_params="29.3M", paper_macs="4866M",
               separable=False)(mobilenet_v1)

_V2_COUNT = ("without BN's γ and β (34K) the network has 3.47M parameters, the paper's 3.4M "
             "truncates that figure; with them, 3.50M")
register_model("mobilenet_v2", **_V2, paper_params="3.4M", paper_macs="300M",
               twins={"torchvision": "mobilenet_v2"}, mismatch_reason=_V2_COUNT)(mobilenet_v2)
