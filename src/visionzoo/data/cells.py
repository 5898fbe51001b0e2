"""`cells`: seeded touching cells, the situation U-Net's weight map was made for (Ronneberger et al.
2015, Fig. 3 and Eq. 2: HeLa cells whose borders touch, separated in the ground truth by a thin
line of background that the pixel-wise loss must be made to care about).

Each image holds a cluster of cells: seeds drawn in a disc, each cell the part of its seed's
Voronoi region within a random radius of the seed, so that neighbours share long borders. Pixels
whose two nearest seeds are almost equally near (|d₁ − d₂| < `gap` pixels) are the separating
background line of the ground truth. Cell interiors are bright and textured; in the image the
line between two touching cells is only slightly darker than the cells — as faint as the
membranes between touching cells in the paper's microscopy — and noise is added, so telling
touching cells apart takes the weight map's attention to those few pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CELL_CLASSES = ["background", "cell"]
CELL_SIZES = (3000, 500)                     # train (before the validation split), test
TRAIN_SEED, TEST_SEED = 20150519, 20151006   # fixed streams: the data never depend on the run's seed


def cells_splits(sizes: tuple[int, int] = CELL_SIZES):
    """The `cells` data set: ((train images, masks), (test images, masks), classes)."""
    train, test = make_cells(sizes[0], TRAIN_SEED), make_cells(sizes[1], TEST_SEED)
    return train[:2], test[:2], CELL_CLASSES


def cells_test_instances() -> torch.Tensor:
    """The instance ids (N, H, W) of the `cells` test images, in their order."""
    return make_cells(CELL_SIZES[1], TEST_SEED)[2]


def make_cells(n: int, seed: int, size: int = 64, *, cells: tuple[int, int] = (5, 11), gap: float = 1.5,
               chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`n` images: uint8 (n, 1, size, size), masks int64 (n, size, size) with 0 = background and
    1 = cell, and instance ids int64 (n, size, size) (0 = background, k ≥ 1 = the k-th cell)."""
    generator = torch.Generator().manual_seed(seed)
    parts = [_cells_chunk(min(chunk, n - start), generator, size, cells, gap) for start in range(0, n, chunk)]
    return tuple(torch.cat(part) for part in zip(*parts))


def _cells_chunk(n: int, generator: torch.Generator, size: int, cells: tuple[int, int], gap: float):
    k = cells[1]
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    # seeds in a disc around the centre; an image has cells[0]..cells[1] of them (the rest switched off)
    count = torch.randint(cells[0], cells[1] + 1, (n, 1), generator=generator)
    active = torch.arange(k)[None] < count
    angle = torch.rand(n, k, generator=generator) * 2 * torch.pi
    radius = torch.rand(n, k, generator=generator).sqrt() * size * 0.33
    centre = size / 2 + (torch.rand(n, 1, 2, generator=generator) - 0.5) * size * 0.15
    seeds = centre + torch.stack([radius * angle.sin(), radius * angle.cos()], -1)        # (n, k, 2): y, x
    cell_radius = size * (0.11 + 0.07 * torch.rand(n, k, generator=generator))
    distance = ((yy - seeds[..., 0, None, None]) ** 2 + (xx - seeds[..., 1, None, None]) ** 2).sqrt()
    distance = torch.where(active[..., None, None], distance, torch.inf)                  # (n, k, H, W)
    nearest = distance.topk(2, dim=1, largest=False)
    d1, d2, owner = nearest.values[:, 0], nearest.values[:, 1], nearest.indices[:, 0]
    inside = d1 <= cell_radius.gather(1, owner.flatten(1)).view_as(d1)
    border = (d2 - d1) < gap
    mask = (inside & ~border).long()
    instances = torch.where(mask.bool(), owner + 1, 0)
    # image: textured bright cells, faint borders, a darker nucleus, smooth background, noise
    texture = F.interpolate(torch.rand(n, 1, size // 8, size // 8, generator=generator), size=(size, size),
                            mode="bicubic", align_corners=False)[:, 0]
    brightness = 150 + 40 * torch.rand(n, k, generator=generator)
    cell_level = brightness.gather(1, owner.flatten(1)).view_as(d1)
    nucleus = (d1 < cell_radius.gather(1, owner.flatten(1)).view_as(d1) * 0.35) & inside
    image = 60 + 30 * texture
    image = torch.where(inside, cell_level + 25 * texture - 35 * nucleus.float(), image)
    image = torch.where(inside & border, cell_level - 10, image)
    image = image + 12 * torch.randn(n, size, size, generator=generator)
    return image.round().clamp(0, 255).to(torch.uint8)[:, None], mask, instances
