"""Magnitude pruning with masks, iterative prune → retrain, dropout-ratio adjustment, sensitivity.

Han, Pool, Tran, Dally, "Learning both Weights and Connections for Efficient Neural Networks",
NeurIPS 2015, and Deep Compression (ICLR 2016) Sec. 2 (the notes' "Pruning"):
- connections whose weight magnitude is below a threshold are removed; here the threshold of a
  layer is chosen so that exactly round(s·n) of its n weights go (ties broken by position);
- the network is retrained with the pruned connections held at zero (a mask on the weights
  and on their gradients) and pruning is repeated (Sec. 3.3, iterative pruning);
- Sec. 3.2, dropout-ratio adjustment: a sparser layer needs less dropout during retraining,
  D_r = D_o·√(C_ir / C_io), with C_io, C_ir the layer's connections before and after pruning;
- Sec. 4: the sensitivity of each layer, accuracy against the sparsity of that layer alone.

Pruned are the weights of every Conv2d and Linear layer; biases and normalisation parameters
are kept. A dropout module adjusts to the first weight layer after it (the layer whose inputs it
drops, as in the AlexNet/VGG classifiers).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The Conv2d/Linear layers (binary twins included), by module name, in definition order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def is_conv(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d)


def resolve_targets(model: nn.Module, sparsity: float, per_layer: dict[str, float] | None = None
                    ) -> dict[str, float]:
    """The target sparsity of every weight layer: `sparsity`, overridden by name in `per_layer`."""
    layers = weight_layers(model)
    unknown = sorted(set(per_layer or {}) - set(layers))
    if unknown:
        raise ValueError(f"no weight layer named {unknown[0]!r}; layers: {', '.join(layers)}")
    targets = {name: (per_layer or {}).get(name, sparsity) for name in layers}
    for name, value in targets.items():
        if not 0 <= value < 1:
            raise ValueError(f"sparsity of {name} must lie in [0, 1), got {value}")
    return targets


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask removing exactly round(sparsity·n) weights of smallest magnitude."""
    n_pruned = round(sparsity * weight.numel())
    order = torch.argsort(weight.detach().abs().flatten(), stable=True)
    keep = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
    keep[order[:n_pruned]] = False
    return keep.view_as(weight)


def prune(model: nn.Module, targets: dict[str, float]) -> dict[str, torch.Tensor]:
    """Zero the smallest weights of each named layer in place; returns the keep-masks."""
    layers = weight_layers(model)
    masks = {}
    with torch.no_grad():
        for name, sparsity in targets.items():
            weight = layers[name].weight
            masks[name] = magnitude_mask(weight, sparsity)
            weight.mul_(masks[name])
    return masks


class MaskHook:
    """Trainer hook: pruned weights get no gradient, so every optimiser step leaves them at zero.

    SGD (with momentum, Nesterov, weight decay) and AdamW all move a weight that is zero and has
    zero gradient and zero history by exactly zero; the weights are re-masked after each epoch
    anyway so that any optimiser keeps them pruned.
    """

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]):
        layers = weight_layers(model)
        self.pairs = [(layers[name].weight, mask) for name, mask in masks.items()]

    def after_backward(self, trainer) -> None:
        for weight, mask in self.pairs:
            if weight.grad is not None:
                weight.grad.mul_(mask)

    def on_epoch_end(self, trainer, record) -> None:
        with torch.no_grad():
            for weight, mask in self.pairs:
                weight.mul_(mask)


def adjust_dropout(model: nn.Module, original: dict[str, float], connections_before: dict[str, int]
                   ) -> dict[str, float]:
    """D_r = D_o·√(C_ir / C_io) for each dropout module before a weight layer; returns the new ratios."""
    layers = weight_layers(model)
    adjusted = {}
    for dropout_name, layer_name in _dropout_targets(model).items():
        kept = int(torch.count_nonzero(layers[layer_name].weight))
        adjusted[dropout_name] = original[dropout_name] * math.sqrt(kept / connections_before[layer_name])
        model.get_submodule(dropout_name).p = adjusted[dropout_name]
    return adjusted


def dropout_ratios(model: nn.Module) -> dict[str, float]:
    return {name: m.p for name, m in model.named_modules() if isinstance(m, nn.Dropout)}


def _dropout_targets(model: nn.Module) -> dict[str, str]:
    """Each dropout module's name → the name of the first weight layer after it."""
    targets, pending = {}, []
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout):
            pending.append(name)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            targets.update({dropout: name for dropout in pending})
            pending = []
    return targets


def schedule(targets: dict[str, float], iterations: int) -> list[dict[str, float]]:
    """Per-iteration sparsities: each step removes the same fraction of the remaining weights."""
    return [{name: 1 - (1 - s) ** (step / iterations) for name, s in targets.items()}
            for step in range(1, iterations + 1)]


def sensitivity_scan(model: nn.Module, accuracy, sparsities) -> dict[str, list[float]]:
    """Accuracy with each layer alone pruned to each sparsity (Deep Compression Fig. 5)."""
    curves = {}
    for name, layer in weight_layers(model).items():
        original = layer.weight.detach().clone()
        curves[name] = []
        for sparsity in sparsities:
            prune(model, {name: sparsity})
            curves[name].append(accuracy(model))
            with torch.no_grad():
                layer.weight.copy_(original)
    return curves
