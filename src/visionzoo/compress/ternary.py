"""Ternarising a trained network (TWN or TTQ), fine-tuning it, and fixing its weights for storage.

Li & Liu, "Ternary Weight Networks", 2016, and Zhu, Han, Mao, Dally, "Trained Ternary
Quantization", ICLR 2017 (the notes' 004 ternary line); the layers and their training rules are
`layers.ternary`. For storage the latent weights are replaced by what the layer computes with,
chosen so that the layer maps them to itself: TWN's α·T (its Δ = 0.7·α·(fraction non-zero) < α
keeps every code), TTQ's codes T alone (Δ = t·max|T| = t < 1 keeps them; W_p and W_n stay the
layer's own parameters). A file then holds 2 bits per weight and two float32 scales per layer.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers.ternary import TTQ_THRESHOLD_FACTOR, TernaryLayer, ternary_codes, twn_scale, twn_threshold


def ternary_layer_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, TernaryLayer)]


def materialize(model: nn.Module) -> dict[str, dict]:
    """Set each ternary layer's latent weight to its fixed point; returns per layer the scales and
    the fraction of zero codes."""
    summary = {}
    with torch.no_grad():
        for name in ternary_layer_names(model):
            layer = model.get_submodule(name)
            weight = layer.weight
            if layer.mode == "twn":
                threshold = twn_threshold(weight)
                scale = twn_scale(weight, threshold)
                weight.copy_(scale * ternary_codes(weight, threshold))
                scales = {"alpha": scale.item()}
            else:
                weight.copy_(ternary_codes(weight, TTQ_THRESHOLD_FACTOR * weight.abs().max()))
                scales = {"w_p": layer.positive_scale.item(), "w_n": layer.negative_scale.item()}
            summary[name] = scales | {"zero_fraction": (weight == 0).float().mean().item()}
    return summary
