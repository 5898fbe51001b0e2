"""ConvNeXt's modernisation path: Liu, Mao, Wu, Feichtenhofer, Darrell, Xie, "A ConvNet for the
2020s", CVPR 2022, Sec. 2 and Fig. 2 — a ResNet-50 turned into ConvNeXt-T one design decision at
a time, every step a registered network (``convnext_path_<k>_<step>``).

`PATH` lists the steps; each changes one switch of `PathConfig` from the step before, and every
step keeps the earlier ones. Fig. 2's GFLOPs (multiply-adds at 224²) are the cards' figures:

==  ==========================  ====================================================  =======
k   step                        what changes                                          GFLOPs
==  ==========================  ====================================================  =======
0   resnet50                    the start (torchvision's v1.5 bottleneck)             4.1
1   stage_ratio                 blocks per stage (3, 4, 6, 3) → (3, 3, 9, 3)          4.5
2   patchify_stem               7×7/2 conv + max-pool → 4×4/4 conv                    4.4
3   depthwise                   the 3×3 becomes depthwise (ResNeXt-ify)               2.4
4   width                       64 → 96 base channels (Swin-T's)                      5.3
5   inverted_bottleneck         d → 4d → d blocks on a 96…768 residual stream         4.6
6   move_up_dwconv              the depthwise conv comes first in the block           4.1
7   kernel7                     3×3 → 7×7 depthwise                                   4.2
8   gelu                        ReLU → GELU                                           4.2
9   fewer_activations           one activation, between the two 1×1 convs             4.2
10  fewer_norms                 one norm, after the depthwise conv                    4.2
11  layer_norm                  BN → LN                                               4.2
12  separate_downsampling       LN + 2×2/2 conv between stages, LN after the stem    4.5
                                and after the pool (= ConvNeXt-T's structure)
==  ==========================  ====================================================  =======

(Fig. 2 also sweeps the kernel over 5, 9, 11 at 4.1–4.3 G; those are ablations off the path and
are not registered.) What the paper leaves unsaid is chosen as the closest ResNet or ConvNeXt
practice: until step 12 a stage's first block downsamples (stride 2 on its spatial conv, a 1×1/2
projection + norm on the shortcut) and, in the inverted blocks, expands to 4× the *new* width
first; the stem has a norm, and an activation until step 9 removes the block's other ones; the
activation after the addition (ResNet's) goes with them. The last step has ConvNeXt-T's layers
and parameters except layer scale (its γ, a training technique of Sec. 2.1, 6 624 numbers); the
step networks carry no layer scale, so every step is the bare architecture.

Initialisation: ConvNeXt's, truncated N(0, 0.02²) convolution and linear weights, zero biases
(every step is trained with the same modern recipe, Sec. 2.1).

Feature stages: the four stages ``stages.0`` … ``stages.3``.

Small images (< 64 px): the ResNet stem becomes a 3×3 stride-1 convolution without max-pool,
the patchify stem a 2×2/2 one (as models/resnet.py and models/convnext.py adapt theirs).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..layers.drop import DropPath, linear_drop_path_rates
from ..layers.norm import LayerNorm2d
from ..registry import register_model
from .base import ImageClassifier
from .convnext import Downsample

_LIU = dict(family="convnext", year=2022,
            paper="Liu, Mao, Wu, Feichtenhofer, Darrell, Xie. A ConvNet for the 2020s. CVPR 2022")


@dataclass(frozen=True)
class PathConfig:
    """One point on the path. `widths` are a bottleneck's planes (its output is 4×) or an
    inverted block's residual width (its hidden layer is 4×)."""
    depths: tuple[int, ...] = (3, 4, 6, 3)
    stem: str = "resnet"                 # "resnet": 7×7/2 + max-pool; "patchify": 4×4/4
    depthwise: bool = False              # the spatial conv grouped per channel
    widths: tuple[int, ...] = (64, 128, 256, 512)
    block: str = "bottleneck"            # "bottleneck" | "inverted" | "inverted_dw_first"
    kernel: int = 3
    act: str = "relu"                    # "relu" | "gelu"
    activations: str = "all"             # "all": after every conv but the last and the sum; "one"
    norms: str = "all"                   # "all": after every conv; "one": after the depthwise conv
    norm: str = "bn"                     # "bn" | "ln"
    downsample: str = "block"            # "block": strided first blocks; "separate": LN + 2×2/2 conv


_ACTS = {"relu": nn.ReLU, "gelu": nn.GELU}


def _norm(cfg: PathConfig, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if cfg.norm == "bn" else LayerNorm2d(channels, eps=1e-6)


class PathBlock(nn.Module):
    """x → convs (each with its norm and activation as `cfg` says) → + shortcut (→ activation)."""

    def __init__(self, cin: int, width: int, stride: int, cfg: PathConfig, drop_path: float = 0.0):
        super().__init__()
        pad = cfg.kernel // 2
        if cfg.block == "bottleneck":
            self.out_channels = 4 * width
            groups = width if cfg.depthwise else 1
            convs = [nn.Conv2d(cin, width, 1, bias=False),
                     nn.Conv2d(width, width, cfg.kernel, stride, pad, groups=groups, bias=False),
                     nn.Conv2d(width, self.out_channels, 1, bias=False)]
        elif cfg.block == "inverted":
            self.out_channels, hidden = width, 4 * width
            convs = [nn.Conv2d(cin, hidden, 1, bias=False),
                     nn.Conv2d(hidden, hidden, cfg.kernel, stride, pad, groups=hidden, bias=False),
                     nn.Conv2d(hidden, width, 1, bias=False)]
        elif cfg.block == "inverted_dw_first":
            self.out_channels, hidden = width, 4 * width
            convs = [nn.Conv2d(cin, cin, cfg.kernel, stride, pad, groups=cin),
                     nn.Conv2d(cin, hidden, 1), nn.Conv2d(hidden, width, 1)]
        else:
            raise ValueError(f"block must be 'bottleneck', 'inverted' or 'inverted_dw_first', not {cfg.block!r}")
        if cfg.norms == "one" and cfg.block != "inverted_dw_first":
            raise ValueError("a single norm sits after the depthwise conv at the front of the block")
        layers = []
        for i, conv in enumerate(convs):
            layers.append(conv)
            if cfg.norms == "all" or i == 0:
                layers.append(_norm(cfg, conv.out_channels))
            if (cfg.activations == "all" and i < len(convs) - 1) or i == len(convs) - 2:
                layers.append(_ACTS[cfg.act]())
        self.branch = nn.Sequential(*layers)
        changes = stride != 1 or cin != self.out_channels
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, self.out_channels, 1, stride, bias=False),
                                       _norm(cfg, self.out_channels)) if changes else nn.Identity())
        self.drop_path = DropPath(drop_path)
        self.post_act = _ACTS[cfg.act]() if cfg.activations == "all" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post_act(self.drop_path(self.branch(x)) + self.shortcut(x))


class PathNet(ImageClassifier):
    """stem → four stages of `PathBlock`s (downsampling in their first block, or by separate
    layers) → global average pool (→ LN with separate downsampling) → fc."""

    def __init__(self, cfg: PathConfig, num_classes: int = 1000, in_chans: int = 3, small: bool = False,
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        stem_width = cfg.widths[0]
        if cfg.stem == "resnet":
            conv = (nn.Conv2d(in_chans, stem_width, 3, 1, 1, bias=False) if small
                    else nn.Conv2d(in_chans, stem_width, 7, 2, 3, bias=False))
            pool = [] if small else [nn.MaxPool2d(3, 2, 1)]
        elif cfg.stem == "patchify":
            patch = 2 if small else 4
            conv, pool = nn.Conv2d(in_chans, stem_width, patch, patch), []
        else:
            raise ValueError(f"stem must be 'resnet' or 'patchify', not {cfg.stem!r}")
        act = [_ACTS[cfg.act]()] if cfg.activations == "all" else []
        self.stem = nn.Sequential(conv, _norm(cfg, stem_width), *act, *pool)
        separate = cfg.downsample == "separate"
        rates = iter(linear_drop_path_rates(sum(cfg.depths), drop_path_rate))
        channels, stages = stem_width, []
        for i, (depth, width) in enumerate(zip(cfg.depths, cfg.widths)):
            blocks = []
            if separate and i > 0:
                blocks.append(Downsample(channels, width))
                channels = width
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 and not separate else 1
                blocks.append(PathBlock(channels, width, stride, cfg, next(rates)))
                channels = blocks[-1].out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.head_norm = LayerNorm2d(channels, eps=1e-6) if separate else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def stage_modules(self):
        return [f"stages.{i}" for i in range(len(self.stages))]

    def forward_features(self, x):
        return self.stages(self.stem(x))

    def forward_head(self, x, pre_logits=False):
        x = self.head_norm(x.mean((2, 3), keepdim=True)).flatten(1)
        return x if pre_logits else self.fc(x)


# Fig. 2, top to bottom: (step, the change from the step before, the figure's GFLOPs).
PATH = (
    ("resnet50", {}, "4.1G"),
    ("stage_ratio", dict(depths=(3, 3, 9, 3)), "4.5G"),
    ("patchify_stem", dict(stem="patchify"), "4.4G"),
    ("depthwise", dict(depthwise=True), "2.4G"),
    ("width", dict(widths=(96, 192, 384, 768)), "5.3G"),
    ("inverted_bottleneck", dict(block="inverted"), "4.6G"),
    ("move_up_dwconv", dict(block="inverted_dw_first"), "4.1G"),
    ("kernel7", dict(kernel=7), "4.2G"),
    ("gelu", dict(act="gelu"), "4.2G"),
    ("fewer_activations", dict(activations="one"), "4.2G"),
    ("fewer_norms", dict(norms="one"), "4.2G"),
    ("layer_norm", dict(norm="ln"), "4.2G"),
    ("separate_downsampling", dict(downsample="separate"), "4.5G"),
)


def path_configs() -> list[tuple[str, PathConfig]]:
    """``(name, config)`` of every step, each the step before with its one change."""
    cfg, out = PathConfig(), []
    for k, (step, change, _) in enumerate(PATH):
        cfg = replace(cfg, **change)
        out.append((f"convnext_path_{k}_{step}", cfg))
    return out


def convnext_path(num_classes=1000, in_chans=3, image_size=None, step=0, drop_path_rate=0.0):
    """Step `step` of Fig. 2's path (0: ResNet-50 … 12: ConvNeXt-T without layer scale)."""
    small = image_size is not None and image_size < 64
    return PathNet(path_configs()[step][1], num_classes, in_chans, small, drop_path_rate)


for _k, ((_name, _), (_, _, _macs)) in enumerate(zip(path_configs(), PATH)):
    register_model(_name, **_LIU, paper_macs=_macs, step=_k)(convnext_path)
