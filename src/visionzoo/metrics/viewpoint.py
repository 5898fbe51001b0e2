"""Viewpoint errors: the geodesic distance between two camera rotations, its median and Acc_π/6.

Render for CNN (Su, Qi, Li, Guibas, ICCV 2015, Sec. 5 and Table 2) evaluates as Viewpoints and
Keypoints (Tulsiani & Malik, CVPR 2015, Sec. 4.1) does: a viewpoint (θ azimuth, φ elevation,
ψ in-plane rotation) is a rotation R, the error between two is the geodesic distance
Δ(R₁, R₂) = ‖log(R₁ᵀR₂)‖_F / √2, the angle of the rotation R₁ᵀR₂, and the scores are its median
over a set ("MedErr", degrees) and the fraction of errors below π/6 ("Acc_π/6").

The rotation is the ZXZ Euler composition R = R_z(ψ) · R_x(φ − 90°) · R_z(−θ) (world to camera,
the convention of the evaluation code of both papers): at zero elevation and in-plane rotation two
viewpoints θ apart differ by a rotation of θ about the camera's up axis, and a pure in-plane
difference of ψ is a rotation of ψ about the optical axis.

All angles here are in degrees, except the threshold of `accuracy_within`, in radians as the
papers write it (π/6).
"""
from __future__ import annotations

import math

import torch


def circular_difference(a_deg: torch.Tensor, b_deg: torch.Tensor) -> torch.Tensor:
    """|a − b| on the circle, in [0, 180] degrees (so 359° and 1° are 2° apart)."""
    diff = torch.remainder(torch.as_tensor(a_deg, dtype=torch.float64) - torch.as_tensor(b_deg, dtype=torch.float64),
                           360.0)
    return torch.minimum(diff, 360.0 - diff)


def _axis_rotation(angle_rad: torch.Tensor, axis: str) -> torch.Tensor:
    """(…, 3, 3) rotations by `angle_rad` (…) about the x or z axis."""
    c, s = torch.cos(angle_rad), torch.sin(angle_rad)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    if axis == "z":
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    else:
        rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


def rotation_from_viewpoint(viewpoints_deg: torch.Tensor) -> torch.Tensor:
    """(…, 3) viewpoints (azimuth θ, elevation φ, in-plane ψ; degrees) → (…, 3, 3) float64 rotations
    R = R_z(ψ) · R_x(φ − 90°) · R_z(−θ)."""
    angles = torch.deg2rad(torch.as_tensor(viewpoints_deg, dtype=torch.float64))
    if angles.shape[-1] != 3:
        raise ValueError(f"viewpoints need 3 angles (azimuth, elevation, in-plane) in the last dimension, "
                         f"got shape {tuple(angles.shape)}")
    azimuth, elevation, inplane = angles.unbind(-1)
    return (_axis_rotation(inplane, "z") @ _axis_rotation(elevation - math.pi / 2, "x")
            @ _axis_rotation(-azimuth, "z"))


def geodesic_distance(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Δ(R₁, R₂) = ‖log(R₁ᵀR₂)‖_F / √2, the angle of R₁ᵀR₂, in degrees [0, 180].

    Computed as 2·atan2(sin(α/2), cos(α/2)) with sin(α/2) = ‖R₁ − R₂‖_F / √8 and
    cos(α/2) = √((tr R₁ᵀR₂ + 1) / 4), accurate at 0° and 180° alike (arccos of the trace is not).
    """
    r1, r2 = r1.double(), r2.double()
    half_sin = torch.linalg.matrix_norm(r1 - r2) / math.sqrt(8.0)
    trace = (r1 * r2).sum((-2, -1))   # tr(R₁ᵀR₂)
    half_cos = ((trace + 1.0) / 4.0).clamp_min(0.0).sqrt()
    return torch.rad2deg(2.0 * torch.atan2(half_sin, half_cos))


def angle_error(pred_deg: torch.Tensor, true_deg: torch.Tensor) -> torch.Tensor:
    """Viewpoint error in degrees: for (…, 3) viewpoints (azimuth, elevation, in-plane), the geodesic
    distance between their rotations; for plain angles (…), the circular difference (azimuth only)."""
    pred, true = torch.as_tensor(pred_deg), torch.as_tensor(true_deg)
    if pred.shape != true.shape:
        raise ValueError(f"predicted and true viewpoints differ in shape: {tuple(pred.shape)} vs {tuple(true.shape)}")
    if pred.dim() >= 2 and pred.shape[-1] == 3:
        return geodesic_distance(rotation_from_viewpoint(pred), rotation_from_viewpoint(true))
    return circular_difference(pred, true)


def median_angle_error(errors_deg: torch.Tensor) -> float:
    """The median error (MedErr), degrees; the mean of the two middle values for an even count,
    NaN for no errors."""
    errors = torch.as_tensor(errors_deg, dtype=torch.float64).flatten()
    return float("nan") if errors.numel() == 0 else float(errors.quantile(0.5))


def is_within(errors_deg: torch.Tensor, threshold_rad: float = math.pi / 6) -> torch.Tensor:
    """Which errors (degrees) are below `threshold_rad` (radians; π/6 by default): the hits Acc_π/6 counts."""
    return torch.as_tensor(errors_deg) < math.degrees(threshold_rad)


def accuracy_within(errors_deg: torch.Tensor, threshold_rad: float = math.pi / 6) -> float:
    """The fraction of errors (degrees) below `threshold_rad` (radians; Acc_π/6 by default), NaN for none."""
    errors = torch.as_tensor(errors_deg, dtype=torch.float64).flatten()
    if errors.numel() == 0:
        return float("nan")
    return float(is_within(errors, threshold_rad).double().mean())
