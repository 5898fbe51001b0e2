"""Learned kernels as pictures: Krizhevsky, Sutskever, Hinton. ImageNet Classification with Deep
Convolutional Neural Networks. NIPS 2012, Fig. 3 (the 96 first-layer kernels, 11×11×3 each).

First-layer kernels of a colour network are shown in colour, each scaled to [0, 1] on its own;
kernels of deeper layers (or of grey networks) are shown per input channel, signed around grey.
"""
from __future__ import annotations

import numpy as np
from torch import nn


def first_layer_tiles(conv: nn.Conv2d, limit: int = 96) -> list[np.ndarray]:
    """One (k, k, 3) colour tile per output kernel when the layer reads 3 channels, else (k, k)."""
    weight = conv.weight.detach().float().cpu()[:limit]
    tiles = []
    for kernel in weight:
        if kernel.shape[0] == 3:
            low, high = kernel.min(), kernel.max()
            tiles.append(((kernel - low) / (high - low + 1e-12)).permute(1, 2, 0).numpy())
        else:
            tiles.append(kernel.mean(0).numpy())
    return tiles


def per_channel_tiles(conv: nn.Conv2d, out_limit: int = 16, in_limit: int = 16) -> list[list[np.ndarray]]:
    """Rows of output kernels, each row its (k, k) slices over the first input channels."""
    weight = conv.weight.detach().float().cpu()
    return [[kernel[c].numpy() for c in range(min(in_limit, kernel.shape[0]))]
            for kernel in weight[:out_limit]]
