"""U-Net's pixel weight map (Ronneberger, Fischer & Brox, MICCAI 2015, Eq. 2), batched in torch.

    w(x) = w_c(x) + w0 · exp(−(d1(x) + d2(x))² / (2σ²)),   w0 = 10, σ = 5 pixels in the paper,

w_c balances the class frequencies, d1 and d2 are the distances from x to the border of the nearest
and the second-nearest object. Objects are the instances of the foreground classes: the connected
components of each class (4-connected by default), found by propagating the largest pixel index
through each component (with pointer jumping, so about log(path length) rounds per doubling).
The distance from a pixel to an object is the Euclidean distance between pixel centres to its
nearest pixel, an exact distance transform computed separably (columns, then rows). As in the
paper, the separation term is added on background pixels only (the gaps between touching
objects); it is 0 where fewer than two objects exist. Void pixels (255) weigh 0.

w_c(class) = 1 / frequency(class), normalised so that the most frequent class weighs 1; by default
the frequencies are those of each mask (classes absent from it weigh nothing), or fixed weights
from `class_balance(...)` over a training set can be passed as `class_weights`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .segmentation import IGNORE_INDEX

DISTANCE_CHUNK = 64    # instance maps per pass of the distance transform (bounds its H×H×W temporary)


def class_balance(masks: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes,) weights 1/frequency over all of `masks`, the most frequent class 1 (absent classes 0)."""
    counts = _class_counts(masks.reshape(1, -1), num_classes)[0]
    return _balance(counts)


def _class_counts(masks: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, K) pixel counts per mask and class, void and out-of-range labels left out."""
    flat = masks.reshape(len(masks), -1)
    valid = (flat >= 0) & (flat < num_classes)
    counts = torch.zeros(len(masks), num_classes + 1, dtype=torch.float32, device=masks.device)
    counts.scatter_add_(1, torch.where(valid, flat, num_classes), torch.ones_like(flat, dtype=torch.float32))
    return counts[:, :num_classes]


def _balance(counts: torch.Tensor) -> torch.Tensor:
    largest = counts.max(-1, keepdim=True).values
    return torch.where(counts > 0, largest / counts.clamp_min(1), torch.zeros_like(counts))


def _neighbour_offsets(connectivity: int) -> list[tuple[int, int]]:
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, not {connectivity}")
    offsets = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    return offsets + [(-1, -1), (-1, 1), (1, -1), (1, 1)] if connectivity == 8 else offsets


def connected_components(masks: torch.Tensor, *, connectivity: int = 4, background: int = 0
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Instances of every class except `background` and void (255): pixels of the same class joined
    through 4- (or 8-) neighbours. Returns (labels int64 (N, H, W): 0 outside, 1..count[n] inside,
    count int64 (N,)). Every pixel starts with its own index + 1 and takes the largest label of its
    same-class neighbours until nothing changes; jumping to the label's own label speeds it up."""
    n, h, w = masks.shape
    foreground = (masks != background) & (masks != IGNORE_INDEX)
    index = torch.arange(1, h * w + 1, device=masks.device).view(1, h, w).expand(n, h, w)
    labels = torch.where(foreground, index, 0)
    classes = F.pad(torch.where(foreground, masks, -1), (1, 1, 1, 1), value=-1)
    offsets = _neighbour_offsets(connectivity)
    same_class = [classes[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] == masks for dy, dx in offsets]
    while True:
        padded = F.pad(labels, (1, 1, 1, 1))
        grown = labels
        for (dy, dx), same in zip(offsets, same_class):
            grown = torch.maximum(grown, torch.where(same, padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w], 0))
        grown = torch.where(foreground, grown, 0)
        # A label is the index of a pixel of the same component whose own label is at least as large.
        flat = grown.reshape(n, -1)
        grown = torch.where(foreground, flat.gather(1, (flat - 1).clamp_min(0)).view(n, h, w), 0)
        if torch.equal(grown, labels):
            break
        labels = grown
    # Renumber 1..count per image: keys sort by image, then label, so roots are numbered in order.
    stride = h * w + 1
    key = torch.arange(n, device=masks.device)[:, None] * stride + labels.reshape(n, -1)
    unique, inverse = torch.unique(key, return_inverse=True)
    image_of, is_root = torch.div(unique, stride, rounding_mode="floor"), unique % stride != 0
    count = torch.zeros(n, dtype=torch.int64, device=masks.device).scatter_add_(0, image_of, is_root.long())
    earlier = torch.cumsum(count, 0) - count
    number = torch.where(is_root, torch.cumsum(is_root.long(), 0) - earlier[image_of], 0)
    return number[inverse].view(n, h, w), count


def distance_to(objects: torch.Tensor) -> torch.Tensor:
    """Euclidean distance (pixels) from every pixel to the nearest True pixel of each map (M, H, W)
    (inf on empty maps), exact and separable: the distance along its column to the nearest object
    pixel above or below (running max/min of their row numbers), then d²(y, x) = min over x' of
    g(y, x')² + (x − x')²."""
    m, h, w = objects.shape
    rows = torch.arange(h, dtype=torch.float32, device=objects.device).view(1, h, 1)
    cols = torch.arange(w, dtype=torch.float32, device=objects.device)
    shifts = (cols[:, None] - cols[None, :]) ** 2                                       # x, x'
    out = []
    for start in range(0, m, DISTANCE_CHUNK):
        part = objects[start:start + DISTANCE_CHUNK]
        above = torch.where(part, rows, -float("inf")).cummax(1).values
        below = torch.where(part, rows, float("inf")).flip(1).cummin(1).values.flip(1)
        g = torch.minimum(rows - above, below - rows) ** 2                              # M, y, x
        out.append((g[:, :, None, :] + shifts).amin(-1).sqrt())
    return torch.cat(out) if out else torch.empty((0, h, w), device=objects.device)


def border_distances(instances: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d1, d2), each (N, H, W): the distances to the nearest and second-nearest instance (inf if none)."""
    n, h, w = instances.shape
    most = max(int(count.max()) if n else 0, 2)
    image = torch.repeat_interleave(torch.arange(n, device=instances.device), count)
    within = torch.arange(len(image), device=instances.device) - torch.repeat_interleave(
        torch.cumsum(count, 0) - count, count)
    distances = torch.full((n, most, h, w), float("inf"), device=instances.device)
    distances[image, within] = distance_to(instances[image] == (within + 1)[:, None, None])
    nearest = distances.topk(2, dim=1, largest=False).values
    return nearest[:, 0], nearest[:, 1]


def unet_weight_map(masks: torch.Tensor, num_classes: int, *, w0: float = 10.0, sigma: float = 5.0,
                    class_weights: torch.Tensor | None = None, connectivity: int = 4) -> torch.Tensor:
    """Eq. (2) for int64 masks (N, H, W): float32 (N, H, W) weights, 0 on void pixels."""
    counts = _class_counts(masks, num_classes)
    balance = _balance(counts) if class_weights is None else class_weights.to(masks.device).float().expand_as(counts)
    valid = (masks >= 0) & (masks < num_classes)
    weights = torch.where(valid, balance.gather(1, torch.where(valid, masks, 0).reshape(len(masks), -1)
                                                ).view_as(masks.float()), 0.0)
    if w0:
        instances, count = connected_components(masks, connectivity=connectivity)
        d1, d2 = border_distances(instances, count)
        separation = w0 * torch.exp(-(d1 + d2) ** 2 / (2 * sigma ** 2))
        weights = weights + torch.where(masks == 0, separation, 0.0)
    return weights
