"""Segmentation data (`--data` of the segmentation task) and joint image–mask augmentation.

U-Net (Ronneberger, Fischer & Brox, MICCAI 2015) labels every pixel. A split here is a
`TensorSplit` whose `labels` are masks: int64 (N, H, W) with values 0..K−1 (0 = background) or
255 = void ("ignore", as in Pascal VOC), next to uint8 images (N, C, H, W).

- `lv-phantom`: synthetic short-axis cardiac cine-MRI slices (1 channel, 64×64) with the left
  ventricle's myocardium and blood pool (cavity) labelled, as in the ACDC/Sunnybrook tasks the
  course's U-Net exercise mimics: a bright, wobbly blood pool inside a darker ring of varying
  thickness, a bright right ventricle against the septum, lungs, chest wall, fat and vessel blobs,
  papillary muscles inside the cavity (labelled cavity, as in ACDC), partial-volume blur, a
  smooth multiplicative bias field and Rician noise.
- `fmnist-masks`: 1–3 Fashion-MNIST objects (scaled 1×–2×, later ones occluding earlier ones)
  pasted on textured canvases; the mask is the objects' silhouettes.
- `seg-folder:PATH`: images and index-mask PNGs paired by file stem.
- `cells`: touching cells with thin background borders between them (data/cells.py), the case
  U-Net's weight map was made for.

The training sets and the test sets are fixed; the validation split is carved from the training
set with the run's seed. Augmentation (`PairAugmentation`) moves image and mask together: flips,
padded random crops and the paper's elastic deformation (Sec. 3.1: displacements on a coarse 3×3
grid drawn from N(0, σ²) pixels, σ = 10 px on its 572-px tiles, interpolated bicubically to every
pixel; images resampled bilinearly, masks by nearest neighbour).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import DataError, UsageError
from .augment import _integers, _uniform, _windows
from .cells import CELL_SIZES, cells_splits
from .datasets import IMAGE_SUFFIXES, SPLITS, DataBundle, TensorSplit, _load_idx_set, channel_stats, fill_splits

IGNORE_INDEX = 255
SEGMENTATION_DATA = ("lv-phantom", "fmnist-masks", "cells", "seg-folder:PATH")
PHANTOM_CLASSES = ["background", "myocardium", "cavity"]
OBJECT_CLASSES = ["background", "object"]
BASE_SIZE = 64                          # side of the generated slices and canvases
PHANTOM_SIZES = (4000, 1000)            # train (before the validation split), test
FMNIST_MASK_SIZES = (10000, 2000)
TRAIN_SEED, TEST_SEED = 20150518, 20151005   # fixed streams: the data never depend on the run's seed
OBJECT_THRESHOLD = 32                   # a pasted Fashion-MNIST pixel (0–255, resampled) above this is "object"
GENERATION_CHUNK = 1000                 # slices generated per vectorised pass (bounds the memory)
ELASTIC_SIGMA_PAPER = 10.0              # px, on the paper's 572-px tiles
ELASTIC_SIGMA_64 = 2.0                  # px, our default for 64-px images (≈ the paper's strength, a little more)
ELASTIC_GRID = 3                        # the paper's coarse 3×3 grid


def is_segmentation_data(spec: str) -> bool:
    return spec in SEGMENTATION_DATA[:-1] or spec.startswith("seg-folder:")


# --- lv-phantom -------------------------------------------------------------------------------

def _draw(generator: torch.Generator, n: int, low: float, high: float, extra: tuple = ()) -> torch.Tensor:
    """Uniform values in [low, high), shape (n, *extra, 1, 1) so they broadcast over (n, …, H, W)."""
    return low + (high - low) * torch.rand((n, *extra, 1, 1), generator=generator)


def _smooth_field(generator: torch.Generator, n: int, grid: int, size: int) -> torch.Tensor:
    """(n, size, size) random field: N(0, 1) values on a grid×grid lattice, bicubically interpolated."""
    coarse = torch.randn((n, 1, grid, grid), generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[:, 0]


def _ellipse_radius(x, y, cx, cy, a, b, angle):
    """Normalised radius of (x, y) in the ellipse of centre (cx, cy), semi-axes a, b rotated by angle (< 1 inside)."""
    dx, dy = x - cx, y - cy
    u = dx * torch.cos(angle) + dy * torch.sin(angle)
    v = -dx * torch.sin(angle) + dy * torch.cos(angle)
    return torch.sqrt((u / a) ** 2 + (v / b) ** 2)


def _wobble(theta: torch.Tensor, amplitude: torch.Tensor, phase: torch.Tensor, first: int) -> torch.Tensor:
    """1 + Σ_k a_k cos(kθ + φ_k), k = first, first+1, …: a smooth random perturbation of a radius."""
    orders = torch.arange(first, first + amplitude.shape[1], dtype=theta.dtype).view(1, -1, 1, 1)
    return 1 + (amplitude * torch.cos(orders * theta[:, None] + phase)).sum(1)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (n, H, W) as sums of shifted copies (faster than a 1-channel conv here)."""
    radius = max(1, math.ceil(2.5 * sigma))
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=x.dtype) ** 2 / (2 * sigma ** 2))
    taps = (taps / taps.sum()).tolist()
    h, w = x.shape[-2:]
    x = F.pad(x[:, None], (radius,) * 4, mode="replicate")[:, 0]
    x = sum(tap * x[:, :, i:i + w] for i, tap in enumerate(taps))
    return sum(tap * x[:, i:i + h] for i, tap in enumerate(taps))


def _phantom_chunk(generator: torch.Generator, n: int, size: int = BASE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """n short-axis slices (uint8 (n, 1, size, size)) and their masks (int64 (n, size, size)), sizes in pixels."""
    def draw(low: float, high: float, *extra: int) -> torch.Tensor:
        return _draw(generator, n, low, high, extra)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    y, x = coords.view(1, -1, 1), coords.view(1, 1, -1)
    zoom = draw(0.85, 1.2)                      # (n, 1, 1): field-of-view scale
    centre = size / 2

    # Anatomy around the heart, painted back to front: air, body, chest wall (fat over muscle), lungs, blobs.
    tissue = draw(0.3, 0.45)
    body = _ellipse_radius(x, y, centre + draw(-3, 3), centre + draw(-3, 3),
                           zoom * draw(28, 34), zoom * draw(22, 28), draw(-0.2, 0.2))
    fat_rim, muscle_rim = draw(0.05, 0.1), draw(0.06, 0.14)
    image = torch.full((n, size, size), 0.02) + 0.03 * torch.rand((n, size, size), generator=generator)
    image = torch.where(body < 1, draw(0.75, 0.95), image)
    image = torch.where(body < 1 - fat_rim, draw(0.2, 0.3), image)
    image = torch.where(body < 1 - fat_rim - muscle_rim, tissue, image)

    heart_x, heart_y = centre + draw(-6, 6), centre + draw(-6, 6)
    for side in (-1, 1):
        lung = _ellipse_radius(x, y, heart_x + side * zoom * draw(15, 21), heart_y + draw(-4, 4),
                               zoom * draw(7, 11), zoom * draw(10, 16), draw(-0.5, 0.5))
        image = torch.where((lung < 1) & (body < 1 - fat_rim - muscle_rim), draw(0.02, 0.1), image)
    for _ in range(6):   # fat (bright), vessels (bright), bowel/liver/vessel walls (dark): distractors
        blob = _ellipse_radius(x, y, draw(10, 54), draw(10, 54), zoom * draw(1.5, 5),
                               zoom * draw(1.5, 5), draw(0, math.pi))
        image = torch.where((blob < 1) & (body < 1 - fat_rim), draw(0.05, 0.95), image)

    # The left ventricle in polar coordinates of its own (elliptic, rotated) frame.
    blood, muscle = draw(0.7, 0.95), draw(0.15, 0.3)
    angle, squash = draw(0, 2 * math.pi), draw(0.8, 1.0)
    dx, dy = x - heart_x, y - heart_y
    u = dx * torch.cos(angle) + dy * torch.sin(angle)
    v = (-dx * torch.sin(angle) + dy * torch.cos(angle)) / squash
    radius, theta = torch.sqrt(u ** 2 + v ** 2), torch.atan2(v, u)
    mean_cavity, mean_thickness = zoom * draw(6, 11), zoom * draw(3.5, 6.5)
    cavity_radius = mean_cavity * _wobble(theta, draw(-0.07, 0.07, 3), draw(0, 2 * math.pi, 3), 2)
    thickness = (mean_thickness * _wobble(theta, draw(-0.2, 0.2, 3), draw(0, 2 * math.pi, 3), 1)).clamp_min(2.5)
    cavity = radius < cavity_radius
    myocardium = ~cavity & (radius < cavity_radius + thickness)

    # The right ventricle: a bright crescent-like blob pressed against the septum, to the image's left.
    rv_angle = math.pi + draw(-0.6, 0.6)
    rv_depth, rv_width = zoom * draw(4, 8), zoom * draw(9, 15)
    rv_distance = mean_cavity + mean_thickness + rv_depth * draw(0.2, 0.8)
    rv = _ellipse_radius(x, y, heart_x + rv_distance * torch.cos(rv_angle), heart_y + rv_distance * torch.sin(rv_angle),
                         rv_depth, rv_width, rv_angle)
    image = torch.where(rv < 1, blood * draw(0.85, 1.05), image)
    image = torch.where(myocardium, muscle, image)
    image = torch.where(cavity, blood, image)
    for _ in range(2):   # papillary muscles: dark islands in the blood pool, labelled cavity (ACDC convention)
        spot_angle, present = draw(0, 2 * math.pi), draw(0, 1) < 0.5
        spot_distance = 0.6 * mean_cavity
        spot = torch.hypot(x - heart_x - spot_distance * torch.cos(spot_angle),
                           y - heart_y - spot_distance * torch.sin(spot_angle)) < zoom * draw(1.0, 1.8)
        image = torch.where(spot & cavity & present, muscle, image)

    # Acquisition: partial-volume blur, coil bias field, Rician magnitude noise.
    image = _gaussian_blur(image, 0.8) * torch.exp(0.25 * _smooth_field(generator, n, 3, size))
    noise = draw(0.03, 0.09)
    real = image + noise * torch.randn((n, size, size), generator=generator)
    imaginary = noise * torch.randn((n, size, size), generator=generator)
    image = torch.hypot(real, imaginary)
    pixels = (image * 255).round().clamp(0, 255).to(torch.uint8)[:, None]
    masks = myocardium.long() + 2 * cavity.long()
    return pixels, masks


def lv_phantom(count: int, seed: int, size: int = BASE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` synthetic slices from the stream `seed`: uint8 (count, 1, size, size), int64 masks (count, size, size)."""
    generator = torch.Generator().manual_seed(seed)
    parts = [_phantom_chunk(generator, min(GENERATION_CHUNK, count - start), size)
             for start in range(0, count, GENERATION_CHUNK)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


# --- fmnist-masks -----------------------------------------------------------------------------

def _canvas_texture(generator: torch.Generator, n: int, size: int) -> torch.Tensor:
    """Grey background (0–255 floats): level + smooth noise + a sinusoidal grating of random frequency."""
    def draw(low: float, high: float) -> torch.Tensor:
        return _draw(generator, n, low, high)
    coords = torch.arange(size, dtype=torch.float32) / size
    y, x = coords.view(1, -1, 1), coords.view(1, 1, -1)
    direction, cycles = draw(0, math.pi), draw(2, 10)
    grating = torch.sin(2 * math.pi * cycles * (x * torch.cos(direction) + y * torch.sin(direction))
                        + draw(0, 2 * math.pi))
    return (draw(70, 170) + draw(10, 30) * _smooth_field(generator, n, 5, size) + draw(10, 35) * grating)


def paste_canvases(sources: torch.Tensor, count: int, seed: int, size: int = BASE_SIZE
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` canvases of 1–3 objects drawn from `sources` (uint8 (M, 1, h, w)) only.

    Each object is scaled by s ∈ [1, 2], placed anywhere it fits whole, and resampled bilinearly;
    its silhouette (resampled intensity > OBJECT_THRESHOLD) is pasted over the canvas and over
    earlier objects. Returns uint8 (count, 1, size, size) and int64 masks (count, size, size).
    """
    generator = torch.Generator().manual_seed(seed)
    height, width = sources.shape[-2:]
    images, masks = [], []
    for start in range(0, count, GENERATION_CHUNK):
        n = min(GENERATION_CHUNK, count - start)
        canvas = _canvas_texture(generator, n, size)
        mask = torch.zeros((n, size, size), dtype=torch.int64)
        objects = torch.randint(1, 4, (n,), generator=generator)
        centres = torch.arange(size, dtype=torch.float32) + 0.5
        for slot in range(3):
            picked = sources[torch.randint(len(sources), (n,), generator=generator)].float()
            scale = 1 + torch.rand(n, generator=generator)
            top = torch.rand(n, generator=generator) * (size - height * scale)
            left = torch.rand(n, generator=generator) * (size - width * scale)
            # Output pixel centre p ↦ source coordinate (p − offset)/scale, normalised for align_corners=False.
            source_y = ((centres[None] - top[:, None]) / scale[:, None]) / height * 2 - 1
            source_x = ((centres[None] - left[:, None]) / scale[:, None]) / width * 2 - 1
            grid = torch.stack(torch.broadcast_tensors(source_x[:, None, :], source_y[:, :, None]), -1)
            pasted = F.grid_sample(picked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
            silhouette = (pasted > OBJECT_THRESHOLD) & (slot < objects)[:, None, None]
            canvas = torch.where(silhouette, pasted, canvas)
            mask = torch.where(silhouette, 1, mask)
        canvas = canvas + _draw(generator, n, 3, 10) * torch.randn((n, size, size), generator=generator)
        images.append(canvas.round().clamp(0, 255).to(torch.uint8)[:, None])
        masks.append(mask)
    return torch.cat(images), torch.cat(masks)


def _fmnist_masks(data_dir, download: bool):
    (train_images, _), (test_images, _), _ = _load_idx_set("fashion-mnist", data_dir, download)
    return fmnist_mask_splits(torch.from_numpy(train_images), torch.from_numpy(test_images))


def fmnist_mask_splits(train_sources: torch.Tensor, test_sources: torch.Tensor):
    """(train, test) canvases: the training canvases from `train_sources` only, the test ones from `test_sources`."""
    return (paste_canvases(train_sources, FMNIST_MASK_SIZES[0], TRAIN_SEED),
            paste_canvases(test_sources, FMNIST_MASK_SIZES[1], TEST_SEED))


# --- seg-folder:PATH --------------------------------------------------------------------------

GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
MASK_MODES = {"P", "1", "L", "I", "I;16", "I;16B", "I;16L"}


def _pairs(tree: Path) -> list[tuple[Path, Path]]:
    images_dir, masks_dir = tree / "images", tree / "masks"
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise UsageError(f"{folder} is missing; a segmentation folder holds images/ and masks/ "
                             "(index PNGs named like the images)")
    images = {f.stem: f for f in sorted(images_dir.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES}
    masks = {f.stem: f for f in sorted(masks_dir.iterdir()) if f.suffix.lower() == ".png"}
    if not images and not masks:
        raise UsageError(f"{tree}: no images in {images_dir} ({', '.join(sorted(IMAGE_SUFFIXES))}) and no "
                         f"masks in {masks_dir} (.png)")
    for stem, image in images.items():
        if stem not in masks:
            raise DataError(f"{image}: no mask {masks_dir / (stem + '.png')} for this image")
    for stem, mask in masks.items():
        if stem not in images:
            raise DataError(f"{mask}: no image named {stem}.* in {images_dir} for this mask")
    return [(images[stem], masks[stem]) for stem in images]


def _open(path: Path):
    from PIL import Image
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except Exception as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None


def _read_mask(path: Path) -> np.ndarray:
    mask = _open(path)
    if mask.mode not in MASK_MODES:
        raise DataError(f"{path}: mask of mode {mask.mode} (colour); save masks as palette (P) or greyscale "
                        "(L) PNGs whose pixel values are the class indices")
    values = np.asarray(mask, dtype=np.int64)
    if values.min() < 0:
        raise DataError(f"{path}: negative label {values.min()} in the mask")
    return values


def _read_tree(tree: Path) -> list[tuple[Path, object, Path, np.ndarray]]:
    """(image path, PIL image, mask path, mask labels) for every pair, sizes checked."""
    pairs = []
    for image_path, mask_path in _pairs(tree):
        image, mask = _open(image_path), _read_mask(mask_path)
        if (image.height, image.width) != mask.shape:
            raise DataError(f"{mask_path}: mask of {mask.shape[1]}×{mask.shape[0]} pixels for the image "
                            f"{image_path} of {image.width}×{image.height}; they must be the same size")
        pairs.append((image_path, image, mask_path, mask))
    return pairs


def _read_classes(root: Path, trees: dict[str, list]) -> list[str]:
    names_file = root / "classes.txt"
    if names_file.exists():
        try:
            names = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise DataError(f"{names_file}: not UTF-8 text; save the class names as UTF-8, one per line") from None
        if len(names) < 2:
            raise DataError(f"{names_file}: {len(names)} class name(s); list one per line, background first, "
                            "at least two")
        repeated = next((name for k, name in enumerate(names) if name in names[:k]), None)
        if repeated is not None:
            raise DataError(f"{names_file}: the class {repeated!r} is named twice; give each class a name of its own")
        for pairs in trees.values():
            for _, _, mask_path, mask in pairs:
                labels = np.unique(mask)
                bad = labels[(labels >= len(names)) & (labels != IGNORE_INDEX)]
                if len(bad):
                    raise DataError(f"{mask_path}: label {bad[0]} but {names_file} names {len(names)} classes "
                                    f"(0..{len(names) - 1}; {IGNORE_INDEX} = ignore)")
        return names
    largest = max((int(m[m != IGNORE_INDEX].max(initial=0)) for pairs in trees.values() for *_, m in pairs),
                  default=0)
    return ["background"] + [f"class{k}" for k in range(1, max(largest, 1) + 1)]


def _stack_tree(pairs: list, channels: int, image_size: int | None) -> TensorSplit:
    """The pairs as one in-memory split, each pair resized on its own (their sizes may differ)."""
    from torchvision.transforms.v2.functional import pil_to_tensor
    images = [resize_images(pil_to_tensor(image.convert("L" if channels == 1 else "RGB"))[None], image_size)
              for _, image, _, _ in pairs]
    masks = [resize_masks(torch.from_numpy(mask)[None], image_size) for *_, mask in pairs]
    return TensorSplit(torch.cat(images), torch.cat(masks))


def _seg_folder_splits(root: Path, image_size: int | None) -> tuple[dict[str, TensorSplit], list[str]]:
    if not root.is_dir():
        raise UsageError(f"seg-folder:{root} is not a directory; give a folder with images/ and masks/ "
                         "(or train/, val/, test/ each holding them)")
    named = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if named and "train" not in named:
        raise UsageError(f"{root} has {'/ and '.join(named)}/ but no train/; put the training pairs in "
                         f"{root}/train/images and {root}/train/masks")
    trees = {name: _read_tree(tree) for name, tree in (named or {"train": root}).items()}
    if all((np.asarray(mask) == IGNORE_INDEX).all() for *_, mask in trees["train"]):
        raise DataError(f"{root}: every pixel of the training masks is {IGNORE_INDEX} (void), so there is nothing to "
                        "learn; label the pixels with their classes 0, 1, …")
    classes = _read_classes(root, trees)
    every = [pair for pairs in trees.values() for pair in pairs]
    channels = 1 if all(image.mode in GREY_MODES for _, image, _, _ in every) else 3
    if image_size is None:
        sizes = {(image.height, image.width): path for path, image, _, _ in every}
        if len(sizes) > 1:
            (first, first_path), (other, other_path) = list(sizes.items())[:2]
            raise UsageError(f"images of different sizes ({first_path} is {first[1]}×{first[0]}, {other_path} is "
                             f"{other[1]}×{other[0]}); pass --image-size to resize them all to one square size")
    return {name: _stack_tree(pairs, channels, image_size) for name, pairs in trees.items()}, classes


# --- loading ----------------------------------------------------------------------------------

def resize_images(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """uint8 (N, C, H, W) → (N, C, size, size), bilinear with antialiasing; unchanged if size is None or equal."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    from torchvision.transforms.v2.functional import resize
    return resize(images, [size, size], antialias=True)


def resize_masks(masks: torch.Tensor, size: int | None) -> torch.Tensor:
    """int64 (N, H, W) → (N, size, size) by nearest neighbour, so every pixel keeps a label."""
    if size is None or tuple(masks.shape[-2:]) == (size, size):
        return masks
    return F.interpolate(masks[:, None].float(), size=(size, size), mode="nearest-exact")[:, 0].long()


@functools.lru_cache(maxsize=2)
def _synthetic(spec: str, sizes: tuple[int, int]):
    """The purely generated sets, made once per process and size (tests and experiments load them often)."""
    if spec == "lv-phantom":
        return lv_phantom(sizes[0], TRAIN_SEED), lv_phantom(sizes[1], TEST_SEED), PHANTOM_CLASSES
    return cells_splits(sizes)


def _generated(spec: str, data_dir, download: bool):
    if spec in ("lv-phantom", "cells"):
        return _synthetic(spec, PHANTOM_SIZES if spec == "lv-phantom" else CELL_SIZES)
    train, test = _fmnist_masks(data_dir, download)
    return train, test, OBJECT_CLASSES


def load_segmentation_data(spec: str, *, data_dir=None, download: bool = False, val_size: float | int = 0.1,
                           seed: int = 0, image_size: int | None = None) -> DataBundle:
    """A segmentation data set by its spec (SEGMENTATION_DATA): fixed train and test sets, a validation
    split carved from train with `seed` (`val_size`: a fraction or a count), masks in `labels`.

    `image_size` resizes to a square of that side (images bilinear with antialiasing, masks nearest).
    Generated sets are 64×64 by default; `seg-folder:` keeps the files' size when they all share one.
    """
    if spec.startswith("seg-folder:"):
        splits, classes = _seg_folder_splits(Path(spec[len("seg-folder:"):]).expanduser(), image_size)
    elif spec in SEGMENTATION_DATA:
        (x_train, y_train), (x_test, y_test), classes = _generated(spec, data_dir, download)
        splits = {"train": TensorSplit(resize_images(x_train, image_size), resize_masks(y_train, image_size)),
                  "test": TensorSplit(resize_images(x_test, image_size), resize_masks(y_test, image_size))}
    else:
        raise UsageError(f"unknown segmentation data set {spec!r}; choose one of {', '.join(SEGMENTATION_DATA)}")
    splits = fill_splits(splits, val_size, seed)
    bundle = DataBundle(spec, splits["train"], splits["val"], splits["test"], classes)
    bundle.mean, bundle.std = channel_stats(bundle.train)
    return bundle


# --- joint augmentation -----------------------------------------------------------------------

def pair_flip(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator, dim: int, p: float = 0.5):
    """Mirror each (image, mask) pair along its width (dim=-1) or height (dim=-2) with probability p."""
    flip = _uniform(images.shape[0], generator, images.device) < p
    return (torch.where(flip[:, None, None, None], images.flip(dim), images),
            torch.where(flip[:, None, None], masks.flip(dim), masks))


def pair_crop(images: torch.Tensor, masks: torch.Tensor, padding: int, generator: torch.Generator):
    """Pad by `padding` (images with 0, masks with IGNORE_INDEX, so the loss skips the invented border)
    and crop one random window of the original size, the same for image and mask."""
    if padding <= 0:
        return images, masks
    n, _, h, w = images.shape
    top = _integers(2 * padding + 1, (n,), generator, images.device)
    left = _integers(2 * padding + 1, (n,), generator, images.device)
    padded_masks = F.pad(masks, (padding,) * 4, value=IGNORE_INDEX)
    return (_windows(F.pad(images, (padding,) * 4), top, left, h, w),
            _windows(padded_masks[:, None], top, left, h, w)[:, 0])


def elastic_grid(n: int, height: int, width: int, sigma: float, generator: torch.Generator, device,
                 grid: int = ELASTIC_GRID) -> torch.Tensor:
    """Sampling grid (n, H, W, 2) for grid_sample(align_corners=True): identity plus a displacement field
    drawn as N(0, σ²) pixels on a grid×grid lattice over the image, bicubically interpolated (Sec. 3.1)."""
    coarse = torch.randn((n, 2, grid, grid), generator=generator, device=generator.device).to(device) * sigma
    displacement = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
    ys = torch.linspace(-1, 1, height, device=device).view(1, -1, 1).expand(n, height, width)
    xs = torch.linspace(-1, 1, width, device=device).view(1, 1, -1).expand(n, height, width)
    return torch.stack([xs + displacement[:, 0] * 2 / max(width - 1, 1),
                        ys + displacement[:, 1] * 2 / max(height - 1, 1)], -1)


def elastic_deform(images: torch.Tensor, masks: torch.Tensor, sigma: float, generator: torch.Generator,
                   grid: int = ELASTIC_GRID):
    """The paper's elastic deformation of (image, mask) pairs: one random smooth field per pair,
    images resampled bilinearly and masks by nearest neighbour, both mirrored at the borders."""
    if sigma <= 0:
        return images, masks
    n, _, h, w = images.shape
    field = elastic_grid(n, h, w, sigma, generator, images.device, grid)
    warped = F.grid_sample(images.float(), field, mode="bilinear", padding_mode="reflection", align_corners=True)
    warped_masks = F.grid_sample(masks[:, None].float(), field, mode="nearest", padding_mode="reflection",
                                 align_corners=True)[:, 0].long()
    if not images.is_floating_point():
        warped = warped.round().clamp(0, 255).to(images.dtype)
    return warped, warped_masks


@dataclass
class PairAugmentation:
    """Training augmentation of (image, mask) batches, in order: padded random crop, flips, elastic
    deformation. `elastic_sigma` is in pixels (the paper: 10 on 572-px tiles; 2 suits 64-px images)."""
    flip: bool = True
    vflip: bool = False
    crop: int = 0
    elastic_sigma: float = ELASTIC_SIGMA_64

    def __call__(self, images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator):
        images, masks = pair_crop(images, masks, self.crop, generator)
        if self.flip:
            images, masks = pair_flip(images, masks, generator, -1)
        if self.vflip:
            images, masks = pair_flip(images, masks, generator, -2)
        return elastic_deform(images, masks, self.elastic_sigma, generator)
