"""ShuffleNets, built from the units of layers/shuffle.py.

- ShuffleNet v1: Zhang, Zhou, Lin, Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural
  Network for Mobile Devices", CVPR 2018, Table 1: conv1 3×3/2 of 24 filters, 3×3/2 max-pool,
  stages 2–4 of 4, 8 and 4 ShuffleNet units (the first of each with stride 2), global pool, FC.
  Stage widths for g = 1, 2, 3, 4, 8 groups: 144/288/576, 200/400/800, 240/480/960,
  272/544/1088, 384/768/1536, which keeps the cost at about 140M multiply-adds
  (Table 1: 143, 140, 137, 133, 137 MFLOPs; the paper's FLOPs are multiply-adds).
- ShuffleNet v2: Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN
  Architecture Design", ECCV 2018, Table 5: the same stem, stages of 4, 8, 4 units, a 1×1 conv5
  (1024, or 2048 at 2×), global pool, FC; widths 48/96/192 (0.5×), 116/232/464 (1×), 176/352/704
  (1.5×), 244/488/976 (2×); 41M/1.4M, 146M/2.3M, 299M/3.5M, 591M/7.4M. Layout and parameter
  names follow torchvision's shufflenet_v2_x*.

Feature stages: conv1 and stages 2–4 (v2's conv5 belongs to the head, as in timm's
MobileNets; after the stride-2 max-pool no layer runs at 1/4 resolution).

Small-input adaptation: with ``image_size < 64`` conv1 has stride 1 and the max-pool is dropped,
so a 28×28 input reaches the last stage at 4×4 instead of 1×1.
"""
from __future__ import annotations

from torch import nn

from ..layers.mobile import ConvBNAct
from ..layers.shuffle import ShuffleUnit, ShuffleV2Unit
from ..registry import register_model
from .base import ImageClassifier
from .resnet import msra_init

_V1 = dict(family="shufflenet", year=2018,
           paper="Zhang, Zhou, Lin, Sun. ShuffleNet: An Extremely Efficient Convolutional Neural "
                 "Network for Mobile Devices. CVPR 2018")
_V2 = dict(family="shufflenet", year=2018,
           paper="Ma, Zhang, Zheng, Sun. ShuffleNet V2: Practical Guidelines for Efficient CNN "
                 "Architecture Design. ECCV 2018")

STAGE_REPEATS = (4, 8, 4)
STEM_WIDTH = 24
# Table 1 of ShuffleNet v1: output channels of stages 2–4 for each number of groups.
V1_WIDTHS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
             8: (384, 768, 1536)}
# Table 5 of ShuffleNet v2: stages 2–4 and conv5 for each width.
V2_WIDTHS = {"0_5": (48, 96, 192, 1024), "1_0": (116, 232, 464, 1024),
             "1_5": (176, 352, 704, 1024), "2_0": (244, 488, 976, 2048)}


class ShuffleNet(ImageClassifier):
    """conv1 → max-pool → stage2..4 → (conv5) → global average pool → fc.

    `make_unit(cin, cout, stride, first_of_network)` builds one unit; `last_width` adds v2's conv5.
    """

    def __init__(self, make_unit, widths, num_classes=1000, in_chans=3, last_width=None,
                 small_input=False):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = ConvBNAct(in_chans, STEM_WIDTH, 3, 1 if small_input else 2)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, 2, 1)
        channels = STEM_WIDTH
        for stage, (width, repeats) in enumerate(zip(widths, STAGE_REPEATS), start=2):
            units = []
            for i in range(repeats):
                units.append(make_unit(channels, width, 2 if i == 0 else 1, stage == 2 and i == 0))
                channels = width
            self.add_module(f"stage{stage}", nn.Sequential(*units))
        self.conv5 = ConvBNAct(channels, last_width, 1) if last_width else nn.Identity()
        self.num_features = last_width or channels
        self.fc = nn.Linear(self.num_features, num_classes)

    def stage_modules(self):
        return ["conv1", "stage2", "stage3", "stage4"]

    def forward_features(self, x):
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.stage4(self.stage3(self.stage2(x))))


def shufflenet_v1(num_classes=1000, in_chans=3, groups=3, image_size=None):
    def unit(cin, cout, stride, first):
        return ShuffleUnit(cin, cout, stride, groups, group_first=not first)

    model = ShuffleNet(unit, V1_WIDTHS[groups], num_classes, in_chans,
                       small_input=image_size is not None and image_size < 64)
    msra_init(model)
    return model


def shufflenet_v2(num_classes=1000, in_chans=3, width="1_0", image_size=None):
    """PyTorch's default initialisation, as torchvision's twin."""
    *widths, last = V2_WIDTHS[width]
    return ShuffleNet(lambda cin, cout, stride, first: ShuffleV2Unit(cin, cout, stride), widths,
                      num_classes, in_chans, last_width=last,
                      small_input=image_size is not None and image_size < 64)


for _groups, _macs in ((1, "143M"), (2, "140M"), (3, "137M"), (4, "133M"), (8, "137M")):
    register_model(f"shufflenet_v1_g{_groups}", **_V1, paper_macs=_macs,
                   groups=_groups)(shufflenet_v1)
for _width, _params, _macs in (("0_5", "1.4M", "41M"), ("1_0", "2.3M", "146M"),
                               ("1_5", "3.5M", "299M"), ("2_0", "7.4M", "591M")):
    _name = f"shufflenet_v2_x{_width}"
    register_model(_name, **_V2, paper_params=_params, paper_macs=_macs,
                   twins={"torchvision": _name}, width=_width)(shufflenet_v2)
