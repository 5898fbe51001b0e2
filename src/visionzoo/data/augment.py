"""Batched augmentation on the training device: one call per batch, no per-sample Python.

Every draw comes from an explicit generator, so a resumed run draws exactly the same
augmentations. Images stay in pixel units (0–255, uint8 or float) until the normaliser.
torchvision's RandomErasing, MixUp and CutMix draw from the global RNG (and erase one image per
call), so these are our own batched versions.

- random crop with zero padding and horizontal flip (the CIFAR recipe of He et al., Deep Residual
  Learning, 2016, Sec. 4.2: pad 4, crop 32×32, flip);
- scale jittering (Simonyan & Zisserman, VGG, Sec. 3.1: rescale to a random S ∈ [S_min, S_max],
  then crop the training size); here S is a factor of the image side, one per batch or, as VGG
  does, one per image (`per_image`: the images of one size are rescaled together);
- fancy PCA (Krizhevsky et al., AlexNet, Sec. 4.1): add [p₁ p₂ p₃][α₁λ₁ α₂λ₂ α₃λ₃]ᵀ to every
  pixel, with p_i, λ_i the eigenvectors/eigenvalues of the training set's RGB covariance
  (pixels in [0, 1]) and α_i ~ N(0, σ²) once per image; with C channels the covariance is C×C,
  so on grey images it is a random brightness shift α·λ;
- additive Gaussian noise as vicinal risk minimisation (Chapelle, Weston, Bottou, Vapnik, "Vicinal
  Risk Minimization", NIPS 2000: a Gaussian vicinity N(x, σ²I) around each training point; the
  notes' "adding noise" regulariser): x + σ·255·n, n ~ N(0, I) per pixel, in pixel space with σ in
  units of [0, 1], clamped to the valid range [0, 255] so every noisy image is still an image;
- random erasing (Zhong et al., Random Erasing Data Augmentation, AAAI 2020, Algorithm 1): with probability p erase a rectangle of area
  S_e ∈ [s_l, s_h]·S and aspect r_e ∈ [r_1, 1/r_1] that fits the image, filled with random values;
- cutout (DeVries & Taylor 2017): a SIZE×SIZE square centred anywhere, clipped at the borders;
- mixup (Zhang et al., mixup: Beyond Empirical Risk Minimization, ICLR 2018, Eq. 1): x̃ = λx_i + (1 − λ)x_j, ỹ = λy_i + (1 − λ)y_j, λ ~ Beta(α, α);
- CutMix (Yun et al., CutMix, ICCV 2019, Eq. 1–2): paste a box of area (1 − λ)WH from x_j into x_i; after clipping
  the box to the image, λ is corrected to 1 − (box area)/(WH), the pasted fraction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .loader import channel_constants

ERASE_AREA = (0.02, 0.4)     # s_l, s_h of Zhong et al.
ERASE_ASPECT = 0.3           # r_1; r_2 = 1 / r_1
ERASE_ROUNDS = 100           # Algorithm 1 retries until a box fits; practically never exhausted


def _uniform(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _integers(high, shape, generator: torch.Generator, device) -> torch.Tensor:
    """Uniform integers in [0, high) with a per-element (tensor) or shared (int) bound."""
    return (_uniform(shape, generator, device) * high).long()


def _beta(alpha: float, generator: torch.Generator, size: int | None = None):
    """λ ~ Beta(α, α) (a float, or `size` of them as a float32 tensor), drawn from a NumPy stream seeded by
    the torch generator (which has no Beta)."""
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=generator.device))
    draws = np.random.default_rng(seed).beta(alpha, alpha, size)
    return float(draws) if size is None else torch.from_numpy(draws).float()


def _windows(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Per-image h×w windows of x at (top, left), gathered in one indexing operation."""
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, :, None]          # n, h, 1
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, :]         # n, 1, w
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None]
    return x.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def _box_mask(top, left, height, width, h: int, w: int) -> torch.Tensor:
    """(n, 1, h, w) boolean masks of the boxes [top, top+height) × [left, left+width)."""
    rows = torch.arange(h, device=top.device)[None, :, None]
    cols = torch.arange(w, device=top.device)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + height)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + width)[:, None, None]))
    return inside[:, None]


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad every image by `padding` zeros and crop a random window of the original size."""
    if padding <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    return _windows(padded, _integers(2 * padding + 1, (n,), generator, x.device),
                    _integers(2 * padding + 1, (n,), generator, x.device), h, w)


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    flip = _uniform(x.shape[0], generator, x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def _rescaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return max(h, round(h * scale)), max(w, round(w * scale))


def _rescale_crop(x: torch.Tensor, big_h: int, big_w: int, generator: torch.Generator) -> torch.Tensor:
    """x (all images) resized to big_h × big_w, and a random window of the original size from each."""
    n, _, h, w = x.shape
    resized = F.interpolate(x.float(), size=(big_h, big_w), mode="bilinear", align_corners=False, antialias=False)
    return _windows(resized, _integers(big_h - h + 1, (n,), generator, x.device),
                    _integers(big_w - w + 1, (n,), generator, x.device), h, w)


def scale_jitter(x: torch.Tensor, scale_min: float, scale_max: float, generator: torch.Generator,
                 per_image: bool = False) -> torch.Tensor:
    """Rescale by S ∈ [scale_min, scale_max] (≥ 1), one S for the batch or one per image, then crop
    a random window of the original size."""
    n, _, h, w = x.shape
    if not per_image:
        scale = scale_min + (scale_max - scale_min) * float(_uniform(1, generator, x.device))
        crops = _rescale_crop(x, *_rescaled_size(h, w, scale), generator)
    else:
        scales = (scale_min + (scale_max - scale_min) * _uniform(n, generator, x.device)).tolist()
        sizes = [_rescaled_size(h, w, s) for s in scales]
        crops = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        for size in sorted(set(sizes)):  # one interpolation per distinct rescaled size, not per image
            index = torch.tensor([i for i, other in enumerate(sizes) if other == size], device=x.device)
            crops[index] = _rescale_crop(x[index], *size, generator)
    return crops.round().clamp(0, 255).to(x.dtype) if not x.is_floating_point() else crops


def pca_basis(batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors (columns) of the channel covariance of pixels in
    [0, 1], over one image tensor or an iterable of batches (summed batch by batch)."""
    count, total, outer = 0, 0.0, 0.0
    for images in [batches] if isinstance(batches, torch.Tensor) else batches:
        pixels = images.double().div(255).transpose(0, 1).reshape(images.shape[1], -1)
        count, total, outer = count + pixels.shape[1], total + pixels.sum(1), outer + pixels @ pixels.T
    mean = total / count
    covariance = (outer - count * torch.outer(mean, mean)) / (count - 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    return eigenvalues.flip(0).clamp_min(0).float(), eigenvectors.flip(1).float()


def fancy_pca(x: torch.Tensor, eigenvalues: torch.Tensor, eigenvectors: torch.Tensor, std: float,
              generator: torch.Generator) -> torch.Tensor:
    """Add P·(α ⊙ λ), α ~ N(0, std²) per image and component, to every pixel (pixel units)."""
    alpha = torch.randn((x.shape[0], len(eigenvalues)), generator=generator, device=generator.device).to(x.device) * std
    shift = (alpha * eigenvalues.to(x.device)) @ eigenvectors.to(x.device).T * 255.0      # n, C
    return x.float() + shift[:, :, None, None]


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, (255·std)²) per pixel, clamped to [0, 255] (pixel units; std in units of [0, 1])."""
    noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device)
    return (x.float() + 255.0 * std * noise).clamp(0, 255)


def _erasing_candidates(shape, h: int, w: int, area, aspect: float, generator: torch.Generator, device):
    """Boxes drawn as in one round of Algorithm 1 — top, left, height, width — and whether each lies in the
    image with its area fraction and aspect within the bounds."""
    target_area = (area[0] + (area[1] - area[0]) * _uniform(shape, generator, device)) * h * w
    ratio = aspect + (1 / aspect - aspect) * _uniform(shape, generator, device)   # r_e ← Rand(r_1, r_2)
    box_h, box_w = (target_area * ratio).sqrt().round().long(), (target_area / ratio).sqrt().round().long()
    y, x0 = _integers(h, shape, generator, device), _integers(w, shape, generator, device)
    fraction, form = box_h * box_w / (h * w), box_h / box_w.clamp_min(1)
    fits = ((box_h >= 1) & (box_w >= 1) & (y + box_h <= h) & (x0 + box_w <= w)
            & (fraction >= area[0]) & (fraction <= area[1]) & (form >= aspect) & (form <= 1 / aspect))
    return y, x0, box_h, box_w, fits


def random_erasing(x: torch.Tensor, p: float, generator: torch.Generator, *, area=ERASE_AREA,
                   aspect: float = ERASE_ASPECT, all_rounds: bool | None = None) -> torch.Tensor:
    """Algorithm 1 of Zhong et al. on the pixel grid, batched. Its `while True` loop redraws a box until
    one fits; each image keeps its first fitting draw of up to ERASE_ROUNDS. Round by round, stopping
    once no image is pending, on the CPU (the draws of the recorded runs); with `all_rounds` (default:
    on any other device) every round is drawn at once — the same distribution, and the host never
    waits for the device to learn whether an image is still pending."""
    n, c, h, w = x.shape
    pending = _uniform(n, generator, x.device) < p
    if all_rounds is None:
        all_rounds = x.device.type != "cpu"
    if all_rounds:
        y, x0, box_h, box_w, fits = _erasing_candidates((ERASE_ROUNDS, n), h, w, area, aspect, generator, x.device)
        fits &= pending
        first = fits.byte().argmax(0, keepdim=True)   # argmax gives the first of equal maxima: the first fit
        erased = fits.any(0)
        top, left, height, width = (torch.where(erased, v.gather(0, first)[0], 0) for v in (y, x0, box_h, box_w))
    else:
        top = torch.zeros(n, dtype=torch.long, device=x.device)
        left, height, width = top.clone(), top.clone(), top.clone()
        for _ in range(ERASE_ROUNDS):
            if not pending.any():
                break
            y, x0, box_h, box_w, fits = _erasing_candidates((n,), h, w, area, aspect, generator, x.device)
            fits &= pending
            top, left = torch.where(fits, y, top), torch.where(fits, x0, left)
            height, width = torch.where(fits, box_h, height), torch.where(fits, box_w, width)
            pending &= ~fits
    noise = _uniform((n, c, h, w), generator, x.device) * 255.0
    return torch.where(_box_mask(top, left, height, width, h, w), noise, x.float())


def cutout(x: torch.Tensor, size: int, generator: torch.Generator, fill=0.0) -> torch.Tensor:
    """Set a size×size square centred at a uniform position (clipped at the borders) to `fill`."""
    n, c, h, w = x.shape
    top = _integers(h, (n,), generator, x.device) - size // 2
    left = _integers(w, (n,), generator, x.device) - size // 2
    bottom, right = (top + size).clamp(max=h), (left + size).clamp(max=w)
    top, left = top.clamp(min=0), left.clamp(min=0)
    mask = _box_mask(top, left, bottom - top, right - left, h, w)
    fill = channel_constants(tuple(map(float, fill)) if isinstance(fill, (tuple, list)) else (float(fill),), x.device)
    return torch.where(mask, fill.expand(1, c, 1, 1), x.float())


def mixup(x: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator):
    """(λx + (1 − λ)x[π], λy + (1 − λ)y[π], λ) with one λ ~ Beta(α, α) and a random pairing π per batch."""
    lam = _beta(alpha, generator)
    partner = torch.randperm(x.shape[0], generator=generator, device=generator.device).to(x.device)
    x = x.float()
    return lam * x + (1 - lam) * x[partner], lam * targets + (1 - lam) * targets[partner], lam


def cutmix(x: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator):
    """Paste one box of x[π] into x; targets mixed by the area-corrected λ = 1 − box area/(HW)."""
    n, _, h, w = x.shape
    lam = _beta(alpha, generator)
    partner = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
    cut_h, cut_w = round(h * math.sqrt(1 - lam)), round(w * math.sqrt(1 - lam))
    centre_y, centre_x = (int(v) for v in _integers(torch.tensor([h, w]), 2, generator, "cpu"))
    top, bottom = max(centre_y - cut_h // 2, 0), min(centre_y - cut_h // 2 + cut_h, h)
    left, right = max(centre_x - cut_w // 2, 0), min(centre_x - cut_w // 2 + cut_w, w)
    x = x.float().clone()
    x[:, :, top:bottom, left:right] = x[partner][:, :, top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (h * w)
    return x, lam * targets + (1 - lam) * targets[partner], lam


@dataclass
class Augmentation:
    """The training augmentations of a run, applied to a batch in a fixed order: geometry
    (scale jitter, crop, flip), colour (fancy PCA), noise (Gaussian), occlusion (cutout, random erasing), then
    mixing (mixup or CutMix; with both, one of them per batch with probability ½, as in timm)."""
    crop: int = 0
    flip: bool = False
    scale_jitter: tuple[float, float] | None = None
    scale_jitter_per_image: bool = False
    fancy_pca: float = 0.0
    gauss_noise: float = 0.0
    pca: tuple[torch.Tensor, torch.Tensor] | None = None   # eigenvalues, eigenvectors
    random_erasing: float = 0.0
    cutout: int = 0
    cutout_fill: tuple[float, ...] = (0.0,)
    mixup: float = 0.0
    cutmix: float = 0.0

    @property
    def mixes(self) -> bool:
        return bool(self.mixup or self.cutmix)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int, generator: torch.Generator):
        """(augmented pixels, targets): class indices, or per-class probabilities when mixing."""
        if self.scale_jitter:
            images = scale_jitter(images, *self.scale_jitter, generator, self.scale_jitter_per_image)
        if self.crop:
            images = random_crop(images, self.crop, generator)
        if self.flip:
            images = random_flip(images, generator)
        if self.fancy_pca:
            images = fancy_pca(images, *self.pca, self.fancy_pca, generator)
        if self.gauss_noise:
            images = gaussian_noise(images, self.gauss_noise, generator)
        if self.cutout:
            images = cutout(images, self.cutout, generator, self.cutout_fill)
        if self.random_erasing:
            images = random_erasing(images, self.random_erasing, generator)
        if not self.mixes:
            return images, labels
        targets = F.one_hot(labels, num_classes).float()
        use_cutmix = self.cutmix and (not self.mixup or float(_uniform(1, generator, images.device)) < 0.5)
        mix = cutmix if use_cutmix else mixup
        images, targets, _ = mix(images, targets, self.cutmix if use_cutmix else self.mixup, generator)
        return images, targets
