"""The Fréchet distance between two sets of image features (FID), and the Inception-v3 that gives them.

Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter, "GANs Trained by a Two Time-Scale Update Rule
Converge to a Local Nash Equilibrium", NeurIPS 2017, Eq. (6) (the notes' StyleGAN slides quote it:
"Check the formula for FID!"): two feature sets are summarised by Gaussians N(μ₁, Σ₁), N(μ₂, Σ₂) and

    d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2}).

`frechet_distance` computes it in float64. The trace of the matrix square root is taken without a
general (non-symmetric) square root: Σ₁Σ₂ is similar to the symmetric positive semi-definite
M = Σ₁^{1/2} Σ₂ Σ₁^{1/2} (M = Σ₁^{1/2} (Σ₁Σ₂) Σ₁^{-1/2}), so its eigenvalues are M's, real and ≥ 0, and
Tr (Σ₁Σ₂)^{1/2} = Σᵢ √λᵢ(M) = Σᵢ sᵢ(Σ₁^{1/2} Σ₂^{1/2}), the singular values of the product of the two
symmetric square roots (whose Gram matrix is M). Summing singular values rather than square roots
of M's eigenvalues keeps a rounding error ε of a (near-)zero eigenvalue at ε instead of √ε. The
square roots come from `torch.linalg.eigh` (eigenvalues below zero, rounding errors of a singular
covariance, are clamped to 0). pytorch-fid instead calls
scipy.linalg.sqrtm on Σ₁Σ₂ and, when that is not finite (a singular product), retries with 1e-6
added to both diagonals; the symmetric route needs no such offset, and agrees with it wherever
sqrtm succeeds.

`feature_statistics` gives (μ, Σ) with the unbiased covariance (divisor N − 1, as numpy.cov,
pytorch-fid and torchmetrics), and refuses a set with no more samples than feature dimensions,
whose covariance is singular by construction.

`FIDInception` is the Inception-v3 of TensorFlow's FID code (the 2015-12-05 graph) laid out as
torchvision's ``inception_v3(num_classes=1008, aux_logits=False)``, so that pytorch-fid's weights file
``pt_inception-2015-12-05-6726825d.pth`` loads into it unchanged (`load_fid_inception`). It differs
from torchvision's network where the TensorFlow graph does: the pooling branches of the A and C
blocks and of the first E block average over the valid pixels only (TensorFlow's padding), the second
E block max-pools; its forward gives the 2048 "pool3" features: images in [0, 1] resized bilinearly to
299 × 299, mapped to [−1, 1], through Mixed_7c, averaged over space. Grey images are repeated on three
channels.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import DataError, UsageError

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_INPUT_SIDE = 299
POOL3_FEATURES = 2048


def _as_float64(value, what: str) -> torch.Tensor:
    tensor = torch.as_tensor(value).to(torch.float64)
    if not torch.isfinite(tensor).all():
        raise UsageError(f"frechet_distance: {what} holds NaN or infinite values")
    return tensor


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues < 0 → 0)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}) in float64 (tensors or arrays; see the module)."""
    mu1, mu2 = _as_float64(mu1, "mu1").reshape(-1), _as_float64(mu2, "mu2").reshape(-1)
    sigma1, sigma2 = torch.atleast_2d(_as_float64(sigma1, "sigma1")), torch.atleast_2d(_as_float64(sigma2, "sigma2"))
    dims = len(mu1)
    if len(mu2) != dims or sigma1.shape != (dims, dims) or sigma2.shape != (dims, dims):
        raise UsageError(f"frechet_distance: means of {len(mu1)} and {len(mu2)} dimensions with covariances "
                         f"{tuple(sigma1.shape)} and {tuple(sigma2.shape)}; give one feature size throughout")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2   # exact symmetry for eigh
    trace_sqrt = torch.linalg.svdvals(_psd_sqrt(sigma1) @ _psd_sqrt(sigma2)).sum()
    distance = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return float(distance)


def feature_statistics(features) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, Σ) in float64 of (N, F) features: the mean and the unbiased (N − 1) covariance."""
    features = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if features.dim() != 2:
        raise UsageError(f"feature_statistics: features of shape {tuple(features.shape)}; give (samples, features)")
    count, dims = features.shape
    if count <= dims:
        raise UsageError(f"FID needs more samples (N) than feature dimensions (F): N={count}, F={dims}; "
                         f"give at least {dims + 1} samples, or features of fewer dimensions")
    mean = features.mean(0)
    centred = features - mean
    return mean, centred.T @ centred / (count - 1)


def fid_from_features(a, b) -> float:
    """The Fréchet distance between the Gaussians fitted to two (N, F) feature sets."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


class _ConvBN(nn.Sequential):
    """Convolution (no bias), batch normalisation (ε = 0.001), ReLU; keys ``conv.*``, ``bn.*``."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_chans, eps=0.001)
        self.relu = nn.ReLU()


def _valid_average(x: torch.Tensor) -> torch.Tensor:
    """3 × 3 stride-1 average pooling over the pixels inside the map (TensorFlow's "SAME")."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):   # Mixed_5b/5c/5d: 35 × 35
    def __init__(self, in_chans: int, pool_features: int):
        super().__init__()
        self.branch1x1 = _ConvBN(in_chans, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = _ConvBN(in_chans, 48, 1), _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(in_chans, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = _ConvBN(64, 96, 3, padding=1), _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(in_chans, pool_features, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_valid_average(x))], 1)


class _BlockB(nn.Module):   # Mixed_6a: 35 → 17
    def __init__(self, in_chans: int):
        super().__init__()
        self.branch3x3 = _ConvBN(in_chans, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(in_chans, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = _ConvBN(64, 96, 3, padding=1), _ConvBN(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class _BlockC(nn.Module):   # Mixed_6b…6e: 17 × 17, factorised 7 × 7
    def __init__(self, in_chans: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = _ConvBN(in_chans, 192, 1)
        self.branch7x7_1 = _ConvBN(in_chans, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _ConvBN(in_chans, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _ConvBN(in_chans, 192, 1)

    def forward(self, x):
        double = x
        for index in range(1, 6):
            double = getattr(self, f"branch7x7dbl_{index}")(double)
        return torch.cat([self.branch1x1(x), self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))), double,
                          self.branch_pool(_valid_average(x))], 1)


class _BlockD(nn.Module):   # Mixed_7a: 17 → 8
    def __init__(self, in_chans: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = _ConvBN(in_chans, 192, 1), _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(in_chans, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x):
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], 1)


class _BlockE(nn.Module):   # Mixed_7b (average pooling branch), Mixed_7c (max pooling branch): 8 × 8
    def __init__(self, in_chans: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = _ConvBN(in_chans, 320, 1)
        self.branch3x3_1 = _ConvBN(in_chans, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = _ConvBN(in_chans, 448, 1), _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(in_chans, 192, 1)

    def forward(self, x):
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _valid_average(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(single), self.branch3x3_2b(single),
                          self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double), self.branch_pool(pooled)], 1)


class FIDInception(nn.Module):
    """TensorFlow's FID Inception-v3 in torchvision's layout; forward: images in [0, 1] → (B, 2048)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = _BlockA(192, 32), _BlockA(256, 64), _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b, self.Mixed_6c = _BlockC(768, 128), _BlockC(768, 160)
        self.Mixed_6d, self.Mixed_6e = _BlockC(768, 160), _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b, self.Mixed_7c = _BlockE(1280, "avg"), _BlockE(2048, "max")
        self.fc = nn.Linear(POOL3_FEATURES, 1008)   # the graph's 1008-way classifier: in the file, unused here

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise UsageError(f"FID Inception takes (B, 1 or 3, H, W) images in [0, 1], not {tuple(images.shape)}")
        x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        x = F.interpolate(x, size=(FID_INPUT_SIDE, FID_INPUT_SIDE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean((2, 3))


def load_fid_inception(path: str | Path) -> FIDInception:
    """The FID Inception with pytorch-fid's weights file (a plain state dict), in eval mode, frozen."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file; give pytorch-fid's Inception weights ({FID_WEIGHTS_FILE})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # a truncated or foreign pickle: name the file, not the unpickler's internals
        raise DataError(f"{path}: not a readable PyTorch weights file ({type(exc).__name__}); "
                        f"give pytorch-fid's {FID_WEIGHTS_FILE}") from None
    model = FIDInception()
    if not isinstance(state, dict):
        raise DataError(f"{path}: holds a {type(state).__name__}, not a state dict; give pytorch-fid's {FID_WEIGHTS_FILE}")
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in expected)
    wrong = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise DataError(f"{path}: not the FID Inception's weights ({'; '.join(parts)}); give pytorch-fid's "
                        f"{FID_WEIGHTS_FILE}")
    model.load_state_dict(state)   # a file without num_batches_tracked counts from 0
    return model.eval().requires_grad_(False)
