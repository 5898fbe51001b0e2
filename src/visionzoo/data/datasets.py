"""The data sets of the contract (`--data`), loaded as uint8 tensors with train/val/test splits.

A validation split is carved from the training set with the run's seed and used for model
selection; the test split is only read for the final report. Sets that fit in memory become
`TensorSplit`s (batched indexing, no per-sample loader); `folder:PATH` trees stream through
`FolderSplit`, decoding each batch of files on the fly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError, UsageError
from . import formats
from .download import SOURCES, download

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
KMNIST_CLASSES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
DIGIT_CLASSES = [str(i) for i in range(10)]
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "val", "test")
DATA_ROOT_HELP = ("data root (default $VISIONZOO_DATA or ~/.cache/visionzoo; Fashion-MNIST also from "
                  f"{DEBIAN_FASHION_MNIST})")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
STATS_CHUNK = 256   # images per step of the channel statistics (224-px RGB: 150 MB of float32)
RESIZE_CHUNK = 1024   # images resized at once when a whole split is (128-px grey: 64 MB of float32)


class NamedSplits:
    """A data set whose `train`, `val` and `test` attributes are its splits, also reachable by name."""

    def split(self, name: str):
        if name not in SPLITS:
            raise UsageError(f"unknown split {name!r}; use {', '.join(SPLITS[:-1])} or {SPLITS[-1]}")
        return getattr(self, name)


@dataclass
class TensorSplit:
    """An in-memory split: uint8 images (N, C, H, W) and int64 labels (N,).

    With `image_size`, the images are held at their stored size and resized as they are fetched:
    a subset is taken (`take`), or a few images are read, before any resizing is paid for;
    `resized()` then resizes what is left once.
    """
    images: torch.Tensor
    labels: torch.Tensor
    image_size: int | None = None

    def __len__(self):
        return len(self.labels)

    def take(self, index: torch.Tensor) -> "TensorSplit":
        return TensorSplit(self.images[index], self.labels[index], self.image_size)

    def fetch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _resize(self.images[index], self.image_size), self.labels[index]

    def indexed_tensors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(images, labels) when `fetch(index)` is just (images[index], labels[index]), with no resize
        pending: what a loader may hold whole on the training device (data/loader.py); else None."""
        if self.image_size is None or tuple(self.images.shape[-2:]) == (self.image_size, self.image_size):
            return self.images, self.labels
        return None

    def resized(self) -> "TensorSplit":
        return TensorSplit(_resize(self.images, self.image_size), self.labels)


@dataclass
class FolderSplit:
    """Image files decoded and resized per batch (for trees too large to hold in memory)."""
    files: list[Path]
    labels: torch.Tensor
    image_size: int
    channels: int = 3

    def __len__(self):
        return len(self.labels)

    def take(self, index: torch.Tensor) -> "FolderSplit":
        return FolderSplit([self.files[i] for i in index.tolist()], self.labels[index],
                           self.image_size, self.channels)

    def fetch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.transforms.v2.functional import resize
        images = []
        for i in index.tolist():
            pixels = formats.read_image(self.files[i], self.channels)
            images.append(resize(pixels, [self.image_size, self.image_size], antialias=True))
        return torch.stack(images), self.labels[index]


@dataclass
class DataBundle(NamedSplits):
    name: str
    train: TensorSplit | FolderSplit
    val: TensorSplit | FolderSplit
    test: TensorSplit | FolderSplit
    classes: list[str]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)

    @cached_property
    def input_size(self) -> tuple[int, int, int]:
        """(C, H, W) of the training images (read once: one image decoded or resized)."""
        sample, _ = self.train.fetch(torch.arange(1))
        return tuple(sample.shape[1:])


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    return Path(data_dir or os.environ.get("VISIONZOO_DATA") or Path.home() / ".cache" / "visionzoo")


def find_fashion_mnist(data_dir=None) -> Path | None:
    for folder in _candidates("fashion-mnist", data_dir):
        if _find(folder, "train-images-idx3-ubyte"):
            return folder
    return None


def _candidates(name: str, data_dir) -> list[Path]:
    root = data_root(data_dir)
    places = [root / name, root]
    if name == "fashion-mnist":
        places.append(DEBIAN_FASHION_MNIST)
    return places


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / (stem + ".gz")):
        if candidate.exists():
            return candidate
    return None


def _missing(name: str, places: list[Path]) -> UsageError:
    looked = ", ".join(str(p) for p in places)
    how = (f"pass --download to fetch it into {places[0]}" if name in SOURCES else
           "put the files there")
    extra = " or `apt-get install dataset-fashion-mnist`" if name == "fashion-mnist" else ""
    return UsageError(f"data set {name} not found (looked in {looked}); {how}{extra}, "
                      f"or point --data-dir at it")


def _locate(name: str, data_dir, download_missing: bool, probe: str) -> Path:
    places = _candidates(name, data_dir)
    for folder in places:
        if (folder / probe).exists() or _find(folder, probe):
            return folder
    if download_missing and name in SOURCES:
        download(name, places[0])
        return places[0]
    raise _missing(name, places)


def _load_idx_set(name: str, data_dir, download_missing: bool):
    folder = _locate(name, data_dir, download_missing, "train-images-idx3-ubyte")
    splits = []
    for prefix in ("train", "t10k"):
        images_path = _find(folder, f"{prefix}-images-idx3-ubyte")
        labels_path = _find(folder, f"{prefix}-labels-idx1-ubyte")
        if images_path is None or labels_path is None:
            raise DataError(f"{folder}: {prefix}-images/labels IDX file missing")
        images = formats.read_idx(images_path, 3)
        labels = formats.read_idx(labels_path, 1)
        if len(images) != len(labels):
            raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}")
        splits.append((images[:, None].copy(), labels.astype(np.int64)))
    classes = {"fashion-mnist": FASHION_CLASSES, "kmnist": KMNIST_CLASSES}.get(name, DIGIT_CLASSES)
    return splits[0], splits[1], classes


def _load_cifar(name: str, data_dir, download_missing: bool):
    sub, files, label_key, meta, names_key = (
        ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "labels", "batches.meta", "label_names")
        if name == "cifar10" else
        ("cifar-100-python", ["train"], "fine_labels", "meta", "fine_label_names"))
    folder = _locate(name, data_dir, download_missing, sub) / sub
    train = [formats.read_cifar_batch(folder / f, label_key) for f in files]
    train = (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]))
    test = formats.read_cifar_batch(folder / ("test_batch" if name == "cifar10" else "test"), label_key)
    return train, test, formats.read_cifar_names(folder / meta, names_key)


def _load_svhn(name: str, data_dir, download_missing: bool):
    folder = _locate(name, data_dir, download_missing, "train_32x32.mat")
    return (formats.read_svhn_mat(folder / "train_32x32.mat"),
            formats.read_svhn_mat(folder / "test_32x32.mat"), DIGIT_CLASSES)


def _load_digits(name: str, data_dir, download_missing: bool):
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))  # fixed test split for every run
    n_test = len(labels) // 5
    test, train = order[:n_test], order[n_test:]
    return (images[train], labels[train]), (images[test], labels[test]), DIGIT_CLASSES


def _load_fake(name: str, data_dir, download_missing: bool, n_train=600, n_test=200, classes=10):
    """Learnable random images: a fixed random pattern per class plus noise."""
    rng = np.random.default_rng(1234)
    patterns = rng.uniform(40, 215, size=(classes, 1, 28, 28))

    def make(n):
        labels = rng.integers(0, classes, n)
        images = patterns[labels] + rng.normal(0, 40, size=(n, 1, 28, 28))
        return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)
    return make(n_train), make(n_test), [f"class{i}" for i in range(classes)]


_LOADERS = {"fashion-mnist": _load_idx_set, "mnist": _load_idx_set, "kmnist": _load_idx_set,
            "cifar10": _load_cifar, "cifar100": _load_cifar, "svhn": _load_svhn,
            "digits": _load_digits, "fake": _load_fake}
DATA_SPECS = sorted(_LOADERS) + ["folder:PATH"]


def _check_labels(labels: np.ndarray, num_classes: int, what: str):
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{what}: labels outside 0..{num_classes - 1}")


def _val_count(n_train: int, val_size: float | int) -> int:
    """A fraction (< 1) or a count; a count above a fifth of a small training set becomes 10 %."""
    count = int(round(val_size * n_train)) if val_size < 1 else int(val_size)
    if val_size >= 1 and count > n_train // 5:
        count = max(1, n_train // 10)
    if not 0 < count < n_train:
        raise UsageError(f"--val-size {val_size} leaves no training or no validation images "
                         f"(training set has {n_train})")
    return count


def _resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """(N, C, H, W) images as size × size squares (antialiased; each image on its own, so resizing a
    subset gives the subset of the resized images). RESIZE_CHUNK images at a time, so the float
    working copy is that of a chunk, not of the set."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    from torchvision.transforms.v2.functional import resize
    out = torch.empty((*images.shape[:-2], size, size), dtype=images.dtype)
    for start in range(0, len(images), RESIZE_CHUNK):
        out[start:start + RESIZE_CHUNK] = resize(images[start:start + RESIZE_CHUNK], [size, size], antialias=True)
    return out


def _carve(split, count: int, seed: int):
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    return split.take(order[count:]), split.take(order[:count])


def fill_splits(splits: dict, val_size: float | int, seed: int) -> dict:
    """A tree's splits completed: a missing test split is a fifth of train (seed 0, fixed), a missing
    validation split is carved from what remains with the run's seed."""
    train = splits["train"]
    if "test" not in splits:
        train, splits["test"] = _carve(train, max(1, len(train) // 5), 0)
    if "val" not in splits:
        train, splits["val"] = _carve(train, _val_count(len(train), val_size), seed)
    return {**splits, "train": train}


def channel_stats(split, limit: int = 10000, chunk: int = STATS_CHUNK) -> tuple[list[float], list[float]]:
    """Per-channel mean and (unbiased) standard deviation of the first `limit` examples in [0, 1]: images
    (N, C, H, W) or clips (N, C, T, H, W), over every pixel of every frame.

    Read `chunk` examples at a time, in float32, and merged with Chan, Golub & LeVeque's pairwise
    update of (count, mean, M2) in float64, so memory stays that of one chunk whatever the set's size.
    """
    count, mean, m2 = 0, None, None
    for start in range(0, min(len(split), limit), chunk):
        images, _ = split.fetch(torch.arange(start, min(start + chunk, len(split), limit)))
        x = images.float() / 255.0
        n = x.numel() // x.shape[1]
        others = [0, *range(2, x.dim())]   # every dimension but the channel
        chunk_mean = x.mean(others)
        chunk_m2 = (x - chunk_mean.view(1, -1, *[1] * (x.dim() - 2))).square().sum(others).double()
        chunk_mean = chunk_mean.double()
        if mean is None:
            count, mean, m2 = n, chunk_mean, chunk_m2
            continue
        delta = chunk_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + chunk_m2 + delta.square() * (count * n / total)
        count = total
    std = (m2 / max(count - 1, 1)).sqrt().clamp_min(1e-6)
    return mean.tolist(), std.tolist()


def _folder_split(path: Path, image_size: int):
    root = Path(path)
    if not root.is_dir():
        raise UsageError(f"folder:{root} is not a directory; give a folder with one sub-folder per class")
    trees = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if trees and "train" not in trees:
        raise UsageError(f"{root} has {'/ and '.join(trees)}/ but no train/; put the training images in "
                         f"{root}/train/CLASS/")
    base = trees.get("train", root)
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if not classes:
        raise UsageError(f"{base}: no class sub-folders (expected {base}/CLASS/IMAGE.png)")
    if len(classes) == 1:
        raise UsageError(f"{base}: one class folder ({classes[0]}); a classifier needs two or more")
    for cls in classes:
        if not cls.isprintable():   # a newline would break class lists, model.json readers, confusion plots
            raise DataError(f"{str(base / cls)!r}: a class folder whose name holds a newline or control character; "
                            "rename it")
    for name, tree in trees.items():
        unknown = sorted({p.name for p in tree.iterdir() if p.is_dir()} - set(classes))
        if unknown:
            raise DataError(f"{tree}: classes {', '.join(unknown[:3])} are not in {base}; a network cannot learn "
                            "them (add their training images, or remove them)")
    inside = root.resolve()

    def collect(tree: Path):
        files, labels = [], []
        for label, cls in enumerate(classes):
            for f in sorted((tree / cls).glob("*")) if (tree / cls).is_dir() else []:
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    if not f.resolve().is_relative_to(inside):
                        raise DataError(f"{f}: a link to {f.resolve()}, outside {root}; copy the image in instead")
                    files.append(f)
                    labels.append(label)
        if not files:
            raise UsageError(f"{tree}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders")
        return FolderSplit(files, torch.tensor(labels, dtype=torch.int64), image_size)
    splits = {name: collect(tree) for name, tree in trees.items()} or {"train": collect(root)}
    shown = splits["train"].labels.bincount(minlength=len(classes))
    if not shown.all():
        raise DataError(f"{base / classes[int((shown == 0).nonzero()[0])]}: a class folder without images; a class the "
                        "training images never show cannot be learnt (add its images, or remove the folder)")
    return splits, classes


def trained_data_args(meta: dict, spec: str) -> dict:
    """`load_data`'s arguments for data set `spec` read by a trained network (its model.json): those of
    its training run; folder images, which are resized in any case, to the network's input side when
    the run gave no --image-size (rather than to the folders' default of 64)."""
    args = dict(meta.get("data_args", {}))
    if spec.startswith("folder:") and args.get("image_size") is None and meta.get("input_size"):
        args["image_size"] = meta["input_size"][-1]
    return args


def load_data(spec: str = "fashion-mnist", *, data_dir=None, download: bool = False,
              val_size: float | int = 5000, seed: int = 0, image_size: int | None = None,
              train_limit: int | None = None, test_limit: int | None = None, lazy: bool = False) -> DataBundle:
    """Load a data set by its spec, carve the validation split, compute the input normalisation.

    `image_size` resizes every image to a square of that side (once, at load, for in-memory sets;
    per batch for folders, where it defaults to 64). `train_limit` keeps a seeded subset of the
    training split and `test_limit` the first images of the test split, chosen before anything is
    resized, so memory follows what is used; the normalisation still comes from the whole training
    split. `lazy` (for commands that read a few images of a trained network's data: `eval`,
    `explain`, `attack`) resizes in-memory images as they are fetched, leaves folder images to be
    decoded when read, and skips the normalisation, which the network's model.json holds.
    """
    if spec.startswith("folder:"):
        splits, classes = _folder_split(Path(spec[len("folder:"):]).expanduser(), image_size or 64)
        splits = fill_splits(splits, val_size, seed)
    else:
        if spec not in _LOADERS:
            raise UsageError(f"unknown data set {spec!r}; choose one of {', '.join(DATA_SPECS)}")
        (x_train, y_train), (x_test, y_test), classes = _LOADERS[spec](spec, data_dir, download)
        _check_labels(y_train, len(classes), f"{spec} training labels")
        _check_labels(y_test, len(classes), f"{spec} test labels")
        stored = lambda images, labels: TensorSplit(torch.from_numpy(np.ascontiguousarray(images)),
                                                    torch.from_numpy(labels), image_size)
        train, val = _carve(stored(x_train, y_train), _val_count(len(x_train), val_size), seed)
        splits = {"train": train, "val": val, "test": stored(x_test, y_test)}
    mean, std = ([], []) if lazy else channel_stats(splits["train"])
    if train_limit and train_limit < len(splits["train"]):
        subset = torch.randperm(len(splits["train"]), generator=torch.Generator().manual_seed(seed))
        splits["train"] = splits["train"].take(subset[:train_limit])
    if test_limit and test_limit < len(splits["test"]):
        splits["test"] = splits["test"].take(torch.arange(test_limit))
    if not lazy:
        for name, split in splits.items():
            if isinstance(split, FolderSplit):   # a corrupt image is found now, named, not after hours of training
                formats.check_images(split.files, split.channels)
            else:
                splits[name] = split.resized()
    return DataBundle(spec, splits["train"], splits["val"], splits["test"], classes, mean, std)
