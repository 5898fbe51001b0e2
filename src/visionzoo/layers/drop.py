"""Stochastic depth: Huang, Sun, Liu, Sedra, Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016.

A residual block H_l = ReLU(b_l · f_l(H_{l-1}) + id(H_{l-1})) (Eq. 2) keeps its residual branch
with b_l ~ Bernoulli(1 − p_l), drawn here per sample (the paper draws one per mini-batch), and
the probabilities follow the linear decay rule (Eq. 4). The paper writes it for survival,
1 − l/L · (1 − p_L); here p_l is the drop probability, p_l = l / L · p_L for blocks l = 1..L,
with p_L = `drop_path_rate` (the paper's survival 0.5 of the last block is ``drop_path_rate=0.5``).

The paper scales the branch by its survival probability at test time. We use the now-standard
inverted form instead: in training a kept branch is divided by 1 − p_l, so its expectation is
unchanged, and at evaluation the module is the identity.
"""
from __future__ import annotations

import torch
from torch import nn


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Zero whole samples of `x` with probability `drop_prob`, scaling the kept ones by 1/(1 − p)."""
    if drop_prob == 0.0 or not training:
        return x
    survival = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(survival)
    return x * mask / survival


def linear_drop_path_rates(num_blocks: int, drop_path_rate: float) -> list[float]:
    """p_l = l / L · p_L for l = 1..L: the last block is dropped most often."""
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must lie in [0, 1), not {drop_path_rate}")
    return [drop_path_rate * l / num_blocks for l in range(1, num_blocks + 1)]


class DropPath(nn.Module):
    """Drops the residual branch it wraps, per sample, in training; the identity at evaluation."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"
