"""U-Net: Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015; and the U-Net decoder on any zoo classifier as its encoder.

`UNet` is the network of the paper's Fig. 1 (`unet`): a contracting path of blocks of two unpadded
3×3 convolutions + ReLU, each followed by a 2×2 max-pool of stride 2, channels 64 → 128 → 256 → 512
→ 1024; an expanding path where each step is a 2×2 up-convolution (stride 2) halving the channels,
the concatenation with the centre crop of the contracting path's map of that level, and two 3×3
convolutions + ReLU; a final 1×1 convolution to the classes. A 572×572 tile gives a 388×388 map
(the sizes of Fig. 1: 570, 568, 284, …, 28, 56, …, 392, 390, 388), 31.03 M parameters for two
classes (the paper prints no count). Initialisation (Sec. 3): weights from a Gaussian of standard
deviation √(2/N), N the incoming nodes of one neuron: k·k·C_in for a k×k convolution, and C_in for
the 2×2 stride-2 up-convolution, whose every output pixel sees one input pixel; biases 0.

Options beyond Fig. 1 (builder keywords):
- ``padding="same"`` pads the 3×3 convolutions: the output has the input's size, for inputs
  divisible by 2**depth (`size_divisor`).
- ``upsample="bilinear"``: bilinear ×2 upsampling, then a 3×3 convolution halving the channels
  (instead of the learned 2×2 up-convolution); 3×3 rather than 2×2 so that the map stays centred.
  With ``padding="valid"`` that convolution is unpadded too and the 1-pixel border of the
  upsampled map, which bilinear interpolation fills by clamping, is cropped first: no output
  depends on anything but the tile's pixels, so tiling stays exact.
- ``skip=False``: no crop-and-concatenate; the expanding path sees only the upsampled maps (the
  experiment that skip connections recover localisation).
- ``norm="batch"``: batch normalisation after every 3×3 convolution (not in the paper).
- ``dropout``: Sec. 3.1: "Drop-out layers at the end of the contracting path perform further
  implicit data augmentation". The paper gives neither rate nor exact place; here one dropout
  layer on the output of the deepest block, rate `dropout`, 0 (off) by default.
- ``base_width`` (64) and ``depth`` (4, the number of poolings).

Registered: ``unet`` (Fig. 1: 1 channel, 2 classes, 572×572 tiles; 31.03 M parameters, 150.4 G
MACs per tile); ``unet_same`` (padded, for small images: 64×64, 3.0 G MACs); ``unet_small``
(padded, base width 16, batch norm: 1.94 M parameters, 0.19 G MACs at 64×64; a sixteenth of the
cost, trainable on a CPU in minutes on 64×64 slices, BN for fast training at larger steps).

Overlap-tile (Fig. 2): `overlap_tile` predicts every pixel of an image of any size by running the
network on square input tiles (side `tile`, 572 in the paper) of the image mirror-extended at its
borders (`mirror_pad`; the paper only says "mirroring": here reflection about the border pixel,
NumPy's ``mode="reflect"``, repeated when the margin exceeds the image). The tiles step by a
multiple of 2**depth (384 for 572-pixel tiles, whose outputs are 388), so every tile sits on the
pooling grid of one pass over the whole extended image and the stitched result equals that pass
exactly. A padded U-Net is tiled the same way, with the margin its outputs' inputs reach
(`context_margin`: the unpadded margin + 2**depth − 1), and equals its one pass too.

`UNetWithEncoder` is the U-Net practitioners use, laid out as segmentation_models_pytorch's
``Unet`` (the reference for speed comparisons): any zoo classifier's stage maps
(``create_model(encoder, features_only=True)``, its unused head dropped) as the contracting path;
per halving of the deepest map's reduction R a decoder block (×2 upsampling: nearest as smp,
bilinear or a 2×2 transposed convolution; concatenation with the encoder map of that scale; two
3×3 conv + BN + ReLU), channels `decoder_channels` (256, 128, 64, 32, 16); a 3×3 convolution to
the classes; `center` (smp's for VGG) two more conv-BN-ReLU at the deepest scale. Its parameters
equal smp's: ``unet_resnet18`` with one class has smp's ``Unet("resnet18", classes=1)``'s
14,328,209 (the ResNet-18 without fc, 11,176,512, and a 3,151,552-parameter decoder, and the head).
Registered: ``unet_resnet18``, ``unet_resnet34``, ``unet_vgg16_bn``; ``encoder=NAME`` puts any other
classifier under the decoder whose stage reductions are powers of two (mobilenet_v2, densenet121,
efficientnet_b0, …; `decoder_channels` then needs one entry per halving, e.g. 3 for resnet9, whose reduction is 8);
``encoder_weights=PATH`` loads the classifier's weights (a visionzoo checkpoint or a
torchvision/timm state_dict). Inputs must be divisible by R (32 for these).
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..registry import create_model, register_model
from .features import _meta_stage_maps

PADDINGS = ("valid", "same")
UPSAMPLINGS = ("transpose", "bilinear")
NORMS = (None, "batch")
# Sizes lost by one block of two unpadded 3×3 convolutions, and by the valid bilinear upsampling
# step (its clamped 1-pixel border, then the unpadded 3×3 convolution).
BLOCK_SHRINK, BILINEAR_SHRINK = 4, 4


def he_normal_(weight: torch.Tensor, incoming: int) -> None:
    """The paper's initialisation: N(0, 2/N), N the number of incoming nodes of one neuron."""
    nn.init.normal_(weight, 0.0, math.sqrt(2.0 / incoming))


def centre_crop(x: torch.Tensor, size) -> torch.Tensor:
    """The central (h, w) window of a (…, H, W) map (Fig. 1's "copy and crop")."""
    height, width = size
    top, left = (x.shape[-2] - height) // 2, (x.shape[-1] - width) // 2
    return x[..., top:top + height, left:left + width]


def _reflected_indices(size: int, before: int, after: int, device) -> torch.Tensor:
    """Indices of positions −before … size+after−1 reflected into 0 … size−1, period 2(size − 1)."""
    index = torch.arange(-before, size + after, device=device)
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index < size, index, period - index)


def mirror_pad(x: torch.Tensor, pad) -> torch.Tensor:
    """Mirror-extend the last two dimensions by `pad`: an int, or (left, right, top, bottom) as in
    F.pad. Reflection about the border pixel (np.pad's "reflect"), repeated for pads larger than
    the image."""
    left, right, top, bottom = (pad,) * 4 if isinstance(pad, int) else tuple(pad)
    if min(left, right, top, bottom) < 0:
        raise UsageError(f"mirror_pad: pads must be ≥ 0, not {pad}")
    rows = _reflected_indices(x.shape[-2], top, bottom, x.device)
    columns = _reflected_indices(x.shape[-1], left, right, x.device)
    return x.index_select(-2, rows).index_select(-1, columns)


class DoubleConv(nn.Sequential):
    """Two 3×3 convolutions, each followed by (BN and) ReLU."""

    def __init__(self, in_chans: int, out_chans: int, padding: int, norm: str | None):
        layers = []
        for cin in (in_chans, out_chans):
            layers.append(nn.Conv2d(cin, out_chans, 3, padding=padding, bias=norm is None))
            layers += [nn.BatchNorm2d(out_chans)] if norm == "batch" else []
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class BilinearUp(nn.Module):
    """Bilinear ×2 upsampling, then a 3×3 convolution halving the channels; unpadded (`valid`),
    after cropping the border that interpolation fills by clamping."""

    def __init__(self, in_chans: int, out_chans: int, valid: bool):
        super().__init__()
        self.valid = valid
        self.conv = nn.Conv2d(in_chans, out_chans, 3, padding=0 if valid else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.conv(x[..., 1:-1, 1:-1] if self.valid else x)


def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise UsageError(f"U-Net {what}={value!r}; choose one of {', '.join(map(repr, choices))}")


class UNet(nn.Module):
    """The U-Net of Fig. 1, and its padded, bilinear, skip-less and batch-normalised variants.

    forward: (N, in_chans, H, W) → logits (N, num_classes, output_size(H), output_size(W)).
    """

    def __init__(self, num_classes: int = 2, in_chans: int = 1, base_width: int = 64, depth: int = 4,
                 padding: str = "valid", upsample: str = "transpose", skip: bool = True,
                 norm: str | None = None, dropout: float = 0.0):
        super().__init__()
        _check_choice("padding", padding, PADDINGS)
        _check_choice("upsample", upsample, UPSAMPLINGS)
        _check_choice("norm", norm, NORMS)
        if depth < 1 or base_width < 1:
            raise UsageError(f"U-Net depth ({depth}) and base_width ({base_width}) must be ≥ 1")
        if not 0.0 <= dropout < 1.0:
            raise UsageError(f"U-Net dropout={dropout}: a probability in [0, 1)")
        self.num_classes, self.depth, self.padding, self.upsample, self.skip = \
            num_classes, depth, padding, upsample, skip
        self.size_divisor = 2 ** depth
        conv_padding = 1 if padding == "same" else 0
        widths = [base_width * 2 ** level for level in range(depth + 1)]
        self.contracting = nn.ModuleList(
            DoubleConv(cin, cout, conv_padding, norm) for cin, cout in zip([in_chans, *widths], widths))
        self.pool = nn.MaxPool2d(2, 2)
        self.dropout = nn.Dropout(dropout)
        self.upsampling = nn.ModuleList()
        self.expanding = nn.ModuleList()
        for wide, narrow in zip(widths[:0:-1], widths[-2::-1]):
            self.upsampling.append(nn.ConvTranspose2d(wide, narrow, 2, 2) if upsample == "transpose"
                                   else BilinearUp(wide, narrow, valid=padding == "valid"))
            self.expanding.append(DoubleConv(2 * narrow if skip else narrow, narrow, conv_padding, norm))
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self._initialise()
        # How far an output pixel's inputs reach on either side: the unpadded network's margin; a
        # padded one's pooling grid lets a pixel reach up to 2**depth − 1 further on one side.
        self.context_margin = self._margin_of_valid_twin() + (self.size_divisor - 1 if padding == "same" else 0)

    def _initialise(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):   # weight (C_in, C_out, 2, 2); stride 2: one tap per output
                he_normal_(m.weight, m.in_channels)
            elif isinstance(m, nn.Conv2d):
                he_normal_(m.weight, m.in_channels * m.kernel_size[0] * m.kernel_size[1])
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d)) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def _trace(self, size: int, padding: str) -> int | None:
        """The output side for an input side, or None when some pooling sees an odd side or a map
        vanishes."""
        shrink = BLOCK_SHRINK if padding == "valid" else 0
        up_shrink = BILINEAR_SHRINK if padding == "valid" and self.upsample == "bilinear" else 0
        for _ in range(self.depth):
            size -= shrink
            if size <= 0 or size % 2:
                return None
            size //= 2
        size -= shrink
        for _ in range(self.depth):
            if size <= 0:
                return None
            size = 2 * size - up_shrink - shrink
        return size if size > 0 else None

    def _margin_of_valid_twin(self) -> int:
        size = 1
        while self._trace(size, "valid") is None:
            size += 1
        return (size - self._trace(size, "valid")) // 2

    def output_size(self, input_size: int) -> int:
        """The output side of an input side; UsageError if the network cannot take it."""
        size = self._trace(input_size, self.padding)
        if size is None:
            fits = self.valid_input_size(input_size)
            why = (f"every 2×2 max-pool must see an even size and no map may vanish; {fits} is the next that fits"
                   if self.padding == "valid" else f"it must be a multiple of {self.size_divisor}")
            raise UsageError(f"U-Net (padding={self.padding!r}, depth {self.depth}) cannot take a side of "
                             f"{input_size}: {why} (or predict with overlap_tile)")
        return size

    def valid_input_size(self, min_output: int) -> int:
        """The smallest input side the network takes whose output side is at least `min_output`."""
        size = 1
        while (out := self._trace(size, self.padding)) is None or out < min_output:
            size += 1
        return size

    def margin(self, input_size: int) -> int:
        """(input − output) / 2: the context lost on each side (0 when padded)."""
        return (input_size - self.output_size(input_size)) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for side in x.shape[-2:]:
            self.output_size(side)
        skips = []
        for block in self.contracting[:-1]:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.contracting[-1](x))
        for upsample, block, skip in zip(self.upsampling, self.expanding, reversed(skips)):
            x = upsample(x)
            if self.skip:
                x = torch.cat([centre_crop(skip, x.shape[-2:]), x], 1)
            x = block(x)
        return self.head(x)


def _tiling(model: nn.Module, side: int, tile: int | None, margin: int) -> tuple[int, int, int]:
    """(input tile side, stride between tiles, number of tiles) along one image side of `side`."""
    if tile is None:   # one tile: the smallest input that yields the side with `margin` of context
        return _smallest_tile(model, side, margin), side, 1
    model.output_size(tile)
    trusted = tile - 2 * margin
    # A stride of a multiple of the pooling factor keeps every tile on the pooling grid of one
    # pass over the whole padded image, so that tiling changes nothing.
    stride = trusted - trusted % model.size_divisor
    if stride <= 0:
        raise UsageError(f"overlap_tile: a tile of {tile} leaves {max(trusted, 0)} output pixels after the "
                         f"{margin}-pixel margins, fewer than the pooling factor {model.size_divisor}; take a "
                         f"tile of at least {_smallest_tile(model, model.size_divisor, margin)}")
    return tile, stride, -(-side // stride)


def _smallest_tile(model: nn.Module, side: int, margin: int) -> int:
    """The smallest input tile whose trusted output covers `side` pixels."""
    if model.padding == "valid":   # its output already lacks the context margin
        return model.valid_input_size(side + 2 * (margin - model.context_margin))
    return -(-(side + 2 * margin) // model.size_divisor) * model.size_divisor


def overlap_tile(model: nn.Module, image: torch.Tensor, *, tile: int | None = None,
                 batch_size: int | None = None, margin: int | None = None, run: nn.Module | None = None) -> torch.Tensor:
    """Logits (N, K, H, W) for every pixel of `image` (N, C, H, W), any H and W (paper Fig. 2).

    The image is mirror-extended by `margin` pixels (default: the network's `context_margin`, how far
    an output pixel's inputs reach) and cut into square input tiles of side `tile` (None: one tile
    per image, just large enough) whose outputs, less the margin and taken at a stride of a multiple
    of the pooling factor, tile the output plane; `batch_size` tiles run at a time (None: all
    together). With the default margin the result equals one pass over the mirror-extended image,
    for unpadded and padded U-Nets alike, and stays so for a margin wider by a multiple of 2**depth
    (others move the image on the pooling grid). An encoder U-Net's context_margin is 0: its tiles do
    not overlap unless `margin` says so. Differentiable; the caller chooses train or eval mode. `run`
    computes the tiles when it is not `model` itself (its DDP wrapper, which has none of its attributes).
    """
    margin = model.context_margin if margin is None else margin
    if margin < model.context_margin and model.padding == "valid":
        raise UsageError(f"overlap_tile: margin {margin} is less than the {model.context_margin} pixels an "
                         "unpadded network crops off")
    height, width = image.shape[-2:]
    tile_h, stride_h, rows = _tiling(model, height, tile, margin)
    tile_w, stride_w, columns = _tiling(model, width, tile, margin)
    padded = mirror_pad(image, (margin, (columns - 1) * stride_w + tile_w - margin - width,
                                margin, (rows - 1) * stride_h + tile_h - margin - height))
    tiles = padded.unfold(2, tile_h, stride_h).unfold(3, tile_w, stride_w)   # N, C, rows, columns, th, tw
    tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, image.shape[1], tile_h, tile_w)
    step = batch_size or len(tiles)
    outputs = torch.cat([(run or model)(tiles[i:i + step]) for i in range(0, len(tiles), step)])
    # The trusted part of each output starts `margin` pixels into its tile: at 0 of an unpadded
    # network's output, at `margin` of a padded one's.
    top, left = margin - model.margin(tile_h), margin - model.margin(tile_w)
    outputs = outputs[..., top:top + stride_h, left:left + stride_w]
    outputs = outputs.reshape(len(image), rows, columns, -1, stride_h, stride_w).permute(0, 3, 1, 4, 2, 5)
    return outputs.reshape(len(image), -1, rows * stride_h, columns * stride_w)[..., :height, :width]


def _drop_unused_modules(model: nn.Module, stage_names, input_size) -> None:
    """Replace by nn.Identity every module holding tensors that computing the stage maps never
    calls (a classifier's head), so that an encoder holds only what it runs."""
    called = set()
    hooks = [module.register_forward_pre_hook(partial(lambda name, *_: called.add(name), name))
             for name, module in model.named_modules() if name]
    try:
        _meta_stage_maps(model, stage_names, input_size)
    finally:
        for hook in hooks:
            hook.remove()
    dropped = []
    for name, module in list(model.named_modules()):
        unused = name and not any(c == name or c.startswith(name + ".") for c in called)
        holds_tensors = any(True for _ in module.parameters()) or any(True for _ in module.buffers())
        if unused and holds_tensors and not any(name.startswith(d + ".") for d in dropped):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
            dropped.append(name)


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_chans: int, out_chans: int):
        super().__init__(nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False), nn.BatchNorm2d(out_chans),
                         nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """×2 upsampling, concatenation with the encoder map of the new scale (if any), two 3×3 conv-BN-ReLU."""

    def __init__(self, in_chans: int, skip_chans: int, out_chans: int, upsample: str):
        super().__init__()
        self.upsample = upsample
        self.up = nn.ConvTranspose2d(in_chans, in_chans, 2, 2) if upsample == "transpose" else nn.Identity()
        self.conv1 = ConvBNReLU(in_chans + skip_chans, out_chans)
        self.conv2 = ConvBNReLU(out_chans, out_chans)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x) if self.upsample == "transpose" else F.interpolate(x, scale_factor=2, mode=self.upsample)
        if skip is not None:
            x = torch.cat([x, skip], 1)
        return self.conv2(self.conv1(x))


ENCODER_UPSAMPLINGS = ("nearest", "bilinear", "transpose")


class UNetWithEncoder(nn.Module):
    """A zoo classifier's stage maps as the contracting path, the U-Net decoder as the expanding one.

    Of the encoder's stages the deepest of each reduction r is kept; the deepest (reduction R, a
    power of two) feeds the decoder, those with 1 < r < R are its skip connections (a stage at
    the input's resolution is not used, as in segmentation_models_pytorch). Decoder block i
    upsamples to reduction R / 2^(i+1) with `decoder_channels[i]` channels: log2 R blocks.
    `center` adds two 3×3 conv-BN-ReLU at the deepest scale (smp's, for VGG encoders).
    The classifier's head, unused, is dropped. forward: (N, C, H, W) → (N, num_classes, H, W) for
    H and W divisible by R (`size_divisor`).
    """

    padding = "same"
    context_margin = 0

    def __init__(self, encoder: str = "resnet18", num_classes: int = 21, in_chans: int = 3,
                 decoder_channels=(256, 128, 64, 32, 16), upsample: str = "nearest", center: bool = False,
                 encoder_weights: str | None = None):
        super().__init__()
        if upsample not in ENCODER_UPSAMPLINGS:
            raise UsageError(f"U-Net upsample={upsample!r}; choose one of {', '.join(ENCODER_UPSAMPLINGS)}")
        self.num_classes, self.encoder_name = num_classes, encoder
        features = create_model(encoder, features_only=True, in_chans=in_chans, pretrained=encoder_weights)
        deepest = {stage["reduction"]: i for i, stage in enumerate(features.feature_info)}
        reductions = sorted(deepest)
        odd = [r for r in reductions if r & (r - 1)]
        if odd or reductions[-1] < 2:
            raise UsageError(f"encoder {encoder}: its stage reductions {reductions} must be powers of two "
                             "reaching at least 2 to build a U-Net decoder")
        self.size_divisor = reductions[-1]
        kept = [deepest[r] for r in reductions if r > 1]
        self.encoder = type(features)(features.model, kept)
        _drop_unused_modules(features.model, self.encoder.names, features.model.pretrained_cfg["input_size"])
        info = self.encoder.feature_info
        self.reductions = [stage["reduction"] for stage in info]
        channels = {stage["reduction"]: stage["num_chs"] for stage in info}
        blocks = int(math.log2(self.size_divisor))
        if len(decoder_channels) != blocks:
            raise UsageError(f"decoder_channels {tuple(decoder_channels)} has {len(decoder_channels)} entries; "
                             f"encoder {encoder} needs {blocks}, one per halving of its reduction {self.size_divisor}")
        head = channels[self.size_divisor]
        self.center = nn.Sequential(ConvBNReLU(head, head), ConvBNReLU(head, head)) if center else nn.Identity()
        self.skip_reductions = [self.size_divisor >> (i + 1) for i in range(blocks)]
        self.decoder = nn.ModuleList(
            DecoderBlock(cin, channels.get(r, 0) if r > 1 else 0, cout, upsample)
            for cin, cout, r in zip((head, *decoder_channels[:-1]), decoder_channels, self.skip_reductions))
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1)
        for module in (self.center, self.decoder, self.head):
            for m in module.modules():
                if isinstance(m, nn.ConvTranspose2d):
                    he_normal_(m.weight, m.in_channels)
                elif isinstance(m, nn.Conv2d):
                    he_normal_(m.weight, m.in_channels * m.kernel_size[0] * m.kernel_size[1])
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
                    nn.init.zeros_(m.bias)

    def output_size(self, input_size: int) -> int:
        if input_size % self.size_divisor:
            raise UsageError(f"U-Net on {self.encoder_name}: a side of {input_size} is not a multiple of the "
                             f"encoder's reduction {self.size_divisor}; use "
                             f"{self.valid_input_size(input_size)} (pad the image)")
        return input_size

    def valid_input_size(self, min_output: int) -> int:
        return max(1, -(-min_output // self.size_divisor)) * self.size_divisor

    def margin(self, input_size: int) -> int:
        return 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for side in x.shape[-2:]:
            self.output_size(side)
        maps = dict(zip(self.reductions, self.encoder(x)))
        for reduction, stage in maps.items():
            expected = (x.shape[-2] // reduction, x.shape[-1] // reduction)
            if tuple(stage.shape[-2:]) != expected:
                raise UsageError(f"encoder {self.encoder_name}: its stage of reduction {reduction} is "
                                 f"{tuple(stage.shape[-2:])} for a {tuple(x.shape[-2:])} input, not {expected}; "
                                 "this encoder does not suit a U-Net decoder")
        y = self.center(maps[self.size_divisor])
        for block, reduction in zip(self.decoder, self.skip_reductions):
            y = block(y, maps.get(reduction) if reduction > 1 else None)
        return self.head(y)


_PAPER = dict(family="unet", year=2015, task="segmentation",
              paper="Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image "
                    "Segmentation. MICCAI 2015")


def unet(num_classes=2, in_chans=1, base_width=64, depth=4, padding="valid", upsample="transpose", skip=True,
         norm=None, dropout=0.0):
    return UNet(num_classes, in_chans, base_width=base_width, depth=depth, padding=padding, upsample=upsample,
                skip=skip, norm=norm, dropout=dropout)


def unet_with_encoder(num_classes=21, in_chans=3, encoder="resnet18", decoder_channels=(256, 128, 64, 32, 16),
                      upsample="nearest", center=False, encoder_weights=None):
    return UNetWithEncoder(encoder, num_classes, in_chans, decoder_channels=decoder_channels, upsample=upsample,
                           center=center, encoder_weights=encoder_weights)


# The paper prints no parameter or MAC total: 31.03 M is Fig. 1's layers counted for two classes (the
# figure the literature quotes), so `visionzoo models --verify` checks the built network against it.
register_model("unet", **_PAPER, input_size=(1, 572, 572), num_classes=2, paper_params="31.03M")(unet)
register_model("unet_same", **{**_PAPER, "paper": _PAPER["paper"] + " (padded 3×3 convolutions)"},
               input_size=(1, 64, 64), num_classes=2, padding="same")(unet)
register_model("unet_small", **{**_PAPER, "paper": _PAPER["paper"] + " (padded, quarter width, batch norm)"},
               input_size=(1, 64, 64), num_classes=2, padding="same", base_width=16, norm="batch")(unet)
_SMP = " decoder on a {} encoder (segmentation_models_pytorch's Unet layout)"
for _encoder, _center in (("resnet18", False), ("resnet34", False), ("vgg16_bn", True)):
    register_model(f"unet_{_encoder}", **{**_PAPER, "paper": _PAPER["paper"] + _SMP.format(_encoder)},
                   input_size=(3, 224, 224), num_classes=21, encoder=_encoder, center=_center)(unet_with_encoder)
