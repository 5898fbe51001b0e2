"""ST-CNN: Jaderberg, Simonyan, Zisserman, Kavukcuoglu, "Spatial Transformer Networks", NeurIPS 2015.

`stn_cnn` is the distorted-MNIST ST-CNN of the paper's Sec. 4.1 / Appendix A: an affine spatial
transformer (layers/spatial_transformer.py) at the very front of a CNN classifier.

- Localisation network: max-pool 2×2 → conv 20@5×5 → ReLU → max-pool 2×2 → conv 20@5×5 → ReLU
  → FC 50 → ReLU → FC 6 (θ, initialised to the identity transform).
- Classification CNN: conv 32@9×9 → ReLU → max-pool 2×2 → conv 64@7×7 → ReLU → max-pool 2×2
  → FC to the classes.
The notes give the sampler's equations but no layer table; the widths above follow the paper's
appendix description of its MNIST networks (two 9×9 convolutions in the classifier, a small
two-convolution localisation net) and no parameter figure is claimed. The output of the
transformer has the input's size, so the classifier's FC input is fixed by ``image_size``
(28 by default, the paper's 28×28 distorted digits; it must be at least 28 for the 5×5 and
7×7 stacks). Convolutions He-initialised with zero biases (msra_init leaves the linear
layers, so θ keeps its identity start).

Feature stages: the classifier CNN's ReLU before each max-pool and its last max-pool (the
transformer's output is a resampled image, not a feature map). The localisation network's
linear layer fixes the input size, so a reduction is the input side over the map side.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers.spatial_transformer import SpatialTransformer
from ..registry import register_model
from .base import ImageClassifier
from .resnet import msra_init

_PAPER = "Jaderberg, Simonyan, Zisserman, Kavukcuoglu. Spatial Transformer Networks. NeurIPS 2015"


def _conv_relu(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel), nn.ReLU(inplace=True)]


class STCNN(ImageClassifier):
    fixed_input_size = True

    def __init__(self, num_classes: int = 10, in_chans: int = 1, image_size: int = 28):
        super().__init__()
        if image_size < 28:
            raise ValueError(f"stn_cnn needs inputs of at least 28×28, not {image_size}")
        self.num_classes = num_classes
        loc_side = (image_size // 2 - 4) // 2 - 4
        localisation = nn.Sequential(
            nn.MaxPool2d(2), *_conv_relu(in_chans, 20, 5), nn.MaxPool2d(2), *_conv_relu(20, 20, 5),
            nn.Flatten(), nn.Linear(20 * loc_side ** 2, 50), nn.ReLU(inplace=True))
        self.transformer = SpatialTransformer(localisation, 50)
        self.features = nn.Sequential(*_conv_relu(in_chans, 32, 9), nn.MaxPool2d(2),
                                      *_conv_relu(32, 64, 7), nn.MaxPool2d(2))
        side = ((image_size - 8) // 2 - 6) // 2
        self.num_features = 64 * side * side
        self.fc = nn.Linear(self.num_features, num_classes)
        msra_init(self)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.zeros_(m.bias)

    def stage_modules(self):
        return ["features.1", "features.4", "features.5"]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.transformer(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(x, 1)
        return x if pre_logits else self.fc(x)


@register_model(family="stn", paper=_PAPER, year=2015, input_size=(1, 28, 28), num_classes=10,
                dataset="mnist")
def stn_cnn(num_classes=10, in_chans=1, image_size=None):
    return STCNN(num_classes, in_chans, image_size or 28)
