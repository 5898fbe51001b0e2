"""Highway layers of Srivastava, Greff, Schmidhuber, "Highway Networks" (ICML Deep Learning
Workshop 2015) and "Training Very Deep Networks" (NIPS 2015).

y = H(x, W_H)·T(x, W_T) + x·C(x, W_C) (Eq. 2) with the carry gate C = 1 − T (Eq. 3) and the
transform gate T(x) = σ(W_Tᵀx + b_T) (Sec. 2.2), so that
y = x where T(x) = 0 and y = H(x) where T(x) = 1 (Eq. 4). H is an affine map followed by a
nonlinearity (ReLU or tanh). The gate bias b_T starts negative (the notes: −1 … −3; default −2)
so that a fresh network is biased towards carrying its input through. The fully-connected layer
keeps its width; the convolutional one uses "same" padding, so that x, H(x) and T(x) share a shape.
Weights get He et al.'s N(0, gain²/fan_in) (gain of the nonlinearity, 1 for the sigmoid gate),
the biases of H zero.
"""
from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, not {name!r}")
    return _ACTIVATIONS[name]()


class _Highway(nn.Module):
    """y = act(h(x))·T + x·(1 − T) with T = σ(gate(x)); `h` and `gate` are affine maps."""

    def __init__(self, h: nn.Module, gate: nn.Module, act: str, gate_bias: float):
        super().__init__()
        self.h, self.act, self.gate = h, activation(act), gate
        nn.init.kaiming_normal_(self.h.weight, nonlinearity=act)
        nn.init.zeros_(self.h.bias)
        nn.init.kaiming_normal_(self.gate.weight, nonlinearity="sigmoid")
        nn.init.constant_(self.gate.bias, gate_bias)

    def transform_gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(x))

    def carry_gate(self, x: torch.Tensor) -> torch.Tensor:
        return 1 - self.transform_gate(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.transform_gate(x)
        return self.act(self.h(x)) * t + x * (1 - t)


class HighwayLinear(_Highway):
    """Fully-connected highway layer of `features` units."""

    def __init__(self, features: int, act: str = "relu", gate_bias: float = -2.0):
        super().__init__(nn.Linear(features, features), nn.Linear(features, features), act, gate_bias)


class HighwayConv2d(_Highway):
    """Convolutional highway layer: `channels` maps in and out, k×k H and gate, same padding."""

    def __init__(self, channels: int, kernel_size: int = 3, act: str = "relu", gate_bias: float = -2.0):
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the map size, not {kernel_size}")
        pad = kernel_size // 2
        super().__init__(nn.Conv2d(channels, channels, kernel_size, padding=pad),
                         nn.Conv2d(channels, channels, kernel_size, padding=pad), act, gate_bias)
