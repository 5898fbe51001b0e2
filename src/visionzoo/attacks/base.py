"""What every attack shares: pixel-space models, eval mode, the ε-ball, the choice of targets.

The threat model of the notes (Szegedy et al. 2014, Sec. 4.1: x + r ∈ [0, 1]^m; Goodfellow et al.
2015, Sec. 3: ‖η‖∞ ≤ ε; Madry et al. 2018, Eq. 2.1: δ ∈ S) lives in pixel space. The trainer
feeds standardised inputs, so `Normalized` puts the checkpoint's (mean, std) in front of the
network: ε is always measured in pixels of [0, 1], whatever the data set's statistics.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..core.runtime import evaluating

NORMS = ("linf", "l2")
TARGET_CHOICES = ("random", "least_likely")


class Normalized(nn.Module):
    """`model` seen from pixel space: forward(p) = model((p − mean) / std), logits only."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        output = self.model((pixels - self.mean.to(pixels)) / self.std.to(pixels))
        # Networks with auxiliary heads return (logits, aux) in training mode.
        return output[0] if isinstance(output, tuple) else output


def _is_zoo_network(model: nn.Module) -> bool:
    return any(hasattr(m, "forward_features") and hasattr(m, "reset_classifier") for m in model.modules())


@contextmanager
def channels_last_weights(model: nn.Module):
    """A zoo network's 4-D weights in channels_last for the attack's duration; the original tensors
    are put back afterwards. On this CPU its convolutions then run about 2× faster (LeNet forward,
    8 000 images: 2.0 s → 0.94 s), with the same fp32 arithmetic. Zoo networks run channels_last in
    the trainer; any other module is left as it is, since its code may `view` activations."""
    swapped = []
    if _is_zoo_network(model):
        for parameter in model.parameters():
            if parameter.dim() == 4:
                swapped.append((parameter, parameter.data))
                # empty_like sets channels_last strides even where a size-1 dim makes both layouts
                # "contiguous" (a 1-channel first conv), so PyTorch picks the channels_last kernel
                parameter.data = torch.empty_like(parameter.data, memory_format=torch.channels_last
                                                  ).copy_(parameter.data)
    try:
        yield
    finally:
        for parameter, original in swapped:
            parameter.data = original


def choose_targets(target, logits: torch.Tensor, labels: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor | None:
    """Per-sample target classes: None (untargeted), "random" (uniform over the wrong classes),
    "least_likely" (the clean image's lowest logit), a class index, or a tensor of indices."""
    if target is None or isinstance(target, torch.Tensor):
        return target
    num_classes = logits.shape[1]
    if target == "random":
        shift = torch.randint(1, num_classes, labels.shape, generator=generator,
                              device=generator.device if generator else labels.device).to(labels.device)
        return (labels + shift) % num_classes
    if target == "least_likely":
        return logits.argmin(1)
    if isinstance(target, int) and 0 <= target < num_classes:
        return torch.full_like(labels, target)
    raise ValueError(f"target {target!r}: give None, {' or '.join(TARGET_CHOICES)}, "
                     f"or a class index in 0..{num_classes - 1}")


def per_sample_norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    flat = t.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


class Attack:
    """`attack(x, y) -> x_adv` for pixel images x ∈ [0, 1] (N, C, H, W) and labels y.

    The model runs in eval mode (a zoo network also with channels_last weights) during the attack
    and gets its modes (and weight tensors) back afterwards; the result
    is projected onto the ε-ball around x in the attack's norm (when ε is given) and clamped to
    [0, 1]. `queries` counts the images sent through the model.
    """
    norm = "linf"

    def __init__(self, model: nn.Module, eps: float | None):
        if eps is not None and not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.model, self.eps, self.queries = model, eps, 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        with evaluating(self.model), channels_last_weights(self.model):
            x_adv = self.perturb(x, y)
        return self.project(x, x_adv.detach())

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.queries += len(x)
        return self.model(x)

    def project(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        delta = x_adv - x
        if self.eps is not None:
            if self.norm == "linf":
                delta = delta.clamp(-self.eps, self.eps)
            else:
                scale = (self.eps / per_sample_norm(delta, "l2").clamp_min(1e-12)).clamp(max=1.0)
                delta = delta * scale.view(-1, *[1] * (x.ndim - 1))
        # Clamping after the projection only shortens each coordinate: x itself lies in [0, 1].
        return (x + delta).clamp(0.0, 1.0)

    def loss_gradient(self, x: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
        """∇ₓ of the cross-entropy to `labels`, negated for a targeted attack (descent to the
        target); the parameters' .grad is left alone."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(self.logits(x).float(), labels, reduction="sum")
            gradient, = torch.autograd.grad(loss, x)
        return -gradient if targeted else gradient
