"""ODE-Net: Chen, Rubanova, Bettencourt, Duvenaud, "Neural Ordinary Differential Equations",
NeurIPS 2018 (the notes' "Continuous Depth Residual Networks" and their MNIST table).

A residual block h_{t+1} = h_t + f(h_t) is one Euler step of dh/dt = f(h, t); the ODE block
replaces the stack of residual blocks by the solution h(1) of that ODE from h(0) = the block's
input. `odenet_mnist` is the authors' MNIST network (their released odenet_mnist.py, "conv"
downsampling): conv 64@3×3 → GN → ReLU → conv 64@4×4/2 → GN → ReLU → conv 64@4×4/2 (28 → 7) →
ODE block → GN → ReLU → global average pool → FC 10. f(h, t) = GN → ReLU → conv3×3 → GN → ReLU
→ conv3×3 → GN, each convolution seeing t as one extra constant input channel; GroupNorm with
32 groups throughout.

Solvers (visionzoo.layers.ode): fixed-step Euler or classical 4th-order Runge–Kutta
(``solver="rk4"``, ``steps=4`` by default: 16 evaluations of f), or the paper's adaptive
Dormand–Prince 5(4) (``solver="dopri5"``, ``rtol=atol=1e-3`` as the authors' MNIST script); after
a forward pass, ``model.nfe`` holds the number of evaluations of f it took (the paper's Fig. 3).
Gradients, by default, come from ordinary backpropagation through the solver's steps — the
paper's RK-Net row, memory O(steps). ``adjoint=True`` uses the notes' adjoint sensitivity method
instead: the forward pass keeps only h(1); the backward pass integrates h(t), a(t) = ∂L/∂h(t)
(da/dt = −aᵀ ∂f/∂h) and g(t) (dg/dt = −aᵀ ∂f/∂θ) from t = 1 back to 0 with the same solver (for
dopri5, the same adaptive solver and tolerances; ``model.ode.backward_nfe`` counts it), the
vector-Jacobian products by autograd — memory O(1) in the number of steps. Its gradients equal
backpropagation's up to the solver's error (h(t) is recomputed backwards, not stored).

The table's other rows: `odenet_resnet_mnist` — the authors' ResNet ("res" downsampling: a
3×3 conv then two pre-activation residual blocks of stride 2 with 1×1 projection shortcuts; six
residual blocks GN → ReLU → conv3×3 → GN → ReLU → conv3×3 at 7×7; the same head), 0.601M against
the table's 0.60M; `mlp1_mnist` — the 1-hidden-layer MLP the table cites from LeCun et al. 1998,
784 → 300 → 10, 0.239M against 0.24M. ``downsampling="res"`` gives the ODE-Net the ResNet's
downsampling.

Feature stages: the two downsampling ReLUs (26×26 and 13×13 at 28×28; with "res" downsampling, the
first conv and the first residual block) and the GN-ReLU after the ODE block or the residual
blocks (7×7); the ODE block is one continuous stage, its solver's steps are no stages. The MLP's
one stage is its hidden layer, as a 1×1 map.

Parameters: 0.208M here against the table's 0.22M. The authors' default "conv" downsampling
above gives 0.208M; their "res" downsampling (two pre-activation residual blocks) gives 0.233M,
and it is the one that reproduces the table's ResNet row exactly (0.60M), so the table's 0.22M
matches neither variant.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.errors import UsageError
from ..layers.ode import ODEBlock, odeint_fixed  # noqa: F401  (odeint_fixed: re-exported, imported from here)
from ..registry import register_model
from .base import ImageClassifier

_PAPER = "Chen, Rubanova, Bettencourt, Duvenaud. Neural Ordinary Differential Equations. NeurIPS 2018"


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)


class ConcatConv2d(nn.Conv2d):
    """A convolution over [h, t]: time enters as one constant extra input channel."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int = 1):
        super().__init__(cin + 1, cout, kernel_size, padding=padding)

    def forward(self, t: float, h: torch.Tensor) -> torch.Tensor:
        time = h.new_full((h.shape[0], 1, *h.shape[2:]), t)
        return super().forward(torch.cat([h, time], 1))


class ODEFunc(nn.Module):
    """f(h, t) = GN → ReLU → conv([·, t]) → GN → ReLU → conv([·, t]) → GN."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (group_norm(channels) for _ in range(3))
        self.conv1, self.conv2 = ConcatConv2d(channels, channels), ConcatConv2d(channels, channels)
        self.relu1, self.relu2 = nn.ReLU(inplace=True), nn.ReLU(inplace=True)

    def forward(self, t: float, h: torch.Tensor) -> torch.Tensor:
        out = self.conv1(t, self.relu1(self.norm1(h)))
        return self.norm3(self.conv2(t, self.relu2(self.norm2(out))))


class PreActBlock(nn.Module):
    """The authors' residual block: GN → ReLU → conv3×3 → GN → ReLU → conv3×3, plus the shortcut
    (a strided 1×1 convolution of the pre-activated input where the block downsamples)."""

    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        self.norm1, self.norm2 = group_norm(channels), group_norm(channels)
        self.relu1, self.relu2 = nn.ReLU(inplace=True), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.downsample = nn.Conv2d(channels, channels, 1, stride, bias=False) if stride > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.norm1(x))
        shortcut = x if self.downsample is None else self.downsample(out)
        return self.conv2(self.relu2(self.norm2(self.conv1(out)))) + shortcut


DOWNSAMPLING = ("conv", "res")


def downsampling_layers(kind: str, in_chans: int, width: int) -> tuple[nn.Sequential, list[str]]:
    """The authors' two ways from 28×28 to 7×7, and the names of their 26×26 and 13×13 stages."""
    if kind == "conv":
        return nn.Sequential(
            nn.Conv2d(in_chans, width, 3), group_norm(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 4, 2, 1), group_norm(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 4, 2, 1)), ["downsampling.2", "downsampling.5"]
    if kind == "res":
        return nn.Sequential(nn.Conv2d(in_chans, width, 3), PreActBlock(width, 2),
                             PreActBlock(width, 2)), ["downsampling.0", "downsampling.1"]
    raise UsageError(f"downsampling must be one of {DOWNSAMPLING}, not {kind!r}")


class _MNISTNet(ImageClassifier):
    """downsampling → feature layers (7×7) → GN → ReLU → global average pool → FC."""

    def __init__(self, num_classes: int, in_chans: int, width: int, downsampling: str, body_name: str,
                 body: nn.Module):
        super().__init__()
        self.num_classes = num_classes
        self.downsampling, self._stages = downsampling_layers(downsampling, in_chans, width)
        self._body_name = body_name
        self.add_module(body_name, body)
        self.norm = nn.Sequential(group_norm(width), nn.ReLU(inplace=True))
        self.num_features = width
        self.fc = nn.Linear(width, num_classes)

    def stage_modules(self):
        return [*self._stages, "norm"]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.get_submodule(self._body_name)(self.downsampling(x)))


class ODENet(_MNISTNet):
    """The ODE-Net and RK-Net rows: one ODE block in place of the residual blocks."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 64, steps: int = 4,
                 solver: str = "rk4", adjoint: bool = False, rtol: float = 1e-3, atol: float = 1e-3,
                 downsampling: str = "conv"):
        super().__init__(num_classes, in_chans, width, downsampling, "ode",
                         ODEBlock(ODEFunc(width), steps, solver, adjoint, rtol, atol))

    @property
    def nfe(self) -> int:
        """Evaluations of f in the last forward pass (the paper's Fig. 3)."""
        return self.ode.nfe


class MNISTResNet(_MNISTNet):
    """The ResNet row: "res" downsampling and `blocks` residual blocks at 7×7."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 64, blocks: int = 6,
                 downsampling: str = "res"):
        super().__init__(num_classes, in_chans, width, downsampling, "blocks",
                         nn.Sequential(*(PreActBlock(width) for _ in range(blocks))))


class MLP(ImageClassifier):
    """The table's 1-layer MLP: flatten → FC 300 → ReLU → FC 10."""
    fixed_input_size = True

    def __init__(self, num_classes: int = 10, in_chans: int = 1, image_size: int = 28, hidden: int = 300):
        super().__init__()
        self.num_classes, self.num_features = num_classes, hidden
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(in_chans * image_size ** 2, hidden), nn.ReLU(inplace=True))
        self.fc = nn.Linear(hidden, num_classes)

    def stage_modules(self):
        return ["hidden"]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(x)


@register_model(family="odenet", paper=_PAPER, year=2018, input_size=(1, 28, 28), num_classes=10,
                dataset="mnist", paper_params="0.22M",
                mismatch_reason="the authors' released MNIST ODE-Net ('conv' downsampling) has 0.208M; "
                                "see the module docstring for why the table's 0.22M fits no variant")
def odenet_mnist(num_classes=10, in_chans=1, **kwargs):
    return ODENet(num_classes, in_chans, **kwargs)


@register_model(family="odenet", paper=_PAPER + " (Table 1, ResNet row)", year=2018, input_size=(1, 28, 28),
                num_classes=10, dataset="mnist", paper_params="0.60M")
def odenet_resnet_mnist(num_classes=10, in_chans=1, **kwargs):
    return MNISTResNet(num_classes, in_chans, **kwargs)


@register_model(family="odenet", paper=_PAPER + " (Table 1, 1-layer MLP row, after LeCun et al. 1998)",
                year=2018, input_size=(1, 28, 28), num_classes=10, dataset="mnist", paper_params="0.24M")
def mlp1_mnist(num_classes=10, in_chans=1, image_size=None, **kwargs):
    return MLP(num_classes, in_chans, image_size or 28, **kwargs)
