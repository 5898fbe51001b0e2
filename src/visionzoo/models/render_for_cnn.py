"""Render for CNN's viewpoint network (Su, Qi, Li, Guibas, ICCV 2015, Sec. 4.2 and Fig. 4).

Shared feature layers, then class-dependent viewpoint estimation layers: for each of the C object
categories, 360 logits for each of the three angles, azimuth θ, elevation φ and in-plane rotation
ψ, one bin per degree. The paper's shared layers are CaffeNet's conv1–fc7 (AlexNet as Caffe's
reference model orders it: max-pooling before the response normalisation) and its viewpoint
layers three fully connected layers of C × 360 outputs each (fc-azimuth, fc-elevation, fc-tilt of
its released model), N(0, 0.01²) initialised.

`forward(x)` returns every category's logits, a tensor (B, C, 3, 360) with the angles in the
order of ANGLES; the viewpoint of an image is read from the head of its category, known at test
time as in the paper's evaluation (`select_category`). The loss, geometry-aware over neighbouring
bins (the paper's Eq. 1), is the viewpoint task's (tasks/viewpoint.py).

Names: `render_for_cnn_alexnet` is the paper's network (CaffeNet trunk, 227×227 input, the 12
PASCAL 3D+ categories); `render_for_cnn` puts the same heads on a small convolutional trunk
(four stages of two 3×3 conv-BN-ReLU layers, 32 to 256 channels by default (`base_width`), average
pooling to a 4×4 map, one fully connected layer of 512) that trains on a CPU at 64×64;
`render_for_cnn_resnet18` puts them on the pooled features of the zoo's ResNet-18. `backbone=NAME` puts them on any registered classifier
(its pooled pre-logit features). The paper prints no parameter count: the cards carry none.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ..core.errors import UsageError
from ..registry import create_model, register_model
from .alexnet import make_features

ANGLES = ("azimuth", "elevation", "inplane")
VIEW_BINS = 360   # one bin per degree (the paper's 3 × 360 per category)
PASCAL3D_CATEGORIES = 12
_PAPER = dict(family="render_for_cnn", year=2015, task="viewpoint",
              paper="Su, Qi, Li, Guibas. Render for CNN: Viewpoint Estimation in Images Using CNNs Trained "
                    "with Rendered 3D Model Views. ICCV 2015")
# CaffeNet: AlexNet's two-tower convolutions with each max-pool before its normalisation.
_CAFFENET = ((96, 11, 4, 0), "pool", "lrn", (256, 5, 1, 2, 2), "pool", "lrn",
             (384, 3, 1, 1), (384, 3, 1, 1, 2), (256, 3, 1, 1, 2), "pool")
SMALL_WIDTH = 32   # the small trunk's first stage; the others double it
SMALL_FEATURES = 512
SMALL_MAP = 4       # side of the small trunk's last map, flattened into its fully connected layer


def select_category(logits: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
    """(B, C, 3, bins) logits of every category → (B, 3, bins), each image's own category's head."""
    return logits[torch.arange(len(logits), device=logits.device), categories.to(logits.device)]


class RenderForCNN(nn.Module):
    """trunk (images → (B, F) features) → dropout → per-angle Linear(F, C × bins) → (B, C, 3, bins)."""

    def __init__(self, trunk: nn.Module, num_features: int, num_classes: int, bins: int = VIEW_BINS,
                 drop_rate: float = 0.0):
        super().__init__()
        self.num_classes, self.bins, self.num_features = num_classes, bins, num_features
        self.trunk = trunk
        self.head_drop = nn.Dropout(drop_rate)
        self.heads = nn.ModuleDict({angle: nn.Linear(num_features, num_classes * bins) for angle in ANGLES})
        for head in self.heads.values():
            nn.init.normal_(head.weight, 0.0, 0.01)
            nn.init.zeros_(head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        features = self.head_drop(features)
        per_angle = [head(features).view(len(features), self.num_classes, self.bins) for head in self.heads.values()]
        return torch.stack(per_angle, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def viewpoint_logits(self, x: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        """(B, 3, bins): the logits of each image's own category."""
        return select_category(self(x), categories)


class CaffeNetTrunk(nn.Module):
    """CaffeNet conv1–fc7: the convolutions, a pool to the 6×6 map (smaller inputs: their last map),
    fc6 and fc7 with ReLU and dropout 0.5."""

    def __init__(self, in_chans: int, image_size: int | None):
        super().__init__()
        pool = partial(nn.MaxPool2d, 3, 2)
        layers, channels, side = make_features(_CAFFENET, in_chans, pool, image_size=image_size,
                                               small_stem=image_size is not None and image_size < 64)
        pool_size = 6 if side is None else min(6, side)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.fc = nn.Sequential(nn.Linear(channels * pool_size ** 2, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
                                nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5))
        # AlexNet's Sec. 5: weights N(0, 0.01²), biases 1 in conv2, conv4, conv5 and the FC layers.
        weighted = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        for i, layer in enumerate(weighted):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.constant_(layer.bias, 1.0 if i in (1, 3, 4, 5, 6) else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def small_trunk(in_chans: int, base_width: int = SMALL_WIDTH) -> nn.Sequential:
    """Four stages of two 3×3 conv-BN-ReLU (w, 2w, 4w, 8w channels; w = 32 by default), 2×2 max-pools
    between them, average pooling to a 4×4 map, Linear(8w·16, 512) + ReLU. The fully connected layer
    sees where each feature is, as CaffeNet's fc6 sees its 6×6 map: global average pooling would keep
    what the parts are but not how they are arranged, and the arrangement is the viewpoint."""
    layers, channels = [], in_chans
    for stage, width in enumerate(base_width * 2 ** k for k in range(4)):
        if stage:
            layers.append(nn.MaxPool2d(2))
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            channels = width
    layers += [nn.AdaptiveAvgPool2d(SMALL_MAP), nn.Flatten(), nn.Linear(channels * SMALL_MAP ** 2, SMALL_FEATURES),
               nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def zoo_trunk(name: str, in_chans: int, image_size: int | None) -> tuple[nn.Module, int]:
    """A registered classifier without its last linear layer (its pooled pre-logit features) and their width."""
    try:
        network = create_model(name, num_classes=1, in_chans=in_chans,
                               **({} if image_size is None else {"image_size": image_size}))
    except UsageError as exc:
        raise UsageError(f"backbone={name}: {exc}") from None
    classifier = network.get_classifier() if hasattr(network, "get_classifier") else None
    if not isinstance(classifier, nn.Linear):
        raise UsageError(f"backbone={name} does not end in a linear classifier whose input could feed the "
                         "viewpoint heads; choose another classifier (e.g. resnet18)")
    width = classifier.in_features
    network.reset_classifier(0)
    return network, width


def render_for_cnn(num_classes: int = PASCAL3D_CATEGORIES, in_chans: int = 3, backbone: str = "small",
                   image_size: int | None = None, bins: int = VIEW_BINS, drop_rate: float = 0.0,
                   base_width: int = SMALL_WIDTH) -> RenderForCNN:
    """The viewpoint network on `backbone`: "small" (64×64; `base_width` its first stage's channels),
    "caffenet" (the paper's) or a registered classifier's name; `num_classes` is the number of object
    categories."""
    if backbone != "small" and base_width != SMALL_WIDTH:
        raise UsageError(f"base_width sets the small trunk's channels; backbone={backbone} has its own")
    if backbone == "small":
        trunk, width = small_trunk(in_chans, base_width), SMALL_FEATURES
    elif backbone == "caffenet":
        trunk, width = CaffeNetTrunk(in_chans, image_size), 4096
    else:
        trunk, width = zoo_trunk(backbone, in_chans, image_size)
    return RenderForCNN(trunk, width, num_classes, bins, drop_rate)


register_model("render_for_cnn", **{**_PAPER, "paper": _PAPER["paper"] + " (small convolutional trunk)"},
               input_size=(3, 64, 64), num_classes=PASCAL3D_CATEGORIES)(render_for_cnn)
register_model("render_for_cnn_alexnet", **_PAPER, input_size=(3, 227, 227), num_classes=PASCAL3D_CATEGORIES,
               backbone="caffenet")(render_for_cnn)
register_model("render_for_cnn_resnet18", **{**_PAPER, "paper": _PAPER["paper"] + " (ResNet-18 trunk)"},
               input_size=(3, 64, 64), num_classes=PASCAL3D_CATEGORIES, backbone="resnet18")(render_for_cnn)
