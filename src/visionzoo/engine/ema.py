"""An exponential moving average of the weights, used for evaluation (Polyak & Juditsky 1992;
as trained in Inception-v3 / EfficientNet / ViT with decay ≈ 0.9999).

After every optimiser step θ_ema ← d·θ_ema + (1 − d)·θ, for parameters and floating-point
buffers (BN's running statistics) alike; integer buffers (BN's step count) are copied.
"""
from __future__ import annotations

import copy

import torch


class ModelEMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        averaged = [(e, m) for e, m in zip(self.module.state_dict().values(), model.state_dict().values())]
        floats = [(e, m) for e, m in averaged if e.is_floating_point()]
        if floats:
            ema_values, values = zip(*floats)
            torch._foreach_mul_(ema_values, self.decay)
            torch._foreach_add_(ema_values, values, alpha=1.0 - self.decay)
        for e, m in averaged:
            if not e.is_floating_point():
                e.copy_(m)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
