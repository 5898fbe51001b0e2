"""Spatial transformer: Jaderberg, Simonyan, Zisserman, Kavukcuoglu, "Spatial Transformer
Networks", NeurIPS 2015 (the notes' three differentiable blocks).

- Grid generator (Eq. 1): each target pixel G_i = (x_i^t, y_i^t) in normalised coordinates
  [−1, 1] maps to the source point (x_i^s, y_i^s) = A_θ (x_i^t, y_i^t, 1)ᵀ.
- Bilinear sampler (Eqs. 3 and 5): V_i^c = Σ_n Σ_m U_nm^c max(0, 1 − |x_i^s − m|) max(0, 1 − |y_i^s − n|)
  with (x^s, y^s) in pixel units. Only the four pixels around the source point have non-zero
  kernel weights, so the double sum is evaluated on those four; pixels outside the map are zero.
  Autograd through these operations gives the sub-gradients of Eqs. 6–7.
- `SpatialTransformer`: a localisation network regressing θ, whose last layer starts at zero
  weights and the identity bias (the paper initialises to the identity transform).

Coordinates follow PyTorch's ``align_corners=False`` convention (pixel centres at (2k + 1)/W − 1),
so `affine_grid` and `bilinear_sample` equal `F.affine_grid`/`F.grid_sample` with it.
"""
from __future__ import annotations

import torch
from torch import nn


def _normalised_centres(size: int, like: torch.Tensor) -> torch.Tensor:
    return (torch.arange(size, device=like.device, dtype=like.dtype) * 2 + 1) / size - 1


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Eq. 1 for every target pixel: (batch, height, width, 2) source points (x, y) in [−1, 1] units."""
    ys, xs = torch.meshgrid(_normalised_centres(height, theta), _normalised_centres(width, theta),
                            indexing="ij")
    target = torch.stack([xs, ys, torch.ones_like(xs)], -1)  # (H, W, 3) homogeneous coordinates
    return torch.einsum("hwk,bik->bhwi", target, theta)


def bilinear_sample(maps: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Eq. 5: sample `maps` (B, C, H, W) at `grid` (B, H', W', 2) → (B, C, H', W')."""
    batch, channels, height, width = maps.shape
    # Coordinates in float32 whatever the autocast dtype: bf16 cannot hold pixel indices above 256.
    grid = grid.float()
    # Normalised → pixel coordinates: x = −1 is the left edge of pixel 0, its centre is at m = 0.
    x = ((grid[..., 0] + 1) * width - 1) / 2
    y = ((grid[..., 1] + 1) * height - 1) / 2
    x0, y0 = x.floor(), y.floor()
    flat = maps.reshape(batch, channels, height * width).float()
    out = flat.new_zeros(batch, channels, *grid.shape[1:3])
    for m in (x0, x0 + 1):
        for n in (y0, y0 + 1):
            kernel = (1 - (x - m).abs()).clamp_min(0) * (1 - (y - n).abs()).clamp_min(0)
            inside = (m >= 0) & (m <= width - 1) & (n >= 0) & (n <= height - 1)
            index = n.long().clamp(0, height - 1) * width + m.long().clamp(0, width - 1)
            values = flat.gather(2, index.flatten(1)[:, None].expand(-1, channels, -1))
            out = out + values.view_as(out) * (kernel * inside)[:, None]
    return out.to(maps.dtype)


class SpatialTransformer(nn.Module):
    """U → localisation net → θ (2×3) → grid → V = sampler(U, grid), V the size of U."""

    def __init__(self, localisation: nn.Module, localisation_features: int):
        super().__init__()
        self.localisation = localisation
        self.theta = nn.Linear(localisation_features, 6)
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.theta(self.localisation(x)).view(-1, 2, 3)
        return bilinear_sample(x, affine_grid(theta, x.shape[-2], x.shape[-1]))
