"""Dropping units, weights, regions and branches in training.

Stochastic depth: Huang, Sun, Liu, Sedra, Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016.

A residual block H_l = ReLU(b_l · f_l(H_{l-1}) + id(H_{l-1})) (Eq. 2) keeps its residual branch
with b_l ~ Bernoulli(1 − p_l), drawn here per sample (the paper draws one per mini-batch), and
the probabilities follow the linear decay rule (Eq. 4). The paper writes it for survival,
1 − l/L · (1 − p_L); here p_l is the drop probability, p_l = l / L · p_L for blocks l = 1..L,
with p_L = `drop_path_rate` (the paper's survival 0.5 of the last block is ``drop_path_rate=0.5``).

The paper scales the branch by its survival probability at test time. We use the now-standard
inverted form instead: in training a kept branch is divided by 1 − p_l, so its expectation is
unchanged, and at evaluation the module is the identity.

Dropout: Srivastava et al., JMLR 2014, Sec. 4: r_j ~ Bernoulli(q), ỹ = r ∗ y in training, weights
scaled by q at test time ("classic", `ClassicDropout`). `nn.Dropout` is the inverted form
(notes 001): ỹ = r ∗ y / q in training, the identity at test; both have the same expectation.
`--dropout P` sets every dropout layer to P; a network without one gets inverted dropout on the
input of its classifier (a hook, so parameter names stay).

DropConnect: Wan et al., ICML 2013, Eq. 1: r = a((M ⋆ W) v) with M_ij ~ Bernoulli(1 − p) on the
weights of fully-connected layers. One mask per mini-batch (the paper draws one per example) and
the inverted scaling 1/(1 − p), so inference uses W itself: the mean network, instead of the
paper's Gaussian moment-matching inference (Sec. 3).

DropBlock: Ghiasi, Lin, Le, NeurIPS 2018, Algorithm 1 and Eq. 1: block corners M ~ Bernoulli(γ)
where a whole block fits, γ = p / b² · HW / ((H − b + 1)(W − b + 1)), every sampled block of b × b
units zeroed (per sample and channel), the rest scaled by count(M)/count_ones(M). b is clipped
to the map. `add_drop_block` puts it after every residual block of the last two stages (the
paper's groups 3 and 4, on the block output: skip connection and convolutions together), at a
fixed rate (the paper's linear ramp of the keep probability is not applied).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from .surgery import input_shapes, placed_like, replace_modules

DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Zero whole samples of `x` with probability `drop_prob`, scaling the kept ones by 1/(1 − p)."""
    if drop_prob == 0.0 or not training:
        return x
    survival = 1.0 - drop_prob
    # Scaling the (N, 1, …, 1) mask, not x: one full-size product instead of two.
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(survival).div_(survival)
    return x * mask


def linear_drop_path_rates(num_blocks: int, drop_path_rate: float) -> list[float]:
    """p_l = l / L · p_L for l = 1..L: the last block is dropped most often."""
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must lie in [0, 1), not {drop_path_rate}")
    return [drop_path_rate * l / num_blocks for l in range(1, num_blocks + 1)]


class DropPath(nn.Module):
    """Drops the residual branch it wraps, per sample, in training; the identity at evaluation."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class ClassicDropout(nn.Module):
    """Dropout as first published: keep units with probability q = 1 − p in training, no
    rescaling; multiply by q at test time."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x * torch.empty_like(x).bernoulli_(1.0 - self.p)
        return x * (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _drop_classifier_input(module, args):
    return (module.input_dropout(args[0]), *args[1:])


def set_dropout(model: nn.Module, p: float) -> int:
    """Set every dropout layer to rate p; without any, drop the classifier's input. Returns the count."""
    layers = [m for m in model.modules() if isinstance(m, DROPOUT_TYPES)]
    for layer in layers:
        layer.p = p
    if layers:
        return len(layers)
    get_classifier = getattr(model, "get_classifier", None)
    if get_classifier is None:
        raise UsageError(f"--dropout: {type(model).__name__} has no dropout layers and no classifier to drop into")
    classifier = get_classifier()
    classifier.add_module("input_dropout", nn.Dropout(p))
    classifier.register_forward_pre_hook(_drop_classifier_input)
    return 1


class DropConnectLinear(nn.Linear):
    """A linear layer whose weights are dropped with probability p in training (inverted scaling)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float = 0.5, **kwargs):
        super().__init__(in_features, out_features, bias, **kwargs)
        self.p = p

    def sampled_weight(self) -> torch.Tensor:
        mask = torch.empty_like(self.weight).bernoulli_(1.0 - self.p)
        return self.weight * mask / (1.0 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.sampled_weight() if self.training and self.p > 0 else self.weight
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"


def add_drop_connect(model: nn.Module, p: float) -> int:
    """Turn every nn.Linear into a DropConnectLinear sharing its parameters; returns the count."""
    def replace(name, module):
        if type(module) is not nn.Linear:
            return None
        new = placed_like(DropConnectLinear(module.in_features, module.out_features,
                                            module.bias is not None, p), module)
        new.weight, new.bias = module.weight, module.bias
        return new

    count = replace_modules(model, replace)
    if not count:
        raise UsageError(f"--drop-connect: {type(model).__name__} has no fully-connected (Linear) layers")
    return count


def drop_block_gamma(drop_prob: float, block_size: int, height: int, width: int) -> float:
    """Eq. 1: the corner rate that drops a fraction `drop_prob` of units (overlaps aside)."""
    return drop_prob / block_size ** 2 * height * width / ((height - block_size + 1) * (width - block_size + 1))


class DropBlock2d(nn.Module):
    def __init__(self, block_size: int = 7, drop_prob: float = 0.1):
        super().__init__()
        self.block_size, self.drop_prob = block_size, drop_prob

    def dropped_mask(self, x: torch.Tensor) -> torch.Tensor:
        """1 where a unit is dropped: every sampled b × b block, per sample and channel."""
        n, c, h, w = x.shape
        b = min(self.block_size, h, w)
        gamma = drop_block_gamma(self.drop_prob, b, h, w)
        corners = (torch.rand(n, c, h - b + 1, w - b + 1, device=x.device) < gamma).to(x.dtype)
        # Unit (i, j) is dropped when a block's top-left corner lies in [i − b + 1, i] × [j − b + 1, j].
        return F.max_pool2d(F.pad(corners, (b - 1,) * 4), b, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0:
            return x
        keep = 1.0 - self.dropped_mask(x)
        return x * keep * (keep.numel() / keep.sum().clamp(min=1.0))

    def extra_repr(self) -> str:
        return f"block_size={self.block_size}, drop_prob={self.drop_prob}"


def add_drop_block(model: nn.Module, block_size: int, drop_prob: float, input_size) -> int:
    """DropBlock after each residual block (a module with a DropPath) of the last two stages
    of feature maps; returns the count."""
    blocks = [m for m in model.modules() if isinstance(getattr(m, "drop_path", None), DropPath)]
    shapes = input_shapes(model, input_size, blocks)
    convolutional = {m for m in blocks if any(len(shape) == 3 for shape in shapes[m])}
    stages: dict[nn.Module, list[str]] = {}
    for parent in model.modules():
        names = [name for name, child in parent.named_children() if child in convolutional]
        if names:
            stages[parent] = names
    if not stages:
        raise UsageError(f"--drop-block: {type(model).__name__} has no residual blocks on feature maps "
                         "(use a residual family: resnet*, wrn*, resnext*, …)")
    count = 0
    for parent, names in list(stages.items())[-2:]:
        for name in names:
            setattr(parent, name, nn.Sequential(getattr(parent, name), DropBlock2d(block_size, drop_prob)))
            count += 1
    return count
