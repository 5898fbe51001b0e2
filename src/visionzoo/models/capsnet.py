"""CapsNet: Sabour, Frosst, Hinton, "Dynamic Routing Between Capsules", NeurIPS 2017.

The MNIST network of Sec. 4 (Fig. 1) and its decoder (Sec. 4.1, Fig. 2):
Conv1 256@9×9 + ReLU → PrimaryCaps (32 types of 8-D capsules, 9×9 stride 2, 6×6 positions:
1152 capsules) → DigitCaps (10 × 16-D, dynamic routing with r = 3 iterations, the notes'
Procedure 1) and a reconstruction decoder FC 512 → 1024 → 784 (ReLU, ReLU, sigmoid) reading the
digit capsules with all but one masked: the true class in training, the longest at test time.
6.8M parameters without the decoder, 8.2M with it: the paper's figures, which the counts here
round to (6,804,224 and 8,215,568); the notes' MNIST table lists only error rates.

Loss (`training_loss`, used by the trainer): the margin loss of Eq. 4 (m⁺ = 0.9, m⁻ = 0.1,
λ = 0.5) plus 0.0005 × the sum of squared reconstruction errors. The decoder's sigmoid produces
intensities in [0, 1]; the trainer feeds standardised images, so the reconstruction target is
each input image min-max rescaled to [0, 1] (for raw MNIST pixels in [0, 1] that is the image
itself). Label smoothing does not apply: the margins already leave the lengths short of 0 and 1.

Outputs: the logits are the capsule lengths ‖v_k‖ (the paper's prediction is the longest
capsule). In training mode the forward returns ``(lengths, digit_capsules, images)`` so that
`training_loss` can mask and decode; in eval mode just the lengths.

Feature stages: Conv1 (256@20×20) and the primary capsules, laid out again as the PrimaryCaps
convolution's 32·8 maps (6×6) — the routed digit capsules have no spatial layout.

Interface: `forward_features` returns the primary capsules (batch, 1152, 8); the "classifier" is
the routed digit-capsule layer, so `reset_classifier(k)` builds k new digit capsules (and a
decoder for them); k = 0 leaves the flattened primary capsules. Other input sizes change the
number of primary capsules and the decoder's output size (``image_size``, ``in_chans``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.capsule import PrimaryCapsules, RoutedCapsules, margin_loss
from ..registry import register_model
from .base import ImageClassifier

_PAPER = "Sabour, Frosst, Hinton. Dynamic Routing Between Capsules. NeurIPS 2017"
RECONSTRUCTION_WEIGHT = 0.0005


def min_max_rescaled(images: torch.Tensor) -> torch.Tensor:
    flat = images.flatten(1)
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    return (flat - low) / (high - low).clamp_min(1e-6)


class CapsNet(ImageClassifier):
    classifier_name = "digit_caps"

    def __init__(self, num_classes: int = 10, in_chans: int = 1, image_size: int = 28,
                 routing_iterations: int = 3):
        super().__init__()
        self.num_classes, self.routing_iterations = num_classes, routing_iterations
        self.image_numel = in_chans * image_size * image_size
        self.conv1 = nn.Sequential(nn.Conv2d(in_chans, 256, 9), nn.ReLU(inplace=True))
        self.primary_caps = PrimaryCapsules(256, num_capsules=32, capsule_dim=8, kernel_size=9, stride=2)
        side = (image_size - 8 - 9) // 2 + 1
        if side < 1:
            raise ValueError(f"CapsNet needs inputs of at least 17×17 pixels, not {image_size}")
        self.num_primary = 32 * side * side
        self.num_features = self.num_primary * 8
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        if num_classes == 0:
            self.digit_caps, self.decoder = nn.Identity(), None
            return
        device = self.conv1[0].weight.device
        self.digit_caps = RoutedCapsules(self.num_primary, 8, num_classes, 16,
                                         self.routing_iterations).to(device)
        self.decoder = nn.Sequential(
            nn.Linear(16 * num_classes, 512), nn.ReLU(inplace=True), nn.Linear(512, 1024),
            nn.ReLU(inplace=True), nn.Linear(1024, self.image_numel), nn.Sigmoid()).to(device)

    def stage_modules(self):
        return ["conv1", "primary_caps"]

    def stage_map(self, output, image_size):
        if output.dim() == 4:
            return output
        # (B, types·positions, dim) → channel type·dim + d at each position, as PrimaryCapsules reads it.
        batch, types, dim = len(output), self.primary_caps.num_capsules, self.primary_caps.capsule_dim
        height, width = ((side - 8 - 9) // 2 + 1 for side in image_size)
        return output.reshape(batch, types, height, width, dim).permute(0, 1, 4, 2, 3) \
            .reshape(batch, types * dim, height, width)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.primary_caps(self.conv1(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits or self.num_classes == 0:
            return x.flatten(1)
        return self.digit_caps(x).norm(dim=-1)

    def forward(self, x: torch.Tensor):
        features = self.forward_features(x)
        if not self.training or self.num_classes == 0:
            return self.forward_head(features)
        capsules = self.digit_caps(features)
        return capsules.norm(dim=-1), capsules, x

    def reconstruct(self, capsules: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Decode the capsules with all but `classes` zeroed (Sec. 4.1): (batch, C·H·W) in [0, 1]."""
        mask = F.one_hot(classes, capsules.shape[1]).to(capsules.dtype)
        return self.decoder((capsules * mask[..., None]).flatten(1))

    def training_loss(self, output, labels: torch.Tensor, label_smoothing: float = 0.0):
        lengths, capsules, images = output
        lengths, capsules = lengths.float(), capsules.float()
        reconstruction = self.reconstruct(capsules, labels).float()
        squared_error = (reconstruction - min_max_rescaled(images.float())).square().sum(1).mean()
        return margin_loss(lengths, labels) + RECONSTRUCTION_WEIGHT * squared_error, lengths


@register_model(family="capsnet", paper=_PAPER, year=2017, input_size=(1, 28, 28), num_classes=10,
                dataset="mnist", paper_params="8.2M")
def capsnet(num_classes=10, in_chans=1, image_size=None, **kwargs):
    return CapsNet(num_classes, in_chans, image_size or 28, **kwargs)
