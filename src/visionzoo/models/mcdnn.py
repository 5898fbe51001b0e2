"""MCDNN: Cireşan, Meier, Schmidhuber, "Multi-column Deep Neural Networks for Image
Classification", CVPR 2012 (the notes' MCDNN section: MNIST 0.23 % error).

A column is the paper's MNIST DNN, 1×29×29-20C4-MP2-40C5-MP3-150N-10N: conv 20@4×4 → max-pool 2
→ conv 40@5×5 → max-pool 3 → FC 150 → FC 10, hyperbolic tangent after every convolution and the
hidden FC layer (Sec. 2), weights uniform in [−0.05, 0.05] and biases 0. Inputs of any other
size are resized (bilinear) to the column's 29×29 after preprocessing.

Each column sees its own preprocessing of the input, and the committee averages the columns'
softmax outputs (Sec. 2, Fig. 1c); its logits are the log of that average, so cross-entropy on
them is the negative log-likelihood of the committee. Preprocessings implemented here:
- ``"original"``: the image as given;
- ``"width<N>"`` (e.g. ``"width10"``): the paper's MNIST width normalisation. The bounding box of
  the ink (pixels above half the image's range) is stretched or shrunk horizontally to N pixels
  and centred; the height is kept. The paper trains columns on widths 10, 12, …, 20 and the
  original images (7 preprocessings × 5 columns = 35 nets);
- ``"contrast"``: local contrast normalisation (subtract the 9×9 local mean, divide by the local
  standard deviation floored at its image mean), the kind of contrast normalisation the paper
  applies to NORB, CIFAR-10 and traffic signs.

Feature stages of a column: the tanh before each max-pool and the last max-pool; of the committee,
each column's last map (the maps `forward_features` stacks). Columns resize their input to 29×29,
so the maps do not grow with the input and a reduction is 29 over the map side.

`mcdnn` is a 5-column committee: original, width 10, 14, 18 and contrast-normalised.
`mcdnn_column` is one column (``preprocessing=...`` picks it), trained on its own with
``visionzoo train --model mcdnn_column --model-arg preprocessing=width10``; `committee` joins trained
columns (e.g. loaded with `visionzoo.weights.load_checkpoint`) into one MCDNN, as the paper trains its columns independently.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_model
from .base import ImageClassifier

_PAPER = ("Cireşan, Meier, Schmidhuber. Multi-column Deep Neural Networks for Image Classification. "
          "CVPR 2012")
COLUMN_SIZE = 29
CONTRAST_WINDOW = 9
MCDNN_PREPROCESSINGS = ("original", "width10", "width14", "width18", "contrast")


def width_normalised(images: torch.Tensor, width: int) -> torch.Tensor:
    """Stretch each image horizontally so that its ink's bounding box is `width` pixels wide, centred."""
    batch, _, _, side = images.shape
    profile = images.amax(dim=(1, 2))  # (batch, columns)
    low, high = profile.amin(1, keepdim=True), profile.amax(1, keepdim=True)
    ink = profile > low + 0.5 * (high - low)
    has_ink = ink.any(1)
    columns = torch.arange(side, device=images.device)
    left = torch.where(ink, columns, side).amin(1)
    right = torch.where(ink, columns, -1).amax(1)
    box_width = (right - left + 1).to(images.dtype)
    box_centre = (left + right + 1).to(images.dtype) / side - 1  # normalised coordinates
    theta = images.new_zeros(batch, 2, 3)
    # Target x_t ∈ [−1, 1] reads the source at x_s = centre + (box width / width) · x_t.
    theta[:, 0, 0] = torch.where(has_ink, box_width / width, 1.0)
    theta[:, 0, 2] = torch.where(has_ink, box_centre, 0.0)
    theta[:, 1, 1] = 1.0
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)


def contrast_normalised(images: torch.Tensor, window: int = CONTRAST_WINDOW) -> torch.Tensor:
    pad = window // 2
    local_mean = F.avg_pool2d(images, window, 1, pad, count_include_pad=False)
    centred = images - local_mean
    local_std = F.avg_pool2d(centred.square(), window, 1, pad, count_include_pad=False).sqrt()
    floor = local_std.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return centred / torch.maximum(local_std, floor)


def preprocess(images: torch.Tensor, preprocessing: str) -> torch.Tensor:
    if preprocessing == "original":
        return images
    if preprocessing == "contrast":
        return contrast_normalised(images)
    if preprocessing.startswith("width") and preprocessing[5:].isdigit():
        return width_normalised(images, int(preprocessing[5:]))
    raise ValueError(f"unknown preprocessing {preprocessing!r}: 'original', 'contrast' or 'width<N>'")


class MCDNNColumn(ImageClassifier):
    """preprocess → resize to 29×29 → 20C4-MP2-40C5-MP3 (tanh) → FC 150 (tanh) → FC classes."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, preprocessing: str = "original"):
        super().__init__()
        preprocess(torch.zeros(1, 1, 4, 4), preprocessing)  # reject unknown names at build time
        self.num_classes, self.preprocessing = num_classes, preprocessing
        self.features = nn.Sequential(nn.Conv2d(in_chans, 20, 4), nn.Tanh(), nn.MaxPool2d(2),
                                      nn.Conv2d(20, 40, 5), nn.Tanh(), nn.MaxPool2d(3))
        self.hidden = nn.Sequential(nn.Linear(40 * 3 * 3, 150), nn.Tanh())
        self.num_features = 150
        self.fc = nn.Linear(150, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.uniform_(m.weight, -0.05, 0.05)
                nn.init.zeros_(m.bias)

    def stage_modules(self):
        return ["features.1", "features.4", "features.5"]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = preprocess(x, self.preprocessing)
        if x.shape[-2:] != (COLUMN_SIZE, COLUMN_SIZE):
            x = F.interpolate(x, size=(COLUMN_SIZE, COLUMN_SIZE), mode="bilinear", align_corners=False)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.hidden(torch.flatten(x, 1))
        return x if pre_logits else self.fc(x)


class MCDNN(ImageClassifier):
    """Columns on their own preprocessings; logits = log of the mean of their softmax outputs.

    `forward_features` stacks the columns' last maps (batch, columns, 40, 3, 3); ``pre_logits``
    (or no classifier) gives the columns' hidden layers side by side (batch, columns · 150).
    """

    def __init__(self, columns: list[MCDNNColumn]):
        super().__init__()
        self.columns = nn.ModuleList(columns)
        self.num_classes = columns[0].num_classes
        self.num_features = sum(c.num_features for c in columns)

    @property
    def classifier_name(self) -> tuple[str, ...]:
        return tuple(f"columns.{i}.fc" for i in range(len(self.columns)))

    def stage_modules(self):
        return [f"columns.{i}.features" for i in range(len(self.columns))]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([column.forward_features(x) for column in self.columns], 1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        hidden = [column.forward_head(x[:, i], pre_logits=True) for i, column in enumerate(self.columns)]
        if pre_logits or self.num_classes == 0:
            return torch.cat(hidden, 1)
        probabilities = torch.stack([column.fc(h).float().softmax(1)
                                     for column, h in zip(self.columns, hidden)]).mean(0)
        return probabilities.clamp_min(1e-12).log()

    def get_classifier(self) -> nn.Module:
        return nn.ModuleList(column.fc for column in self.columns)

    def reset_classifier(self, num_classes: int) -> None:
        for column in self.columns:
            column.reset_classifier(num_classes)
        self.num_classes = num_classes


def committee(columns) -> MCDNN:
    """Join independently trained `mcdnn_column` networks into one MCDNN (in eval mode)."""
    columns = list(columns)
    for column in columns:
        if not isinstance(column, MCDNNColumn):
            raise ValueError(f"a committee takes MCDNN columns, not a {type(column).__name__}")
    if not columns:
        raise ValueError("a committee needs at least one column")
    if len({c.num_classes for c in columns}) != 1:
        raise ValueError("the columns were trained for different numbers of classes")
    return MCDNN(columns).eval()


_MNIST = dict(family="mcdnn", paper=_PAPER, year=2012, input_size=(1, 29, 29), num_classes=10,
              dataset="mnist")


@register_model(**_MNIST)
def mcdnn_column(num_classes=10, in_chans=1, preprocessing="original"):
    return MCDNNColumn(num_classes, in_chans, preprocessing)


@register_model(**_MNIST)
def mcdnn(num_classes=10, in_chans=1, preprocessings=MCDNN_PREPROCESSINGS):
    return MCDNN([MCDNNColumn(num_classes, in_chans, p) for p in preprocessings])
