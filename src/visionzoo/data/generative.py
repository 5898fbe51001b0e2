"""Data for the generative task: Fashion-MNIST (all or some classes), DiscoGAN's two unpaired domains,
and the 2-D mixtures of Gaussians on which mode collapse is seen; the GAN's optimal discriminator.

Specs (`load_generative_data`):
- ``fashion-mnist``: the ten classes; ``fashion-mnist:CLASSES``: the classes named (``Bag``,
  ``Sandal,Sneaker``) or numbered (``0,8``), relabelled 0 … k−1 in the order given.
- ``fmnist-bags-shoes``: Kim et al.'s handbags ↔ shoes (DiscoGAN, ICML 2017, Sec. 4.3) on Fashion-MNIST:
  domain A = Bag, domain B = Sandal + Sneaker + Ankle boot; labels 0 = A, 1 = B. Different images
  in each domain, so no pair exists.
- ``fmnist-edges-shoes``: Kim et al.'s edges ↔ photos (Fig. 9): domain B = the shoe images, domain A =
  edge maps of shoe images. The shoe images of a split are shuffled (seeded) and halved: A's edges
  are made from the first half, B is the second half, so the edges of no B image are in A. An edge
  map: the image smoothed by the binomial 3 × 3 kernel ([1, 2, 1]ᵀ[1, 2, 1] / 16), its Sobel gradient
  magnitude, thresholded at EDGE_THRESHOLD of that image's largest magnitude (a flat image has no edges):
  255 on edges, 0 elsewhere
  (white lines on black, the images' own polarity).
- ``ring8``: Metz et al., "Unrolled Generative Adversarial Networks", ICLR 2017, Sec. 3.1: a mixture of 8
  Gaussians of standard deviation 0.02 with means evenly spaced on a circle of radius 2; 100 000
  training points (seeded), 10 000 test points (fixed); labels are the mode index.
- ``grid25``: Srivastava et al., "VEEGAN", NeurIPS 2017, Sec. 5.1: 25 Gaussians of standard deviation
  0.05 on the grid {−4, −2, 0, 2, 4}²; sizes as ring8.
- ``toy-domains``: DiscoGAN's toy (Kim et al., ICML 2017, Sec. 4.1, Fig. 4): two unpaired domains of 2-D
  Gaussian mixtures, A of 5 modes and B of 10 (the paper's counts). Our layout: A's means evenly on a
  circle of radius 1, B's on a circle of radius 2 (the first of each on the positive x axis), standard
  deviation 0.05 for every component; labels 0 = A, 1 = B, half the points in each, shuffled; sizes as ring8.
  ``modes`` holds all 15 means (A's, then B's), ``domain_modes`` each domain's.

Images stay uint8 in [0, 255]; the generative task maps them to the generators' Tanh range [−1, 1] with
`to_gan_range` (and samples back with `from_gan_range`). ``mean``/``std`` are the data's per channel
(in [0, 1], of the training images) or per coordinate for points, for whoever needs them.

Mode collapse is measured as Srivastava et al. (VEEGAN, Sec. 5.1) and Lin et al. (PacGAN, NeurIPS 2018,
Sec. 5.1) do (`mode_coverage`): a sample is of high quality if it lies within three standard deviations
of its nearest mode; a mode is covered if it holds at least 20 of every 2 500 samples among them.

The optimal discriminator for a fixed generator (Goodfellow et al. 2014, Proposition 1; the notes'
Fig. 1b) is D*(x) = p_data(x) / (p_data(x) + p_g(x)): `optimal_discriminator`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import UsageError
from .datasets import FASHION_CLASSES, TensorSplit, channel_stats, load_data

BAG, SHOES = 8, (5, 7, 9)   # Fashion-MNIST's Bag; Sandal, Sneaker, Ankle boot
EDGE_THRESHOLD = 0.25
MIN_EDGE = 1e-3   # a gradient magnitude below this (rounding, in [0, 1] units) is never an edge: flat images have none
HIGH_QUALITY_STDS = 3.0
COVERED_SHARE = 20 / 2500   # PacGAN: a mode with fewer than 20 of 2 500 samples is lost
POINT_TRAIN, POINT_TEST = 100_000, 10_000
SPECS = ("fashion-mnist", "fashion-mnist:CLASSES", "fmnist-bags-shoes", "fmnist-edges-shoes", "ring8", "grid25",
         "toy-domains")
POINT_SPECS = ("ring8", "grid25", "toy-domains")
TOY_DOMAIN_MODES = (5, 10)     # DiscoGAN's toy: modes of A and of B
TOY_DOMAIN_RADII = (1.0, 2.0)
TOY_DOMAIN_STD = 0.05


@dataclass
class GenerativeData:
    """What a generative run trains on; `val`/`val_labels` only when a validation split was asked for."""
    kind: str                       # "images" or "points"
    train: torch.Tensor             # uint8 (N, C, H, W) images or float32 (N, D) points
    train_labels: torch.Tensor      # int64 (N,): class, domain (0 = A, 1 = B) or mode index
    test: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]              # class names, domain names, or mode names
    domains: tuple[str, str] | None
    input_size: tuple[int, ...]     # (C, H, W) or (D,)
    mean: list[float]
    std: list[float]
    val: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    modes: torch.Tensor | None = None   # points: (M, D) centres of the mixture
    mode_std: float | None = None       # points: the standard deviation of every component
    domain_modes: tuple[torch.Tensor, torch.Tensor] | None = None   # two-domain points: A's and B's centres


def to_gan_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float [−1, 1], the generators' Tanh range."""
    return images.float() / 127.5 - 1.0


def from_gan_range(images: torch.Tensor) -> torch.Tensor:
    """float [−1, 1] → uint8 [0, 255] (clamped, rounded)."""
    return ((images.detach().float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def _binomial(x: torch.Tensor, dim: int) -> torch.Tensor:
    """[1, 2, 1] along `dim` (2: rows, 3: columns) of a map padded by one there; one shorter at each end."""
    size = x.shape[dim]
    return x.narrow(dim, 0, size - 2) + 2 * x.narrow(dim, 1, size - 2) + x.narrow(dim, 2, size - 2)


def _difference(x: torch.Tensor, dim: int) -> torch.Tensor:
    """[−1, 0, 1] along `dim` of a map padded by one there."""
    size = x.shape[dim]
    return x.narrow(dim, 2, size - 2) - x.narrow(dim, 0, size - 2)


def edge_map(images: torch.Tensor, threshold: float = EDGE_THRESHOLD) -> torch.Tensor:
    """uint8 (N, C, H, W) → uint8 edge maps: binomial smoothing, Sobel magnitude (per channel, then
    the largest over channels), 255 where it exceeds `threshold` × the image's maximum (and MIN_EDGE), else 0.

    The 3 × 3 kernels are separable ([1, 2, 1]ᵀ[1, 2, 1] / 16; Sobel = [1, 2, 1]ᵀ[−1, 0, 1]) and applied as
    sums of shifted maps, borders replicated."""
    x = images.float() / 255.0
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    smooth = _binomial(_binomial(padded, 2), 3) / 16
    padded = F.pad(smooth, (1, 1, 1, 1), mode="replicate")
    across, down = _difference(_binomial(padded, 2), 3), _difference(_binomial(padded, 3), 2)
    magnitude = (across.square() + down.square()).sqrt().amax(1, keepdim=True)
    peak = magnitude.amax((2, 3), keepdim=True).clamp_min(MIN_EDGE / threshold)
    edges = (magnitude > threshold * peak).to(torch.uint8) * 255
    return edges.expand(-1, images.shape[1], -1, -1).contiguous()


def _parse_classes(text: str) -> list[int]:
    """'Bag', 'Sandal,Sneaker', '0,8' → class indices of Fashion-MNIST, in the order given, once each."""
    chosen: list[int] = []
    lowered = [name.lower() for name in FASHION_CLASSES]
    for token in (t.strip() for t in text.split(",")):
        if token.isdigit() and int(token) < len(FASHION_CLASSES):
            index = int(token)
        elif token.lower() in lowered:
            index = lowered.index(token.lower())
        else:
            listing = ", ".join(f"{i} {name}" for i, name in enumerate(FASHION_CLASSES))
            raise UsageError(f"fashion-mnist:{text}: unknown class {token!r}; give names or numbers of: {listing}")
        if index not in chosen:
            chosen.append(index)
    return chosen


def _select(images: torch.Tensor, labels: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of `classes`, labelled by their position in that list."""
    relabel = torch.full((len(FASHION_CLASSES),), -1, dtype=torch.int64)
    relabel[classes] = torch.arange(len(classes))
    keep = relabel[labels] >= 0
    return images[keep], relabel[labels[keep]]


def _two_domains(images: torch.Tensor, labels: torch.Tensor, spec: str, seed: int):
    """(images, labels 0 = A / 1 = B) of a two-domain spec, from one split of Fashion-MNIST."""
    shoes = images[torch.isin(labels, torch.tensor(SHOES))]
    if spec == "fmnist-bags-shoes":
        domain_a, domain_b = images[labels == BAG], shoes
    else:
        order = torch.randperm(len(shoes), generator=torch.Generator().manual_seed(seed))
        half = len(shoes) // 2
        domain_a, domain_b = edge_map(shoes[order[:half]]), shoes[order[half:]]
    domain = torch.cat([torch.zeros(len(domain_a), dtype=torch.int64), torch.ones(len(domain_b), dtype=torch.int64)])
    return torch.cat([domain_a, domain_b]), domain


def _fashion(spec: str, *, data_dir, download: bool, seed: int, image_size: int | None,
             val_size: float | int | None) -> GenerativeData:
    bundle = load_data("fashion-mnist", data_dir=data_dir, download=download, seed=seed, image_size=image_size,
                       val_size=5000 if val_size is None else val_size)
    train, val, test = bundle.train, bundle.val, bundle.test
    splits = {"train": (train.images, train.labels), "test": (test.images, test.labels)}
    if val_size is None:   # no validation split: every training image trains
        splits["train"] = (torch.cat([train.images, val.images]), torch.cat([train.labels, val.labels]))
    else:
        splits["val"] = (val.images, val.labels)
    domains = None
    if spec.startswith("fashion-mnist:"):
        chosen = _parse_classes(spec[len("fashion-mnist:"):])
        splits = {name: _select(*pair, chosen) for name, pair in splits.items()}
        classes = [FASHION_CLASSES[i] for i in chosen]
    elif spec in ("fmnist-bags-shoes", "fmnist-edges-shoes"):
        # Fixed halves for the test split (seed 0), the run's seed for its training (and validation) images.
        halves_seed = {"train": seed, "val": seed + 1, "test": 0}
        splits = {name: _two_domains(*pair, spec, halves_seed[name]) for name, pair in splits.items()}
        domains = ("bags", "shoes") if spec == "fmnist-bags-shoes" else ("edges", "shoes")
        classes = list(domains)
    else:
        classes = list(FASHION_CLASSES)
    images, labels = splits["train"]
    mean, std = channel_stats(TensorSplit(images, labels))
    val_images, val_labels = splits.get("val", (None, None))
    return GenerativeData("images", images, labels, *splits["test"], classes, domains, tuple(images.shape[1:]),
                          mean, std, val_images, val_labels)


def ring_modes(count: int = 8, radius: float = 2.0) -> torch.Tensor:
    """(count, 2) means evenly spaced on a circle, the first on the positive x axis."""
    angles = torch.arange(count, dtype=torch.float64) * (2 * math.pi / count)
    return (radius * torch.stack([angles.cos(), angles.sin()], 1)).float()


def grid_modes(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """(side², 2) means on a square grid centred on the origin, row by row."""
    ticks = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    return torch.cartesian_prod(ticks, ticks)


def _mixture(modes: torch.Tensor, std: float, count: int, rng: np.random.Generator):
    labels = torch.from_numpy(rng.integers(0, len(modes), count)).to(torch.int64)
    noise = torch.from_numpy(rng.normal(0.0, std, (count, modes.shape[1]))).float()
    return modes[labels] + noise, labels


def _domain_mixture(domain_modes, std: float, count: int, rng: np.random.Generator):
    """`count` points, half from each domain's mixture, labelled by domain, in a seeded order (so that the first
    N of a split hold both domains)."""
    halves = (count - count // 2, count // 2)
    drawn = [_mixture(modes, std, size, rng)[0] for modes, size in zip(domain_modes, halves)]
    labels = torch.cat([torch.full((size,), domain, dtype=torch.int64) for domain, size in enumerate(halves)])
    order = torch.from_numpy(rng.permutation(count))
    return torch.cat(drawn)[order], labels[order]


def _toy_domains(seed: int, val_size: float | int | None) -> GenerativeData:
    domain_modes = tuple(ring_modes(count, radius) for count, radius in zip(TOY_DOMAIN_MODES, TOY_DOMAIN_RADII))
    std = TOY_DOMAIN_STD
    train, train_labels = _domain_mixture(domain_modes, std, POINT_TRAIN, np.random.default_rng([seed, 0]))
    test, test_labels = _domain_mixture(domain_modes, std, POINT_TEST, np.random.default_rng([0, 1]))
    val, val_labels = (None, None) if val_size is None else _domain_mixture(
        domain_modes, std, int(val_size * POINT_TRAIN) if val_size < 1 else int(val_size),
        np.random.default_rng([seed, 2]))
    names = ("A", "B")
    return GenerativeData("points", train, train_labels, test, test_labels, list(names), names, (2,),
                          train.mean(0).tolist(), train.std(0).tolist(), val, val_labels, torch.cat(domain_modes),
                          std, domain_modes)


def _points(spec: str, seed: int, val_size: float | int | None) -> GenerativeData:
    if spec == "toy-domains":
        return _toy_domains(seed, val_size)
    if spec == "ring8":
        modes, std = ring_modes(), 0.02
        names = [f"mode {k} ({k * 45}°)" for k in range(len(modes))]
    else:
        modes, std = grid_modes(), 0.05
        names = [f"mode ({x:g}, {y:g})" for x, y in modes.tolist()]
    train, train_labels = _mixture(modes, std, POINT_TRAIN, np.random.default_rng([seed, 0]))
    test, test_labels = _mixture(modes, std, POINT_TEST, np.random.default_rng([0, 1]))   # fixed for every seed
    val, val_labels = (None, None) if val_size is None else _mixture(
        modes, std, int(val_size * POINT_TRAIN) if val_size < 1 else int(val_size), np.random.default_rng([seed, 2]))
    return GenerativeData("points", train, train_labels, test, test_labels, names, None, (modes.shape[1],),
                          train.mean(0).tolist(), train.std(0).tolist(), val, val_labels, modes, std)


def load_generative_data(spec: str, *, data_dir=None, download: bool = False, seed: int = 0,
                         image_size: int | None = None, val_size: float | int | None = None) -> GenerativeData:
    """Load a generative data set by its spec (module docstring). `image_size` resizes images to squares;
    `val_size` (a fraction or a count) carves a seeded validation split from the training images (for
    points: draws one), None keeps every training image for training."""
    if val_size is not None and not val_size > 0:
        raise UsageError(f"val_size={val_size}: give a fraction (< 1) or a count of validation samples, or None")
    if spec in POINT_SPECS:
        if image_size is not None:
            raise UsageError(f"{spec} holds 2-D points, not images: drop the image size ({image_size})")
        return _points(spec, seed, val_size)
    if spec in ("fashion-mnist", "fmnist-bags-shoes", "fmnist-edges-shoes") or spec.startswith("fashion-mnist:"):
        return _fashion(spec, data_dir=data_dir, download=download, seed=seed, image_size=image_size,
                        val_size=val_size)
    raise UsageError(f"unknown generative data set {spec!r}; choose one of {', '.join(SPECS)}")


def mode_coverage(points: torch.Tensor, modes: torch.Tensor, std: float, *,
                  covered_share: float = COVERED_SHARE) -> tuple[int, float]:
    """(modes covered, share of high-quality samples) of generated (N, D) points for a mixture with
    (M, D) `modes` of standard deviation `std`: a sample is of high quality within 3·std of its nearest
    mode; a mode is covered when at least `covered_share` of all N samples are high-quality samples of it."""
    covered, quality = covered_modes(points, modes, std, covered_share=covered_share)
    return len(covered), quality


def covered_modes(points: torch.Tensor, modes: torch.Tensor, std: float, *,
                  covered_share: float = COVERED_SHARE) -> tuple[list[int], float]:
    """The indices of the modes covered (`mode_coverage`'s rule) and the share of high-quality samples."""
    points, modes = torch.as_tensor(points, dtype=torch.float64), torch.as_tensor(modes, dtype=torch.float64)
    if len(points) == 0:
        raise UsageError("mode_coverage needs at least one generated point")
    distance, nearest = torch.cdist(points, modes).min(1)
    good = distance <= HIGH_QUALITY_STDS * std
    per_mode = torch.bincount(nearest[good], minlength=len(modes))
    covered = torch.nonzero(per_mode >= covered_share * len(points)).flatten().tolist()
    return covered, float(good.double().mean())


def gaussian_pdf(mean: float, std: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The density of N(mean, std²) as a function of x."""
    def density(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
    return density


def optimal_discriminator(p_data_pdf: Callable[[torch.Tensor], torch.Tensor],
                          p_g_pdf: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)) (Goodfellow et al., Proposition 1): the discriminator
    maximising V(D, G) for a fixed generator, given the two densities."""
    def discriminator(x: torch.Tensor) -> torch.Tensor:
        data, generated = p_data_pdf(x), p_g_pdf(x)
        return data / (data + generated)
    return discriminator
