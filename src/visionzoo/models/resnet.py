"""The residual families, built by one `ResNet` class from the blocks of layers/residual.py.

- ResNet: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
  ImageNet ResNet-18/34/50/101/152 of Table 1 (the notes' table, FLOPs 1.8/3.6/3.8/7.6/11.3 G),
  the CIFAR-10 ResNets of Sec. 4.2 (6n+2 layers, 16/32/64 filters, option-A shortcuts), and
  their plain twins (Fig. 3 middle, ``residual=False``). ``shortcut="A"|"B"|"C"`` picks the
  option of Sec. 4.1 in every builder. ResNet-1202's card quotes 19.4M, He et al.'s own count
  (Table 6), which the 200 basic blocks per stage of 16/32/64 filters do have; the WRN and
  DenseNet comparison tables of the notes print 10.2M for it (and for stochastic depth's
  1202-layer net), the count of pre-activation ResNet-1001 carried into the wrong row. It cannot
  be a bottleneck network's: those have 9n + 2 layers, and 1200 is no multiple of 9; stochastic
  depth's 1202-layer net is He et al.'s basic-block one (tests/test_paper_tables.py).
- Pre-activation ResNet: He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks",
  ECCV 2016. BN → ReLU → conv units (Fig. 1(b)), a final BN-ReLU before pooling; the CIFAR
  bottleneck ResNet-164 (1.7M) and ResNet-1001 (10.2M) of the notes' tables, and an 18-layer
  ImageNet-stem variant (timm's resnetv2_18; on small inputs the CIFAR PreAct ResNet-18 of the
  notes' random-erasing table), and the ImageNet ResNet-200 (3, 24, 36, 3 bottlenecks; 64.7M,
  15.0 GFLOPs in the Residual Attention table). The constant-scaling shortcut of Sec. 3.1
  (Table 1), h(x_l) = λ·x_l, optionally with the residual branch scaled by 1 − λ, on the
  CIFAR ResNet-110 (`ScaledShortcutBlock`; λ = 0.5: "fail" with F unscaled, 12.35 % with F
  scaled; the weights are ResNet-110's, 1.7M).
- Wide ResNet: Zagoruyko, Komodakis, "Wide Residual Networks", BMVC 2016. WRN-n-k of Table 1
  (pre-activation, 16·k/32·k/64·k filters, N = (n − 4) / 6 blocks per group), the block types
  B(3,3) … B(3,1,1) of Sec. 2.1 (``block_type="3,1,3"``), dropout between the convolutions
  (``dropout=0.3`` for the paper's dropout rows; 0 by default), the parameter counts of the
  notes' tables (WRN-40-10, the authors' best CIFAR network, has no count there); and the
  ImageNet WRN-50-2-bottleneck (68.9M, the authors' pretrained model) and WRN-101-2 of torchvision.
- ResNeXt: Xie, Girshick, Dollár, Tu, He, "Aggregated Residual Transformations for Deep Neural
  Networks", CVPR 2017. Grouped 3×3 bottlenecks; ResNeXt-50 (32×4d) of Table 1 (25.0M,
  4.2 GFLOPs), ResNeXt-101 (32×4d: 44.18M in the CBAM table, 7.99 GFLOPs in the SE table's
  re-implementation; 64×4d and 32×8d: no figures in the notes), and the CIFAR ResNeXt-29
  (8×64d: 34.4M, 16×64d: 68.1M).
- ResNet-9: Page, "How to train your ResNet", 2018, the fast small-image network of `make demo`.

Every residual family takes ``drop_path_rate``: stochastic depth (Huang et al. ECCV 2016) with
drop probability l/L · drop_path_rate for block l of L (layers/drop.py).

Feature stages (timm's resnet): the stem's activation (``relu``; the bare ``conv1`` of a
pre-activation network), then ``layer1`` … ``layer{N-1}``, and the last stage ``layer{N}`` (or the
final BN-ReLU ``norm`` of a pre-activation network, the map its head reads). ResNet-9: the output
of each resolution's last layer.

Small-input adaptation: with ``image_size < 64`` the ImageNet stem (7×7/2 conv + 3×3/2 max-pool,
a 4× reduction) becomes a 3×3 stride-1 convolution without max-pool, so 28×28 inputs reach the
last stage at 4×4 instead of 1×1. It is chosen automatically by the trainer from the data, or
explicitly with ``small_input=True``. The CIFAR networks already use that stem.
"""
from __future__ import annotations

import re

from torch import nn

from ..layers.drop import linear_drop_path_rates
from ..layers.residual import BasicBlock, BNReLU, Bottleneck, PreActBlock, conv3x3
from ..registry import register_model
from .base import ImageClassifier

_HE = dict(family="resnet", year=2015,
           paper="He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016")
_PREACT = dict(family="preact_resnet", year=2016,
               paper="He, Zhang, Ren, Sun. Identity Mappings in Deep Residual Networks. ECCV 2016")
_WRN = dict(family="wide_resnet", year=2016,
            paper="Zagoruyko, Komodakis. Wide Residual Networks. BMVC 2016")
_RESNEXT = dict(family="resnext", year=2017,
                paper="Xie, Girshick, Dollár, Tu, He. Aggregated Residual Transformations for Deep "
                      "Neural Networks. CVPR 2017")
_PAGE = "Page. How to train your ResNet (DAWNBench CIFAR-10 ResNet-9). Myrtle.ai 2018"
_CIFAR = dict(input_size=(3, 32, 32), num_classes=10, dataset="cifar10")


def msra_init(model: nn.Module) -> None:
    """He et al. 2015 initialisation: N(0, 2/n_out) convolutions, BN γ = 1, β = 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(ImageClassifier):
    """Stem → stages of residual blocks → (BN-ReLU if pre-activation) → global average pool → fc.

    Stage i has `layers[i]` blocks of `widths[i]` planes, its first block strided by 2 (stage 1:
    stride 1). Block l of L has the stochastic-depth drop probability l/L · `drop_path_rate`.
    A pre-activation block normalises its own input, so its network has no BN-ReLU in the stem
    and one after the last stage instead. `block_args` go to every block.
    """

    def __init__(self, block, layers, widths=(64, 128, 256, 512), num_classes=1000, in_chans=3,
                 stem="imagenet", stem_width=None, drop_path_rate=0.0, **block_args):
        super().__init__()
        self.num_classes = num_classes
        self.inplanes = stem_width or widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, self.inplanes, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        elif stem == "deep":  # ResNet-C (He et al. CVPR 2019): three 3×3 convs replace the 7×7
            half = self.inplanes // 2
            self.conv1 = nn.Sequential(conv3x3(in_chans, half, 2), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                                       conv3x3(half, half), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                                       conv3x3(half, self.inplanes))
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        elif stem == "small":
            self.conv1 = conv3x3(in_chans, self.inplanes)
            self.maxpool = nn.Identity()
        else:
            raise ValueError(f"stem must be 'imagenet', 'deep' or 'small', not {stem!r}")
        self.preact = block.preact
        post = not self.preact
        self.bn1 = nn.BatchNorm2d(self.inplanes) if post else nn.Identity()
        self.relu = nn.ReLU(inplace=True) if post else nn.Identity()
        rates = iter(linear_drop_path_rates(sum(layers), drop_path_rate))
        for i, (width, depth) in enumerate(zip(widths, layers)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(self.inplanes, width, stride, drop_path=next(rates),
                                    **block_args))
                self.inplanes = blocks[-1].out_channels
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.norm = nn.Identity() if post else BNReLU(self.inplanes)
        self.num_features = self.inplanes
        self.fc = nn.Linear(self.num_features, num_classes)
        msra_init(self)

    def stage_modules(self):
        return ["conv1" if self.preact else "relu", *(f"layer{i + 1}" for i in range(self.num_stages - 1)),
                "norm" if self.preact else f"layer{self.num_stages}"]

    def forward_features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.norm(x)


class ScaledShortcutBlock(BasicBlock):
    """relu(branch_scale · F(x) + shortcut_scale · h(x)): the constant scaling of Identity Mappings
    Sec. 3.1, h(x) = λx with λ = `shortcut_scale` (on every shortcut, padded or projected), and
    F scaled by `branch_scale` (1 − λ in the paper's second variant, 1 in its first)."""

    def __init__(self, cin: int, planes: int, stride: int = 1, shortcut_scale: float = 0.5,
                 branch_scale: float = 1.0, **kwargs):
        super().__init__(cin, planes, stride, **kwargs)
        self.shortcut_scale, self.branch_scale = shortcut_scale, branch_scale

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.drop_path(self.attention(self.residual_branch(x)))
        return self.relu(self.branch_scale * out + self.shortcut_scale * shortcut)


def imagenet_resnet(num_classes=1000, in_chans=3, image_size=None, small_input=None, stem="imagenet",
                    **kwargs):
    """A ResNet with the ImageNet (or deep) stem, or the 3×3 stride-1 one for inputs below 64 px."""
    small = small_input if small_input is not None else (image_size is not None and image_size < 64)
    return ResNet(num_classes=num_classes, in_chans=in_chans, stem="small" if small else stem,
                  **kwargs)


def cifar_resnet(num_classes=10, in_chans=3, **kwargs):
    """A ResNet with the CIFAR stem: one 3×3 stride-1 convolution."""
    return ResNet(num_classes=num_classes, in_chans=in_chans, stem="small", **kwargs)


def wrn_n_k(num_classes=10, in_chans=3, depth=28, widen_factor=10, block_type="3,3", dropout=0.0,
            **kwargs):
    """WRN-n-k: widening factor k, N = (n − 4) / 6 blocks of type B(`block_type`) per group.

    The paper's block-type table and code keep N = (n − 4) / 6 whatever the block type, so n
    counts the layers exactly only for B(3,3); B(3,1,3) at depth 22 has 3 blocks per group
    (1.1M parameters at k = 2).
    """
    kernels = tuple(int(k) for k in block_type.split(","))
    blocks, rest = divmod(depth - 4, 6)
    if rest or blocks < 1:
        raise ValueError(f"WRN depth must be 6N + 4 with N ≥ 1, not {depth}")
    k = widen_factor
    return cifar_resnet(num_classes, in_chans, block=PreActBlock, layers=(blocks,) * 3,
                        widths=(16 * k, 32 * k, 64 * k), stem_width=16, kernels=kernels,
                        dropout=dropout, **kwargs)


def _twins(name):
    return {"torchvision": name, "timm": name}


def timm_resnetv2_to_preact(state_dict: dict) -> dict:
    """timm ResNetV2 (pre-activation) names → ours: stem.conv → conv1, stages.i.blocks.j →
    layer{i+1}.j, norm{k} → bn{k}, downsample.conv → downsample.0, head.fc (a 1×1 conv) → fc."""
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r"^stages\.(\d+)\.blocks\.", lambda m: f"layer{int(m.group(1)) + 1}.", key)
        key = re.sub(r"\.norm(\d)\.", r".bn\1.", key).replace("downsample.conv.", "downsample.0.")
        key = key.replace("stem.conv.", "conv1.").replace("head.fc.", "fc.")
        out[key] = value.flatten(1) if key == "fc.weight" else value
    return out


_R18 = dict(block=BasicBlock, layers=(2, 2, 2, 2))
_R34 = dict(block=BasicBlock, layers=(3, 4, 6, 3))
_R50 = dict(block=Bottleneck, layers=(3, 4, 6, 3))
_R101 = dict(block=Bottleneck, layers=(3, 4, 23, 3))
_V15 = ("torchvision layout (v1.5): the stride-2 sits on the 3×3 conv, not the first 1×1, "
        "which costs ~0.3 G more MACs than the paper's Table 1")
for _name, _macs, _cfg, _why in (
        ("resnet18", "1.8G", _R18, None), ("resnet34", "3.6G", _R34, None),
        ("resnet50", "3.8G", _R50, _V15), ("resnet101", "7.6G", _R101, None),
        ("resnet152", "11.3G", dict(block=Bottleneck, layers=(3, 8, 36, 3)), None)):
    register_model(_name, **_HE, paper_macs=_macs, twins=_twins(_name), mismatch_reason=_why,
                   **_cfg)(imagenet_resnet)
register_model("plain18", **_HE, paper_macs="1.8G", residual=False, **_R18)(imagenet_resnet)
register_model("plain34", **_HE, paper_macs="3.6G", residual=False, **_R34)(imagenet_resnet)

for _depth, _params in ((20, "0.27M"), (32, "0.46M"), (44, "0.66M"), (56, "0.85M"), (110, "1.7M"),
                        (1202, "19.4M")):  # He et al. Table 6, not the WRN table's 10.2M (see above)
    _cfg = dict(**_HE, **_CIFAR, paper_params=_params, block=BasicBlock,
                layers=((_depth - 2) // 6,) * 3, widths=(16, 32, 64), shortcut="A")
    register_model(f"resnet{_depth}_cifar", **_cfg)(cifar_resnet)
    if _depth <= 110:
        register_model(f"plain{_depth}_cifar", residual=False, **_cfg)(cifar_resnet)

_CONSTANT_SCALING = dict(family="resnet", year=2016, paper=_PREACT["paper"], **_CIFAR, paper_params="1.7M",
                         block=ScaledShortcutBlock, layers=(18, 18, 18), widths=(16, 32, 64), shortcut="A",
                         shortcut_scale=0.5)
register_model("resnet110_cifar_scaled_shortcut", **_CONSTANT_SCALING)(cifar_resnet)
register_model("resnet110_cifar_scaled_both", **_CONSTANT_SCALING, branch_scale=0.5)(cifar_resnet)
register_model("preact_resnet200", **_PREACT, paper_params="64.7M", paper_macs="15.0G", block=PreActBlock,
               layers=(3, 24, 36, 3), kernels=(1, 3, 1), expansion=4)(imagenet_resnet)
register_model("preact_resnet18", **_PREACT, twins={"timm": "resnetv2_18"},
               converters={"timm": timm_resnetv2_to_preact}, block=PreActBlock,
               layers=(2, 2, 2, 2))(imagenet_resnet)
_CONV_ONLY = "the paper's 10.2M counts convolution and fc weights (10.18M here); BN's γ, β add 0.15M"
for _depth, _params, _why in ((164, "1.7M", None), (1001, "10.2M", _CONV_ONLY)):
    register_model(f"preact_resnet{_depth}", **_PREACT, **_CIFAR, paper_params=_params,
                   mismatch_reason=_why, block=PreActBlock, layers=((_depth - 2) // 9,) * 3,
                   widths=(16, 32, 64), kernels=(1, 3, 1), expansion=4)(cifar_resnet)

# WRN-n-k of the notes' tables (depth × width, the state-of-the-art comparison, DenseNet's).
for _depth, _k, _params in ((40, 1, "0.6M"), (40, 2, "2.2M"), (40, 4, "8.9M"), (40, 8, "35.7M"),
                            (28, 10, "36.5M"), (28, 12, "52.5M"), (22, 8, "17.2M"),
                            (22, 10, "26.8M"), (16, 4, "2.7M"), (16, 8, "11.0M"),
                            (16, 10, "17.1M"), (40, 10, None)):
    register_model(f"wrn{_depth}_{_k}", **_WRN, **_CIFAR, paper_params=_params, depth=_depth,
                   widen_factor=_k)(wrn_n_k)
register_model("wide_resnet50_2", **_WRN, paper_params="68.9M", twins=_twins("wide_resnet50_2"),
               base_width=128, **_R50)(imagenet_resnet)
register_model("wide_resnet101_2", **_WRN, twins=_twins("wide_resnet101_2"), base_width=128,
               **_R101)(imagenet_resnet)

register_model("resnext50_32x4d", **_RESNEXT, paper_params="25.0M", paper_macs="4.2G",
               twins=_twins("resnext50_32x4d"), groups=32, base_width=4, **_R50)(imagenet_resnet)
register_model("resnext101_32x8d", **_RESNEXT, twins=_twins("resnext101_32x8d"), groups=32,
               base_width=8, **_R101)(imagenet_resnet)
register_model("resnext101_32x4d", **_RESNEXT, paper_params="44.18M", paper_macs="7.99G",
               twins={"timm": "resnext101_32x4d"}, groups=32, base_width=4, **_R101)(imagenet_resnet)
register_model("resnext101_64x4d", **_RESNEXT, twins=_twins("resnext101_64x4d"), groups=64,
               base_width=4, **_R101)(imagenet_resnet)
for _groups, _params in ((8, "34.4M"), (16, "68.1M")):
    register_model(f"resnext29_{_groups}x64d", **_RESNEXT, **_CIFAR, paper_params=_params,
                   block=Bottleneck, layers=(3, 3, 3), widths=(64, 128, 256), groups=_groups,
                   base_width=64)(cifar_resnet)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, pool=False):
        layers = [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        super().__init__(*layers, *([nn.MaxPool2d(2)] if pool else []))


class Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(ConvBNReLU(channels, channels), ConvBNReLU(channels, channels))

    def forward(self, x):
        return x + self.body(x)


class ResNet9(ImageClassifier):
    """prep → [conv-pool, residual] → conv-pool → [conv-pool, residual] → global max-pool → fc."""

    def __init__(self, num_classes=10, in_chans=3, widths=(64, 128, 256, 512)):
        super().__init__()
        self.num_classes = num_classes
        w0, w1, w2, w3 = widths
        self.features = nn.Sequential(
            ConvBNReLU(in_chans, w0),
            ConvBNReLU(w0, w1, pool=True), Residual(w1),
            ConvBNReLU(w1, w2, pool=True),
            ConvBNReLU(w2, w3, pool=True), Residual(w3))
        self.num_features = w3
        self.fc = nn.Linear(w3, num_classes, bias=False)
        msra_init(self)

    def stage_modules(self):
        return ["features.0", "features.2", "features.3", "features.5"]

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits=False):
        x = x.amax((2, 3))
        return x if pre_logits else self.fc(x)


@register_model(family="resnet", paper=_PAGE, year=2018, input_size=(3, 32, 32), num_classes=10,
                dataset="cifar10")
def resnet9(num_classes=10, in_chans=3, **kwargs):
    return ResNet9(num_classes, in_chans, **kwargs)


@register_model(family="resnet", paper=_PAGE + " (quarter width, for 28×28 grey images)", year=2018,
                input_size=(1, 28, 28), num_classes=10, dataset="fashion-mnist")
def resnet9_slim(num_classes=10, in_chans=1, widths=(16, 32, 64, 128), **kwargs):
    return ResNet9(num_classes, in_chans, widths=widths, **kwargs)
