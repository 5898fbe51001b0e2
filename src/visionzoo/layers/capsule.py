"""Capsule layers: Sabour, Frosst, Hinton, "Dynamic Routing Between Capsules", NeurIPS 2017.

- `squash` (Eq. 1): v = ‖s‖² / (1 + ‖s‖²) · s / ‖s‖, a vector's length pushed into [0, 1) and
  its direction kept.
- `PrimaryCapsules` (Sec. 4): a convolution whose output channels are read as `num_capsules`
  types of `capsule_dim`-D vectors at every position, each squashed.
- `routing` (Procedure 1, Eqs. 2–3): b_ij ← 0; r times: c_i = softmax(b_i) over the output
  capsules j, s_j = Σ_i c_ij û_j|i, v_j = squash(s_j), b_ij ← b_ij + û_j|i · v_j.
- `RoutedCapsules`: the prediction vectors û_j|i = W_ij u_i (Eq. 2, one 8×16 matrix per pair of
  input capsule i and output capsule j) routed into the output capsules.
- `margin_loss` (Eq. 4): L_k = T_k max(0, m⁺ − ‖v_k‖)² + λ (1 − T_k) max(0, ‖v_k‖ − m⁻)²,
  summed over the classes k.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# A zero vector has no direction; this keeps the gradient of ‖s‖ finite there.
_EPS = 1e-8


def squash(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    squared_norm = s.square().sum(dim, keepdim=True)
    return squared_norm / (1 + squared_norm) * s / torch.sqrt(squared_norm + _EPS)


class PrimaryCapsules(nn.Module):
    """Conv to num_capsules·capsule_dim channels → (batch, positions·num_capsules, capsule_dim)."""

    def __init__(self, cin: int, num_capsules: int = 32, capsule_dim: int = 8, kernel_size: int = 9,
                 stride: int = 2):
        super().__init__()
        self.num_capsules, self.capsule_dim = num_capsules, capsule_dim
        self.conv = nn.Conv2d(cin, num_capsules * capsule_dim, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.conv(x)
        batch, _, height, width = maps.shape
        # Channel c·capsule_dim + d is component d of capsule type c (reshape: maps may be
        # channels-last, so no view).
        capsules = maps.reshape(batch, self.num_capsules, self.capsule_dim, height * width)
        return squash(capsules.permute(0, 1, 3, 2).reshape(batch, -1, self.capsule_dim))


def routing(predictions: torch.Tensor, iterations: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Procedure 1 on û of shape (batch, inputs i, outputs j, dim): (v_j, last coupling c_ij)."""
    logits = predictions.new_zeros(predictions.shape[:3])
    for iteration in range(iterations):
        coupling = logits.softmax(dim=2)
        outputs = squash(torch.einsum("bij,bijd->bjd", coupling, predictions))
        if iteration < iterations - 1:  # the last agreement would never be used
            logits = logits + torch.einsum("bijd,bjd->bij", predictions, outputs)
    return outputs, coupling


class RoutedCapsules(nn.Module):
    """û_j|i = W_ij u_i for every input capsule i and output capsule j, routed into v_j."""

    def __init__(self, num_inputs: int, input_dim: int, num_outputs: int, output_dim: int,
                 iterations: int = 3):
        super().__init__()
        self.iterations = iterations
        self.weight = nn.Parameter(torch.randn(num_inputs, num_outputs, output_dim, input_dim) * 0.01)

    def predictions(self, u: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ijed,bid->bije", self.weight, u)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return routing(self.predictions(u), self.iterations)[0]


def margin_loss(lengths: torch.Tensor, labels: torch.Tensor, m_plus: float = 0.9, m_minus: float = 0.1,
                down_weight: float = 0.5) -> torch.Tensor:
    """Eq. 4 summed over classes, averaged over the batch; `lengths` = ‖v_k‖, (batch, classes)."""
    present = F.one_hot(labels, lengths.shape[1]).to(lengths.dtype)
    loss = (present * F.relu(m_plus - lengths).square()
            + down_weight * (1 - present) * F.relu(lengths - m_minus).square())
    return loss.sum(1).mean()
