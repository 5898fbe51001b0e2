"""ResNeSt: Zhang et al., "ResNeSt: Split-Attention Networks", CVPR-W 2022 (arXiv 2020).

ResNeSt-50 (27.5M parameters, 5.39 GFLOPs in the paper's ImageNet comparison; the notes give
no figures): the ResNet-50 layout whose
bottlenecks carry a split-attention 3×3 (radix r = 2, cardinality k = 1, base width 64;
layers/attention.py), with the paper's network tweaks (Sec. 4.1): a deep stem of three 3×3
convolutions (32, 32, 64), average-pool downsampling in the strided blocks ("avd", after the 3×3)
and on their projection shortcuts (option D of layers/residual.py). timm's ``resnest50d`` is the
twin, name for name.

Small inputs (< 64 px): the 3×3 stride-1 stem without max-pool of models/resnet.py replaces the
deep stem.
"""
from __future__ import annotations

from ..layers.attention import SplitAttentionBottleneck
from ..registry import register_model
from .resnet import imagenet_resnet

register_model("resnest50d", family="resnest", year=2020, paper_params="27.5M", paper_macs="5.39G",
               paper="Zhang, Wu, Zhang, Zhu, Lin, Zhang, Sun, He, Mueller, Manmatha, Li, Smola. "
                     "ResNeSt: Split-Attention Networks. CVPR Workshops 2022",
               twins={"timm": "resnest50d"}, block=SplitAttentionBottleneck, layers=(3, 4, 6, 3),
               stem="deep", shortcut="D", radix=2)(imagenet_resnet)
