"""Video classifiers on clips (B, C, T, H, W): C3D, the 18-layer video ResNets, and 2-D baselines.

- C3D: Tran, Bourdev, Fergus, Torresani & Paluri, "Learning Spatiotemporal Features with 3D
  Convolutional Networks", ICCV 2015, Fig. 3: 8 convolutions 3×3×3 (stride 1, padding 1) of 64,
  128, 256, 256, 512, 512, 512, 512 filters, pool1 1×2×2 and pool2–5 2×2×2 max pooling, fc6 and
  fc7 of 4096 with dropout 0.5, softmax over Sports-1M's 487 classes; input 3×16×112×112. pool5
  rounds up as the released Caffe model does (7 → 4), so fc6 reads 512·1·4·4 = 8192 features:
  80.0M parameters with 487 classes (78.4M with UCF101's 101; the paper prints no count).
- R3D-18, MC3-18, R(2+1)D-18: Tran, Wang, Torresani, Ray, LeCun & Paluri, "A Closer Look at
  Spatiotemporal Convolutions for Action Recognition", CVPR 2018, Table 1 (18 layers) and Sec. 3:
  a 3×7×7 stem (R(2+1)D: 1×7×7 then 3×1×1), four stages of two basic blocks (64–512 channels,
  stages 2–4 halve time and space), global average pooling and a linear layer. R3D: every
  convolution 3×3×3. MC3 (mixed convolutions): 3-D convolutions in the first stage, 2-D (1×3×3)
  after it. R(2+1)D: every 3×3×3 convolution factorised into 1×3×3 with M_i filters, batch norm,
  ReLU, and 3×1×1 (Eq. 1: M_i = ⌊t·d²·N_{i−1}·N_i / (d²·N_{i−1} + t·N_i)⌋). Layouts and
  initialisation follow torchvision's twins (r3d_18, mc3_18, r2plus1d_18): with converted
  weights (`torchvision_video_resnet_to_ours`) the logits are the same. torchvision computes M_i
  of a block's second convolution from the block's input width too, so its R(2+1)D-18 has 31.5M
  parameters where the paper's Table 2 gives 33.3M (matched to R3D's 33.4M).
- Karpathy, Toderici, Shetty, Leung, Sukthankar & Fei-Fei, "Large-scale Video Classification with
  Convolutional Neural Networks", CVPR 2014, Fig. 1: the single-frame model (a 2-D CNN on the
  middle frame; the other frames are ignored) and early fusion (the T frames stacked as the input
  channels of the first convolution).

Small variants for CPU training on moving-fmnist (1×16×64×64), with forward MACs per clip:
``c3d_small`` (C3D's layout, one convolution per stage of widths 8–64, the first with spatial
stride 2, fc 256: 29M), ``r3d_small`` and ``r2plus1d_small`` (widths 16–128, one block per stage,
a stem of stride 2×4×4 (T×H×W): 52M each), ``single_frame_cnn`` (10M) and ``early_fusion_cnn``
(23M), both 2-D CNNs of widths 32–128.
"""
from __future__ import annotations

import math
import re

import torch
from torch import nn

from ..core.errors import UsageError
from ..registry import register_model
from .base import ImageClassifier

CONV_KINDS = ("3d", "2d", "2+1d")


def _triple(stride: int, kind: str) -> tuple[int, int, int]:
    """A spatial stride as a (T, H, W) stride: 2-D convolutions keep the time axis."""
    return (1, stride, stride) if kind == "2d" else (stride, stride, stride)


class Factorised(nn.Sequential):
    """(2+1)-D convolution: 1×3×3 spatial to `middle` channels, batch norm, ReLU, 3×1×1 temporal."""

    def __init__(self, in_channels: int, out_channels: int, middle: int, stride: int = 1):
        super().__init__(
            nn.Conv3d(in_channels, middle, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
            nn.BatchNorm3d(middle), nn.ReLU(inplace=True),
            nn.Conv3d(middle, out_channels, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False))


def spatiotemporal_conv(kind: str, in_channels: int, out_channels: int, middle: int, stride: int = 1) -> nn.Module:
    if kind == "2+1d":
        return Factorised(in_channels, out_channels, middle, stride)
    kernel, padding = ((1, 3, 3), (0, 1, 1)) if kind == "2d" else ((3, 3, 3), (1, 1, 1))
    return nn.Conv3d(in_channels, out_channels, kernel, _triple(stride, kind), padding, bias=False)


class VideoBasicBlock(nn.Module):
    """Two convolutions of one kind with batch norm and an identity (or 1×1×1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, kind: str, stride: int = 1):
        super().__init__()
        # Eq. 1's parameter-matching width, from the block's input width for both convolutions (torchvision's choice).
        middle = (in_channels * out_channels * 27) // (in_channels * 9 + 3 * out_channels)
        self.conv1 = spatiotemporal_conv(kind, in_channels, out_channels, middle, stride)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.conv2 = spatiotemporal_conv(kind, out_channels, out_channels, middle)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, _triple(stride, kind), bias=False),
                nn.BatchNorm3d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        # In place, as torchvision's twin: batch norm's backward does not read its output, and the
        # sum needs no clip-sized tensor of its own.
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class VideoClassifier(ImageClassifier):
    """Pools a (B, C, T, H, W) feature map over time and space before the classifier."""

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return super().forward_head(x.mean((2, 3, 4)) if x.dim() == 5 else x, pre_logits)


class VideoResNet(VideoClassifier):
    def __init__(self, num_classes: int = 400, in_chans: int = 3, kinds=("3d",) * 4, blocks=(2, 2, 2, 2),
                 widths=(64, 128, 256, 512), stem: str = "3d", stem_width: int = 45, stem_stride=(1, 2, 2)):
        super().__init__()
        if len(kinds) != 4 or any(kind not in CONV_KINDS for kind in kinds):
            raise UsageError(f"kinds={kinds}: give four of {', '.join(CONV_KINDS)}, one per stage")
        self.num_classes = num_classes
        if stem == "2+1d":
            self.stem = nn.Sequential(
                nn.Conv3d(in_chans, stem_width, (1, 7, 7), (1, *stem_stride[1:]), (0, 3, 3), bias=False),
                nn.BatchNorm3d(stem_width), nn.ReLU(inplace=True),
                nn.Conv3d(stem_width, widths[0], (3, 1, 1), (stem_stride[0], 1, 1), (1, 0, 0), bias=False),
                nn.BatchNorm3d(widths[0]), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(nn.Conv3d(in_chans, widths[0], (3, 7, 7), stem_stride, (1, 3, 3), bias=False),
                                      nn.BatchNorm3d(widths[0]), nn.ReLU(inplace=True))
        channels = widths[0]
        for index, (kind, count, width) in enumerate(zip(kinds, blocks, widths)):
            stage = [VideoBasicBlock(channels if b == 0 else width, width, kind, 2 if index and b == 0 else 1)
                     for b in range(count)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
            channels = width
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


_TORCHVISION_CONV = re.compile(r"\.conv([12])\.([01])\.")


def torchvision_video_resnet_to_ours(state_dict: dict) -> dict:
    """torchvision's block keys ``convK.0.…`` (the convolution) and ``convK.1.…`` (its batch norm)
    become ``convK.…`` and ``bnK.…``; everything else has the same name."""
    def rename(key: str) -> str:
        return _TORCHVISION_CONV.sub(lambda m: f".conv{m[1]}." if m[2] == "0" else f".bn{m[1]}.", key, count=1)
    return {rename(key): value for key, value in state_dict.items()}


class C3D(VideoClassifier):
    fixed_input_size = True

    def __init__(self, num_classes: int = 487, in_chans: int = 3, widths=(64, 128, 256, 512, 512),
                 convs=(1, 1, 2, 2, 2), hidden: int = 4096, frames: int = 16, image_size: int = 112,
                 drop_rate: float = 0.5, first_stride: int = 1):
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        channels, time = in_chans, frames
        stride, side = (1, first_stride, first_stride), math.ceil(image_size / first_stride)
        for stage, (width, count) in enumerate(zip(widths, convs)):
            for _ in range(count):
                layers += [nn.Conv3d(channels, width, 3, stride, padding=1), nn.ReLU(inplace=True)]
                channels, stride = width, 1
            # pool1 keeps time ("not to merge the temporal signal too early"); Caffe's pools round up.
            window = (1, 2, 2) if stage == 0 else (2, 2, 2)
            layers.append(nn.MaxPool3d(window, ceil_mode=True))
            time, side = math.ceil(time / window[0]), math.ceil(side / 2)
        self.features = nn.Sequential(*layers)
        self.input_shape = (in_chans, frames, image_size, image_size)
        self.fc6 = nn.Sequential(nn.Linear(channels * time * side * side, hidden), nn.ReLU(inplace=True),
                                 nn.Dropout(drop_rate))
        self.fc7 = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.head_drop = nn.Dropout(drop_rate)
        self.fc8 = nn.Linear(hidden, num_classes)
        self.classifier_name = "fc8"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise UsageError(f"this C3D was built for clips {self.input_shape} (C, T, H, W); got {tuple(x.shape[1:])}: "
                             "build it with frames=T, image_size=H of the clips")
        return self.fc7(self.fc6(self.features(x).flatten(1)))


class FrameCNN(VideoClassifier):
    """Karpathy et al.'s 2-D baselines, small: conv 5×5/2 – pool – conv 3×3 – pool – conv 3×3 –
    global average pool – linear, each convolution with batch norm and ReLU. ``fusion="single"``
    reads the middle frame only; ``"early"`` stacks all `frames` frames as input channels."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, fusion: str = "single", frames: int = 16,
                 widths=(32, 64, 128)):
        super().__init__()
        if fusion not in ("single", "early"):
            raise UsageError(f"fusion={fusion!r}: choose \"single\" or \"early\"")
        self.num_classes, self.fusion, self.frames = num_classes, fusion, frames
        channels = in_chans * (frames if fusion == "early" else 1)
        layers: list[nn.Module] = []
        for index, width in enumerate(widths):
            kernel, stride = (5, 2) if index == 0 else (3, 1)
            layers += [nn.Conv2d(channels, width, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            if index < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            channels = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise UsageError(f"{self.fusion}-frame CNN reads clips (B, C, T, H, W); got shape {tuple(x.shape)}")
        if self.fusion == "single":
            return self.features(x[:, :, x.shape[2] // 2])
        if x.shape[2] != self.frames:
            raise UsageError(f"early_fusion_cnn was built for {self.frames} frames; got {x.shape[2]}: "
                             "build it with frames=T of the clips")
        return self.features(x.flatten(1, 2))


_TRAN_2018 = dict(paper="Tran et al., A Closer Look at Spatiotemporal Convolutions for Action Recognition",
                  year=2018, input_size=(3, 16, 112, 112), num_classes=400, task="video")
_SMALL = dict(input_size=(1, 16, 64, 64), num_classes=10, task="video")
_TWIN = dict(converters={"torchvision": torchvision_video_resnet_to_ours})


def video_resnet(num_classes: int = 400, in_chans: int = 3, kinds=("3d",) * 4, blocks=(2, 2, 2, 2),
                 widths=(64, 128, 256, 512), stem: str = "3d", stem_width: int = 45, stem_stride=(1, 2, 2)) -> VideoResNet:
    return VideoResNet(num_classes, in_chans, kinds, blocks, widths, stem, stem_width, stem_stride)


register_model("r3d_18", family="video_resnet", **_TRAN_2018, **_TWIN, paper_params="33.4M",
               twins={"torchvision": "r3d_18"})(video_resnet)
register_model("mc3_18", family="video_resnet", **_TRAN_2018, **_TWIN, paper_params="11.7M",
               twins={"torchvision": "mc3_18"}, kinds=("3d", "2d", "2d", "2d"))(video_resnet)
register_model("r2plus1d_18", family="video_resnet", **_TRAN_2018, **_TWIN, paper_params="33.3M",
               twins={"torchvision": "r2plus1d_18"}, kinds=("2+1d",) * 4, stem="2+1d",
               mismatch_reason="torchvision's layout (the twin): M_i of each block's second convolution "
                               "from the block's input width, a 45-channel stem — 31.5M")(video_resnet)
register_model("r3d_small", family="video_resnet", **_TRAN_2018 | _SMALL, blocks=(1, 1, 1, 1),
               widths=(16, 32, 64, 128), stem_stride=(2, 4, 4))(video_resnet)
register_model("r2plus1d_small", family="video_resnet", **_TRAN_2018 | _SMALL, blocks=(1, 1, 1, 1),
               widths=(16, 32, 64, 128), stem_stride=(2, 4, 4), kinds=("2+1d",) * 4, stem="2+1d",
               stem_width=12)(video_resnet)


def c3d(num_classes: int = 487, in_chans: int = 3, widths=(64, 128, 256, 512, 512), convs=(1, 1, 2, 2, 2),
        hidden: int = 4096, frames: int = 16, image_size: int = 112, drop_rate: float = 0.5,
        first_stride: int = 1) -> C3D:
    return C3D(num_classes, in_chans, widths, convs, hidden, frames, image_size, drop_rate, first_stride)


_TRAN_2015 = dict(family="c3d", paper="Tran et al., Learning Spatiotemporal Features with 3D Convolutional Networks",
                  year=2015, task="video")
register_model("c3d", **_TRAN_2015, input_size=(3, 16, 112, 112), num_classes=487)(c3d)
register_model("c3d_small", **_TRAN_2015 | _SMALL, widths=(8, 16, 32, 64, 64), convs=(1,) * 5, hidden=256,
               image_size=64, first_stride=2)(c3d)


def frame_cnn(num_classes: int = 10, in_chans: int = 1, fusion: str = "single", frames: int = 16,
              widths=(32, 64, 128)) -> FrameCNN:
    return FrameCNN(num_classes, in_chans, fusion, frames, widths)


_KARPATHY = dict(family="karpathy", year=2014, **_SMALL,
                 paper="Karpathy et al., Large-scale Video Classification with Convolutional Neural Networks")
register_model("single_frame_cnn", **_KARPATHY, fusion="single")(frame_cnn)
register_model("early_fusion_cnn", **_KARPATHY, fusion="early")(frame_cnn)
