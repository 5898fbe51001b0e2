"""Normalizer-free networks, without any normalisation layer:

- NF-ResNet: Brock, De, Smith, "Characterizing signal propagation to close the performance gap
  in unnormalized ResNets", ICLR 2021. A pre-activation ResNet-50 whose residual blocks are
  h_{i+1} = h_i + α · f_i(h_i / β_i) (Sec. 4): f_i is variance preserving at initialisation
  (Scaled Weight Standardization, layers/weight_std.py), so Var(h_{i+1}) = Var(h_i) + α², and
  β_i = √Var(h_i) is known analytically: it starts at 1, grows by α² per block, and is reset
  to 1 + α² by the first (transition) block of each stage, whose shortcut is a scaled-WS
  1×1 convolution of the normalised input (after a 2×2 average pool when strided). α = 0.2.
- NFNet-F0: Brock, De, Smith, Simonyan, "High-Performance Large-Scale Image Recognition Without
  Normalization", ICML 2021, its F0 configuration: GELU, a four-convolution stem (16, 32, 64, 128
  channels, strides 2, 1, 1, 2), stage widths 256/512/1536/1536 and depths 1/2/6/3, grouped
  bottlenecks (group width 128, ratio 0.5) with a second 3×3 convolution, squeeze-excite after
  the last 1×1 (doubled: a sigmoid gate of 1/2 on average would halve the variance), a final
  1×1 convolution to 3072 channels, dropout 0.2 and stochastic depth 0.25 (defaults here).
  71.5M parameters, 12.38 GFLOPs at its test resolution 256².

As in the official code, a block scales after its first activation, act(h_i) / β_i, which is
act(h_i / β_i) for the positively homogeneous ReLU. Each activation's gain γ (√(2/(1 − 1/π))
for ReLU, ≈ 1.7009 for GELU) is carried by the Ŵ of the convolution that reads it, and, in
timm's layout, every convolution has one (the stem's and the final 1×1's included), so timm's
weights load by name. timm (like DeepMind's code) uses Monte-Carlo estimates of γ; its twins'
converter folds their ratio to ours into the learnable gains, so the outputs agree.
Every gain starts at 1, so the branch is live at initialisation and the variance follows the
analytic β (timm zero-initialises the last gain of each branch instead).

Feature stages (timm's nf_resnet and nfnet): the stem convolution at 1/2 resolution (``stem.conv``,
or ``stem.conv3`` of the deep stem), stages 1 to 3, and the final activation after stage 4 (and
NFNet's 1×1 convolution to 3072), the map the head pools.

Small images: with ``image_size < 64`` the stem reduces 2× instead of 4× or not at all.
NF-ResNet: one 3×3 stride-1 scaled-WS convolution and no max-pool (the ResNets' small stem),
28×28 → 28, 14, 7, 4 through the stages. NFNet: only its last stem convolution keeps stride 2,
28×28 → 14, 7, 4, 2, since its wide stages (1536 channels) would cost 4× more at 28×28.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict

from torch import nn

from ..layers.drop import DropPath, linear_drop_path_rates
from ..layers.se import SqueezeExcite
from ..layers.weight_std import GELU_GAIN, RELU_GAIN, ScaledStdConv2d
from ..registry import register_model
from .base import ImageClassifier

_NF_RESNET = dict(family="nf_resnet", year=2021,
                  paper="Brock, De, Smith. Characterizing signal propagation to close the "
                        "performance gap in unnormalized ResNets. ICLR 2021")
_NFNET = dict(family="nfnet", year=2021,
              paper="Brock, De, Smith, Simonyan. High-Performance Large-Scale Image Recognition "
                    "Without Normalization. ICML 2021")
_ACTIVATIONS = {"relu": (nn.ReLU, RELU_GAIN), "gelu": (nn.GELU, GELU_GAIN)}
# timm's (DeepMind's) Monte-Carlo estimates of the same gains.
TIMM_GAINS = {"relu": 1.7139588594436646, "gelu": 1.7015043497085571}
ALPHA = 0.2
SE_GAIN = 2.0


class NFBlock(nn.Module):
    """h + α · drop_path(f(act(h) / β)), f = 1×1 → 3×3 (→ 3×3) → 1×1 (→ 2·SE) with activations."""

    def __init__(self, cin, cout, stride, beta, act, gamma, bottle_ratio=0.25, group_width=None,
                 extra_conv=False, se=False, drop_path=0.0, alpha=ALPHA):
        super().__init__()
        mid = int(cout * bottle_ratio)
        groups = mid // group_width if group_width else 1

        def conv(i, o, k, s=1, g=1):
            return ScaledStdConv2d(i, o, k, s, groups=g, gamma=gamma)

        self.alpha, self.beta = alpha, beta
        self.act = act()  # on the block's input; the branch's rectifiers follow, one module each
        self.act1, self.act2 = act(), act()
        self.act2b = act() if extra_conv else None
        if stride > 1 or cin != cout:
            pool = (nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
                    if stride > 1 else nn.Identity())
            self.downsample = nn.Sequential(OrderedDict(pool=pool, conv=conv(cin, cout, 1)))
        else:
            self.downsample = None
        self.conv1 = conv(cin, mid, 1)
        self.conv2 = conv(mid, mid, 3, stride, groups)
        self.conv2b = conv(mid, mid, 3, 1, groups) if extra_conv else None
        self.conv3 = conv(mid, cout, 1)
        self.attn_last = SqueezeExcite(cout, squeeze_channels=cout // 2) if se else None
        self.drop_path = DropPath(drop_path)

    def forward(self, h):
        x = self.act(h) / self.beta
        shortcut = h if self.downsample is None else self.downsample(x)
        out = self.act2(self.conv2(self.act1(self.conv1(x))))
        if self.conv2b is not None:
            out = self.act2b(self.conv2b(out))
        out = self.conv3(out)
        if self.attn_last is not None:
            out = SE_GAIN * self.attn_last(out)
        return shortcut + self.alpha * self.drop_path(out)


class NormFreeNet(ImageClassifier):
    """stem → stages of `NFBlock`s with analytic β → (final 1×1 conv) → act → pool → dropout → fc."""
    classifier_name = "head.fc"

    def __init__(self, depths, widths, stem, activation="relu", num_classes=1000, in_chans=3,
                 num_features=None, dropout=0.0, drop_path_rate=0.0, **block_args):
        super().__init__()
        self.num_classes = num_classes
        act, gamma = _ACTIVATIONS[activation]
        self.stem, channels = self.make_stem(stem, in_chans, act, gamma)
        self.feature_stages = ["stem.conv3" if stem.startswith("deep_quad") else "stem.conv",
                               *(f"stages.{i}" for i in range(len(depths) - 1)), "final_act"]
        self.expected_vars = []
        rates = iter(linear_drop_path_rates(sum(depths), drop_path_rate))
        expected_var = 1.0
        stages = []
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                self.expected_vars.append(expected_var)
                blocks.append(NFBlock(channels, width, 2 if i > 0 and j == 0 else 1,
                                      math.sqrt(expected_var), act, gamma,
                                      drop_path=next(rates), **block_args))
                # A transition's output is its shortcut (variance 1) plus α·f; others add α².
                expected_var = (1.0 if j == 0 else expected_var) + ALPHA ** 2
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        if num_features:
            self.final_conv = ScaledStdConv2d(channels, num_features, 1, gamma=gamma)
            channels = num_features
        else:
            self.final_conv = nn.Identity()
        self.final_act = act()
        self.num_features = channels
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.ModuleDict({"fc": nn.Linear(channels, num_classes)})
        nn.init.normal_(self.head.fc.weight, std=0.01)
        nn.init.zeros_(self.head.fc.bias)

    @staticmethod
    def make_stem(stem, in_chans, act, gamma):
        """(stem module, its output channels) for "7x7_pool", "deep_quad" or their "_small" forms."""
        if stem.startswith("7x7_pool"):
            if stem.endswith("_small"):
                layers = OrderedDict(conv=ScaledStdConv2d(in_chans, 64, 3, gamma=gamma))
            else:
                layers = OrderedDict(conv=ScaledStdConv2d(in_chans, 64, 7, 2, gamma=gamma),
                                     pool=nn.MaxPool2d(3, 2, 1))
            return nn.Sequential(layers), 64
        strides = (1, 1, 1, 2) if stem.endswith("_small") else (2, 1, 1, 2)
        layers, cin = OrderedDict(), in_chans
        for i, (cout, stride) in enumerate(zip((16, 32, 64, 128), strides)):
            if i:
                layers[f"act{i + 1}"] = act()
            layers[f"conv{i + 1}"] = ScaledStdConv2d(cin, cout, 3, stride, gamma=gamma)
            cin = cout
        return nn.Sequential(layers), cin

    def stage_modules(self):
        return self.feature_stages

    def forward_features(self, x):
        return self.final_act(self.final_conv(self.stages(self.stem(x))))


def normfree_net(num_classes=1000, in_chans=3, image_size=None, stem="7x7_pool", **kwargs):
    """An NF network with its ImageNet stem, or the stride-1 one for inputs below 64 px."""
    if image_size is not None and image_size < 64:
        stem += "_small"
    return NormFreeNet(stem=stem, num_classes=num_classes, in_chans=in_chans, **kwargs)


def timm_gains_to_ours(activation):
    """timm NF weights → ours: names agree; gains g absorb γ_timm / γ_ours (Ŵ is linear in g γ)."""
    ratio = TIMM_GAINS[activation] / _ACTIVATIONS[activation][1]

    def convert(state_dict: dict) -> dict:
        return {k: v * ratio if re.search(r"\.gain$", k) else v for k, v in state_dict.items()}
    return convert


register_model("nf_resnet50", **_NF_RESNET, twins={"timm": "nf_resnet50"},
               converters={"timm": timm_gains_to_ours("relu")}, depths=(3, 4, 6, 3),
               widths=(256, 512, 1024, 2048))(normfree_net)
register_model("nfnet_f0", **_NFNET, input_size=(3, 256, 256), paper_params="71.5M",
               paper_macs="12.38G", twins={"timm": "nfnet_f0"},
               converters={"timm": timm_gains_to_ours("gelu")}, stem="deep_quad",
               activation="gelu", depths=(1, 2, 6, 3), widths=(256, 512, 1536, 1536),
               num_features=3072, bottle_ratio=0.5, group_width=128, extra_conv=True, se=True,
               dropout=0.2, drop_path_rate=0.25)(normfree_net)
