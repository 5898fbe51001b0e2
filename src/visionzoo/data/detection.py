"""Detection data (`--data` of the detection task): images with labelled boxes, and box augmentation.

The detectors of the notes — Fast R-CNN (Girshick, ICCV 2015) and Faster R-CNN (Ren, He,
Girshick & Sun, NeurIPS 2015), whose Tables 1–3 are on Pascal VOC — learn from images with a
variable number of boxes each. A split here is a `DetectionSplit`: uint8 images (C, H, W) and
one target dict per image, torchvision's detection convention:

- `boxes`: float32 (n, 4), x1 y1 x2 y2 in continuous pixel coordinates (pixel (r, c) covers
  [c, c+1) × [r, r+1), so a box around pixels c0..c1 has x1 = c0, x2 = c1 + 1);
- `labels`: int64 (n,) in 1..K (0 is the background class, as in torchvision);
- `difficult`: bool (n,) (Pascal VOC's flag; kept, evaluation ignores those boxes);
- `iscrowd`: bool (n,), for COCO only (crowd regions, kept and flagged).

Data sets (DETECTION_DATA):

- `fmnist-scenes`: generated canvases (default 128×128, one grey channel, black background, no
  noise) holding 1–6 Fashion-MNIST objects, each scaled (aspect kept) so that its tight box's
  longer side is uniform in [20, 64] px (× side/128 for other canvas sides) and placed at a
  uniform position where it fits whole. Placement rule: for every box of a scene, the summed
  intersection with the scene's other boxes is at most 30 % of its area (MAX_SHARED; computed on
  the planned boxes grown by 2 px for the resampling fringe), so about 70 % of every box stays
  uncovered; a position is drawn up to PLACEMENT_TRIES times, after which
  the object is left out (the first one always fits). Later objects are pasted over earlier ones
  (their nonzero pixels only). The box is the tight box of the object's nonzero pixels after
  bilinear resampling (values below OBJECT_FLOOR of 255 are set to zero first, so no faint fringe
  lies outside the box) — the box is the object, not its 28×28 frame; the label is the
  Fashion-MNIST class + 1. Training scenes use Fashion-MNIST training images only, the fixed
  test split (1 000 scenes) its test images only; the validation split is carved from the
  generated training pool with the run's seed. Scene i of a stream is the same whatever the
  number of scenes asked for (each chunk has its own seeded generator), so `train_size` only
  adds or removes scenes at the end. Generated scenes are cached in memory for the process.
- `voc:PATH`: a VOC20XX folder of a VOCdevkit (PATH/Annotations/*.xml, PATH/JPEGImages/*.jpg,
  PATH/ImageSets/Main/*.txt), the 20 classes of Everingham et al. (IJCV 2010). Splits: test =
  test.txt if it exists (VOC2007), else val.txt (VOC2012 publishes no test annotations); the
  training pool is trainval.txt when test.txt exists (the VOC07 protocol of the tables), else
  train.txt; the validation split is carved from the pool with the run's seed. VOC's 1-based,
  inclusive pixel coordinates become x1 = xmin − 1, y1 = ymin − 1, x2 = xmax, y2 = ymax.
  XML files holding <!DOCTYPE or <!ENTITY are refused (no entity expansion is ever done).
- `coco:PATH`: PATH/annotations/instances_train*.json with its images in PATH/train*/ (the name
  after `instances_`, e.g. train2017/), and optionally instances_val*.json + val*/, which is the
  test split (COCO's test annotations are not public; results are reported on val2017); the
  validation split is carved from train with the run's seed. bbox [x, y, w, h] becomes
  [x, y, x + w, y + h]; category ids map to labels 1..K in increasing id order.

VOC and COCO images are decoded at load (PIL's decompression-bomb limit is an error) as RGB and
resized to a square `image_size` (default DEFAULT_FILE_SIZE; aspect not kept, boxes scaled per
axis), so every split is one stacked uint8 tensor (N, 3, S, S): memory N·3·S² bytes;
`train_size` keeps a seeded subset of the training pool before anything is decoded. Boxes that
stick out of their image by less than one pixel (rounding in the files) are clipped to it; a box
that is degenerate (x2 ≤ x1 or y2 ≤ y1), not finite or further outside is a `DataError` naming
the file and the box.

`BoxAugmentation` moves the boxes with the image through torchvision's `transforms.v2` with
`tv_tensors.BoundingBoxes`: a horizontal flip and a random rescale cropped or zero-padded back to
the canvas (the scale jittering Faster R-CNN's successors use; the papers themselves flip only),
boxes clipped to the canvas and dropped when they lose more than 70 % of their area.
"""
from __future__ import annotations

import functools
import json
import math
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import DataError, UsageError
from . import formats
from .datasets import FASHION_CLASSES, NamedSplits, TensorSplit, _load_idx_set, channel_stats

DETECTION_DATA = ("fmnist-scenes", "voc:PATH", "coco:PATH")
VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor"]
SCENE_SIZE = 128                        # default canvas side of fmnist-scenes
SCENE_COUNTS = (6000, 1000)             # default training scenes (after the validation split), test scenes
SCENE_VAL = 500                         # default validation scenes of fmnist-scenes
OBJECT_SIDES = (20.0, 64.0)             # longer side of an object's box on a 128-px canvas, px
MAX_OBJECTS = 6
MAX_SHARED = 0.3                        # most of a box's area its scene's other boxes may cover (summed)
PLACEMENT_TRIES = 20
PATCH_MARGIN = 6                        # px a rendering patch exceeds its object (fringe and rounding: < 4)
PATCH_STEP = 8                          # patch sides are multiples of this (one batch per side and slot)
FRINGE = 2.0                            # px a rendered box may differ from the planned one, each side (< 1.6 seen)
OBJECT_FLOOR = 10                       # resampled Fashion-MNIST values (0–255) below this are background
TRAIN_SEED, TEST_SEED = 20150607, 20151207   # fixed streams: the scenes never depend on the run's seed
GENERATION_CHUNK = 500                  # scenes per seeded chunk (and per vectorised rendering pass)
DEFAULT_FILE_SIZE = 384                 # square side VOC / COCO images are resized to by default
DEFAULT_VAL_FRACTION = 0.1              # validation share of a VOC / COCO training pool
EDGE_TOLERANCE = 1.0                    # px a file's box may stick out of its image (then clipped)
KEEP_AREA = 0.3                         # augmentation drops boxes left with less of their area


def is_detection_data(spec: str) -> bool:
    return spec == "fmnist-scenes" or spec.startswith(("voc:", "coco:"))


# --- the splits -------------------------------------------------------------------------------

def _index_list(indices) -> list[int]:
    if isinstance(indices, torch.Tensor):
        return indices.reshape(-1).tolist()
    return [int(i) for i in indices]


def _copy_target(target: dict) -> dict:
    return {key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in target.items()}


@dataclass
class DetectionSplit:
    """Images (a stacked uint8 (N, C, H, W) tensor, or a list of (C, H, W)), one target per image
    (see the module docstring) and a name per image for messages and `detect` output."""
    images: list[torch.Tensor] | torch.Tensor
    targets: list[dict]
    names: list[str]

    def __len__(self):
        return len(self.targets)

    def fetch(self, indices) -> tuple[list[torch.Tensor], list[dict]]:
        """The images (copies, uint8 (C, H, W)) and targets (copies) at `indices`."""
        chosen = _index_list(indices)
        if isinstance(self.images, torch.Tensor):
            images = list(self.images[torch.tensor(chosen, dtype=torch.long)].unbind(0))
        else:
            images = [self.images[i].clone() for i in chosen]
        return images, [_copy_target(self.targets[i]) for i in chosen]

    def take(self, indices) -> DetectionSplit:
        chosen = _index_list(indices)
        images = (self.images[torch.tensor(chosen, dtype=torch.long)] if isinstance(self.images, torch.Tensor)
                  else [self.images[i] for i in chosen])
        return DetectionSplit(images, [self.targets[i] for i in chosen], [self.names[i] for i in chosen])


@dataclass
class DetectionData(NamedSplits):
    train: DetectionSplit
    val: DetectionSplit
    test: DetectionSplit
    classes: list[str]                          # K names, without the background
    input_size: tuple[int, int, int]            # (C, H, W) every image has
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)


def stack_images(images) -> torch.Tensor:
    """Same-size (C, H, W) images as one (N, C, H, W) tensor (every set here is loaded at one size)."""
    images = list(images)
    if not images:
        raise UsageError("no images to stack")
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise UsageError(f"images of different sizes {sorted(shapes)[:2]}; load the data with one image size "
                         "(--image-size) so they stack")
    return torch.stack(images)


def _target(boxes, labels, difficult=None, iscrowd=None) -> dict:
    boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    target = {"boxes": boxes, "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1)),
              "difficult": torch.zeros(len(boxes), dtype=torch.bool) if difficult is None
              else torch.as_tensor(np.asarray(difficult, dtype=bool).reshape(-1))}
    if iscrowd is not None:
        target["iscrowd"] = torch.as_tensor(np.asarray(iscrowd, dtype=bool).reshape(-1))
    return target


def _val_count(train: int, val_size: float | int | None, default: float | int) -> int:
    """Validation images for a training set of `train`: a fraction (< 1) or a count of it, at least 1;
    as for the classification sets, a count above a fifth of the set becomes a tenth of it (the
    engine's default of 5 000 suits 60 000 images, not 6 000 scenes)."""
    val_size = default if val_size is None else val_size
    count = int(round(val_size * train)) if val_size < 1 else int(val_size)
    if val_size >= 1 and count > train // 5:
        count = train // 10
    return max(count, 1)


def _carve(pool: DetectionSplit, val_count: int, seed: int) -> tuple[DetectionSplit, DetectionSplit]:
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
    return pool.take(order[val_count:].sort().values), pool.take(order[:val_count].sort().values)


def _statistics(split: DetectionSplit) -> tuple[list[float], list[float]]:
    images = split.images if isinstance(split.images, torch.Tensor) else stack_images(split.images)
    return channel_stats(TensorSplit(images, torch.zeros(len(images), dtype=torch.int64)))


# --- fmnist-scenes ----------------------------------------------------------------------------

def _tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(n, H, W) bool → (n, 4) float32 x1 y1 x2 y2 of each mask's set pixels (pixel-edge coordinates)."""
    rows, cols = masks.any(2), masks.any(1)
    height, width = masks.shape[-2:]
    y1 = rows.float().argmax(1)
    y2 = height - rows.flip(1).float().argmax(1)
    x1 = cols.float().argmax(1)
    x2 = width - cols.flip(1).float().argmax(1)
    return torch.stack([x1, y1, x2, y2], 1).float()


DRAWS_PER_OBJECT = 2 + 2 * PLACEMENT_TRIES   # source, side, then (x, y) per try


def _layout(rng: np.random.Generator, crops: np.ndarray, n_sources: int, size: int) -> list[tuple]:
    """One scene's objects: (source index, scale, x1, y1) of each object's tight box, drawn from one
    fixed-length block of uniforms (so the next scene's draws never depend on this one's tries).

    A position is accepted when every box's summed intersection with the others stays ≤ MAX_SHARED
    of its area, intersections taken between the boxes grown by FRINGE; `shared` keeps each placed
    box's running sum, so a try costs one pass over the placed boxes."""
    draws = rng.random(1 + MAX_OBJECTS * DRAWS_PER_OBJECT).tolist()
    count = 1 + int(draws[0] * MAX_OBJECTS)
    low, high = (side * size / SCENE_SIZE for side in OBJECT_SIDES)
    placed, grown, shared, limits = [], [], [], []
    for slot in range(count):
        block = draws[1 + slot * DRAWS_PER_OBJECT:1 + (slot + 1) * DRAWS_PER_OBJECT]
        source = min(int(block[0] * n_sources), n_sources - 1)
        crop_w, crop_h = crops[source, 2] - crops[source, 0], crops[source, 3] - crops[source, 1]
        scale = (low + (high - low) * block[1]) / max(crop_w, crop_h)
        width, height = crop_w * scale, crop_h * scale
        limit = MAX_SHARED * width * height
        for attempt in range(PLACEMENT_TRIES):
            x1 = block[2 + 2 * attempt] * (size - width)
            y1 = block[3 + 2 * attempt] * (size - height)
            gx1, gy1, gx2, gy2 = x1 - FRINGE, y1 - FRINGE, x1 + width + FRINGE, y1 + height + FRINGE
            overlaps = [max(0.0, min(gx2, bx2) - max(gx1, bx1)) * max(0.0, min(gy2, by2) - max(gy1, by1))
                        for bx1, by1, bx2, by2 in grown]
            if sum(overlaps) <= limit and all(s + o <= m for s, o, m in zip(shared, overlaps, limits)):
                shared = [s + o for s, o in zip(shared, overlaps)] + [sum(overlaps)]
                grown.append((gx1, gy1, gx2, gy2))
                limits.append(limit)
                placed.append((source, scale, x1, y1))
                break
    return placed


def _source_crops(sources: torch.Tensor) -> np.ndarray:
    """(M, 4) int tight boxes (x1, y1, x2, y2) of each source image's pixels ≥ OBJECT_FLOOR."""
    masks = sources[:, 0] >= OBJECT_FLOOR
    empty = ~masks.flatten(1).any(1)
    masks[empty, 0, 0] = True   # an all-dark source (none in Fashion-MNIST) keeps a 1-px box
    return _tight_boxes(masks).long().numpy()


def _paste(canvas: torch.Tensor, side: int, size: int, sources: torch.Tensor, crops: np.ndarray,
           group: list[tuple], patch: int) -> list[list[float] | None]:
    """Resample the objects of `group` ((scene, source, scale, x1, y1) each, one per scene) inside
    patch × patch squares starting one pixel before their boxes, paste their nonzero pixels into the
    flat padded `canvas` (scenes of side × side, the canvas proper at offset 1), and return each
    object's tight box on the canvas (None if none of it is visible)."""
    scene, source, scale, x1, y1 = (torch.tensor(column, dtype=torch.float64) for column in zip(*group))
    source = source.long()
    frame_h, frame_w = sources.shape[-2:]
    steps = torch.arange(patch, dtype=torch.float64)
    # The frame's origin, so that the source's tight box lands at (x1, y1), and the patch's corner.
    left = x1 - torch.from_numpy(crops[source.numpy(), 0]).double() * scale
    top = y1 - torch.from_numpy(crops[source.numpy(), 1]).double() * scale
    patch_left, patch_top = x1.floor() - 1, y1.floor() - 1
    # Output pixel centre p ↦ source coordinate (p − origin)/scale, normalised for align_corners=False.
    source_x = ((patch_left[:, None] + steps + 0.5 - left[:, None]) / scale[:, None] / frame_w * 2 - 1).float()
    source_y = ((patch_top[:, None] + steps + 0.5 - top[:, None]) / scale[:, None] / frame_h * 2 - 1).float()
    grid = torch.stack(torch.broadcast_tensors(source_x[:, None, :], source_y[:, :, None]), -1)
    objects = sources[source].float()
    objects = torch.where(objects >= OBJECT_FLOOR, objects, 0)
    pasted = F.grid_sample(objects, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    pasted = pasted.round().clamp(0, 255).to(torch.uint8)
    rows, cols = patch_top[:, None] + steps, patch_left[:, None] + steps
    on_canvas = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    present = (pasted >= OBJECT_FLOOR) & on_canvas   # a fringe pixel past the canvas edge is cut, not boxed
    corner = (scene.long() * side + patch_top.long() + 1) * side + patch_left.long() + 1
    flat = corner[:, None, None] + torch.arange(patch)[None, :, None] * side + torch.arange(patch)[None, None, :]
    canvas[flat] = torch.where(present, pasted, canvas[flat])
    found = _tight_boxes(present) + torch.stack([patch_left, patch_top, patch_left, patch_top], 1).float()
    visible = present.flatten(1).any(1).tolist()   # always, unless a canvas is tiny
    return [box if seen else None for box, seen in zip(found.tolist(), visible)]


def _render(sources: torch.Tensor, crops: np.ndarray, layouts: list[list[tuple]], size: int
            ) -> tuple[torch.Tensor, list[list], list[list[int]]]:
    """Paste the laid-out objects: uint8 canvases (n, 1, size, size), per-scene boxes and source indices.

    Each object is resampled only inside a square patch around its box (its side rounded up to
    PATCH_STEP, objects of one slot batched by patch side), so no object costs a whole canvas of
    interpolation; the slots are pasted in order, later objects over earlier ones."""
    n = len(layouts)
    largest = math.ceil(OBJECT_SIDES[1] * size / SCENE_SIZE) + PATCH_MARGIN
    side = size + largest + 1   # a patch starts at most 1 px before the canvas and ends < largest px after it
    canvas = torch.zeros(n * side * side, dtype=torch.uint8)
    boxes: list[list] = [[] for _ in range(n)]
    picked: list[list[int]] = [[] for _ in range(n)]
    for slot in range(MAX_OBJECTS):
        groups: dict[int, list[tuple]] = {}
        for scene, layout in enumerate(layouts):
            if len(layout) > slot:
                source, scale, x1, y1 = layout[slot]
                extent = max(crops[source, 2] - crops[source, 0], crops[source, 3] - crops[source, 1]) * scale
                patch = min(largest, PATCH_STEP * math.ceil((extent + PATCH_MARGIN) / PATCH_STEP))
                groups.setdefault(patch, []).append((scene, source, scale, x1, y1))
        if not groups:
            break
        for patch, group in groups.items():
            for (scene, source, *_), box in zip(group, _paste(canvas, side, size, sources, crops, group, patch)):
                if box is not None:
                    boxes[scene].append(box)
                    picked[scene].append(source)
    return canvas.view(n, 1, side, side)[:, :, 1:size + 1, 1:size + 1].contiguous(), boxes, picked


def render_scenes(sources: torch.Tensor, labels: torch.Tensor, count: int, seed: int, size: int = SCENE_SIZE
                  ) -> tuple[torch.Tensor, list[dict]]:
    """The first `count` scenes of stream `seed` made of `sources` (uint8 (M, 1, h, w)) with class
    `labels` (M,): uint8 canvases (count, 1, size, size) and their targets (labels = class + 1)."""
    if count <= 0:
        return torch.zeros((0, 1, size, size), dtype=torch.uint8), []
    crops = _source_crops(sources)
    images, targets, classes = [], [], labels.tolist()
    for chunk in range(math.ceil(count / GENERATION_CHUNK)):
        rng = np.random.default_rng([seed, chunk])
        n = min(GENERATION_CHUNK, count - chunk * GENERATION_CHUNK)
        layouts = [_layout(rng, crops, len(sources), size) for _ in range(n)]
        canvases, boxes, picked = _render(sources, crops, layouts, size)
        images.append(canvases)
        targets += [_target(b, [classes[i] + 1 for i in p]) for b, p in zip(boxes, picked)]
    return torch.cat(images), targets


@functools.lru_cache(maxsize=4)
def _scenes(which: str, count: int, size: int, data_dir: str | None, download: bool):
    (train_images, train_labels), (test_images, test_labels), _ = _load_idx_set("fashion-mnist", data_dir, download)
    images, labels, seed = ((train_images, train_labels, TRAIN_SEED) if which == "train"
                            else (test_images, test_labels, TEST_SEED))
    return render_scenes(torch.from_numpy(images), torch.from_numpy(labels), count, seed, size)


def _fmnist_scenes(data_dir, download: bool, val_size, seed: int, image_size: int | None,
                   train_size: int | None) -> tuple[dict[str, DetectionSplit], list[str], int]:
    size = image_size or SCENE_SIZE
    if size < 32:
        raise UsageError(f"--image-size {size} is too small for fmnist-scenes; use 32 or more (default {SCENE_SIZE})")
    train_count = SCENE_COUNTS[0] if train_size is None else train_size
    if train_count < 1:
        raise UsageError(f"--train-size {train_size}: give at least one training scene")
    val_count = _val_count(train_count, val_size, SCENE_VAL)   # generated besides the training scenes
    data_key = None if data_dir is None else str(data_dir)
    pool_images, pool_targets = _scenes("train", train_count + val_count, size, data_key, download)
    test_images, test_targets = _scenes("test", SCENE_COUNTS[1], size, data_key, download)
    pool = DetectionSplit(pool_images, pool_targets, [f"train scene {i}" for i in range(len(pool_targets))])
    train, val = _carve(pool, val_count, seed)
    test = DetectionSplit(test_images, test_targets, [f"test scene {i}" for i in range(len(test_targets))])
    return {"train": train, "val": val, "test": test}, list(FASHION_CLASSES), 1


# --- boxes read from files --------------------------------------------------------------------

def _checked_box(box: tuple[float, float, float, float], width: int, height: int, where: str,
                 written: str) -> tuple[float, float, float, float]:
    """An x1 y1 x2 y2 box validated against its image (`where` names it, `written` shows it as in the
    file): DataError if not finite, degenerate or outside; clipped if it sticks out < EDGE_TOLERANCE."""
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box):
        raise DataError(f"{where} box {written} is not finite; fix or drop it")
    if x2 <= x1:
        raise DataError(f"{where} box {written} has zero or negative width; fix or drop it")
    if y2 <= y1:
        raise DataError(f"{where} box {written} has zero or negative height; fix or drop it")
    if (x1 < -EDGE_TOLERANCE or y1 < -EDGE_TOLERANCE or x2 > width + EDGE_TOLERANCE
            or y2 > height + EDGE_TOLERANCE):
        raise DataError(f"{where} box {written} lies outside the {width}×{height} image; fix or drop it")
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise DataError(f"{where} box {written} lies outside the {width}×{height} image; fix or drop it")
    return clipped


def _number(text: str | None, where: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {text!r} is not a number") from None


def _decode(path: Path, annotated: tuple[int, int] | None, size: int) -> torch.Tensor:
    """An RGB image resized to size × size; DataError if its size differs from the annotation's (w, h)."""
    from torchvision.transforms.v2.functional import resize
    if not path.is_file():
        raise DataError(f"{path}: image missing (its annotation lists it); add it or drop its annotation")
    pixels = formats.read_image(path, 3)
    if annotated is not None and (pixels.shape[2], pixels.shape[1]) != annotated:
        raise DataError(f"{path}: image of {pixels.shape[2]}×{pixels.shape[1]} pixels but its annotation says "
                        f"{annotated[0]}×{annotated[1]}; fix the annotation")
    return resize(pixels, [size, size], antialias=True)


def _scaled(target: dict, width: int, height: int, size: int) -> dict:
    factors = torch.tensor([size / width, size / height, size / width, size / height])
    return {**target, "boxes": target["boxes"] * factors}


def _files_split(records: list[tuple[str, Path, int, int, dict]], size: int) -> DetectionSplit:
    """(name, image path, width, height, target in file pixels) records decoded into one split."""
    images = torch.empty((len(records), 3, size, size), dtype=torch.uint8)
    targets = []
    for i, (_, path, width, height, target) in enumerate(records):
        images[i] = _decode(path, (width, height), size)
        targets.append(_scaled(target, width, height, size))
    return DetectionSplit(images, targets, [name for name, *_ in records])


def _read_xml(path: Path) -> ElementTree.Element:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise DataError(f"{path}: holds a <!DOCTYPE or <!ENTITY declaration, which annotation files never need; "
                        "remove it")
    parser = ElementTree.XMLParser()
    try:
        parser.feed(data)
        return parser.close()
    except ElementTree.ParseError as exc:
        raise DataError(f"{path}: not valid XML ({exc})") from None


def read_voc_annotation(path: Path) -> tuple[int, int, dict]:
    """One VOC XML file: (width, height, target) with boxes in 0-based continuous pixels of the image."""
    root = _read_xml(path)
    size = root.find("size")
    if size is None:
        raise DataError(f"{path}: no <size> element (width and height of the image)")
    width = _number(size.findtext("width"), f"{path}: <width>")
    height = _number(size.findtext("height"), f"{path}: <height>")
    if not (width >= 1 and height >= 1 and width == int(width) and height == int(height)):
        raise DataError(f"{path}: image size {width:g}×{height:g} is not a positive whole number of pixels")
    width, height = int(width), int(height)
    boxes, labels, difficult = [], [], []
    for number, obj in enumerate(root.iter("object"), 1):
        where = f"{path}: object {number}"
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise DataError(f"{where} has class {name!r}, not one of the 20 VOC classes ({', '.join(VOC_CLASSES)})")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DataError(f"{where} ({name}) has no <bndbox>; fix or drop it")
        xmin, ymin, xmax, ymax = (_number(bndbox.findtext(tag), f"{where} <{tag}>")
                                  for tag in ("xmin", "ymin", "xmax", "ymax"))
        written = f"({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})"
        boxes.append(_checked_box((xmin - 1, ymin - 1, xmax, ymax), width, height, where, written))
        labels.append(VOC_CLASSES.index(name) + 1)
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return width, height, _target(boxes, labels, difficult)


def _voc_ids(path: Path) -> list[str]:
    ids = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields:
            if "/" in fields[0] or "\\" in fields[0] or fields[0].startswith("."):
                raise DataError(f"{path}: image id {fields[0]!r} is not a plain file name")
            ids.append(fields[0])
    if not ids:
        raise DataError(f"{path}: lists no image ids")
    return ids


def _voc_records(root: Path, ids: list[str]) -> list[tuple]:
    records = []
    for image_id in ids:
        annotation = root / "Annotations" / f"{image_id}.xml"
        if not annotation.is_file():
            raise DataError(f"{annotation}: missing (listed in {root / 'ImageSets' / 'Main'})")
        width, height, target = read_voc_annotation(annotation)
        records.append((image_id, root / "JPEGImages" / f"{image_id}.jpg", width, height, target))
    return records


def _voc(root: Path) -> tuple[dict[str, list], list[str]]:
    main = root / "ImageSets" / "Main"
    if not (root / "Annotations").is_dir() or not main.is_dir():
        nested = [p for p in (root / "VOCdevkit", *sorted(root.glob("VOC20*")), *sorted(root.glob("*/VOC20*")))
                  if p.is_dir()]
        hint = f" (did you mean voc:{nested[0]}?)" if nested else ""
        raise UsageError(f"voc:{root} has no Annotations/ and ImageSets/Main/; give the VOC20XX folder of a "
                         f"VOCdevkit{hint}")
    lists = {name: main / f"{name}.txt" for name in ("train", "val", "trainval", "test") if (main / f"{name}.txt").is_file()}
    if "test" in lists:
        pool = _voc_ids(lists["trainval"]) if "trainval" in lists else (
            [i for name in ("train", "val") if name in lists for i in _voc_ids(lists[name])])
        test = _voc_ids(lists["test"])
    elif "train" in lists and "val" in lists:
        pool, test = _voc_ids(lists["train"]), _voc_ids(lists["val"])
    else:
        raise UsageError(f"{main}: needs test.txt (with trainval.txt or train.txt) or train.txt and val.txt")
    if not pool:
        raise UsageError(f"{main}: no training image ids (trainval.txt or train.txt)")
    return {"pool": pool, "test": test}, list(VOC_CLASSES)


def _coco_file(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read COCO instances JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        raise DataError(f"{path}: not a COCO instances file (needs lists 'images', 'annotations', 'categories')")
    return data


def _coco_categories(path: Path, data: dict) -> tuple[list[int], list[str]]:
    try:
        pairs = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: a category lacks an integer 'id' or a 'name' ({exc})") from None
    if not pairs:
        raise DataError(f"{path}: no categories")
    ids = [i for i, _ in pairs]
    repeated = next((i for i, j in zip(ids, ids[1:]) if i == j), None)
    if repeated is not None:
        raise DataError(f"{path}: category id {repeated} is given twice; each category needs an id of its own")
    return ids, [n for _, n in pairs]


def _coco_records(path: Path, data: dict, folder: Path, category_ids: list[int]) -> list[tuple]:
    label_of = {cid: k + 1 for k, cid in enumerate(category_ids)}
    images, order = {}, []
    inside = folder.resolve()
    for entry in data["images"]:
        try:
            image_id, name = int(entry["id"]), str(entry["file_name"])
            width, height = int(entry["width"]), int(entry["height"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: an image entry lacks 'id', 'file_name', 'width' or 'height' ({exc})") from None
        file = folder / name
        if not file.resolve().is_relative_to(inside):
            raise DataError(f"{path}: image file_name {name!r} points outside {folder}")
        if width < 1 or height < 1:
            raise DataError(f"{path}: image {name!r} has size {width}×{height}")
        images[image_id] = (name, file, width, height, [], [], [])
        order.append(image_id)
    for entry in data["annotations"]:
        try:
            annotation_id, image_id = entry.get("id"), int(entry["image_id"])
            category, bbox = int(entry["category_id"]), entry["bbox"]
            x, y, w, h = (float(v) for v in bbox)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{path}: an annotation lacks 'image_id', 'category_id' or a 4-number 'bbox' "
                            f"({exc})") from None
        if image_id not in images:
            raise DataError(f"{path}: annotation id {annotation_id} refers to image id {image_id}, not in 'images'")
        name, _, width, height, boxes, labels, crowd = images[image_id]
        where = f"{path}: annotation id {annotation_id} (image {name!r})"
        if category not in label_of:
            raise DataError(f"{where} has category_id {category}, not in 'categories'")
        written = f"[{x:g}, {y:g}, {w:g}, {h:g}]"
        boxes.append(_checked_box((x, y, x + w, y + h), width, height, where, written))
        labels.append(label_of[category])
        crowd.append(bool(entry.get("iscrowd", 0)))
    return [(name, file, width, height, _target(boxes, labels, None, crowd))
            for name, file, width, height, boxes, labels, crowd in (images[i] for i in order)]


def _coco(root: Path) -> tuple[dict[str, list], list[str]]:
    notes = root / "annotations"
    if not notes.is_dir():
        raise UsageError(f"coco:{root} has no annotations/ folder; give the folder holding annotations/ and "
                         "train2017/ (val2017/)")
    found: dict[str, list[Path]] = {"train": [], "val": []}
    for file in sorted(notes.glob("instances_*.json")):
        for split in found:
            if file.stem[len("instances_"):].startswith(split):
                found[split].append(file)
    for split, files in found.items():
        if len(files) > 1:
            raise UsageError(f"{notes}: several {split} files ({', '.join(f.name for f in files)}); keep one")
    if not found["train"]:
        raise UsageError(f"{notes}: no instances_train*.json (e.g. instances_train2017.json)")
    parts, classes, ids = {}, None, None
    for split, files in found.items():
        if not files:
            continue
        file = files[0]
        folder = root / file.stem[len("instances_"):]
        if not folder.is_dir():
            raise UsageError(f"{folder} is missing; the images of {file.name} go there")
        data = _coco_file(file)
        split_ids, split_classes = _coco_categories(file, data)
        if ids is not None and split_ids != ids:
            raise DataError(f"{file}: categories differ from those of {found['train'][0]}; use one category list")
        ids, classes = split_ids, split_classes
        parts["pool" if split == "train" else "test"] = _coco_records(file, data, folder, ids)
    return parts, classes


def _file_splits(spec: str, val_size, seed: int, image_size: int | None,
                 train_size: int | None) -> tuple[dict[str, DetectionSplit], list[str], int]:
    kind, path = spec.split(":", 1)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UsageError(f"{spec}: {root} is not a directory")
    size = image_size or DEFAULT_FILE_SIZE
    if size < 16:
        raise UsageError(f"--image-size {size} is too small; use 16 or more (default {DEFAULT_FILE_SIZE})")
    if kind == "voc":
        lists, classes = _voc(root)
        parts = {name: _voc_records(root, ids) for name, ids in lists.items()}
    else:
        parts, classes = _coco(root)
    pool = parts["pool"]
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed)).tolist()
    val_count = _val_count(len(pool), val_size, DEFAULT_VAL_FRACTION)
    if val_count >= len(pool):
        raise UsageError(f"{spec}: {len(pool)} training image(s) leave none for training after {val_count} for "
                         "validation; add images or give a smaller --val-size")
    val_records = [pool[i] for i in sorted(order[:val_count])]
    train_order = sorted(order[val_count:])
    if train_size is not None:
        if train_size < 1:
            raise UsageError(f"--train-size {train_size}: give at least one training image")
        train_order = sorted(order[val_count:val_count + train_size])
    splits = {"train": _files_split([pool[i] for i in train_order], size),
              "val": _files_split(val_records, size)}
    if "test" in parts:
        splits["test"] = _files_split(parts["test"], size)
    else:   # a COCO tree with train only: a fixed fifth of the training split becomes the test split
        splits["train"], splits["test"] = _carve(splits["train"], max(1, len(splits["train"]) // 5), 0)
    return splits, classes, 3


# --- loading ----------------------------------------------------------------------------------

def load_detection_data(spec: str, *, data_dir=None, download: bool = False, val_size: float | int | None = None,
                        seed: int = 0, image_size: int | None = None,
                        train_size: int | None = None) -> DetectionData:
    """A detection data set by its spec (DETECTION_DATA; see the module docstring): fixed training
    pool and test split, a validation split carved from the pool with `seed` (`val_size`: a count,
    or a fraction < 1; default SCENE_VAL scenes or DEFAULT_VAL_FRACTION of a file tree's pool).
    `image_size` is the canvas side of fmnist-scenes (default 128) or the square side files are
    resized to (default DEFAULT_FILE_SIZE); `train_size` the number of training scenes (default
    SCENE_COUNTS[0]) or a seeded subset of a file tree's training images."""
    if spec == "fmnist-scenes":
        splits, classes, channels = _fmnist_scenes(data_dir, download, val_size, seed, image_size, train_size)
    elif spec.startswith(("voc:", "coco:")):
        splits, classes, channels = _file_splits(spec, val_size, seed, image_size, train_size)
    else:
        raise UsageError(f"unknown detection data set {spec!r}; choose one of {', '.join(DETECTION_DATA)}")
    side = splits["train"].images.shape[-1]
    data = DetectionData(splits["train"], splits["val"], splits["test"], classes, (channels, side, side))
    data.mean, data.std = _statistics(data.train)
    return data


# --- augmentation -----------------------------------------------------------------------------

def move_with_boxes(image: torch.Tensor, target: dict, *, flip: bool = False, scale: float = 1.0,
                    offset: tuple[float, float] = (0.5, 0.5)) -> tuple[torch.Tensor, dict]:
    """One image (C, H, W) and its target, mirrored (if `flip`), rescaled by `scale` and cropped or
    zero-padded back to H × W at the relative `offset` (0..1 along the rows, columns of the slack).

    The boxes travel as `tv_tensors.BoundingBoxes` through the same `transforms.v2` functional
    ops as the image; afterwards they are clipped to the canvas, and those left with less than
    KEEP_AREA of their area (or none) are dropped together with their labels and flags."""
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF
    height, width = image.shape[-2:]
    boxes = tv_tensors.BoundingBoxes(target["boxes"].float(), format="XYXY", canvas_size=(height, width))
    if flip:
        image, boxes = TF.horizontal_flip(image), TF.horizontal_flip(boxes)
    if scale == 1.0:
        return image, {**target, "boxes": boxes.as_subclass(torch.Tensor)}
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    image = TF.resize(image, [new_h, new_w], antialias=True)
    boxes = TF.resize(boxes, [new_h, new_w])
    before = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    top = round(min(0, new_h - height) + offset[0] * abs(new_h - height))
    left = round(min(0, new_w - width) + offset[1] * abs(new_w - width))
    image = TF.crop(image, top, left, height, width)   # a window beyond the image is zero-padded
    boxes = TF.clamp_bounding_boxes(TF.crop(boxes, top, left, height, width)).as_subclass(torch.Tensor)
    after = (boxes[:, 2] - boxes[:, 0]).clamp_min(0) * (boxes[:, 3] - boxes[:, 1]).clamp_min(0)
    keep = (after > 0) & (after >= KEEP_AREA * before)
    count = len(before)
    moved = {key: value[keep] if isinstance(value, torch.Tensor) and value.ndim and len(value) == count else value
             for key, value in target.items()}
    moved["boxes"] = boxes[keep]
    return image, moved


@dataclass
class BoxAugmentation:
    """Training augmentation of a detection batch: per image, a horizontal flip with probability ½
    (`flip`) and a rescale by a factor uniform in `scale` (None: none) cropped or padded back to the
    canvas at a uniform offset. Every draw comes from the generator passed in."""
    flip: bool = True
    scale: tuple[float, float] | None = (0.8, 1.2)

    def __call__(self, images: torch.Tensor, targets: list[dict], generator: torch.Generator
                 ) -> tuple[torch.Tensor, list[dict]]:
        draws = torch.rand((len(targets), 4), generator=generator, device=generator.device).tolist()
        moved_images, moved_targets = [], []
        for image, target, (u_flip, u_scale, u_top, u_left) in zip(images, targets, draws):
            scale = 1.0 if self.scale is None else self.scale[0] + u_scale * (self.scale[1] - self.scale[0])
            image, target = move_with_boxes(image, target, flip=self.flip and u_flip < 0.5, scale=scale,
                                            offset=(u_top, u_left))
            moved_images.append(image)
            moved_targets.append(target)
        return torch.stack(moved_images), moved_targets
