"""Video data (`--data` of the video task) and clip augmentation.

The notes' 3D CNN chapter (Ji, Xu, Yang & Yu, "3D Convolutional Neural Networks for Human Action
Recognition", TPAMI 2013, Fig. 1–3; Tran et al., C3D, ICCV 2015) classifies what happens *over*
frames. A split here is a `TensorSplit` whose images are clips, uint8 (N, C, T, H, W), with int64
labels (N,).

- `moving-fmnist`: one Fashion-MNIST object per clip whose MOTION is the label (MOTION_CLASSES):
  translation left/right/up/down, rotation clockwise/anticlockwise (as seen on the screen), zoom
  in/out, or none (static). Every clip draws its object, start angle, scale, centre, speeds and
  amplitudes; along each of its four axes (x, y, log-scale, angle) a clip either moves linearly,
  phase u − ½ for u = t/(T − 1), or holds a constant phase w − ½ with w drawn from the same
  frame times. So a frame taken at a random time has the same distribution whatever the class:
  no single frame tells the motion (only a frame at a known time hints at it, through
  overlapping position/scale ranges). Training clips come from Fashion-MNIST's training images,
  test clips from its test images only, both from fixed streams; 16 frames of 64×64 by default,
  rendered directly at `image_size` and `frames` (one affine_grid/grid_sample per chunk of frames).
- `moving-mnist:PATH`: the standard Moving MNIST array (Srivastava, Mansimov & Salakhutdinov,
  ICML 2015): `mnist_test_seq.npy`, uint8 (T, N, H, W) = (20, 10000, 64, 64). It has no labels:
  every clip is labelled 0 of the single class "clip" (prediction/unsupervised use), and the
  video task refuses it for classification.

`ClipAugmentation` draws everything from a torch.Generator: a random temporal window, a padded
random spatial crop (the same for every frame of a clip), a horizontal flip that swaps the labels
a mirror swaps (left↔right, clockwise↔anticlockwise), and optionally time reversal, which swaps
left↔right, up↔down, zoom in↔out and clockwise↔anticlockwise.
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
from .datasets import DataBundle, TensorSplit, _load_idx_set, _locate, channel_stats, fill_splits
from .segmentation import resize_images

VIDEO_DATA = ("moving-fmnist", "moving-mnist:PATH")
MOTION_CLASSES = ["left", "right", "up", "down", "clockwise", "anticlockwise", "zoom in", "zoom out", "static"]
# Per class, the direction along (x, y, log-scale, angle): ±1 moves over the clip, 0 holds a random offset.
# y grows downwards (image rows); the angle grows clockwise on the screen.
MOTIONS = {"left": (-1, 0, 0, 0), "right": (1, 0, 0, 0), "up": (0, -1, 0, 0), "down": (0, 1, 0, 0),
           "clockwise": (0, 0, 0, 1), "anticlockwise": (0, 0, 0, -1), "zoom in": (0, 0, 1, 0),
           "zoom out": (0, 0, -1, 0), "static": (0, 0, 0, 0)}
MIRRORED = {"left": "right", "right": "left", "clockwise": "anticlockwise", "anticlockwise": "clockwise"}
REVERSED = {**MIRRORED, "up": "down", "down": "up", "zoom in": "zoom out", "zoom out": "zoom in"}
CANVAS = 64                          # side of the virtual canvas every length below is measured on
MOVING_FMNIST_SIZES = (10000, 2000)  # train (before the validation split), test
MOVING_FMNIST_FRAMES = 16
TRAIN_SEED, TEST_SEED = 20130101, 20150707   # fixed streams: the clips never depend on the run's seed
CENTRE_RANGE = 8.0                   # clip centre within ±8 px of the canvas centre
TRAVEL = (14.0, 24.0)                # px travelled over the clip along x or y
LOG_SCALE = (math.log(0.8), math.log(1.4))   # mid-clip object scale (1 = 28 px on the 64-px canvas)
ZOOM = (0.5, 0.9)                    # change of log-scale over the clip (×1.65 to ×2.46)
TURN = (math.pi / 2, math.pi)        # rad turned over the clip
GENERATION_CHUNK = 64                # clips rendered per grid_sample call (bounds the memory)
MOVING_MNIST_SHAPE = "(T, N, H, W) = (20, 10000, 64, 64)"


def is_video_data(spec: str) -> bool:
    return spec == "moving-fmnist" or spec.startswith("moving-mnist:")


def label_permutation(classes: list[str], swaps: dict[str, str]) -> torch.Tensor:
    """Index k → the index of the class that `swaps` turns class k into (classes not named keep theirs)."""
    return torch.tensor([classes.index(swaps[name]) if swaps.get(name) in classes else k
                         for k, name in enumerate(classes)], dtype=torch.int64)


# --- moving-fmnist ----------------------------------------------------------------------------

def trajectories(labels: torch.Tensor, frames: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per clip and frame (N, T): centre x, y (px from the canvas centre), log-scale and angle (rad)."""
    if frames < 2:
        raise UsageError(f"--frames {frames}: a motion needs at least 2 frames")
    n = len(labels)

    def draw(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand((n, *shape), generator=generator)
    times = torch.arange(frames, dtype=torch.float32) / (frames - 1)
    directions = torch.tensor([MOTIONS[name] for name in MOTION_CLASSES], dtype=torch.float32)[labels]  # (N, 4)
    held = torch.randint(frames, (n, 4), generator=generator).float() / (frames - 1)   # a frame time per axis
    phase = torch.where(directions[:, :, None] != 0, directions[:, :, None] * (times - 0.5),
                        (held - 0.5)[:, :, None])                                            # (N, 4, T)
    amplitude = torch.cat([draw(*TRAVEL, 2), draw(*ZOOM, 1), draw(*TURN, 1)], 1)[:, :, None]
    base = torch.cat([draw(-CENTRE_RANGE, CENTRE_RANGE, 2), draw(*LOG_SCALE, 1), draw(0, 2 * math.pi, 1)], 1)
    x, y, log_scale, angle = (base[:, :, None] + amplitude * phase).unbind(1)
    return {"x": x, "y": y, "log_scale": log_scale, "angle": angle}


def render(objects: torch.Tensor, x: torch.Tensor, y: torch.Tensor, log_scale: torch.Tensor, angle: torch.Tensor,
           size: int = CANVAS) -> torch.Tensor:
    """Clips uint8 (N, C, T, size, size) of `objects` (uint8 (N, C, h, w)) on a black canvas, placed per frame
    by the (N, T) trajectories: centre (x, y) in px of a 64-px canvas, scale exp(log_scale) (1: the object
    covers h px of 64), rotated by `angle` clockwise. The canvas is the same at any `size`."""
    n, channels, height, width = objects.shape
    frames = x.shape[1]
    cos, sin = torch.cos(angle).reshape(-1), torch.sin(angle).reshape(-1)
    # Output point p (normalised, align_corners=False) ↦ object point q = k·R(−θ)·(p − c), k = canvas/object/scale.
    k_x = (CANVAS / width) / torch.exp(log_scale).reshape(-1)
    k_y = (CANVAS / height) / torch.exp(log_scale).reshape(-1)
    c_x, c_y = x.reshape(-1) / (CANVAS / 2), y.reshape(-1) / (CANVAS / 2)
    # affine_grid's batched matmul is several times slower here than these broadcast products
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) * (2 / size) - 1
    p_x, p_y = centres.view(1, 1, -1), centres.view(1, -1, 1)
    d_x, d_y = p_x - c_x[:, None, None], p_y - c_y[:, None, None]
    cos, sin = cos[:, None, None], sin[:, None, None]
    grid = torch.stack([k_x[:, None, None] * (cos * d_x + sin * d_y), k_y[:, None, None] * (cos * d_y - sin * d_x)], -1)
    sources = objects.float().repeat_interleave(frames, 0)
    pixels = F.grid_sample(sources, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    pixels = pixels.round().clamp(0, 255).to(torch.uint8)
    return pixels.view(n, frames, channels, size, size).transpose(1, 2).contiguous()


def moving_clips(sources: torch.Tensor, count: int, seed: int, frames: int = MOVING_FMNIST_FRAMES,
                 size: int = CANVAS) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` clips of objects drawn from `sources` (uint8 (M, C, h, w)) only, from the stream `seed`:
    uint8 (count, C, frames, size, size) and int64 labels (count,), each class equally often (±1)."""
    generator = torch.Generator().manual_seed(seed)
    classes = len(MOTION_CLASSES)
    labels = (torch.arange(count) % classes)[torch.randperm(count, generator=generator)]
    picked = torch.randint(len(sources), (count,), generator=generator)
    paths = trajectories(labels, frames, generator)
    clips = torch.empty((count, sources.shape[1], frames, size, size), dtype=torch.uint8)
    for start in range(0, count, GENERATION_CHUNK):
        part = slice(start, start + GENERATION_CHUNK)
        clips[part] = render(sources[picked[part]], **{key: value[part] for key, value in paths.items()}, size=size)
    return clips, labels


def moving_fmnist_splits(train_sources: torch.Tensor, test_sources: torch.Tensor, sizes=MOVING_FMNIST_SIZES,
                         frames: int = MOVING_FMNIST_FRAMES, size: int = CANVAS):
    """(train, test) clips: the training clips from `train_sources` only, the test clips from `test_sources`."""
    return (moving_clips(train_sources, sizes[0], TRAIN_SEED, frames, size),
            moving_clips(test_sources, sizes[1], TEST_SEED, frames, size))


@functools.lru_cache(maxsize=2)
def _moving_fmnist(folder: str, sizes: tuple[int, int], frames: int, size: int):
    """Made once per process, source folder and size (tests and experiments load it often)."""
    (train_images, _), (test_images, _), _ = _load_idx_set("fashion-mnist", folder, False)
    return moving_fmnist_splits(torch.from_numpy(train_images), torch.from_numpy(test_images), sizes, frames, size)


# --- moving-mnist:PATH ------------------------------------------------------------------------

def read_moving_mnist(path: Path) -> torch.Tensor:
    """The clips of a Moving MNIST .npy file, uint8 (T, N, H, W), as uint8 (N, 1, T, H, W)."""
    if not path.is_file():
        raise UsageError(f"moving-mnist:{path}: no such file; give the path of mnist_test_seq.npy")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError):   # numpy's own text speaks of pickles, which are never read here
        raise DataError(f"{path}: not a NumPy .npy array file; give Moving MNIST's mnist_test_seq.npy") from None
    if not isinstance(array, np.ndarray) or array.ndim != 4 or array.dtype != np.uint8:
        shape = getattr(array, "shape", "?")
        dtype = getattr(array, "dtype", "?")
        raise DataError(f"{path}: a {dtype} array of shape {shape}; Moving MNIST is uint8 {MOVING_MNIST_SHAPE}")
    if min(array.shape) == 0 or array.shape[0] < 2:
        raise DataError(f"{path}: shape {array.shape} holds no clips of 2 or more frames; expected {MOVING_MNIST_SHAPE}")
    return torch.from_numpy(np.ascontiguousarray(array.transpose(1, 0, 2, 3)))[:, None]


def resize_clips(clips: torch.Tensor, size: int | None) -> torch.Tensor:
    """uint8 (N, C, T, H, W) → (N, C, T, size, size), every frame resized bilinearly with antialiasing."""
    if size is None or tuple(clips.shape[-2:]) == (size, size):
        return clips
    n, channels, frames = clips.shape[:3]
    flat = clips.reshape(n, channels * frames, *clips.shape[-2:])
    return resize_images(flat, size).reshape(n, channels, frames, size, size)


# --- loading ----------------------------------------------------------------------------------

def load_video_data(spec: str, *, data_dir=None, download: bool = False, val_size: float | int = 0.1,
                    seed: int = 0, frames: int | None = None, image_size: int | None = None) -> DataBundle:
    """A video data set by its spec (VIDEO_DATA): fixed train and test clips, a validation split carved
    from train with `seed` (`val_size`: a fraction or a count), clips uint8 (N, C, T, H, W) in `images`.

    moving-fmnist is rendered with `frames` frames (default 16) of `image_size` pixels (default 64);
    moving-mnist keeps its first `frames` frames and resizes to `image_size` when given.
    """
    if frames is not None and frames < 2:
        raise UsageError(f"--frames {frames}: a clip needs at least 2 frames")
    if spec == "moving-fmnist":
        folder = _locate("fashion-mnist", data_dir, download, "train-images-idx3-ubyte")
        (x_train, y_train), (x_test, y_test) = _moving_fmnist(str(folder), tuple(MOVING_FMNIST_SIZES),
                                                               frames or MOVING_FMNIST_FRAMES, image_size or CANVAS)
        splits = {"train": TensorSplit(x_train, y_train), "test": TensorSplit(x_test, y_test)}
        classes = list(MOTION_CLASSES)
    elif spec.startswith("moving-mnist:"):
        path = Path(spec[len("moving-mnist:"):]).expanduser()
        clips = read_moving_mnist(path)
        if frames is not None and frames > clips.shape[2]:
            raise UsageError(f"--frames {frames}: {path} holds clips of {clips.shape[2]} frames")
        clips = resize_clips(clips[:, :, :frames] if frames else clips, image_size)
        if len(clips) < 3:
            raise DataError(f"{path}: {len(clips)} clip(s); a train, a validation and a test split need 3 or more")
        splits = {"train": TensorSplit(clips, torch.zeros(len(clips), dtype=torch.int64))}
        classes = ["clip"]
    else:
        raise UsageError(f"unknown video data set {spec!r}; choose one of {', '.join(VIDEO_DATA)}")
    splits = fill_splits(splits, val_size, seed)
    bundle = DataBundle(spec, splits["train"], splits["val"], splits["test"], classes)
    bundle.mean, bundle.std = channel_stats(bundle.train, limit=2000)
    return bundle


@dataclass
class ClipNormalizer:
    """uint8 clips (N, C, T, H, W) → float (x/255 − mean)/std per channel; with `frames`, a longer clip is
    first cut to its central window of that many frames (a network trained on temporal crops is
    evaluated on the middle of the clip)."""
    mean: list[float]
    std: list[float]
    frames: int | None = None

    def __call__(self, clips: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        clips = centre_window(clips, self.frames)
        mean = torch.tensor(self.mean, device=clips.device).view(1, -1, 1, 1, 1)
        std = torch.tensor(self.std, device=clips.device).view(1, -1, 1, 1, 1)
        return (clips.float() / 255.0 - mean) / std


def centre_window(clips: torch.Tensor, frames: int | None) -> torch.Tensor:
    if frames is None or clips.shape[2] <= frames:
        return clips
    start = (clips.shape[2] - frames) // 2
    return clips[:, :, start:start + frames]


# --- augmentation -----------------------------------------------------------------------------

def temporal_crop(clips: torch.Tensor, frames: int, generator: torch.Generator) -> torch.Tensor:
    """A random window of `frames` consecutive frames from each clip (the whole clip if it is not longer)."""
    n, length = clips.shape[0], clips.shape[2]
    if frames >= length:
        return clips
    start = _integers(length - frames + 1, (n,), generator, clips.device)
    index = start[:, None] + torch.arange(frames, device=clips.device)
    batch = torch.arange(n, device=clips.device)[:, None]
    return clips.transpose(1, 2)[batch, index].transpose(1, 2)


def spatial_crop(clips: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad every frame by `padding` zeros and crop one random window of the original size per clip."""
    if padding <= 0:
        return clips
    n, channels, frames, height, width = clips.shape
    flat = F.pad(clips.reshape(n, channels * frames, height, width), (padding,) * 4)
    top = _integers(2 * padding + 1, (n,), generator, clips.device)
    left = _integers(2 * padding + 1, (n,), generator, clips.device)
    return _windows(flat, top, left, height, width).reshape(clips.shape)


def swap(clips: torch.Tensor, labels: torch.Tensor, chosen: torch.Tensor, dim: int, permutation: torch.Tensor):
    """The chosen clips flipped along `dim` (−1: mirror, 2: time) and their labels mapped by `permutation`."""
    flipped = torch.where(chosen[:, None, None, None, None], clips.flip(dim), clips)
    return flipped, torch.where(chosen, permutation.to(labels.device)[labels], labels)


@dataclass
class ClipAugmentation:
    """Training augmentation of (clips, labels) batches, in order: temporal window of `frames`, padded
    spatial crop, horizontal flip (labels mirrored), time reversal (labels reversed), each flip with
    probability ½ per clip."""
    classes: list[str]
    frames: int | None = None
    crop: int = 0
    flip: bool = True
    reverse: bool = False

    def __post_init__(self):
        self.mirror_labels = label_permutation(self.classes, MIRRORED)
        self.reverse_labels = label_permutation(self.classes, REVERSED)

    def __call__(self, clips: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        if self.frames:
            clips = temporal_crop(clips, self.frames, generator)
        clips = spatial_crop(clips, self.crop, generator)
        if self.flip:
            chosen = _uniform(len(labels), generator, clips.device) < 0.5
            clips, labels = swap(clips, labels, chosen, -1, self.mirror_labels)
        if self.reverse:
            chosen = _uniform(len(labels), generator, clips.device) < 0.5
            clips, labels = swap(clips, labels, chosen, 2, self.reverse_labels)
        return clips, labels
