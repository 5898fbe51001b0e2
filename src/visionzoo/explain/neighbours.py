"""Nearest neighbours in feature space: Krizhevsky, Sutskever, Hinton. ImageNet Classification with
Deep Convolutional Neural Networks. NIPS 2012, Sec. 6.1 and Fig. 4 (right): the training images
whose last hidden layer's feature vectors are closest in Euclidean distance to a test image's.

The feature vector is what enters the last linear layer, ``forward_head(features, pre_logits=True)``.
"""
from __future__ import annotations

import torch
from torch import nn

from .hooks import evaluating


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.flatten(model.forward_head(model.forward_features(x), pre_logits=True), 1).float()


def embed_batches(model: nn.Module, batches) -> torch.Tensor:
    with evaluating(model), torch.no_grad():
        return torch.cat([embed(model, x).cpu() for _, _, x, _ in batches])


def nearest(queries: torch.Tensor, bank: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, indices), each (Q, k): the k rows of `bank` closest to each query row."""
    distances = torch.cdist(queries, bank)
    return distances.topk(min(k, len(bank)), dim=1, largest=False)
