"""Trained quantisation with weight sharing (k-means per layer, centroids fine-tuned).

Han, Mao, Dally, "Deep Compression", ICLR 2016, Sec. 3 (the notes' "Trained Quantization and
weight sharing"):
- the n weights W of a layer are clustered into k clusters C by k-means, minimising the
  within-cluster sum of squares argmin_C Σ_i Σ_{w∈c_i} |w − c_i|² (Eq. 2); each weight stores
  the log₂ k-bit index of its cluster and the layer a codebook of k shared values, which gives
  the compression rate r = nb / (n log₂ k + kb) (Eq. 1, b = 32 bits per float weight);
- centroid initialisation (Sec. 3.2): "linear" spaces k values evenly between the smallest and
  largest weight, "density" spaces them evenly on the weights' CDF, "random" (Forgy) picks k
  of the weights;
- fine-tuning (Sec. 3.3, Eq. 3): ∂L/∂C_k = Σ_ij ∂L/∂W_ij 1(I_ij = k); the gradients are
  grouped by cluster, summed, and the centroid moves by −η times the sum.

In a pruned layer the pruned positions keep the value 0: code 0 of the codebook is reserved for
it (it is also the value of the sparse format's filler entries) and k − 1 centroids are learned
from the surviving weights, so the layer still takes exactly k values with log₂ k-bit codes.
Conv and fully connected layers have their own bit widths (e.g. 8 and 5, as for AlexNet).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .prune import is_conv, weight_layers

INITS = ("linear", "density", "random")


def init_centroids(values: torch.Tensor, k: int, init: str, generator: torch.Generator) -> torch.Tensor:
    if init == "linear":
        return torch.linspace(values.min().item(), values.max().item(), k, dtype=values.dtype)
    ordered = values.sort().values
    if init == "density":
        quantiles = torch.linspace(0, 1, k + 2, dtype=torch.float64)[1:-1]
        return ordered[(quantiles * (len(ordered) - 1)).round().long()]
    if init == "random":
        return ordered[torch.randperm(len(ordered), generator=generator)[:k]].sort().values
    raise ValueError(f"centroid initialisation must be one of {INITS}, not {init!r}")


def nearest(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted centroids, through the midpoints between them."""
    return torch.bucketize(values, (centroids[1:] + centroids[:-1]) / 2)


def kmeans_1d(values: torch.Tensor, k: int, init: str = "linear", *, iterations: int = 1000,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm in one dimension: sorted centroids and each value's cluster index.

    In one dimension a cluster is a run of the sorted values between two midpoints, so a step
    costs k binary searches and prefix-sum differences, whatever the number of weights. An empty
    cluster keeps its centroid, so fewer than k values are used when an initial centroid attracts
    no weight (linear initialisation in sparse tails) or a layer has fewer than k distinct weights.
    """
    values = values.detach().flatten().double()
    ordered = values.sort().values
    prefix = torch.cat([ordered.new_zeros(1), ordered.cumsum(0)])
    centroids = init_centroids(values, k, init, torch.Generator().manual_seed(seed))
    for _ in range(iterations):
        # cluster c holds the values v with mid[c-1] < v ≤ mid[c], as `nearest` assigns them
        bounds = torch.searchsorted(ordered, (centroids[1:] + centroids[:-1]) / 2, right=True)
        starts = torch.cat([bounds.new_zeros(1), bounds])
        ends = torch.cat([bounds, bounds.new_full((1,), len(ordered))])
        counts = ends - starts
        means = (prefix[ends] - prefix[starts]) / counts.clamp_min(1)
        updated = torch.where(counts > 0, means, centroids).sort().values
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids, nearest(values, centroids)


@dataclass
class SharedWeights:
    """A layer's weights as codebook[codes]; `reserved_zero`: code 0 is the pruned value 0."""
    codebook: torch.Tensor
    codes: torch.Tensor
    reserved_zero: bool


def layer_bits(layer: nn.Module, conv_bits: int, fc_bits: int) -> int:
    return conv_bits if is_conv(layer) else fc_bits


def share_weights(model: nn.Module, conv_bits: int = 8, fc_bits: int = 5, init: str = "linear",
                  masks: dict[str, torch.Tensor] | None = None, seed: int = 0) -> dict[str, SharedWeights]:
    """Replace the weights of every weight layer (in place) by k = 2^bits shared values."""
    shared = {}
    for name, layer in weight_layers(model).items():
        k = 1 << layer_bits(layer, conv_bits, fc_bits)
        weight = layer.weight
        keep = masks[name] if masks and name in masks else None
        values = weight.detach()[keep] if keep is not None else weight.detach().flatten()
        centroids, labels = kmeans_1d(values.cpu(), k - (keep is not None), init, seed=seed)
        if keep is None:
            codebook, codes = centroids, labels
        else:
            codebook = torch.cat([centroids.new_zeros(1), centroids])
            codes = torch.zeros(weight.numel(), dtype=torch.long)
            codes[keep.flatten().cpu()] = labels + 1
        codebook = codebook.to(weight.device, weight.dtype)
        codes = codes.view(weight.shape).to(weight.device)
        with torch.no_grad():
            weight.copy_(codebook[codes])
        shared[name] = SharedWeights(codebook, codes, keep is not None)
    return shared


class CentroidHook:
    """Trainer hook for centroid fine-tuning: every weight of a cluster receives the cluster's summed
    gradient, so one optimiser step moves all of them, i.e. the shared centroid, by the same amount
    (Eq. 3). The reserved zero of a pruned layer receives none."""

    def __init__(self, model: nn.Module, shared: dict[str, SharedWeights]):
        layers = weight_layers(model)
        self.entries = [(layers[name].weight, s) for name, s in shared.items()]

    def after_backward(self, trainer) -> None:
        for weight, shared in self.entries:
            if weight.grad is None:
                continue
            codes = shared.codes.flatten()
            summed = torch.zeros(len(shared.codebook), dtype=weight.grad.dtype, device=weight.grad.device)
            summed.index_add_(0, codes, weight.grad.flatten())
            if shared.reserved_zero:
                summed[0] = 0
            weight.grad.copy_(summed[codes].view_as(weight.grad))
