"""Ternary-weight layers: TWN (Li & Liu, "Ternary Weight Networks", 2016) and TTQ (Zhu, Han, Mao,
Dally, "Trained Ternary Quantization", ICLR 2017); the notes' (004) "weights → binary/ternary,
+ real-valued scale, parameter updates in real space".

- TWN (Li & Liu Sec. 2, Eqs. 5–6 and their approximation): W ≈ α·T with T ∈ {−1, 0, +1}ⁿ,
  T_i = sign(W_i)·1(|W_i| > Δ), the threshold Δ = 0.7·E|W| and α = mean of |W_i| over the
  I_Δ = {i : |W_i| > Δ}; one Δ and one α per layer. Training keeps the real W: the forward pass
  uses α·T and the gradient with respect to α·T updates W unchanged (their Algorithm 1).
- TTQ (Zhu et al. Sec. 3, Eqs. 6–9): w_t = W_p if w̃ > Δ, 0 if |w̃| ≤ Δ, −W_n if w̃ < −Δ, with
  Δ = t·max|w̃| (Eq. 9, t = 0.05 as in their experiments) and two learned positive scales W_p,
  W_n per layer. The gradients (Eqs. 7–8): ∂L/∂W_p = Σ_{i∈I_p} ∂L/∂w_t(i), ∂L/∂W_n =
  −Σ_{i∈I_n} ∂L/∂w_t(i), and for the latent weights ∂L/∂w̃ = W_p·∂L/∂w_t on I_p,
  1·∂L/∂w_t on I_z, W_n·∂L/∂w_t on I_n. Eq. 7 prints the W_n sum without the minus; with
  w_t = −W_n the chain rule has it, and without it W_n would move against the loss, so we keep
  it. The paper does not say how W_p, W_n start; we start them at the mean of w̃ over I_p and
  of −w̃ over I_n (the TWN α of each side). ∂L/∂W_p sums over a whole layer, so SGD at a rate
  fit for the weights overshoots the scales (LeNet, lr 0.01: W_p ran to −5·10⁴); an optimiser
  whose step does not grow with the gradient (Adam, lr 1e-3) trains both.

`ternarize(model, mode)` swaps every Conv2d and Linear but the first and the last (both papers
keep them full precision) for a ternary twin that keeps the weight's name and value.
`weight_memory_bits` counts 2 bits per ternary weight plus two 32-bit scales per layer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .binary import low_precision_twin, replace_inner_layers

MODES = ("twn", "ttq")
TWN_THRESHOLD_FACTOR = 0.7   # Δ = 0.7·E|W| (Li & Liu Eq. 6 approximation)
TTQ_THRESHOLD_FACTOR = 0.05  # t of Δ = t·max|w̃| (Zhu et al. Sec. 3)


def checked_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"ternary mode must be one of {MODES}, not {mode!r}")
    return mode


def ternary_codes(weight: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """T_i = sign(W_i)·1(|W_i| > Δ), in the weight's dtype."""
    return torch.sign(weight) * (weight.abs() > threshold).to(weight.dtype)


def twn_threshold(weight: torch.Tensor) -> torch.Tensor:
    """Δ = 0.7·E|W| over the whole layer."""
    return TWN_THRESHOLD_FACTOR * weight.abs().mean()


def twn_scale(weight: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """α = mean of |W_i| over |W_i| > Δ (0 when no weight passes)."""
    kept = weight.abs() > threshold
    return (weight.abs() * kept).sum() / kept.sum().clamp_min(1)


def twn_weight(weight: torch.Tensor) -> torch.Tensor:
    """α·T in the forward pass; the gradient with respect to α·T goes to W unchanged."""
    threshold = twn_threshold(weight.detach())
    approximation = twn_scale(weight.detach(), threshold) * ternary_codes(weight.detach(), threshold)
    return weight + (approximation - weight).detach()


class TrainedTernary(torch.autograd.Function):
    """TTQ's quantiser w_t(w̃, W_p, W_n) with the paper's gradients (module docstring)."""

    @staticmethod
    def forward(ctx, latent: torch.Tensor, positive_scale: torch.Tensor, negative_scale: torch.Tensor,
                threshold_factor: float) -> torch.Tensor:
        threshold = threshold_factor * latent.abs().max()
        positive, negative = latent > threshold, latent < -threshold
        ctx.save_for_backward(positive, negative, positive_scale, negative_scale)
        return positive_scale * positive.to(latent.dtype) - negative_scale * negative.to(latent.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        positive, negative, positive_scale, negative_scale = ctx.saved_tensors
        grad_positive_scale = grad[positive].sum().reshape(positive_scale.shape)
        grad_negative_scale = -grad[negative].sum().reshape(negative_scale.shape)
        factor = torch.where(positive, positive_scale, torch.where(negative, negative_scale, torch.ones_like(grad)))
        return grad * factor, grad_positive_scale, grad_negative_scale, None


def ttq_initial_scales(latent: torch.Tensor, threshold_factor: float = TTQ_THRESHOLD_FACTOR):
    """(W_p, W_n) = (mean of w̃ over I_p, mean of −w̃ over I_n), our starting point."""
    threshold = threshold_factor * latent.abs().max()
    positive, negative = latent > threshold, latent < -threshold
    return ((latent * positive).sum() / positive.sum().clamp_min(1),
            (-latent * negative).sum() / negative.sum().clamp_min(1))


class TernaryLayer:
    """The shared forward of ternary layers: `apply_weight(x, w, bias)` is the layer's own product."""

    def init_ternary(self, mode: str) -> None:
        self.mode = checked_mode(mode)
        if mode == "ttq":
            self.positive_scale = nn.Parameter(torch.empty((), device=self.weight.device, dtype=self.weight.dtype))
            self.negative_scale = nn.Parameter(torch.empty((), device=self.weight.device, dtype=self.weight.dtype))
            self.reset_scales()

    def reset_scales(self) -> None:
        """TTQ: start W_p, W_n from the current latent weights."""
        if self.mode == "ttq":
            with torch.no_grad():
                positive, negative = ttq_initial_scales(self.weight)
                self.positive_scale.copy_(positive)
                self.negative_scale.copy_(negative)

    def ternary_weight(self) -> torch.Tensor:
        if self.mode == "twn":
            return twn_weight(self.weight)
        return TrainedTernary.apply(self.weight, self.positive_scale, self.negative_scale, TTQ_THRESHOLD_FACTOR)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_weight(x, self.ternary_weight(), self.bias)


class TernaryConv2d(TernaryLayer, nn.Conv2d):
    """A Conv2d computing with ternary weights: α·T (``mode="twn"``) or W_p/0/−W_n (``"ttq"``)."""

    def __init__(self, *args, mode: str = "twn", **kwargs):
        nn.Conv2d.__init__(self, *args, **kwargs)
        self.init_ternary(mode)

    def apply_weight(self, x, weight, bias):
        return self._conv_forward(x, weight, bias)


class TernaryLinear(TernaryLayer, nn.Linear):
    """A Linear computing with ternary weights: α·T (``mode="twn"``) or W_p/0/−W_n (``"ttq"``)."""

    def __init__(self, *args, mode: str = "twn", **kwargs):
        nn.Linear.__init__(self, *args, **kwargs)
        self.init_ternary(mode)

    def apply_weight(self, x, weight, bias):
        return F.linear(x, weight, bias)


def _ternary_twin(layer: nn.Module, mode: str) -> nn.Module:
    twin = low_precision_twin(layer, TernaryConv2d, TernaryLinear, mode)
    twin.reset_scales()
    return twin


def ternarize(model: nn.Module, mode: str = "twn") -> nn.Module:
    """Replace every Conv2d/Linear of `model` (in place) but its first and last by ternary twins."""
    checked_mode(mode)
    return replace_inner_layers(model, lambda layer: _ternary_twin(layer, mode))


def weight_memory_bits(model: nn.Module) -> int:
    """Bits to store the conv/linear weights: 2 per ternary weight + 2×32 per layer, 32 per real weight."""
    bits = 0
    for m in model.modules():
        if isinstance(m, TernaryLayer):
            bits += 2 * m.weight.numel() + 64
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            bits += 32 * m.weight.numel()
    return bits
