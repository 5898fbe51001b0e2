"""MSDNet: Huang, Chen, Li, Wu, van der Maaten, Weinberger, "Multi-Scale Dense Networks for Resource
Efficient Image Classification", ICLR 2018 (the notes' adaptive inference, "version 2: reduce
resolution at different rates").

Architecture (Sec. 4, Fig. 2): S scales kept side by side. The first layer builds them from the image
(a 3×3 convolution at scale 1, a strided 3×3 convolution from each scale to the next). Every later
layer ℓ adds, at scale s, the concatenation of a regular convolution of scale s's features and a
strided convolution of scale s − 1's (each half the scale's growth rate; the finest scale, without a
finer neighbour, only the regular one), to the features it already has: dense connectivity within
each scale, x_ℓ^s = [x_{ℓ−1}^s, h(x_{ℓ−1}^s), h̃(x_{ℓ−1}^{s−1})]. Each convolution is a bottleneck
(1×1 to at most `bottleneck`×its output channels, then 3×3, each BN-ReLU). Finer scales are dropped
once no later layer needs them (the last S − 1 layers lose one each; the authors' "max" pruning), and
a transition (1×1 conv-BN-ReLU, channels halved) follows each drop. Classifiers (Sec. 4, "Classifiers")
read the coarsest scale: two strided 3×3 convolutions of 128 channels (CIFAR), average pooling, a
linear layer.

Loss (Sec. 4, "Loss functions"): the sum of every classifier's cross-entropy, weights w_k = 1. In
training mode ``model(x)`` returns ``(last logits, [earlier exits' logits])`` with ``aux_weight = 1``,
the form the classification task sums (GoogLeNet's auxiliary heads); in eval mode the last exit's logits.

Inference (Sec. 3): anytime prediction reads any exit; budgeted batch classification (`early_exit_predict`)
stops at the first classifier whose maximum softmax probability reaches its threshold θ_k (the last
always answers) and spends the MACs of the layers and classifiers evaluated so far (`exit_macs`,
measured with FlopCounterMode). Thresholds for a budget (`thresholds_for_budget`): the paper's
geometric exit proportions q_k ∝ q(1 − q)^k, with θ_k set on validation so that a fraction q_k of
the images exits at k, and q chosen so that the validation cost is the largest that fits the budget.

`msdnet_cifar`: 3 scales, 16/32/64 initial channels, growth rate 6 with factors 1-2-4, bottleneck
factors 1-2-4, 128-channel classifiers (the paper's CIFAR settings, Appendix); exits after layer 4 and
every 2 layers, 7 in all (the exit schedule is a choice: ``base``, ``step``, ``exits``). `msdnet_fmnist`:
the same design at 8/16/32 channels, growth 4, 32-channel classifiers, 4 exits after layers 2, 4, 6, 8.
Feature stages: the first layer's three scales (strides 1, 2, 4), then the last classifier's
convolutions (stride 16).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..core.runtime import evaluating
from ..registry import register_model
from .base import ImageClassifier

_PAPER = ("Huang, Chen, Li, Wu, van der Maaten, Weinberger. Multi-Scale Dense Networks for Resource "
          "Efficient Image Classification. ICLR 2018")


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class BottleneckConv(nn.Sequential):
    """1×1 conv-BN-ReLU to min(cin, bottleneck·cout) channels, then 3×3 conv-BN-ReLU (strided or not)."""

    def __init__(self, cin: int, cout: int, stride: int, bottleneck: int):
        width = min(cin, bottleneck * cout)
        super().__init__(conv_bn_relu(cin, width, 1), conv_bn_relu(width, cout, 3, stride))


class MSDLayer(nn.Module):
    """Input scales first_in…S−1 → output scales first_out…S−1 (first_out ≥ first_in), each output the
    input of its scale with the new features appended; then a transition if a scale was dropped."""

    def __init__(self, channels: list[int], first_in: int, first_out: int, growth: list[int],
                 bottleneck: list[int], compression: float):
        super().__init__()
        self.first_in, self.first_out = first_in, first_out
        self.regular, self.strided = nn.ModuleDict(), nn.ModuleDict()
        self.out_channels = list(channels)
        for s in range(first_out, len(channels)):
            if s > first_in:   # the finer scale is there: half the growth from each
                self.strided[str(s)] = BottleneckConv(channels[s - 1], growth[s] // 2, 2, bottleneck[s - 1])
                self.regular[str(s)] = BottleneckConv(channels[s], growth[s] // 2, 1, bottleneck[s])
                self.out_channels[s] += growth[s] // 2 * 2
            else:
                self.regular[str(s)] = BottleneckConv(channels[s], growth[s], 1, bottleneck[s])
                self.out_channels[s] += growth[s]
        self.transition = nn.ModuleDict()
        if first_out > first_in and compression < 1:
            for s in range(first_out, len(channels)):
                squeezed = math.floor(self.out_channels[s] * compression)
                self.transition[str(s)] = conv_bn_relu(self.out_channels[s], squeezed, 1)
                self.out_channels[s] = squeezed

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        by_scale = dict(zip(range(self.first_in, self.first_in + len(xs)), xs))
        out = []
        for s in range(self.first_out, self.first_in + len(xs)):
            parts = [by_scale[s], self.regular[str(s)](by_scale[s])]
            if str(s) in self.strided:
                parts.append(self.strided[str(s)](by_scale[s - 1]))
            x = torch.cat(parts, 1)
            out.append(self.transition[str(s)](x) if str(s) in self.transition else x)
        return out


class ExitHead(nn.Module):
    """Two strided 3×3 conv-BN-ReLU → average pool → linear, on the coarsest scale."""

    def __init__(self, cin: int, width: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(conv_bn_relu(cin, width, 3, 2), conv_bn_relu(width, width, 3, 2))
        self.fc = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


class MSDNet(ImageClassifier):
    """S scales, `base` + `step`·(exits − 1) layers, an `ExitHead` after layer base, base + step, …"""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, scales: int = 3, channels: int = 16,
                 growth: int = 6, growth_factors=(1, 2, 4), bottleneck_factors=(1, 2, 4), base: int = 4,
                 step: int = 2, exits: int = 7, head_width: int = 128, compression: float = 0.5):
        super().__init__()
        if not (len(growth_factors) == len(bottleneck_factors) == scales) or min(scales, base, step, exits) < 1:
            raise ValueError("MSDNet needs one growth and one bottleneck factor per scale, and base, step, exits ≥ 1")
        self.num_classes, self.aux_weight, self.head_width = num_classes, 1.0, head_width
        widths = [channels * f for f in growth_factors]
        self.stem = nn.ModuleList(
            [conv_bn_relu(in_chans if s == 0 else widths[s - 1], widths[s], 3, 1 if s == 0 else 2)
             for s in range(scales)])
        total = base + step * (exits - 1)
        self.exit_after = [base - 1 + step * k for k in range(exits)]
        self.layers = nn.ModuleList()
        first = 0
        for layer in range(total):
            first_out = scales - min(scales, total - layer)
            self.layers.append(MSDLayer(widths, first, first_out, [growth * f for f in growth_factors],
                                        list(bottleneck_factors), compression))
            widths, first = self.layers[-1].out_channels, first_out
        coarsest = [self.layers[i].out_channels[-1] for i in self.exit_after]
        self.exits = nn.ModuleList(ExitHead(c, head_width, num_classes) for c in coarsest)
        self.classifier_name = f"exits.{exits - 1}.fc"
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def coarsest_maps(self, x: torch.Tensor, last_exit: int | None = None) -> list[torch.Tensor]:
        """The coarsest-scale map read by each exit up to `last_exit` (all by default)."""
        last_exit = len(self.exits) - 1 if last_exit is None else last_exit
        xs = []
        for s, conv in enumerate(self.stem):
            xs.append(conv(x if s == 0 else xs[-1]))
        maps = []
        for i, layer in enumerate(self.layers[:self.exit_after[last_exit] + 1]):
            xs = layer(xs)
            if i in self.exit_after:
                maps.append(xs[-1])
        return maps

    def exit_logits(self, x: torch.Tensor, last_exit: int | None = None) -> list[torch.Tensor]:
        """Logits of every exit up to `last_exit`; the last exit's through `forward_head`."""
        maps = self.coarsest_maps(x, last_exit)
        out = [head(m) for head, m in zip(self.exits[:len(maps) - 1], maps)]
        final = self.exits[len(maps) - 1]
        out.append(final.fc(final.features(maps[-1]).mean((2, 3))) if len(maps) < len(self.exits)
                   else self.forward_head(final.features(maps[-1])))
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.exits[-1].features(self.coarsest_maps(x)[-1])

    def forward(self, x: torch.Tensor):
        if not self.training:
            return self.forward_head(self.forward_features(x))
        logits = self.exit_logits(x)
        return logits[-1], logits[:-1]

    def reset_classifier(self, num_classes: int) -> None:
        for head in self.exits:
            placement = next(head.features.parameters())
            head.fc = (nn.Linear(self.head_width, num_classes).to(placement.device, placement.dtype)
                       if num_classes > 0 else nn.Identity())
        self.num_classes = num_classes

    def stage_modules(self) -> list[str]:
        return [*(f"stem.{s}" for s in range(len(self.stem))), f"exits.{len(self.exits) - 1}.features"]

    def exit_macs(self, input_size) -> list[int]:
        """MACs per image of stopping at each exit: every layer up to it and every classifier up to it."""
        x = torch.zeros((1, *input_size), device=next(self.parameters()).device)
        counter = FlopCounterMode(display=False)
        cumulative, done = [], 0
        with torch.no_grad(), evaluating(self), counter:
            xs = []
            for s, conv in enumerate(self.stem):
                xs.append(conv(x if s == 0 else xs[-1]))
            for k, last in enumerate(self.exit_after):
                for layer in self.layers[done:last + 1]:
                    xs = layer(xs)
                self.exits[k](xs[-1])
                done = last + 1
                cumulative.append(counter.get_total_flops() // 2)   # the running total, so far
        return cumulative

    @torch.no_grad()
    def early_exit_predict(self, x: torch.Tensor, thresholds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(predictions, exit index, MACs spent) per image: each image leaves at the first exit k whose
        maximum softmax probability is ≥ thresholds[k] (one float: the same for every exit); the last
        exit answers the rest. The batch evaluates every exit; the MACs are those of stopping early."""
        with evaluating(self):
            logits = torch.stack(self.exit_logits(x), 1).float()             # (batch, exits, classes)
        confidence = logits.softmax(-1).amax(-1)
        exit_index = first_confident_exit(confidence, thresholds)
        predictions = logits.argmax(-1).gather(1, exit_index[:, None])[:, 0]
        costs = torch.tensor(self.exit_macs(tuple(x.shape[1:])), dtype=torch.float64)
        return predictions, exit_index, costs[exit_index.cpu()]


def first_confident_exit(confidence: torch.Tensor, thresholds) -> torch.Tensor:
    """Index of the first exit whose confidence (batch, exits) reaches its threshold; the last otherwise."""
    exits = confidence.shape[1]
    theta = torch.as_tensor(thresholds, dtype=confidence.dtype, device=confidence.device).flatten()
    if theta.numel() not in (1, exits - 1, exits):
        raise ValueError(f"{exits} exits need {exits - 1} thresholds (or {exits}, the last ignored: the last "
                         f"exit always answers), not {theta.numel()}")
    theta = theta.expand(exits - 1) if theta.numel() == 1 else theta[:exits - 1]
    leaves = torch.cat([confidence[:, :-1] >= theta, torch.ones_like(confidence[:, :1], dtype=torch.bool)], 1)
    return leaves.int().argmax(1)


def geometric_proportions(ratio: float, exits: int) -> torch.Tensor:
    """q_k ∝ ratio^k, k = 0…exits − 1, summing to 1: the paper's z·q(1 − q)^k with ratio = 1 − q (Sec. 5.2);
    a ratio above 1 sends more images to the later exits, for budgets near the whole network's cost."""
    weights = ratio ** torch.arange(exits, dtype=torch.float64)
    return weights / weights.sum()


def thresholds_for_proportions(confidence: torch.Tensor, proportions: torch.Tensor) -> list[float]:
    """θ_k on validation confidences (images, exits) such that a fraction proportions[k] of the images
    leaves at exit k (ties may let a few more out); inf where none should."""
    remaining = torch.ones(len(confidence), dtype=torch.bool)
    thresholds = []
    for k in range(confidence.shape[1] - 1):
        count = min(round(float(proportions[k]) * len(confidence)), int(remaining.sum()))
        if count == 0:
            thresholds.append(math.inf)
            continue
        theta = float(confidence[remaining, k].sort(descending=True).values[count - 1])
        thresholds.append(theta)
        remaining &= confidence[:, k] < theta
    return thresholds


def thresholds_for_budget(confidence: torch.Tensor, exit_macs, budget: float, grid: int = 200) -> list[float]:
    """The thresholds of the geometric proportions (ratios 0.01…100) whose mean validation cost is the
    largest that fits `budget` MACs per image."""
    costs = torch.as_tensor(exit_macs, dtype=torch.float64)
    if budget < costs[0]:
        raise ValueError(f"a budget of {budget:.4g} MACs is below the first exit's {float(costs[0]):.4g}")
    if budget >= costs[-1]:
        return [math.inf] * (confidence.shape[1] - 1)   # the whole network fits
    best, best_cost = [0.0] * (confidence.shape[1] - 1), float(costs[0])
    for ratio in torch.logspace(-2, 2, grid).tolist():
        thresholds = thresholds_for_proportions(confidence, geometric_proportions(ratio, confidence.shape[1]))
        cost = float(costs[first_confident_exit(confidence, thresholds)].mean())
        if best_cost < cost <= budget:
            best, best_cost = thresholds, cost
    return best


def _msdnet(num_classes=10, in_chans=3, **kwargs):
    return MSDNet(num_classes, in_chans, **kwargs)


register_model("msdnet_cifar", family="msdnet", paper=_PAPER, year=2018, input_size=(3, 32, 32), num_classes=10,
               dataset="cifar10")(_msdnet)
register_model("msdnet_fmnist", family="msdnet", paper=_PAPER, year=2018, input_size=(1, 28, 28), num_classes=10,
               dataset="fashion-mnist", channels=8, growth=4, base=2, step=2, exits=4, head_width=32)(_msdnet)
