"""Normalisation of feature maps and of weights, and swapping one for another (`--norm`).

- Batch norm: Ioffe & Szegedy, ICML 2015, Algorithm 1 (``batch_manual``: the same with the notes'
  hand-derived backward pass, layers/batchnorm.py). At inference BN uses the running mean and
  the *unbiased* running variance, σ² = m/(m−1) · E[σ²_B] (Alg. 2, step 10); a convolution's
  effective mini-batch is m' = m·p·q (Sec. 3.2). PyTorch's running_var is that estimate
  (tests/test_norm_act.py checks it).
- Layer, instance and group norm: Wu & He, "Group Normalization", ECCV 2018, Eq. 1–2 and Fig. 2:
  GN with G groups normalises each sample over (C/G channels × H × W); G = 1 is layer norm over
  (C, H, W) (Ba et al. 2016) and G = C is instance norm (Ulyanov et al. 2016). All three are
  built here as `nn.GroupNorm` with a per-channel affine γ, β, which works at any spatial size
  (InstanceNorm2d refuses 1×1 maps in training). Group norm takes G = 32 (the paper's default)
  or, when C is not a multiple of 32, the largest divisor of C below 32.
- Weight normalisation: Salimans & Kingma, NeurIPS 2016, Eq. 2: w = g · v / ‖v‖ per output unit.
- Spectral normalisation: Miyato et al., ICLR 2018, Eq. 8: W / σ(W), σ by one power iteration per
  training step (Algorithm 1); a convolution's kernel is taken as a (C_out × C_in·k·k) matrix.

A swap replaces every feature-map normalisation (BatchNorm2d and the fused BN-ReLU unit,
GroupNorm, InstanceNorm2d, ConvNeXt's channel LayerNorm2d), copying γ and β so zero-initialised
residual γ survive. Normalisations of vectors and tokens (BatchNorm1d, transformer LayerNorm)
are left as they are. Weight and spectral normalisation reparametrise every Conv and Linear
weight and take the place of the feature-map normalisations (removed, as with ``none``).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

from ..core.errors import UsageError
from .batchnorm import BatchNorm2dManual
from .residual import BNReLU
from .surgery import placed_like, replace_modules


class LayerNorm2d(nn.LayerNorm):
    """LN over the channels of a (B, C, H, W) map (ConvNeXt's channel LN), separately at every position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


FEATURE_NORMS = ("batch", "batch_manual", "layer", "instance", "group", "none")
WEIGHT_NORMS = ("weight", "spectral")
NORMS = FEATURE_NORMS + WEIGHT_NORMS
GN_GROUPS = 32


def group_count(channels: int, groups: int = GN_GROUPS) -> int:
    """G = 32, or the largest divisor of C below it."""
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


def make_feature_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "batch_manual":
        return BatchNorm2dManual(channels)
    groups = {"layer": 1, "instance": channels, "group": group_count(channels)}.get(kind)
    if groups is None:
        return nn.Identity()
    return nn.GroupNorm(groups, channels)


def _feature_norm_channels(module: nn.Module) -> int | None:
    """C of a normalisation of (N, C, H, W) maps, None for any other module."""
    if isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)):
        return module.num_features
    if isinstance(module, nn.GroupNorm):
        return module.num_channels
    if isinstance(module, LayerNorm2d):
        return module.normalized_shape[0]
    return None


def has_feature_norm(model: nn.Module) -> bool:
    return any(_feature_norm_channels(m) is not None for m in model.modules())


def swap_norm(model: nn.Module, kind: str) -> int:
    """Replace every feature-map normalisation by `kind` (one of FEATURE_NORMS); returns the count."""
    if kind not in FEATURE_NORMS:
        raise UsageError(f"--norm {kind!r}: choose one of {', '.join(NORMS)}")

    def replace(name, module):
        channels = _feature_norm_channels(module)
        if channels is None:
            return None
        new = make_feature_norm(kind, channels)
        old_affine = getattr(module, "weight", None) is not None and getattr(module, "bias", None) is not None
        if old_affine and getattr(new, "weight", None) is not None and module.weight.shape == new.weight.shape:
            new.weight.data.copy_(module.weight.data)
            new.bias.data.copy_(module.bias.data)
        placed_like(new, module)
        return nn.Sequential(new, nn.ReLU(inplace=True)) if isinstance(module, BNReLU) else new

    count = replace_modules(model, replace)
    if not count:
        raise UsageError(f"--norm {kind}: {type(model).__name__} has no feature-map normalisation "
                         "to swap; --norm weight or spectral apply to any network")
    return count


def reparametrise_weights(model: nn.Module, kind: str) -> int:
    """Weight (w = g v/‖v‖) or spectral (W/σ(W)) normalisation of every Conv and Linear weight."""
    apply = {"weight": parametrizations.weight_norm, "spectral": parametrizations.spectral_norm}[kind]
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
              and isinstance(getattr(m, "weight", None), nn.Parameter)]
    for layer in layers:
        apply(layer, "weight")
    return len(layers)
