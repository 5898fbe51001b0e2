"""Weight initialisation schemes (`--init`), applied to every Conv and Linear layer.

- zero: every weight 0 — the notes' (001) counter-example: all units of a layer compute the same
  function and receive the same gradient, so they never become different.
- normal / uniform: N(0, σ²) and U(−√3σ, √3σ), both of standard deviation σ = `std`.
- xavier_normal / xavier_uniform: Glorot & Bengio, AISTATS 2010, Eq. 12/16: Var(W) = 2/(n_in + n_out).
- he_fan_in / he_fan_out: He et al., ICCV 2015, Eq. 10 (forward, n = k²c) and Eq. 14 (backward,
  n = k²d): Var(W) = 2/((1 + a²) n), a the negative slope of the network's rectifiers (0 for ReLU;
  0.25 for PReLU's initial slope, Eq. 15).
- orthogonal: Saxe et al., ICLR 2014: the (C_out × C_in·k·k) matrix has orthonormal rows or
  columns (WᵀW = I when it is tall), from the QR decomposition of a Gaussian matrix.
- lsuv: Mishkin & Matas, "All you need is a good init", ICLR 2016, Algorithm 1: orthogonal
  pre-initialisation, then, layer by layer in forward order, W ← W / √Var(B_L) on one data batch
  until |Var(B_L) − 1| < Tol_var = 0.1 or T_max = 10 iterations (B_L: the layer's output).
- dirac: the identity — a convolution passes its input channels through (the first min(C_in,
  C_out)), a linear layer is an identity matrix (Zagoruyko & Komodakis' DiracNets).
- paper: the network's own initialisation, untouched.

`whiten_first_conv` (`--whiten`) is a data-dependent initialisation of the first convolution only,
as in the CIFAR-10 speed records (D. Page, "How to train your ResNet 8: bag of tricks", 2019;
K. Jordan, airbench, 2024): with Σ = V Λ Vᵀ the covariance of the layer's k×k input patches over
training images, its filters are the whitening transform's rows Λ^{-1/2} Vᵀ and their negatives
(so that a ReLU after it keeps both signs of every component), in order of decreasing eigenvalue,
repeated to fill the output channels. The layer's output components are then decorrelated with
unit variance from the first step; it is frozen, so the optimiser leaves the whitening intact.

Every scheme but `paper` sets biases to 0. Normalisation layers, embeddings and other parameters
keep the network's own values.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..core.runtime import evaluating

INIT_SCHEMES = ("paper", "zero", "normal", "uniform", "xavier_normal", "xavier_uniform", "he_fan_in",
                "he_fan_out", "orthogonal", "lsuv", "dirac")
LSUV_TOLERANCE = 0.1
LSUV_MAX_ITERATIONS = 10
WHITEN_EPS = 5e-4
WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def weighted_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, WEIGHTED) and isinstance(m.weight, nn.Parameter)]


def first_convolution(model: nn.Module) -> nn.Conv2d:
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            return layer
    raise UsageError(f"--whiten: {type(model).__name__} has no convolution to whiten")


@torch.no_grad()
def patch_whitening(images: torch.Tensor, kernel_size: tuple[int, int], eps: float = WHITEN_EPS) -> torch.Tensor:
    """The (2·d, C, kh, kw) filters [Λ^{-1/2} Vᵀ; −Λ^{-1/2} Vᵀ] of the patches of `images` (N, C, H, W),
    d = C·kh·kw, rows in order of decreasing eigenvalue."""
    channels = images.shape[1]
    dim = channels * kernel_size[0] * kernel_size[1]
    total, outer, count = torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dim, dtype=torch.float64), 0
    for chunk in images.split(64):  # bounded memory for large images
        patches = F.unfold(chunk.double(), kernel_size).transpose(1, 2).reshape(-1, dim).cpu()
        total += patches.sum(0)
        outer += patches.T @ patches
        count += len(patches)
    mean = total / count
    eigenvalues, eigenvectors = torch.linalg.eigh(outer / count - torch.outer(mean, mean))
    order = eigenvalues.argsort(descending=True)
    filters = eigenvectors[:, order].T / (eigenvalues[order].clamp(min=0) + eps).sqrt()[:, None]
    return torch.cat([filters, -filters]).reshape(-1, channels, *kernel_size).float()


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor, eps: float = WHITEN_EPS) -> nn.Conv2d:
    """Set the first convolution's filters to the patch whitening of `images` (normalised input
    images), repeated to fill its output channels, and freeze them; returns the layer."""
    conv = first_convolution(model)
    if conv.groups != 1:
        raise UsageError("--whiten: the first convolution is grouped; whitening needs a dense one")
    filters = patch_whitening(images.to(conv.weight.device), conv.kernel_size, eps)
    repeats = -(-conv.out_channels // len(filters))
    conv.weight.copy_(filters.repeat(repeats, 1, 1, 1)[:conv.out_channels])
    if conv.bias is not None:
        conv.bias.zero_()
    conv.weight.requires_grad_(False)
    return conv


def rectifier_slope(model: nn.Module) -> float:
    """a of He et al.'s Eq. 15: the negative slope all the network's rectifiers share (ReLU: 0,
    leaky ReLU, PReLU's initial a); 0 when they differ."""
    slopes = {0.0 if isinstance(m, nn.ReLU) else float(m.negative_slope) if isinstance(m, nn.LeakyReLU)
              else float(m.weight.detach().mean())
              for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.PReLU))}
    return slopes.pop() if len(slopes) == 1 else 0.0


def _dirac_(weight: torch.Tensor, groups: int) -> None:
    if weight.dim() == 2:
        nn.init.eye_(weight)
    elif groups > 1 and weight.shape[0] % groups == 0:
        nn.init.dirac_(weight, groups)
    else:
        nn.init.dirac_(weight)


def initialise(model: nn.Module, scheme: str, std: float = 0.01, batch: torch.Tensor | None = None) -> None:
    """Re-initialise `model` in place; `lsuv` needs `batch`, a normalised input batch."""
    if scheme not in INIT_SCHEMES:
        raise UsageError(f"--init {scheme!r}: choose one of {', '.join(INIT_SCHEMES)}")
    if scheme == "paper":
        return
    if scheme in ("normal", "uniform") and not std > 0:
        raise UsageError(f"--init-std must be positive, got {std}")
    slope = rectifier_slope(model)
    draw = {
        "zero": nn.init.zeros_,
        "normal": lambda w: nn.init.normal_(w, 0.0, std),
        "uniform": lambda w: nn.init.uniform_(w, -math.sqrt(3) * std, math.sqrt(3) * std),
        "xavier_normal": nn.init.xavier_normal_,
        "xavier_uniform": nn.init.xavier_uniform_,
        "he_fan_in": lambda w: nn.init.kaiming_normal_(w, slope, "fan_in", "leaky_relu"),
        "he_fan_out": lambda w: nn.init.kaiming_normal_(w, slope, "fan_out", "leaky_relu"),
        "orthogonal": nn.init.orthogonal_,
        "lsuv": nn.init.orthogonal_,
    }
    with torch.no_grad():
        for layer in weighted_layers(model):
            if scheme == "dirac":
                _dirac_(layer.weight, getattr(layer, "groups", 1))
            else:
                draw[scheme](layer.weight)
            if layer.bias is not None:
                layer.bias.zero_()
    if scheme == "lsuv":
        if batch is None:
            raise UsageError("--init lsuv needs a data batch")
        lsuv(model, batch)


def lsuv(model: nn.Module, batch: torch.Tensor, tolerance: float = LSUV_TOLERANCE,
         max_iterations: int = LSUV_MAX_ITERATIONS) -> dict[str, float]:
    """Algorithm 1's scaling loop (the orthogonal pre-init is `initialise`'s); returns each layer's
    final output variance, by module name. Layers the batch never reaches, or whose output is
    constant, are left as they are."""
    names = {m: name for name, m in model.named_modules()}
    variances: dict[str, float] = {}
    with evaluating(model):  # BN statistics stay as they were; dropout is off
        for layer in weighted_layers(model):
            for _ in range(max_iterations):
                variance = _output_variance(model, layer, batch)
                if variance is None or not variance > 0 or abs(variance - 1.0) < tolerance:
                    break
                with torch.no_grad():
                    layer.weight.div_(math.sqrt(variance))
            else:
                variance = _output_variance(model, layer, batch)
            if variance is not None:
                variances[names[layer]] = variance
    return variances


class StopForward(Exception):
    """Raised by a hook once it has what it needs: the layers above need not run."""


def _output_variance(model: nn.Module, layer: nn.Module, batch: torch.Tensor) -> float | None:
    """Var(B_L) of `layer`'s output (its first call) in a forward pass of `batch`."""
    seen = []

    def record(module, args, out):
        seen.append(out.detach().float().var().item())
        raise StopForward

    handle = layer.register_forward_hook(record)
    try:
        with torch.no_grad():
            model(batch)
    except StopForward:
        pass
    finally:
        handle.remove()
    return seen[0] if seen else None
