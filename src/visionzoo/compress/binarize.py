"""Binarising a trained network: binary-weight (BWN) or XNOR form, then fine-tuning.

Rastegari, Ordonez, Redmon, Farhadi, "XNOR-Net", ECCV 2016 (the notes' XNOR-Net section):
W ≈ αB with B = sign(W), α = ‖W‖₁ / n per output filter (Eqs. 2–6); BWN keeps real inputs,
XNOR binarises them too (Eq. 11). The layers are the zoo's (`layers.binary.binarize`: every
Conv2d/Linear but the first and the last); fine-tuning keeps the real-valued W and updates it
with the gradient taken at W̃ = αB (Sec. 3.1, "Training"). For storage the fine-tuned W is
replaced by αB itself, which the binary layers map to itself, so a file holds one sign bit per
weight and one float32 α per filter: the ≈32× memory saving of the notes' table.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers.binary import BinaryLayer, filter_scale


def binary_layer_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, BinaryLayer)]


def materialize(model: nn.Module) -> None:
    """Set each binary layer's real-valued W to its αB, the only thing a binary layer computes with."""
    with torch.no_grad():
        for name in binary_layer_names(model):
            weight = model.get_submodule(name).weight
            weight.copy_(filter_scale(weight) * torch.where(weight >= 0, 1.0, -1.0))
