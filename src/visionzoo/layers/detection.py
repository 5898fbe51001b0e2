"""Detection operations of Fast and Faster R-CNN.

- RoI max pooling: Girshick, "Fast R-CNN", ICCV 2015, Sec. 2.1 (the notes' regions (r, c, h, w):
  top-left row, column, height and width; each region is cut into an H×W grid of sub-windows of
  size ≈ h/H × w/W and each sub-window is max-pooled).
- Smooth L1: Fast R-CNN, Eq. 3 (the notes' L1_sm(x) = 0.5 x² if |x| < 1, else |x| − 0.5).
- The box parameterisation: Girshick et al., "Rich feature hierarchies ...", CVPR 2014, Appendix C
  (t_x = (x − x_a)/w_a, t_y = (y − y_a)/h_a, t_w = log(w/w_a), t_h = log(h/h_a)); Faster R-CNN Eq. 2.
- Anchors (3 scales × 3 aspect ratios), the 256-anchor ½-positive sampling and the IoU matching:
  Ren, He, Girshick, Sun, "Faster R-CNN", NeurIPS 2015, Sec. 3.1.1 and 3.1.2; the 64-RoI 25 %
  foreground sampling: Fast R-CNN Sec. 2.3.

Box convention everywhere: (x1, y1, x2, y2) in continuous pixel coordinates, width = x2 − x1 (no
+1), as torchvision's detection package. IoU, NMS, clipping and small-box removal are
torchvision.ops' own, called through here; torchvision is imported on the first call, not with this module
(it adds about a second to every command's start).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from visionzoo.core.errors import DataError, UsageError

__all__ = [
    "BELOW_LOW",
    "BETWEEN",
    "DEFAULT_CLAMP",
    "Anchors",
    "batched_nms",
    "box_area",
    "box_iou",
    "boxes_to_regions",
    "check_boxes",
    "clip_boxes_to_image",
    "decode_boxes",
    "encode_boxes",
    "make_anchors",
    "match_boxes",
    "nms",
    "regions_to_boxes",
    "remove_small_boxes",
    "roi_align",
    "roi_max_pool",
    "roi_pool",
    "sample_labels",
    "smooth_l1",
]

BELOW_LOW = -1
"""`match_boxes` label of a prediction whose best IoU is below the low threshold (background)."""
BETWEEN = -2
"""`match_boxes` label of a prediction whose best IoU lies in [low, high) (ignored)."""
DEFAULT_CLAMP = math.log(1000.0 / 16)
"""Largest t_w, t_h that `decode_boxes` exponentiates, so a wild regression cannot overflow."""


def _ops():
    import torchvision.ops
    return torchvision.ops


def box_area(boxes: Tensor) -> Tensor:
    """Areas (K,) of (x1, y1, x2, y2) boxes: torchvision.ops.box_area."""
    return _ops().box_area(boxes)


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU (K1, K2): torchvision.ops.box_iou."""
    return _ops().box_iou(boxes1, boxes2)


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Boxes clipped to an image of `size` (height, width): torchvision.ops.clip_boxes_to_image."""
    return _ops().clip_boxes_to_image(boxes, size)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes with both sides at least `min_size`: torchvision.ops.remove_small_boxes."""
    return _ops().remove_small_boxes(boxes, min_size)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Indices kept by non-maximum suppression, by decreasing score: torchvision.ops.nms."""
    return _ops().nms(boxes, scores, iou_threshold)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category of `idxs`: torchvision.ops.batched_nms."""
    return _ops().batched_nms(boxes, scores, idxs, iou_threshold)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or any(int(s) < 1 for s in pair):
        raise UsageError(f"output_size {size!r} must be a positive int or a pair of them")
    return int(pair[0]), int(pair[1])


def regions_to_boxes(regions: Tensor) -> Tensor:
    """(K, 5) regions [batch, r, c, h, w] → (K, 5) boxes [batch, x1, y1, x2, y2] = [b, c, r, c + w, r + h]."""
    batch, r, c, h, w = regions.unbind(1)
    return torch.stack((batch, c, r, c + w, r + h), dim=1)


def boxes_to_regions(boxes: Tensor) -> Tensor:
    """Inverse of `regions_to_boxes`: [batch, x1, y1, x2, y2] → [batch, r, c, h, w]."""
    batch, x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((batch, y1, x1, y2 - y1, x2 - x1), dim=1)


def _round_half_away(x: Tensor) -> Tensor:
    """C's round(): halves go away from zero (torch.round sends them to the even neighbour)."""
    whole = x.trunc()
    return torch.where((x - whole).abs() == 0.5, whole + x.sign(), x.round())


def _bin_edges(start: Tensor, length: Tensor, bins: int, limit: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Sub-window i of a span of `length` cells from `start` covers [⌊i·length/bins⌋, ⌈(i+1)·length/bins⌉),
    computed in `dtype` as the reference kernel does, shifted by `start` and clipped to [0, limit]."""
    size = length.to(dtype) / bins
    index = torch.arange(bins, dtype=dtype, device=start.device)
    lower = torch.floor(index * size[:, None]).long() + start[:, None]
    upper = torch.ceil((index + 1) * size[:, None]).long() + start[:, None]
    return lower.clamp(0, limit), upper.clamp(0, limit)


def roi_max_pool(
    features: Tensor,
    regions: Tensor,
    output_size: int | Sequence[int] = (7, 7),
    spatial_scale: float = 1.0 / 16,
) -> Tensor:
    """RoI max pooling of the notes' regions (Fast R-CNN Sec. 2.1), written out; (K, C, oh, ow).

    `features` is (N, C, H, W); `regions` is (K, 5) rows [batch_index, r, c, h, w] in input-image
    pixels. The region is the box (x1, y1, x2, y2) = (c, r, c + w, r + h) (`regions_to_boxes`);
    multiplied by `spatial_scale`, its corners are rounded half away from zero to feature cells,
    and the window spans the cells from the first to the last *inclusive* (the Caffe convention
    of the paper's code, kept by torchvision: height = round(y2·s) − round(y1·s) + 1, at least 1).
    Sub-window (i, j) then covers rows ⌊i·height/oh⌋ … ⌈(i+1)·height/oh⌉ − 1 (columns alike), clipped
    to the map; an empty sub-window gives 0. Equal to ``torchvision.ops.roi_pool(features,
    regions_to_boxes(regions), output_size, spatial_scale)``, which `roi_pool` calls and the
    detectors use; this version is the readable reference.
    """
    oh, ow = _pair(output_size)
    if features.dim() != 4 or regions.dim() != 2 or regions.shape[1] != 5:
        raise UsageError(
            f"roi_max_pool needs features (N, C, H, W) and regions (K, 5), got {tuple(features.shape)} "
            f"and {tuple(regions.shape)}"
        )
    _, channels, height, width = features.shape
    boxes = regions_to_boxes(regions.to(features.dtype))
    corners = _round_half_away(boxes[:, 1:] * spatial_scale).long()
    x1, y1, x2, y2 = corners.unbind(1)
    row_lo, row_hi = _bin_edges(y1, (y2 - y1 + 1).clamp(min=1), oh, height, features.dtype)
    col_lo, col_hi = _bin_edges(x1, (x2 - x1 + 1).clamp(min=1), ow, width, features.dtype)
    rows = torch.arange(height, device=features.device)
    cols = torch.arange(width, device=features.device)
    lowest = torch.tensor(-math.inf, dtype=features.dtype, device=features.device)
    pooled = []
    for k in range(regions.shape[0]):
        top, bottom = int(row_lo[k].min()), int(row_hi[k].max())
        left, right = int(col_lo[k].min()), int(col_hi[k].max())
        if bottom <= top or right <= left:
            pooled.append(features.new_zeros(channels, oh, ow))
            continue
        window = features[int(boxes[k, 0]), :, top:bottom, left:right]
        in_row = (rows[top:bottom] >= row_lo[k, :, None]) & (rows[top:bottom] < row_hi[k, :, None])  # (oh, hh)
        in_col = (cols[left:right] >= col_lo[k, :, None]) & (cols[left:right] < col_hi[k, :, None])  # (ow, ww)
        column_max = torch.where(in_col, window[:, :, None, :], lowest).amax(-1)  # (C, hh, ow)
        cell_max = torch.where(in_row[:, :, None], column_max[:, None], lowest).amax(2)  # (C, oh, ow)
        empty = (row_hi[k] <= row_lo[k])[:, None] | (col_hi[k] <= col_lo[k])[None, :]
        pooled.append(cell_max.masked_fill(empty, 0))
    if not pooled:
        return features.new_zeros(0, channels, oh, ow)
    return torch.stack(pooled)


def roi_pool(
    features: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | Sequence[int] = (7, 7),
    spatial_scale: float = 1.0 / 16,
) -> Tensor:
    """RoI max pooling on (x1, y1, x2, y2) boxes, the fast path: torchvision.ops.roi_pool.

    `boxes` is (K, 5) [batch_index, x1, y1, x2, y2] or a list with one (K_i, 4) tensor per image.
    """
    return _ops().roi_pool(features, boxes, _pair(output_size), spatial_scale)


def roi_align(
    features: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | Sequence[int] = (7, 7),
    spatial_scale: float = 1.0 / 16,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign (He et al., "Mask R-CNN", ICCV 2017, Sec. 3): torchvision.ops.roi_align, boxes as `roi_pool`."""
    return _ops().roi_align(features, boxes, _pair(output_size), spatial_scale, sampling_ratio, aligned)


def smooth_l1(input: Tensor, target: Tensor, beta: float = 1.0, reduction: str = "sum") -> Tensor:
    """Smooth L1 of d = input − target (Fast R-CNN Eq. 3): 0.5·d²/β if |d| < β, else |d| − 0.5·β.

    β = 1 is the notes' L1_sm; β = 0 is plain L1. Equal to ``F.smooth_l1_loss(input, target,
    reduction=reduction, beta=beta)``. `reduction` is "sum" (the paper sums over x, y, w, h),
    "mean" or "none".
    """
    if beta < 0:
        raise UsageError(f"smooth_l1 beta={beta} must be >= 0")
    if reduction not in ("sum", "mean", "none"):
        raise UsageError(f"smooth_l1 reduction={reduction!r}: use 'sum', 'mean' or 'none'")
    difference = (input - target).abs()
    if beta == 0:
        loss = difference
    else:
        loss = torch.where(difference < beta, 0.5 * difference.square() / beta, difference - 0.5 * beta)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    return loss


def _widths_and_centres(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return widths, heights, boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights


def encode_boxes(
    boxes: Tensor, reference: Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)
) -> Tensor:
    """Regression targets (t_x, t_y, t_w, t_h) of `boxes` relative to `reference` (both (K, 4) xyxy).

    t_x = w_x·(x − x_a)/w_a, t_y = w_y·(y − y_a)/h_a, t_w = w_w·log(w/w_a), t_h = w_h·log(h/h_a) with
    (x, y) the box centre and (x_a, y_a, w_a, h_a) the reference's (R-CNN Appendix C; Faster R-CNN
    Eq. 2). The weights scale the targets (torchvision's RoI head uses (10, 10, 5, 5)); the
    result equals torchvision's ``BoxCoder(weights).encode_single(boxes, reference)``.
    """
    wx, wy, ww, wh = weights
    widths, heights, centre_x, centre_y = _widths_and_centres(boxes)
    ref_widths, ref_heights, ref_centre_x, ref_centre_y = _widths_and_centres(reference)
    return torch.stack(
        (
            wx * (centre_x - ref_centre_x) / ref_widths,
            wy * (centre_y - ref_centre_y) / ref_heights,
            ww * torch.log(widths / ref_widths),
            wh * torch.log(heights / ref_heights),
        ),
        dim=1,
    )


def decode_boxes(
    deltas: Tensor,
    reference: Tensor,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    clamp: float = DEFAULT_CLAMP,
) -> Tensor:
    """Boxes (xyxy) from deltas (t_x, t_y, t_w, t_h) relative to `reference` (K, 4): the inverse of `encode_boxes`.

    `deltas` is (K, 4·C) for C classes (Fast R-CNN's per-class regression); the result is
    (K, 4·C). t_w and t_h are clamped to at most `clamp` before exp. Equal to torchvision's
    ``BoxCoder(weights, clamp).decode_single(deltas, reference)``.
    """
    if deltas.dim() != 2 or deltas.shape[1] % 4 or deltas.shape[0] != reference.shape[0]:
        raise UsageError(
            f"decode_boxes needs deltas (K, 4·C) and reference (K, 4), got {tuple(deltas.shape)} "
            f"and {tuple(reference.shape)}"
        )
    wx, wy, ww, wh = weights
    widths, heights, centre_x, centre_y = _widths_and_centres(reference.to(deltas.dtype))
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
    dw = (deltas[:, 2::4] / ww).clamp(max=clamp)
    dh = (deltas[:, 3::4] / wh).clamp(max=clamp)
    new_centre_x = dx * widths[:, None] + centre_x[:, None]
    new_centre_y = dy * heights[:, None] + centre_y[:, None]
    half_w = 0.5 * (torch.exp(dw) * widths[:, None])
    half_h = 0.5 * (torch.exp(dh) * heights[:, None])
    corners = (new_centre_x - half_w, new_centre_y - half_h, new_centre_x + half_w, new_centre_y + half_h)
    return torch.stack(corners, dim=2).flatten(1)


def check_boxes(boxes: Tensor, image_size: Sequence[int], where: str) -> None:
    """Raise DataError naming `where` and the first bad box of (N, 4) xyxy `boxes` in an image of
    `image_size` = (height, width): non-finite, degenerate (x2 ≤ x1 or y2 ≤ y1) or outside the image.

    Such boxes make torchvision's detectors return NaN losses; the readers call this instead.
    """
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise DataError(f"{where}: boxes must be (N, 4) x1 y1 x2 y2, got shape {tuple(boxes.shape)}")
    height, width = image_size
    x1, y1, x2, y2 = boxes.unbind(1)
    problems = (
        (~torch.isfinite(boxes).all(1), "is not finite"),
        ((x2 <= x1) | (y2 <= y1), "is degenerate (needs x2 > x1 and y2 > y1)"),
        ((x1 < 0) | (y1 < 0) | (x2 > width) | (y2 > height), f"lies outside the {width}x{height} image"),
    )
    for bad, what in problems:
        if bool(bad.any()):
            index = int(bad.nonzero()[0, 0])
            box = ", ".join(f"{float(v):g}" for v in boxes[index])
            raise DataError(f"{where}: box {index} [{box}] (x1, y1, x2, y2) {what}; fix or drop it")


@dataclass(frozen=True)
class Anchors:
    """Faster R-CNN's anchors (Sec. 3.1.1): at every feature-map position, one box per (ratio, scale).

    A template of scale s and ratio r (= height/width) has width s/√r and height s·√r; the
    zero-centred templates are rounded to whole pixels and shifted to (stride·j, stride·i) for
    feature cell (i, j) — torchvision's `AnchorGenerator` convention, which the tests check.
    Order: cell-major (rows, then columns), then ratio, then scale, matching a head's output
    (N, A, H, W) permuted to (N, H, W, A).
    """

    scales: tuple[float, ...] = (128.0, 256.0, 512.0)
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)

    def __post_init__(self) -> None:
        if not self.scales or not self.ratios or min(self.scales) <= 0 or min(self.ratios) <= 0:
            raise UsageError(
                f"anchor scales {self.scales} and ratios {self.ratios} must be non-empty and positive"
            )

    @property
    def per_location(self) -> int:
        """A: anchors per feature-map position (the RPN head's 2A scores and 4A offsets)."""
        return len(self.scales) * len(self.ratios)

    def templates(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
        """(A, 4) zero-centred, rounded templates."""
        scales = torch.as_tensor(self.scales, dtype=dtype, device=device)
        height_factor = torch.sqrt(torch.as_tensor(self.ratios, dtype=dtype, device=device))
        widths = ((1 / height_factor)[:, None] * scales[None, :]).reshape(-1)
        heights = (height_factor[:, None] * scales[None, :]).reshape(-1)
        return (torch.stack((-widths, -heights, widths, heights), dim=1) / 2).round()

    def __call__(
        self,
        feature_size: Sequence[int],
        stride: int | Sequence[int],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """(h·w·A, 4) xyxy anchors for a feature map of `feature_size` = (h, w) and `stride` (pixels per cell)."""
        rows, cols = feature_size
        stride_y, stride_x = (stride, stride) if isinstance(stride, int) else stride
        shift_y, shift_x = torch.meshgrid(
            torch.arange(rows, dtype=dtype, device=device) * stride_y,
            torch.arange(cols, dtype=dtype, device=device) * stride_x,
            indexing="ij",
        )
        shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=-1).reshape(-1, 1, 4)
        return (shifts + self.templates(dtype, device)[None]).reshape(-1, 4)


def make_anchors(
    feature_size: Sequence[int],
    stride: int | Sequence[int],
    scales: Sequence[float] = (128.0, 256.0, 512.0),
    ratios: Sequence[float] = (0.5, 1.0, 2.0),
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """(h·w·A, 4) xyxy anchors: ``Anchors(scales, ratios)(feature_size, stride, device, dtype)``."""
    return Anchors(tuple(scales), tuple(ratios))(feature_size, stride, device, dtype)


def sample_labels(
    labels: Tensor,
    batch_size: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Indices of a mini-batch of at most `batch_size` examples, at most `positive_fraction` positive.

    `labels`: ≥ 1 positive (a class index or 1), 0 negative, < 0 ignored. Positives are drawn
    first, up to ⌊batch_size·positive_fraction⌋; negatives fill the rest as far as they go, as in
    Faster R-CNN Sec. 3.1.3 (256 anchors, ½ positive) and Fast R-CNN Sec. 2.3 (64 RoIs, 25 %
    foreground). Returns (positive indices, negative indices), each drawn uniformly without
    replacement with `generator`.
    """
    if batch_size < 1 or not 0 <= positive_fraction <= 1:
        raise UsageError(
            f"sample_labels needs batch_size >= 1 and positive_fraction in [0, 1], "
            f"got {batch_size} and {positive_fraction}"
        )
    positive = torch.where(labels >= 1)[0]
    negative = torch.where(labels == 0)[0]
    num_positive = min(positive.numel(), int(batch_size * positive_fraction))
    num_negative = min(negative.numel(), batch_size - num_positive)

    def draw(pool: Tensor, count: int) -> Tensor:
        device = generator.device if generator is not None else pool.device
        order = torch.randperm(pool.numel(), generator=generator, device=device)
        return pool[order[:count].to(pool.device)]

    return draw(positive, num_positive), draw(negative, num_negative)


def match_boxes(iou: Tensor, high: float, low: float, allow_low_quality: bool = False) -> Tensor:
    """For each of the N predictions (columns of the (G, N) `iou`), the index of its best ground truth.

    Best IoU ≥ `high`: that index; below `low`: BELOW_LOW (−1, background); in between: BETWEEN
    (−2, ignored). With `allow_low_quality`, each ground truth's highest-IoU predictions (ties
    included) keep their best match whatever its IoU (Faster R-CNN Sec. 3.1.2: "the anchor with the
    highest IoU with a ground-truth box" is positive too). Equals torchvision's `Matcher`; with no
    ground truth (G = 0) every prediction is background instead of an error.
    """
    if low > high:
        raise UsageError(f"match_boxes needs low <= high, got low={low}, high={high}")
    if iou.shape[0] == 0:
        return torch.full((iou.shape[1],), BELOW_LOW, dtype=torch.long, device=iou.device)
    if iou.shape[1] == 0:
        return torch.empty(0, dtype=torch.long, device=iou.device)
    best, matches = iou.max(dim=0)
    unthresholded = matches.clone()
    matches[best < low] = BELOW_LOW
    matches[(best >= low) & (best < high)] = BETWEEN
    if allow_low_quality:
        best_for_truth = iou.max(dim=1).values
        keep = torch.where(iou == best_for_truth[:, None])[1]
        matches[keep] = unthresholded[keep]
    return matches
