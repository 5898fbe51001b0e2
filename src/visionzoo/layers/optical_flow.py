"""Dense optical flow between two grey frames, batched, in plain torch (no parameters).

Both methods solve the brightness-constancy equation ``Ix·u + Iy·v + It = 0`` (Horn & Schunck,
"Determining Optical Flow", Artificial Intelligence 1981, Eq. 1):

- Horn–Schunck adds the smoothness term α²(|∇u|² + |∇v|²) and iterates its Jacobi update
  (Eq. 14): ``u ← ū − Ix·(Ix·ū + Iy·v̄ + It) / (α² + Ix² + Iy²)`` (v likewise), where ū is the
  neighbourhood average of their Fig. 2 (1/6 for the four edge neighbours, 1/12 for the corners);
- Lucas–Kanade (Lucas & Kanade, IJCAI 1981) solves the equation in least squares over a square
  window around every pixel: the 2×2 normal equations [ΣIx² ΣIxIy; ΣIxIy ΣIy²]·(u, v) =
  −(ΣIxIt, ΣIyIt); where the window has too little texture (determinant ≤ `min_determinant`) the
  flow is zero.

Derivatives: Ix and Iy are central differences of the mean of the two frames (so that they are
taken at the same instant as It = b − a), replicated at the border. Flow is in pixels per frame:
u > 0 is motion to the right (growing column index), v > 0 motion down (growing row index).

Everything here is element-wise (shifted slices, no convolution), so a network using it as a
hardwired layer (models/ji3dcnn.py) adds no multiply-accumulates to its MAC count.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import UsageError

FLOW_METHODS = ("horn_schunck", "lucas_kanade")


def _as_batch_of_frames(frame: torch.Tensor, name: str) -> torch.Tensor:
    """(B, H, W) or (B, 1, H, W) → (B, H, W)."""
    if frame.dim() == 4 and frame.shape[1] == 1:
        return frame[:, 0]
    if frame.dim() == 3:
        return frame
    raise UsageError(f"optical_flow: {name} has shape {tuple(frame.shape)}; give grey frames (B, H, W) or (B, 1, H, W)")


def spatial_gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences (f(x+1) − f(x−1)) / 2 along the last (x) and second-to-last (y) axes of
    `image` (…, H, W), the border replicated (so a border pixel gets half a one-sided difference)."""
    padded = F.pad(image.reshape(-1, 1, *image.shape[-2:]), (1, 1, 1, 1), mode="replicate")
    gradient_x = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    gradient_y = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    return gradient_x.reshape(image.shape), gradient_y.reshape(image.shape)


def _neighbour_average(field: torch.Tensor) -> torch.Tensor:
    """Horn & Schunck's weighted average of the 8 neighbours of each pixel of (B, H, W)."""
    p = F.pad(field[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    edges = p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]
    corners = p[:, :-2, :-2] + p[:, :-2, 2:] + p[:, 2:, :-2] + p[:, 2:, 2:]
    return edges / 6 + corners / 12


def _window_sum(field: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over a window×window square centred on each pixel of (B, H, W), zero outside."""
    half = window // 2
    cumulative = F.pad(field, (half + 1, half, half + 1, half)).cumsum(1).cumsum(2)
    return (cumulative[:, window:, window:] - cumulative[:, :-window, window:]
            - cumulative[:, window:, :-window] + cumulative[:, :-window, :-window])


def horn_schunck(gradient_x, gradient_y, gradient_t, *, alpha: float, iterations: int) -> torch.Tensor:
    u = torch.zeros_like(gradient_x)
    v = torch.zeros_like(gradient_x)
    denominator = alpha ** 2 + gradient_x ** 2 + gradient_y ** 2
    for _ in range(iterations):
        u_mean, v_mean = _neighbour_average(u), _neighbour_average(v)
        step = (gradient_x * u_mean + gradient_y * v_mean + gradient_t) / denominator
        u, v = u_mean - gradient_x * step, v_mean - gradient_y * step
    return torch.stack((u, v), 1)


def lucas_kanade(gradient_x, gradient_y, gradient_t, *, window: int, min_determinant: float) -> torch.Tensor:
    sxx, syy = _window_sum(gradient_x * gradient_x, window), _window_sum(gradient_y * gradient_y, window)
    sxy = _window_sum(gradient_x * gradient_y, window)
    sxt, syt = _window_sum(gradient_x * gradient_t, window), _window_sum(gradient_y * gradient_t, window)
    determinant = sxx * syy - sxy * sxy
    solvable = determinant > min_determinant
    safe = torch.where(solvable, determinant, torch.ones_like(determinant))
    u = torch.where(solvable, (-syy * sxt + sxy * syt) / safe, torch.zeros_like(safe))
    v = torch.where(solvable, (sxy * sxt - sxx * syt) / safe, torch.zeros_like(safe))
    return torch.stack((u, v), 1)


def optical_flow(frame_a: torch.Tensor, frame_b: torch.Tensor, method: str = "horn_schunck", *,
                 alpha: float = 0.1, iterations: int = 100, window: int = 5,
                 min_determinant: float = 1e-9) -> torch.Tensor:
    """Flow (B, 2, H, W) = (u, v) in pixels per frame carrying `frame_a` to `frame_b`.

    Frames are (B, H, W) or (B, 1, H, W) with intensities of order one (e.g. in [0, 1]); `alpha`
    (Horn–Schunck's smoothness weight, on that intensity scale) and `iterations` apply to
    ``"horn_schunck"``, `window` (odd side) and `min_determinant` to ``"lucas_kanade"``.
    """
    a, b = _as_batch_of_frames(frame_a, "frame_a"), _as_batch_of_frames(frame_b, "frame_b")
    if a.shape != b.shape:
        raise UsageError(f"optical_flow: frames of shapes {tuple(a.shape)} and {tuple(b.shape)}; give two of one shape")
    gradient_x, gradient_y = spatial_gradients((a + b) / 2)
    gradient_t = b - a
    if method == "horn_schunck":
        if alpha <= 0 or iterations < 1:
            raise UsageError(f"horn_schunck: alpha={alpha}, iterations={iterations}; give alpha > 0, iterations ≥ 1")
        return horn_schunck(gradient_x, gradient_y, gradient_t, alpha=alpha, iterations=iterations)
    if method == "lucas_kanade":
        if window < 1 or window % 2 == 0:
            raise UsageError(f"lucas_kanade: window={window}; give an odd window side ≥ 1")
        return lucas_kanade(gradient_x, gradient_y, gradient_t, window=window, min_determinant=min_determinant)
    raise UsageError(f"unknown optical flow method {method!r}; choose one of {', '.join(FLOW_METHODS)}")
