"""Gradient and class-activation explanations of one image's class score y^c (the logit).

- saliency: Simonyan, Vedaldi, Zisserman. Deep Inside Convolutional Networks. ICLR 2014 workshop,
  Sec. 3.1: M_ij = max_c |∂y^c/∂x_cij|.
- CAM: Zhou et al. Learning Deep Features for Discriminative Localization. CVPR 2016, Eq. 2:
  M^c(x, y) = Σ_k w^c_k f_k(x, y), for networks whose head is global average pooling → linear.
- Grad-CAM: Selvaraju et al. Grad-CAM. ICCV 2017, Eq. 1–2: α^c_k = mean_ij ∂y^c/∂A^k_ij,
  L^c = ReLU(Σ_k α^c_k A^k), for any convolutional layer A (the last Conv2d by default).
  For a GAP + linear head, α^c_k = w^c_k / (h·w), so Grad-CAM = ReLU(CAM) / (h·w) (Sec. 3.1).
- guided backprop (Springenberg et al. 2015) and guided Grad-CAM (Selvaraju et al., Sec. 3.2:
  the element-wise product of guided backprop with the upsampled Grad-CAM).

Every function runs the model in eval mode and restores it; hooks are released on return.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from .hooks import capture, evaluating, find_layer, guided_relus


class NotApplicable(UsageError):
    """The method cannot explain this network (e.g. CAM without a GAP → linear head); others still can."""


def is_constant(heatmap: torch.Tensor) -> bool:
    """A map with one value everywhere (an all-zero Grad-CAM after its ReLU) ranks no pixel above another."""
    return bool(heatmap.max() == heatmap.min())


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    output = model(x)
    return output[0] if isinstance(output, tuple) else output


def _input_gradient(model, x, target):
    # autograd.grad, not backward(): the weights' .grad are neither computed nor touched.
    x = x.detach().clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(logits(model, x)[0, target], x)
    return gradient[0]


def saliency(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """(H, W) map: the largest |∂y^c/∂x| over the colour channels of each pixel."""
    with evaluating(model):
        return _input_gradient(model, x, target).abs().amax(0)


def guided_backprop(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """(C, H, W) guided gradient of y^c with respect to the image."""
    with evaluating(model), guided_relus(model):
        return _input_gradient(model, x, target)


def class_activation_map(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """(h, w) CAM on the last feature map; the head must be global average pooling → linear."""
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    with evaluating(model), torch.no_grad():
        features = model.forward_features(x) if hasattr(model, "forward_features") else None
        if not isinstance(classifier, nn.Linear) or features is None or features.dim() != 4 \
                or features.shape[1] != classifier.in_features:
            raise NotApplicable("CAM needs a network whose head is global average pooling → one linear "
                             "layer; use --method gradcam")
        through_head = model.forward_head(features)
        through_gap = classifier(features.mean((2, 3)))
        if not torch.allclose(through_head, through_gap, rtol=1e-4, atol=1e-4):
            raise NotApplicable("CAM needs a head that is global average pooling → linear (this one "
                             "is not); use --method gradcam")
        return torch.einsum("k,khw->hw", classifier.weight[target], features[0])


def grad_cam(model: nn.Module, x: torch.Tensor, target: int, layer: str | None = None) -> torch.Tensor:
    """(h, w) Grad-CAM of `layer` (a module name; default the last Conv2d)."""
    _, module = find_layer(model, layer)
    with evaluating(model), capture(module) as record:
        x = x.detach().clone().requires_grad_(True)  # a gradient path even when weights are frozen
        score = logits(model, x)[0, target]
    activation = record.activation
    if activation is None or activation.dim() != 4 or not activation.requires_grad:
        raise UsageError(f"layer {layer!r} gives no convolutional feature map with a gradient to "
                         "the class score; choose a Conv2d or a block output")
    # Only the part of the backward pass between the score and the layer runs: no weight gradients.
    (gradient,) = torch.autograd.grad(score, activation)
    weights = gradient[0].mean((1, 2))
    return F.relu(torch.einsum("k,khw->hw", weights, activation.detach()[0]))


def upsample(heatmap: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of an (h, w) map to the image's (H, W)."""
    if tuple(heatmap.shape) == tuple(size):
        return heatmap
    return F.interpolate(heatmap[None, None].float(), size=tuple(size), mode="bilinear",
                         align_corners=False)[0, 0]


def guided_grad_cam(model: nn.Module, x: torch.Tensor, target: int, layer: str | None = None) -> torch.Tensor:
    """(C, H, W): guided backprop ⊙ Grad-CAM upsampled to the image."""
    cam = upsample(grad_cam(model, x, target, layer), x.shape[-2:])
    return guided_backprop(model, x, target) * cam
