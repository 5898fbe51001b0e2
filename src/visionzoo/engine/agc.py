"""Adaptive gradient clipping (Brock et al. High-Performance Large-Scale Image Recognition
Without Normalization. ICML 2021, Sec. 4, Eq. 3).

Unit-wise: for the i-th row G_i of a layer's gradient (one output unit: a conv filter, a row of
a linear layer) and the matching weights W_i,
    G_i ← λ·(‖W_i‖*/‖G_i‖)·G_i   if ‖G_i‖/‖W_i‖* > λ,   with ‖W_i‖* = max(‖W_i‖, ε), ε = 10⁻³,
and G_i unchanged otherwise. Vectors (biases, gains) count as one unit. The final classifier is
not clipped (Sec. 4.1: clipping it hurts).
"""
from __future__ import annotations

import torch

AGC_EPS = 1e-3


def unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """‖x_i‖ per output unit (dim 0), shaped to broadcast against x; one norm for a vector."""
    if x.ndim <= 1:
        return x.norm()
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.ndim - 1)))


@torch.no_grad()
def adaptive_clip_(parameters, clipping: float, eps: float = AGC_EPS) -> None:
    """Clip, in place, the gradient of every unit whose ‖G_i‖/max(‖W_i‖, ε) exceeds `clipping`."""
    for p in parameters:
        if p.grad is None:
            continue
        max_norm = unitwise_norm(p).clamp_min(eps) * clipping
        grad_norm = unitwise_norm(p.grad)
        clipped = p.grad * (max_norm / grad_norm.clamp_min(1e-12))
        p.grad.copy_(torch.where(grad_norm > max_norm, clipped, p.grad))


def clipped_parameters(model) -> list[torch.nn.Parameter]:
    """Every trainable parameter except the classifier's (the layer `reset_classifier` replaces)."""
    from .optim import head_parameters
    head = head_parameters(model)
    return [p for p in model.parameters() if p.requires_grad and id(p) not in head]
