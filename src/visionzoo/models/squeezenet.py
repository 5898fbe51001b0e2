"""SqueezeNet: Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer, "SqueezeNet: AlexNet-level
accuracy with 50x fewer parameters and <0.5MB model size", arXiv 2016.

- SqueezeNet 1.0: Table 1 (conv1 96 × 7×7/2, Fire modules fire2–fire9 with s₁ₓ₁/e₁ₓ₁/e₃ₓ₃ =
  16/64/64 … 64/256/256, max-pools after conv1, fire4, fire8, conv10 to the classes, global
  average pool); 1,248,424 parameters, the table's total. Dropout 0.5 before conv10.
- SqueezeNet 1.1: the authors' revision (their repository): conv1 64 × 3×3/2 and the pools moved
  earlier (after conv1, fire3, fire5), 2.4× less computation at the same accuracy.
- Bypass variants (Sec. 6, Fig. 2, Table 3): simple bypass around fire3, fire5, fire7, fire9 (the
  modules whose input and output widths match); complex bypass adds a 1×1 convolution bypass
  around fire2, fire4, fire6, fire8 as well. The paper's Table 3 gives model sizes only
  (4.8/4.8/7.7 MB); our complex bypass, 1×1 convolutions with bias, holds 1.59M parameters
  (6.1 MiB in 32-bit floats), the paper's 7.7 MB is not reproduced by this reading of Fig. 2.

Layout and parameter names follow torchvision (`features.i`, `classifier.1`), so its SqueezeNet
1.0/1.1 weights load unchanged.

Feature stages: the layer before each max-pool (conv1's ReLU, fire4, fire8 in 1.0) and the last
Fire module.

Small-input adaptation: with ``image_size < 64`` conv1 becomes a 3×3 stride-1 convolution and the
first max-pool is dropped, so a 28×28 input reaches conv10 at 7×7 instead of 1×1.
"""
from __future__ import annotations

from torch import nn

from ..layers.fire import Fire
from ..registry import register_model
from .base import ImageClassifier

_PAPER = dict(family="squeezenet", year=2016,
              paper="Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer. SqueezeNet: AlexNet-level "
                    "accuracy with 50x fewer parameters and <0.5MB model size. arXiv 2016")

POOL = "M"
# Fire modules as (s1x1, e1x1, e3x3), "M" a 3×3/2 max-pool; conv1 is (channels, kernel).
CONFIGS = {
    "1_0": ((96, 7), [(16, 64, 64), (16, 64, 64), (32, 128, 128), POOL, (32, 128, 128),
                      (48, 192, 192), (48, 192, 192), (64, 256, 256), POOL, (64, 256, 256)]),
    "1_1": ((64, 3), [(16, 64, 64), (16, 64, 64), POOL, (32, 128, 128), (32, 128, 128), POOL,
                      (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)]),
}


def bypass_for(cin: int, cout: int, bypass: str | None) -> str | None:
    """Which bypass Fig. 2 puts around the fire module: simple where widths match, complex
    (a 1×1 convolution) elsewhere when `bypass="complex"`."""
    if bypass is None:
        return None
    if cin == cout:
        return "simple"
    return "complex" if bypass == "complex" else None


class SqueezeNet(ImageClassifier):
    """conv1 → ReLU → max-pool → Fire modules and pools → dropout → conv10 → ReLU → average pool."""
    classifier_name = "classifier.1"

    def __init__(self, version="1_0", num_classes=1000, in_chans=3, dropout=0.5, bypass=None,
                 small_input=False):
        super().__init__()
        self.num_classes = num_classes
        (stem_width, stem_kernel), body = CONFIGS[version]
        if small_input:
            layers = [nn.Conv2d(in_chans, stem_width, 3, 1, 1), nn.ReLU(inplace=True),
                      nn.Identity()]
        else:
            layers = [nn.Conv2d(in_chans, stem_width, stem_kernel, 2), nn.ReLU(inplace=True),
                      nn.MaxPool2d(3, 2, ceil_mode=True)]
        channels = stem_width
        for item in body:
            if item == POOL:
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
                continue
            squeeze, e1, e3 = item
            layers.append(Fire(channels, squeeze, e1, e3,
                               bypass=bypass_for(channels, e1 + e3, bypass)))
            channels = e1 + e3
        self.features = nn.Sequential(*layers)
        # The small stem's nn.Identity stands where the first pool was: it ends a stage too.
        pools = [i for i, layer in enumerate(layers) if isinstance(layer, (nn.MaxPool2d, nn.Identity))]
        self.feature_stages = [f"features.{i}" for i in (*(i - 1 for i in pools), len(layers) - 1)]
        self.num_features = channels
        self.classifier = nn.Sequential(nn.Dropout(dropout), self.new_final_conv(num_classes),
                                        nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1))
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def new_final_conv(self, num_classes):
        """conv10: a 1×1 convolution to the classes, N(0, 0.01) (its ReLU and the average pool
        follow), the network's only classifier."""
        conv = nn.Conv2d(self.num_features, num_classes, 1)
        nn.init.normal_(conv.weight, 0.0, 0.01)
        nn.init.zeros_(conv.bias)
        return conv

    def stage_modules(self):
        return self.feature_stages

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits=False):
        x = self.classifier[0](x)
        if pre_logits:
            return x.mean((2, 3))
        return self.classifier[1:](x).flatten(1)

    def reset_classifier(self, num_classes):
        # Without conv10 its ReLU goes too: the pooled features are then the pre-logits,
        # which a complex bypass can make negative.
        if num_classes > 0:
            device = next(self.features.parameters()).device
            self.classifier[1], self.classifier[2] = (self.new_final_conv(num_classes).to(device),
                                                      nn.ReLU(inplace=True))
        else:
            self.classifier[1], self.classifier[2] = nn.Identity(), nn.Identity()
        self.num_classes = num_classes


def squeezenet(num_classes=1000, in_chans=3, image_size=None, **kwargs):
    small = image_size is not None and image_size < 64
    return SqueezeNet(num_classes=num_classes, in_chans=in_chans, small_input=small, **kwargs)


_TWINS = {v: {"torchvision": f"squeezenet{v}"} for v in CONFIGS}
register_model("squeezenet1_0", **_PAPER, paper_params=1_248_424, twins=_TWINS["1_0"],
               version="1_0")(squeezenet)
register_model("squeezenet1_1", **_PAPER, twins=_TWINS["1_1"], version="1_1")(squeezenet)
register_model("squeezenet1_0_simple_bypass", **_PAPER, paper_params=1_248_424, version="1_0",
               bypass="simple")(squeezenet)
register_model("squeezenet1_0_complex_bypass", **_PAPER, version="1_0",
               bypass="complex")(squeezenet)
