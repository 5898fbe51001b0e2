"""ST-CNN Multi and parallel spatial transformers: Jaderberg, Simonyan, Zisserman, Kavukcuoglu,
"Spatial Transformer Networks", NeurIPS 2015, Secs. 4.2 and 4.3 (the notes' SVHN and CUB tables:
ST-CNN Single / Multi, 2×ST-CNN and 4×ST-CNN), at CPU scale on 28×28 grey images.

- ``stcnn_multi`` (Sec. 4.2): a spatial transformer before each of the first four convolutional
  layers. The first transforms the image, the later ones the convolutional feature maps (all
  channels with one θ); each localisation network is two fully connected layers of 32 units on
  the flattened map it transforms, then the affine θ regressor (Eq. 1, initialised to the
  identity). The paper's SVHN classifier is an 11-layer CNN on 64 px digits sequences; here four
  5×5 "same" convolutions (32, 32, 64, 64 filters, ReLU, 2×2 max-pool after the second and the
  fourth), FC 256 and one softmax over the classes — the transformers sit where the paper puts
  them, before convolutions 1–4.
- ``stcnn_parallel2`` / ``stcnn_parallel4`` (Sec. 4.3): N transformers in parallel on the image,
  each constrained to attention, A_θ = [[s, 0, t_x], [0, s, t_y]] (Eq. 2: isotropic scale and
  translation), sampling a crop of half the input side (the 448 px models' 224 px crops). Each
  crop feeds an Inception network of its own; their features are concatenated and classified by
  one softmax layer. The paper's localisation network and branches are ImageNet-pretrained
  BN-Inception networks at 224–448 px; here each transformer has a small localisation CNN of its
  own (two 3×3 conv-BN-ReLU layers, global average pool, FC 32) and each branch a 3×3 stem and two
  Inception modules (Fig. 2(b), layers/inception.py). Every transformer starts at the identity,
  s = 1, t = 0: its crop is then the whole image at half resolution, and training moves it.

Figures: none (CPU-scale variants of networks whose sizes the paper does not print). Feature
stages: ``stcnn_multi`` the ReLU before each max-pool and the last max-pool (reductions 1, 2, 4);
the parallel networks, the stages of their first branch (stem, each Inception module), whose
reductions are input-side ratios since the crop size is fixed.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..layers import inception as L
from ..layers.spatial_transformer import SpatialTransformer, affine_grid, bilinear_sample
from ..registry import register_model
from .base import ImageClassifier
from .resnet import msra_init

_PAPER = "Jaderberg, Simonyan, Zisserman, Kavukcuoglu. Spatial Transformer Networks. NeurIPS 2015"
_CARD = dict(family="stn", paper=_PAPER, year=2015, input_size=(1, 28, 28), num_classes=10, dataset="mnist")


class AttentionTransformer(nn.Module):
    """U → localisation net → (s, t_x, t_y) → A_θ of Eq. 2 → V = sampler(U, grid), V of `output_size`.

    The regressor starts at zero weights and the bias (1, 0, 0): the identity, a crop of the whole map."""

    def __init__(self, localisation: nn.Module, localisation_features: int, output_size: int):
        super().__init__()
        self.localisation = localisation
        self.output_size = output_size
        self.theta = nn.Linear(localisation_features, 3)
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor([1.0, 0, 0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift_x, shift_y = self.theta(self.localisation(x)).unbind(1)
        zero = torch.zeros_like(scale)
        theta = torch.stack([scale, zero, shift_x, zero, scale, shift_y], 1).view(-1, 2, 3)
        return bilinear_sample(x, affine_grid(theta, self.output_size, self.output_size))


def _fc_localisation(features: int, units: int = 32) -> nn.Sequential:
    """Sec. 4.2's ST-CNN Multi localisation: two fully connected layers of 32 units."""
    return nn.Sequential(nn.Flatten(), nn.Linear(features, units), nn.ReLU(inplace=True),
                         nn.Linear(units, units), nn.ReLU(inplace=True))


class MultiSTCNN(ImageClassifier):
    """[transformer → 5×5 conv → ReLU (→ 2×2 max-pool)] × 4 → FC → ReLU → FC."""
    fixed_input_size = True

    def __init__(self, num_classes: int = 10, in_chans: int = 1, image_size: int = 28,
                 widths=(32, 32, 64, 64), pool_after=(2, 4), hidden: int = 256):
        super().__init__()
        if image_size % 2 ** len(pool_after):
            raise ValueError(f"stcnn_multi halves its input {len(pool_after)} times: image_size={image_size} "
                             f"must be a multiple of {2 ** len(pool_after)}")
        self.num_classes = num_classes
        layers, channels, side = OrderedDict(), in_chans, image_size
        for i, width in enumerate(widths, 1):
            layers[f"st{i}"] = SpatialTransformer(_fc_localisation(channels * side * side), 32)
            layers[f"conv{i}"] = nn.Conv2d(channels, width, 5, padding=2)
            layers[f"relu{i}"] = nn.ReLU(inplace=True)
            if i in pool_after:
                layers[f"pool{i}"] = nn.MaxPool2d(2)
                side //= 2
            channels = width
        self.features = nn.Sequential(layers)
        self.pool_after = tuple(pool_after)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, hidden), nn.ReLU(inplace=True))
        self.num_features = hidden
        self.fc = nn.Linear(hidden, num_classes)
        msra_init(self)

    def stage_modules(self):
        return [*(f"features.relu{i}" for i in self.pool_after), f"features.pool{self.pool_after[-1]}"]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.hidden(x)
        return x if pre_logits else self.fc(x)


def _conv_localisation(in_chans: int, units: int = 32) -> nn.Sequential:
    return nn.Sequential(L.BasicConv2d(in_chans, 16, 3), nn.MaxPool2d(2), L.BasicConv2d(16, 32, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, units), nn.ReLU(inplace=True))


def _inception_branch(in_chans: int) -> nn.Sequential:
    """3×3 stem → Inception (Fig. 2(b)) → 3×3/2 max-pool → Inception; 56 then 88 channels."""
    return nn.Sequential(OrderedDict(
        stem=L.BasicConv2d(in_chans, 32, 3),
        inception1=L.googlenet_module(32, 16, 16, 24, 4, 8, 8, k5=5),
        pool=nn.MaxPool2d(3, 2, 1),
        inception2=L.googlenet_module(56, 24, 24, 32, 8, 16, 16, k5=5)))


class ParallelSTCNN(ImageClassifier):
    """N × [attention transformer → its own Inception branch], concatenated → global pool → FC."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, transformers: int = 2,
                 crop_size: int = 14):
        super().__init__()
        if transformers < 1:
            raise ValueError(f"a parallel ST-CNN needs at least one transformer, not {transformers}")
        self.num_classes = num_classes
        self.transformers = nn.ModuleList(AttentionTransformer(_conv_localisation(in_chans), 32, crop_size)
                                          for _ in range(transformers))
        self.branches = nn.ModuleList(_inception_branch(in_chans) for _ in range(transformers))
        self.num_features = transformers * self.branches[0].inception2.out_channels
        self.fc = nn.Linear(self.num_features, num_classes)
        msra_init(self)

    def stage_modules(self):
        return ["branches.0.stem", "branches.0.inception1", "branches.0.inception2"]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(crop(x)) for crop, branch in zip(self.transformers, self.branches)], 1)


@register_model(**_CARD)
def stcnn_multi(num_classes=10, in_chans=1, image_size=None, **kwargs):
    return MultiSTCNN(num_classes, in_chans, image_size or 28, **kwargs)


def _parallel(num_classes=10, in_chans=1, image_size=None, transformers=2, crop_size=None):
    """Crops of half the input side unless `crop_size` says otherwise."""
    return ParallelSTCNN(num_classes, in_chans, transformers, crop_size or (image_size or 28) // 2)


register_model("stcnn_parallel2", **_CARD, transformers=2)(_parallel)
register_model("stcnn_parallel4", **_CARD, transformers=4)(_parallel)
