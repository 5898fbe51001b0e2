"""Batch normalisation written out: Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift", ICML 2015.

- `BatchNormFunction`: Algorithm 1 forward (μ_B, σ²_B, x̂_i, y_i = γx̂_i + β) and the backward pass
  of Sec. 3 — ∂ℓ/∂x̂_i, ∂ℓ/∂σ²_B, ∂ℓ/∂μ_B, ∂ℓ/∂x_i, ∂ℓ/∂γ, ∂ℓ/∂β — one line per equation, as the
  notes (001, "How BN works") derive them. For a convolution the mini-batch of each channel is
  every position of every image, m = N·H·W (Sec. 3.2).
- `BatchNorm2dManual`: a drop-in `nn.BatchNorm2d` (same arguments, state_dict keys, running
  statistics with momentum or, with momentum=None, a cumulative average) whose training-mode
  forward and backward are the function above; `--norm batch_manual` puts it in every network.
- `recalibrate_batchnorm`: the inference statistics of Algorithm 2, steps 8–11: over training
  mini-batches B of size m, μ = E_B[μ_B] and σ² = m/(m−1)·E_B[σ²_B], the unbiased estimate of the
  population variance. One pass with momentum=None gives exactly these averages (PyTorch keeps the
  unbiased m/(m−1)·σ²_B of every batch).
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ..core.errors import UsageError
from ..core.runtime import evaluating

CHANNEL_DIMS = (0, 2, 3)   # the mini-batch of one channel: every image, every position


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    return t.view(1, -1, 1, 1)


class BatchNormFunction(torch.autograd.Function):
    """y = BN_γ,β(x) on (N, C, H, W) with batch statistics; returns (y, μ_B, σ²_B)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float):
        m = x.numel() // x.shape[1]
        mu = x.mean(CHANNEL_DIMS)                                                 # mini-batch mean
        var = (x - _per_channel(mu)).square().mean(CHANNEL_DIMS)                  # mini-batch variance
        x_hat = (x - _per_channel(mu)) / _per_channel(torch.sqrt(var + eps))      # normalise
        y = _per_channel(gamma) * x_hat + _per_channel(beta)                      # scale and shift
        ctx.save_for_backward(x, gamma, mu, var)
        ctx.eps, ctx.m = eps, m
        ctx.mark_non_differentiable(mu, var)
        return y, mu, var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, _grad_mu, _grad_var):
        x, gamma, mu, var = ctx.saved_tensors
        eps, m = ctx.eps, ctx.m
        centred = x - _per_channel(mu)
        std = _per_channel(torch.sqrt(var + eps))
        x_hat = centred / std

        def total(t):  # Σ_{i=1}^m, per channel
            return t.sum(CHANNEL_DIMS)

        grad_x_hat = grad_y * _per_channel(gamma)
        grad_var = total(grad_x_hat * centred * -0.5 * _per_channel(var + eps) ** -1.5)
        grad_mu = total(grad_x_hat * -1 / std) + grad_var * total(-2 * centred) / m
        grad_x = grad_x_hat / std + _per_channel(grad_var) * 2 * centred / m + _per_channel(grad_mu) / m
        grad_gamma = total(grad_y * x_hat)
        grad_beta = total(grad_y)
        return grad_x, grad_gamma, grad_beta, None


def batch_norm_manual(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float):
    """(y, μ_B, σ²_B) of one training mini-batch; gradients by the notes' backward pass."""
    return BatchNormFunction.apply(x, gamma, beta, eps)


class BatchNorm2dManual(nn.BatchNorm2d):
    """`nn.BatchNorm2d` whose training forward and backward are `BatchNormFunction`.

    Running statistics follow PyTorch's rule (so weights interchange with nn.BatchNorm2d):
    r ← (1 − momentum)·r + momentum·s, or the cumulative average when momentum is None, with s
    the batch mean and the *unbiased* batch variance m/(m−1)·σ²_B. At inference, and whenever
    there are running statistics and the module is in eval mode, x̂ uses them instead.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        use_batch = self.training or self.running_mean is None
        if not use_batch:
            mean, var = _per_channel(self.running_mean), _per_channel(self.running_var)
            x_hat = (x - mean) / torch.sqrt(var + self.eps)
            return x_hat * _per_channel(self.weight) + _per_channel(self.bias) if self.affine else x_hat
        compute = torch.promote_types(x.dtype, torch.float32)  # statistics in at least float32, as under AMP
        channels = x.shape[1]
        gamma = self.weight if self.affine else x.new_ones(channels, dtype=compute)
        beta = self.bias if self.affine else x.new_zeros(channels, dtype=compute)
        y, mu, var = batch_norm_manual(x.to(compute), gamma.to(compute), beta.to(compute), self.eps)
        if self.training and self.track_running_stats:
            self._update_running_statistics(mu, var, x.numel() // channels)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_statistics(self, mu: torch.Tensor, var: torch.Tensor, m: int) -> None:
        self.num_batches_tracked += 1
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * m / max(m - 1, 1)
        self.running_mean.lerp_(mu.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def running_batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BN layer of `model` that keeps running statistics (the ones inference uses)."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace every BN's running statistics by the population estimates of Algorithm 2 over
    `batches` (network inputs, e.g. the normalised training images without augmentation):
    μ = E[μ_B], σ² = m/(m−1)·E[σ²_B]. Only the BN layers run in training mode (dropout and the
    like stay in evaluation mode); momenta and modes are restored. Returns the number of batches."""
    norms = running_batch_norms(model)
    if not norms:
        raise UsageError(f"BN recalibration: {type(model).__name__} has no batch normalisation with running "
                         "statistics")
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        raise UsageError("BN recalibration: no training batches to estimate the statistics from")
    momenta = [bn.momentum for bn in norms]
    count = 0
    with evaluating(model):
        try:
            for bn in norms:
                bn.reset_running_stats()
                bn.momentum = None  # cumulative average: every batch weighs the same
                bn.train()
            for inputs in itertools.chain([first], batches):
                model(inputs)
                count += 1
        finally:
            for bn, momentum in zip(norms, momenta):
                bn.momentum = momentum
    return count
