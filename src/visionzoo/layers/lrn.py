"""Local Response Normalisation: Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NeurIPS 2012, Sec. 3.3.

    b^i_{x,y} = a^i_{x,y} / (k + α · Σ_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} (a^j_{x,y})²)^β

across the N channels at each position, with k = 2, n = 5, α = 1e-4, β = 0.75 (the notes' values).
α multiplies the plain sum, as in the paper; `torch.nn.LocalResponseNorm` divides its α by n, so
this layer equals ``nn.LocalResponseNorm(n, alpha=n * α, beta=β, k=k)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LocalResponseNorm(nn.Module):
    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before = self.size // 2
        squares = F.pad(x.square(), (0, 0, 0, 0, before, self.size - 1 - before))
        window_sums = squares.unfold(1, self.size, 1).sum(-1)
        return x / (self.k + self.alpha * window_sums).pow(self.beta)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
