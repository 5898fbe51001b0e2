"""Batches from a split: a seeded permutation per epoch, global batches sharded across ranks.

Batch i of epoch e is the same set of images whatever the number of processes: rank r of W takes
every W-th image of it, so a 2-process run sees what a 1-process run sees. Images leave here as
uint8 tensors on the training device; `augment.Augmentation` and `Normalizer` take them from there.

Off the CPU, an in-memory split is kept whole on the training device (issue 27: the epoch's data on
the device, no copy from the host inside a step): copied there once, each batch gathered there with
the epoch's permutation, so that a step waits for no host-to-device copy (from pageable memory, on
CUDA, such a copy is synchronous); evaluation cuts its batches from the same kept copy. The batches are
those of the per-step copy, image for image.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch.utils.weak import WeakIdKeyDictionary

EVAL_BATCH_VALUES = 2 ** 23   # 32 MB of float32: 55 RGB images of 224 px a batch; 500 of CIFAR or 28-px grey as before
# a split kept on a CUDA device takes at most this share of its free memory: the rest is for the network,
# its activations and its optimiser (Fashion-MNIST's training split is 43 MB; 50 000 RGB images of 224 px, 7.5 GB)
RESIDENT_SHARE = 0.25
RESIDENT_CAP = 2 ** 30   # bytes, on a device whose free memory torch does not report (MPS; the CPU when forced)

_resident_copies = WeakIdKeyDictionary()   # split → {device: (images, labels)}, dropped with the split


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Training drops the last partial batch, so every step has a full, evenly shardable batch."""
    return max(1, n // batch_size)


@functools.lru_cache(maxsize=64)
def channel_constants(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """`values` as a (1, C, 1, 1) tensor on `device`, made once: a training step that uses them copies
    nothing from the host (on CUDA such a copy waits for the device). Read-only; an ordinary tensor even
    when first asked for under inference mode, so that a later backward pass may save it."""
    with torch.inference_mode(False):
        return torch.tensor(values, device=device).view(1, -1, 1, 1)


@dataclass
class Normalizer:
    mean: list[float]
    std: list[float]

    def __call__(self, images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        mean = channel_constants(tuple(self.mean), images.device)
        std = channel_constants(tuple(self.std), images.device)
        x = (images.float() / 255.0 - mean) / std
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def resident_budget(device: torch.device) -> int:
    """The bytes a split kept whole on `device` may take."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * RESIDENT_SHARE)
    return RESIDENT_CAP


def resident_tensors(split, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The split's images and labels on `device`, copied there on the first call and kept as long as the
    split lives (on the CPU, the split's own tensors). None where its batches must come from `fetch`
    (files decoded, or images resized, as they are read: no `indexed_tensors`) or where the tensors
    would take more than `resident_budget(device)` bytes."""
    device = torch.device(device)
    copies = _resident_copies.get(split, {})
    if device not in copies:
        indexed = getattr(split, "indexed_tensors", None)   # an in-memory TensorSplit's; files and the like lack it
        tensors = indexed() if indexed else None
        if tensors is None or sum(t.nbytes for t in tensors) > resident_budget(device):
            return None
        copies[device] = tuple(t.to(device) for t in tensors)
        _resident_copies[split] = copies
    return copies[device]


def _kept_tensors(split, device: torch.device, resident: bool | None):
    """The split's tensors on `device` where its batches are to be cut there (`resident`; None: off the CPU
    only), else None (the per-step fetch)."""
    if resident is None:
        resident = device.type != "cpu"
    return resident_tensors(split, device) if resident else None


def train_batches(split, batch_size: int, *, seed: int, epoch: int, start_step: int = 0,
                  rank: int = 0, world: int = 1, device="cpu", resident: bool | None = None):
    """Yield (uint8 images, labels) of this rank for steps start_step.. of the epoch.

    `resident`: gather the batches from the split kept on the device (`resident_tensors`; where it
    cannot be, fetch them as before); None (the default) does so off the CPU only. The batches are the
    same either way."""
    device = torch.device(device)
    batch_size = min(batch_size, len(split))
    order = epoch_order(len(split), seed, epoch)
    kept = _kept_tensors(split, device, resident)
    if kept is not None:
        order = order.to(device, non_blocking=True)   # once an epoch; the steps then only index on the device
    for step in range(start_step, steps_per_epoch(len(split), batch_size)):
        index = order[step * batch_size:(step + 1) * batch_size][rank::world]
        if kept is not None:
            yield kept[0].index_select(0, index), kept[1].index_select(0, index)
        else:
            images, labels = split.fetch(index)
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def eval_batches(split, batch_size: int, *, rank: int = 0, world: int = 1, device="cpu", resident: bool | None = None):
    """Every image once, in order; rank r takes a contiguous share. A batch holds at most
    EVAL_BATCH_VALUES pixel values, so that large images come in fewer per batch: the memory of an
    evaluation (its activations grow with the batch's pixels) stays bounded whatever their size,
    and what is summed over the batches does not depend on how they are cut.

    `resident` as for `train_batches`: off the CPU (by default) the batches are cut from the split kept
    on the device, each its own copy there, so that nothing an evaluation does to one reaches the kept split."""
    kept = _kept_tensors(split, torch.device(device), resident)
    n = len(split)
    lo, hi = n * rank // world, n * (rank + 1) // world
    if hi > lo:
        values = (kept[0][0] if kept is not None else split.fetch(torch.arange(lo, lo + 1))[0][0]).numel()
        batch_size = max(1, min(batch_size, EVAL_BATCH_VALUES // values))
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        if kept is not None:
            yield kept[0][start:stop].clone(), kept[1][start:stop].clone()
        else:
            images, labels = split.fetch(torch.arange(start, stop))
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
