"""The 3-D CNN of Ji, Xu, Yang & Yu, "3D Convolutional Neural Networks for Human Action
Recognition", TPAMI 2013: the network of their Fig. 3 (Sec. 3.2), layer by layer.

Input: 7 grey frames of 60×40 (H×W) around the current frame. Reading of "60×40": the 7×7
kernel of C2 takes 60×40 to 54×34, S3 halves it to 27×17, C4's 7×6 kernel gives 21×12, S5's
3×3 subsampling 7×4 and C6's 7×4 kernel 1×1 — the first figure is the one the 7-tall kernels
shrink in every layer, the rows (an upright person's bounding box is taller than wide).

- H1 (hardwired, no parameters): 33 maps in five channels — gray (the 7 frames), gradient-x and
  gradient-y of each frame (7 + 7, central differences), optflow-x and optflow-y between adjacent
  frames (6 + 6; layers/optical_flow.py, Horn–Schunck by default: the paper names no method).
- C2: a 7×7×3 (H×W×T) 3-D convolution on each of the five channels separately, two different
  kernels per channel: 2 sets of 23 maps (5+5+5+4+4 frames) of 54×34; 2·5·(7·7·3+1) = 1,480
  trainable parameters, the paper's count.
- S3: 2×2 subsampling of every map with a trainable coefficient and bias each (LeNet-5's
  subsampling, the training of the paper's ref. [28]): 46 maps of 27×17, 92 parameters.
- C4: a 7×6×3 3-D convolution on each of the five channels of each C2 set, three kernels each:
  6 sets of 13 maps (3+3+3+2+2) of 21×12; 6·5·(7·6·3+1) = 3,810 parameters.
- S5: 3×3 subsampling, coefficient and bias per map: 78 maps of 7×4, 156 parameters.
- C6: a 7×4 2-D convolution from all 78 maps to 128 maps of 1×1 (the temporal axis is folded
  into the maps, as the paper does once it is "relatively small").
- Output: a linear classifier on the 128-D vector; 3 actions → 3·128 = 384 parameters, so no
  bias (the paper's count).

Every convolution and subsampling is followed by tanh (the paper's Eqs. 1–2). The paper's total
is 295,458 trainable parameters; this network has 285,602 (with 3 classes). The whole difference
is C6: the paper counts 289,536 = 128·78·(7·4 + 1), one bias per 7×4 kernel, but the 78 kernels of
one output map are summed, so their 78 biases add up to one — a single bias per map (128·78·28 +
128 = 279,680) computes the same functions, 128·77 = 9,856 parameters fewer. Every other layer
matches the paper's own count (1,480 + 92 + 3,810 + 156 + 384).

Other clip sizes: ``frames`` (≥ 6, so that the flow channels keep a map through C4) and
``image_size`` (H, W) rebuild the same layers; C6's kernel becomes S5's map size so that C6 still
gives 1×1 maps. A clip of another size than the network was built for is refused in one line.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..layers.optical_flow import FLOW_METHODS, optical_flow, spatial_gradients
from ..registry import register_model
from .base import ImageClassifier

# The paper's kernels as (T, H, W) and subsampling factors.
C2_KERNEL, S3_FACTOR, C4_KERNEL, S5_FACTOR = (3, 7, 7), 2, (3, 7, 6), 3
C2_SETS, C4_SETS_PER_C2_SET, C6_MAPS = 2, 3, 128
# gray, gradient-x, gradient-y come from every frame; optflow-x and optflow-y from adjacent pairs.
FRAME_CHANNELS, FLOW_CHANNELS = 3, 2


class Hardwired(nn.Module):
    """H1: the raw grey clip (B, 1, T, H, W) as the frame channels (B, 3, T, H, W) — gray,
    gradient-x, gradient-y — and the flow channels (B, 2, T−1, H, W) — optflow-x, optflow-y."""

    def __init__(self, flow_method: str = "horn_schunck"):
        super().__init__()
        if flow_method not in FLOW_METHODS:
            raise UsageError(f"unknown flow_method {flow_method!r}; choose one of {', '.join(FLOW_METHODS)}")
        self.flow_method = flow_method

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gray = clip[:, 0]
        batch, frames, height, width = gray.shape
        gradient_x, gradient_y = spatial_gradients(gray)
        earlier = gray[:, :-1].reshape(-1, height, width)
        later = gray[:, 1:].reshape(-1, height, width)
        flow = optical_flow(earlier, later, self.flow_method).reshape(batch, frames - 1, 2, height, width)
        return torch.stack((gray, gradient_x, gradient_y), 1), flow.transpose(1, 2)


class Subsampling(nn.Module):
    """LeNet-style subsampling: the mean of each factor×factor block, times a trainable
    coefficient plus a trainable bias — one pair per feature map (channel and frame) — then tanh."""

    def __init__(self, channels: int, frames: int, factor: int):
        super().__init__()
        self.factor = factor
        self.coefficient = nn.Parameter(torch.ones(channels, frames, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, frames, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool3d(x, (1, self.factor, self.factor))
        return torch.tanh(pooled * self.coefficient + self.bias)


def _map_sizes(frames: int, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """(frames of the frame channels, frames of the flow channels, H, W) after every layer."""
    c2 = (frames - 2, frames - 3, height - C2_KERNEL[1] + 1, width - C2_KERNEL[2] + 1)
    s3 = (*c2[:2], c2[2] // S3_FACTOR, c2[3] // S3_FACTOR)
    c4 = (s3[0] - 2, s3[1] - 2, s3[2] - C4_KERNEL[1] + 1, s3[3] - C4_KERNEL[2] + 1)
    s5 = (*c4[:2], c4[2] // S5_FACTOR, c4[3] // S5_FACTOR)
    return {"H1": (frames, frames - 1, height, width), "C2": c2, "S3": s3, "C4": c4, "S5": s5}


class Ji3DCNN(ImageClassifier):
    fixed_input_size = True

    def __init__(self, num_classes: int = 3, frames: int = 7, image_size: tuple[int, int] = (60, 40),
                 flow_method: str = "horn_schunck"):
        super().__init__()
        height, width = image_size
        self.sizes = _map_sizes(frames, height, width)
        if min(min(size) for size in self.sizes.values()) < 1:
            raise UsageError(f"ji3dcnn needs clips of at least 6 frames of 24×22 (H×W): its kernels and subsampling "
                             f"leave no map of {frames} frames of {height}×{width}; resize the clips")
        self.num_classes = num_classes
        self.hardwired = Hardwired(flow_method)
        frame_sets, flow_sets = FRAME_CHANNELS * C2_SETS, FLOW_CHANNELS * C2_SETS
        self.c2_frames = nn.Conv3d(FRAME_CHANNELS, frame_sets, C2_KERNEL, groups=FRAME_CHANNELS)
        self.c2_flow = nn.Conv3d(FLOW_CHANNELS, flow_sets, C2_KERNEL, groups=FLOW_CHANNELS)
        c2 = self.sizes["C2"]
        self.s3_frames, self.s3_flow = Subsampling(frame_sets, c2[0], S3_FACTOR), Subsampling(flow_sets, c2[1], S3_FACTOR)
        self.c4_frames = nn.Conv3d(frame_sets, frame_sets * C4_SETS_PER_C2_SET, C4_KERNEL, groups=frame_sets)
        self.c4_flow = nn.Conv3d(flow_sets, flow_sets * C4_SETS_PER_C2_SET, C4_KERNEL, groups=flow_sets)
        c4 = self.sizes["C4"]
        self.s5_frames = Subsampling(frame_sets * C4_SETS_PER_C2_SET, c4[0], S5_FACTOR)
        self.s5_flow = Subsampling(flow_sets * C4_SETS_PER_C2_SET, c4[1], S5_FACTOR)
        s5 = self.sizes["S5"]
        s5_maps = (frame_sets * s5[0] + flow_sets * s5[1]) * C4_SETS_PER_C2_SET
        self.c6 = nn.Conv2d(s5_maps, C6_MAPS, s5[2:])
        self.fc = nn.Linear(C6_MAPS, num_classes, bias=False)

    def feature_maps(self, clip: torch.Tensor) -> dict[str, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """Every layer's output: (frame channels, flow channels) up to S5, then C6 (B, 128, 1, 1)."""
        frames, height, width = self.sizes["H1"][0], *self.sizes["H1"][2:]
        if clip.dim() != 5 or clip.shape[1] != 1 or tuple(clip.shape[2:]) != (frames, height, width):
            raise UsageError(f"ji3dcnn was built for grey clips (B, 1, {frames}, {height}, {width}); got "
                             f"{tuple(clip.shape)}: build it with frames=T, image_size=(H, W) of the clips")
        maps = {"H1": self.hardwired(clip)}
        maps["C2"] = tuple(torch.tanh(conv(x)) for conv, x in zip((self.c2_frames, self.c2_flow), maps["H1"]))
        maps["S3"] = (self.s3_frames(maps["C2"][0]), self.s3_flow(maps["C2"][1]))
        maps["C4"] = tuple(torch.tanh(conv(x)) for conv, x in zip((self.c4_frames, self.c4_flow), maps["S3"]))
        maps["S5"] = (self.s5_frames(maps["C4"][0]), self.s5_flow(maps["C4"][1]))
        # C6 sees every (channel, frame) map of S5 as one 2-D input map.
        stacked = torch.cat([x.flatten(1, 2) for x in maps["S5"]], 1)
        maps["C6"] = torch.tanh(self.c6(stacked))
        return maps

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        return self.feature_maps(clip)["C6"].flatten(1)


@register_model(family="ji3dcnn", paper="Ji et al., 3D Convolutional Neural Networks for Human Action Recognition",
                year=2013, input_size=(1, 7, 60, 40), num_classes=3, paper_params=295_458, task="video",
                mismatch_reason="the paper counts one bias per C6 7×4 kernel (78 per map), which sum to one "
                                "bias per map: 128·77 = 9,856 redundant parameters fewer, same functions")
def ji3dcnn(num_classes: int = 3, in_chans: int = 1, frames: int = 7, image_size: int | tuple[int, int] = (60, 40),
            flow_method: str = "horn_schunck") -> Ji3DCNN:
    """Ji et al.'s Fig. 3 network for `frames` grey frames of `image_size` (H, W)."""
    if in_chans != 1:
        raise UsageError(f"ji3dcnn reads grey clips (its hardwired layer takes gray frames); in_chans={in_chans}: "
                         "give in_chans=1 and grey clips")
    side = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    return Ji3DCNN(num_classes, frames, side, flow_method)
