"""Batches from a split: a seeded permutation per epoch, global batches sharded across ranks.

Batch i of epoch e is the same set of images whatever the number of processes: rank r of W takes
every W-th image of it, so a 2-process run sees what a 1-process run sees. Images leave here as
uint8 tensors on the training device; `augment.Augmentation` and `Normalizer` take them from there.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

EVAL_BATCH_VALUES = 2 ** 23   # 32 MB of float32: 55 RGB images of 224 px a batch; 500 of CIFAR or 28-px grey as before


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


def train_batches(split, batch_size: int, *, seed: int, epoch: int, start_step: int = 0,
                  rank: int = 0, world: int = 1, device="cpu"):
    """Yield (uint8 images, labels) of this rank for steps start_step.. of the epoch."""
    batch_size = min(batch_size, len(split))
    order = epoch_order(len(split), seed, epoch)
    for step in range(start_step, steps_per_epoch(len(split), batch_size)):
        index = order[step * batch_size:(step + 1) * batch_size][rank::world]
        images, labels = split.fetch(index)
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def eval_batches(split, batch_size: int, *, rank: int = 0, world: int = 1, device="cpu"):
    """Every image once, in order; rank r takes a contiguous share. A batch holds at most
    EVAL_BATCH_VALUES pixel values, so that large images come in fewer per batch: the memory of an
    evaluation (its activations grow with the batch's pixels) stays bounded whatever their size,
    and what is summed over the batches does not depend on how they are cut."""
    n = len(split)
    lo, hi = n * rank // world, n * (rank + 1) // world
    if hi > lo:
        values = split.fetch(torch.arange(lo, lo + 1))[0][0].numel()
        batch_size = max(1, min(batch_size, EVAL_BATCH_VALUES // values))
    for start in range(lo, hi, batch_size):
        images, labels = split.fetch(torch.arange(start, min(start + batch_size, hi)))
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
