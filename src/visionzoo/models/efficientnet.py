"""EfficientNet: Tan, Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019.

- EfficientNet-B0, Table 1 (the notes' table): a 3×3/2 convolution of 32 filters, seven stages
  of MBConv blocks (layers/mobile.py: expansion 1 or 6, 3×3 or 5×5 depthwise kernels,
  Squeeze-and-Excitation with a quarter of the block's input channels, Swish), a 1×1
  convolution to 1280, pooling, dropout, FC; 5.3M parameters, 0.39B FLOPs (multiply-adds).
  Stochastic depth with survival 0.8 at the last block (``drop_path_rate=0.2``, linear in depth).
- Compound scaling, Eq. 3: depth d = α^φ, width w = β^φ, resolution r = γ^φ with α = 1.2,
  β = 1.1, γ = 1.15 (α·β²·γ² ≈ 2, so the FLOPs grow by about 2^φ). A network of coefficients
  (w, d) has every width of Table 1 multiplied by w and rounded to a multiple of 8, and every
  stage's layer count multiplied by d and rounded up; `scaled_stages` derives it from the B0
  table. ``efficientnet(phi=φ)`` builds the rule's network for any φ.
- B1–B7 use the coefficients the authors published with their code (width, depth, resolution,
  dropout): (1.0, 1.1, 240, 0.2), (1.1, 1.2, 260, 0.3), (1.2, 1.4, 300, 0.3), (1.4, 1.8, 380, 0.4),
  (1.6, 2.2, 456, 0.4), (1.8, 2.6, 528, 0.5), (2.0, 3.1, 600, 0.5). They are the rule's, rounded,
  in width and resolution: at the φ the published resolution implies, β^φ rounds to the published
  width for all seven. The depths of B3–B7 are smaller than α^φ (by 4 % for B3 up to 15 % for
  B6): the authors scaled the larger models less deeply than the rule, which this module states
  rather than hides (tests/test_efficient.py checks both statements).

Layout and parameter names follow torchvision's efficientnet_b*; BN ε is PyTorch's 1e-5 for
B0–B4 (torchvision's twins were trained in PyTorch) and TensorFlow's 1e-3 for B5–B7 (the paper's
setting, which torchvision keeps for its ported B5–B7 weights).

Feature stages (timm's efficientnet): the last MBConv stage of each resolution (16, 24, 40, 112,
320 channels in B0); the final 1×1 convolution belongs to the head.

Small-input adaptation: with ``image_size < 64`` the stem convolution has stride 1 instead of 2,
so a 28×28 input leaves the body at 2×2 rather than 1×1.
"""
from __future__ import annotations

import math

from torch import nn

from ..layers.drop import linear_drop_path_rates
from ..layers.mobile import ConvBNAct, MBConv, make_divisible
from ..registry import register_model
from .features import resolution_ends
from .mobilenet import DropoutLinearHead, mobile_init

_PAPER = dict(family="efficientnet", year=2019,
              paper="Tan, Le. EfficientNet: Rethinking Model Scaling for Convolutional Neural "
                    "Networks. ICML 2019")

# Table 1, stages 2–8: (expansion t, kernel, first stride, output channels, layers).
B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
             (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
B0_STEM, B0_HEAD, B0_RESOLUTION = 32, 1280, 224
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
# The authors' published (width, depth, resolution, dropout) of B0–B7.
PUBLISHED = {"b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
             "b3": (1.2, 1.4, 300, 0.3), "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
             "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5)}


def compound_coefficients(phi: float, alpha: float = ALPHA, beta: float = BETA,
                          gamma: float = GAMMA) -> tuple[float, float, float]:
    """(width β^φ, depth α^φ, resolution 224 · γ^φ) of Eq. 3."""
    return beta ** phi, alpha ** phi, B0_RESOLUTION * gamma ** phi


def scale_width(channels: int, width: float) -> int:
    return make_divisible(channels * width, 8)


def scale_depth(layers: int, depth: float) -> int:
    return math.ceil(layers * depth)


def scaled_stages(width: float, depth: float):
    """Table 1 scaled: (t, kernel, stride, channels rounded to 8, layers rounded up) per stage."""
    return [(t, k, s, scale_width(c, width), scale_depth(n, depth)) for t, k, s, c, n in B0_STAGES]


class EfficientNet(DropoutLinearHead):
    """Stem → MBConv stages → 1×1 conv → pool → dropout → linear, all widths scaled by `width`."""

    def __init__(self, num_classes=1000, in_chans=3, width=1.0, depth=1.0, dropout=0.2,
                 drop_path_rate=0.2, bn_eps=1e-5, small_input=False):
        super().__init__()
        self.num_classes = num_classes
        stages = scaled_stages(width, depth)
        rates = iter(linear_drop_path_rates(sum(n for *_, n in stages), drop_path_rate))
        channels = scale_width(B0_STEM, width)
        layers = [ConvBNAct(in_chans, channels, 3, 1 if small_input else 2, act=nn.SiLU,
                            bn_eps=bn_eps)]
        for t, kernel, stride, out, repeats in stages:
            blocks = []
            for i in range(repeats):
                blocks.append(MBConv(channels, out, stride if i == 0 else 1, t, kernel,
                                     drop_path=next(rates), bn_eps=bn_eps))
                channels = out
            layers.append(nn.Sequential(*blocks))
        self.feature_stages = resolution_ends("features", [1 if small_input else 2,
                                                           *(stride for _, _, stride, _, _ in stages)])
        head = scale_width(B0_HEAD, width)
        layers.append(ConvBNAct(channels, head, 1, act=nn.SiLU, bn_eps=bn_eps))
        self.features = nn.Sequential(*layers)
        self.build_head(head, num_classes, dropout)
        mobile_init(self, linear_std=0.0)
        # The reference code's dense initialisation: U(±1/√outputs).
        bound = 1.0 / math.sqrt(num_classes)
        nn.init.uniform_(self.classifier[1].weight, -bound, bound)
        nn.init.zeros_(self.classifier[1].bias)


def efficientnet(num_classes=1000, in_chans=3, width=1.0, depth=1.0, resolution=B0_RESOLUTION,
                 phi=None, image_size=None, **kwargs):
    """EfficientNet of coefficients (width, depth), or of the compound rule's at `phi`.

    `resolution` is the input side the network is meant for, kept in ``model.input_resolution``.
    """
    if phi is not None:
        width, depth, resolution = compound_coefficients(phi)
    model = EfficientNet(num_classes, in_chans, width, depth,
                         small_input=image_size is not None and image_size < 64, **kwargs)
    model.input_resolution = round(resolution)
    return model


# Paper figures of the notes' results table: #Params and #FLOPs (multiply-adds).
_FIGURES = {"b0": ("5.3M", "0.39G"), "b1": ("7.8M", "0.70G"), "b2": ("9.2M", "1.0G"),
            "b3": ("12M", "1.8G"), "b4": ("19M", "4.2G"), "b5": ("30M", "9.9G"),
            "b6": ("43M", "19G"), "b7": ("66M", "37G")}
for _b, (_width, _depth, _resolution, _dropout) in PUBLISHED.items():
    _params, _macs = _FIGURES[_b]
    register_model(f"efficientnet_{_b}", **_PAPER, input_size=(3, _resolution, _resolution),
                   paper_params=_params, paper_macs=_macs,
                   twins={"torchvision": f"efficientnet_{_b}"}, width=_width, depth=_depth,
                   resolution=_resolution, dropout=_dropout,
                   bn_eps=1e-3 if _b in ("b5", "b6", "b7") else 1e-5)(efficientnet)
