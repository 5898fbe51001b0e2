"""CBAM-ResNets: Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018.

The CBAM block (Eq. 1–3, layers/attention.py: channel attention with reduction r = 16, then a
7×7 spatial attention) sits on the residual branch of every block of a ResNet, after its last
BN and before the addition (Fig. 3) — the ResNets of models/resnet.py with ``attention=CBAM``.
Figures from the notes' CBAM table (the paper's "ResNet + CBAM" rows); its GFLOPs put the
stride of a bottleneck on its first 1×1 (ResNet v1), where ours (torchvision's v1.5 layout)
strides the 3×3: +6 % MACs for ResNet-50, +3 % for ResNet-101. Its ResNeXt-50 GFLOPs (3.774)
are below what any 32×4d ResNeXt-50 costs (4.2 G in the ResNeXt paper), so only its parameter
count is checked; the same holds for ResNeXt-101 (7.519 G against the ResNeXt paper's 7.8 G).
WideResNet18 (widen 1.5, 2.0): ResNet-18 with widened stages and the 64-wide stem (senet.py).

Small inputs: the ResNet stem adaptation of models/resnet.py (3×3 stride-1, no max-pool, < 64 px).
"""
from __future__ import annotations

from ..layers.attention import CBAM
from ..layers.residual import BasicBlock, Bottleneck
from ..registry import register_model
from .resnet import imagenet_resnet
from .senet import V15_EXTRA_MACS, wide_resnet18

_CBAM = dict(family="cbam", year=2018,
             paper="Woo, Park, Lee, Kweon. CBAM: Convolutional Block Attention Module. ECCV 2018")

for _name, _block, _layers, _params, _macs, _why in (
        ("cbam_resnet18", BasicBlock, (2, 2, 2, 2), "11.78M", "1.815G", None),
        ("cbam_resnet34", BasicBlock, (3, 4, 6, 3), "21.96M", "3.665G", None),
        ("cbam_resnet50", Bottleneck, (3, 4, 6, 3), "28.09M", "3.864G", V15_EXTRA_MACS),
        ("cbam_resnet101", Bottleneck, (3, 4, 23, 3), "49.33M", "7.581G", None)):
    register_model(_name, **_CBAM, paper_params=_params, paper_macs=_macs, mismatch_reason=_why,
                   block=_block, layers=_layers, attention=CBAM)(imagenet_resnet)
register_model("cbam_resnext50_32x4d", **_CBAM, paper_params="27.56M", block=Bottleneck,
               layers=(3, 4, 6, 3), groups=32, base_width=4, attention=CBAM)(imagenet_resnet)
register_model("cbam_resnext101_32x4d", **_CBAM, paper_params="48.96M", block=Bottleneck,
               layers=(3, 4, 23, 3), groups=32, base_width=4, attention=CBAM)(imagenet_resnet)
for _widen, _params, _macs in ((1.5, "26.08M", "3.868G"), (2.0, "45.97M", "6.697G")):
    register_model(f"cbam_wide_resnet18_{str(_widen).replace('.', '_')}", **_CBAM, paper_params=_params,
                   paper_macs=_macs, **wide_resnet18(_widen), attention=CBAM)(imagenet_resnet)
