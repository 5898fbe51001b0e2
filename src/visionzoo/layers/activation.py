"""Activation functions and swapping a network's activations (`--act`).

- Leaky ReLU (Maas et al. 2013, slope 0.01) and parametric ReLU: He et al., "Delving Deep into
  Rectifiers", ICCV 2015, Eq. 1: f(y_i) = max(0, y_i) + a_i min(0, y_i), a_i learnt per channel
  ("channel-wise") or one a for the layer ("channel-shared"), initialised to 0.25 (Sec. 2.1).
- ELU: Clevert et al., ICLR 2016: α(eˣ − 1) for x < 0 (α = 1); ReLU6 (MobileNet), GELU
  (Hendrycks & Gimpel 2016), tanh, sigmoid.
- Maxout: Goodfellow et al., "Maxout Networks", ICML 2013, Eq. 1: h_i = max_{j∈[1,k]} z_ij,
  z_ij = xᵀW_ij + b_ij. Built as the paper does: the convolution or linear layer before the
  activation (and a BatchNorm between them) is widened k-fold, and `Maxout` takes the maximum
  of each unit's k consecutive outputs, so the next layer sees the old width.

A swap replaces every activation *module* of the network — ReLU, ReLU6, leaky ReLU, PReLU, ELU,
GELU, SiLU, tanh, LeNet-5's scaled tanh, and the ReLU of the fused BN-ReLU unit of
pre-activation networks. Sigmoid modules are gates (SE, CBAM, attention masks) and stay;
activations written as function calls inside a block (e.g. ShuffleNet's unit output) stay too.
The zoo's networks own one module per rectifier (a block's
`relu1`, `relu2`, `relu`), so a PReLU swap gives every layer its own slopes, as He et al. learn
them; a module reused at several places in a network of one's own becomes one new module whose
slopes those places share (same width required; else a UsageError points to prelu_shared). Channel counts come from an evaluation-mode forward pass, so
an activation used only in training (an auxiliary head) gets a single shared slope.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.errors import UsageError
from .residual import BNReLU
from .surgery import input_shapes, placed_like, replace_modules

ACTIVATIONS = ("relu", "leaky_relu", "prelu", "prelu_shared", "elu", "relu6", "gelu", "tanh",
               "sigmoid", "maxout")
PRELU_INIT = 0.25
LEAKY_SLOPE = 0.01


class ScaledTanh(nn.Module):
    """f(a) = A·tanh(S·a) with A = 1.7159, S = 2/3 (LeCun et al. 1998, Appendix A)."""

    def forward(self, x):
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class Maxout(nn.Module):
    """The maximum over each group of `pieces` consecutive channels: (N, k·C, …) → (N, C, …)."""

    def __init__(self, pieces: int):
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (-1, self.pieces)).amax(2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


def _hidden_activation_types() -> tuple[type, ...]:
    return (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Mish,
            nn.Hardswish, ScaledTanh, Maxout, BNReLU)


def activation_sites(model: nn.Module) -> list[nn.Module]:
    """Every distinct activation module (BNReLU counts as one: its ReLU is fused)."""
    kinds = _hidden_activation_types()
    return list({id(m): m for m in model.modules() if isinstance(m, kinds)}.values())


def make_activation(kind: str, channels: int = 1) -> nn.Module:
    makers = {"relu": nn.ReLU, "relu6": nn.ReLU6, "gelu": nn.GELU, "tanh": nn.Tanh,
              "sigmoid": nn.Sigmoid, "elu": lambda: nn.ELU(1.0),
              "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
              "prelu": lambda: nn.PReLU(channels, PRELU_INIT),
              "prelu_shared": lambda: nn.PReLU(1, PRELU_INIT)}
    if kind not in makers:
        raise UsageError(f"--act {kind!r}: choose one of {', '.join(ACTIVATIONS)}")
    return makers[kind]()


def _channels(model: nn.Module, sites: list[nn.Module], input_size) -> dict[nn.Module, int]:
    """The channel count each site acts on, for channel-wise PReLU."""
    fused = {m: m.num_features for m in sites if isinstance(m, BNReLU)}
    if input_size is None:
        raise UsageError("--act prelu: the input size is needed to find each layer's channels")
    shapes = input_shapes(model, input_size, [m for m in sites if m not in fused])
    channels = dict(fused)
    for module, seen in shapes.items():
        if not seen:
            continue
        if len({shape[0] for shape in seen}) > 1 or any(len(shape) == 2 for shape in seen):
            raise UsageError(f"--act prelu: one {type(module).__name__} module of {type(model).__name__} "
                             "acts on inputs of different widths or on token sequences; use --act prelu_shared")
        channels[module] = next(iter(seen))[0]
    return channels


def swap_activation(model: nn.Module, kind: str, input_size=None) -> int:
    """Replace every activation module by `kind` (not maxout: see `add_maxout`); returns the count."""
    sites = activation_sites(model)
    if not sites:
        raise UsageError(f"--act {kind}: {type(model).__name__} has no activation modules to swap")
    channels = _channels(model, sites, input_size) if kind == "prelu" else {}
    replacements = {}
    for site in sites:
        new = placed_like(make_activation(kind, channels.get(site, 1)), site)
        if isinstance(site, BNReLU):  # keep the BN, put the new activation after it
            norm = nn.BatchNorm2d(site.num_features, site.eps, site.momentum, site.affine,
                                  site.track_running_stats)
            norm.load_state_dict(site.state_dict())
            new = nn.Sequential(placed_like(norm, site), new)
        replacements[site] = new
    return replace_modules(model, lambda name, m: replacements.get(m))


def _widened(layer: nn.Module, pieces: int) -> nn.Module:
    """A copy of a Conv2d, Linear or BatchNorm with k× the output channels (fresh weights)."""
    if isinstance(layer, nn.Conv2d):
        new = nn.Conv2d(layer.in_channels, layer.out_channels * pieces, layer.kernel_size, layer.stride,
                        layer.padding, layer.dilation, layer.groups, layer.bias is not None,
                        layer.padding_mode)
    elif isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, layer.out_features * pieces, layer.bias is not None)
    else:
        new = type(layer)(layer.num_features * pieces, layer.eps, layer.momentum, layer.affine,
                          layer.track_running_stats)
    return placed_like(new, layer)


def add_maxout(model: nn.Module, pieces: int) -> int:
    """Turn every [Conv2d|Linear] (→ BatchNorm) → activation of an nn.Sequential into a k-piece
    maxout layer; every activation module must sit in such a place. Returns the count."""
    if pieces < 2:
        raise UsageError(f"--maxout-k must be at least 2, got {pieces}")
    kinds = _hidden_activation_types()
    count = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        layers = list(seq)
        for i, layer in enumerate(layers):
            if not isinstance(layer, kinds) or isinstance(layer, (Maxout, BNReLU)):
                continue
            j = i - 1
            if j >= 1 and isinstance(layers[j], (nn.BatchNorm1d, nn.BatchNorm2d)):
                j -= 1
            if j < 0 or type(layers[j]) not in (nn.Conv2d, nn.Linear):
                continue
            for index in range(j, i):
                seq[index] = _widened(layers[index], pieces)
            seq[i] = Maxout(pieces)
            count += 1
    left = [m for m in activation_sites(model) if not isinstance(m, Maxout)]
    if left:
        raise UsageError(f"--act maxout: {type(model).__name__} has activations that do not follow a "
                         f"Conv2d/Linear in a Sequential (e.g. {type(left[0]).__name__}); maxout works for "
                         "sequential stacks such as lenet, vgg*, alexnet, mcdnn")
    return count
