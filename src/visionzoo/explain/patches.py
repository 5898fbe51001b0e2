"""Top-activating patches: Zeiler & Fergus. Visualizing and Understanding Convolutional Networks.
ECCV 2014, Fig. 2 (for a layer and a channel, the nine data set images and locations with the
strongest activation, each cropped to the part of the image the unit sees); notes seed 004,
"Visualizing what activates channels".
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .hooks import capture, evaluating
from .receptive import Field


def normalised_batches(split, normalizer, limit: int | None, batch_size: int, device):
    """(first index, uint8 images, normalised images, labels) over the first `limit` images."""
    count = len(split) if limit is None else min(limit, len(split))
    for start in range(0, count, batch_size):
        images, labels = split.fetch(torch.arange(start, min(start + batch_size, count)))
        images = images.to(device)
        yield start, images, normalizer(images), labels


def top_activations(model: nn.Module, layer: nn.Module, batches, channels: list[int], k: int = 9):
    """Per channel, up to k (activation, image index, row, col), strongest first; one per image."""
    best = {c: (torch.empty(0), torch.empty(0, 3, dtype=torch.long)) for c in channels}
    with evaluating(model), torch.no_grad(), capture(layer) as record:
        for start, _, x, _ in batches:
            model(x)
            activation = record.activation.float()
            values, positions = activation[:, channels].flatten(2).max(2)  # (B, channels)
            width = activation.shape[-1]
            for i, channel in enumerate(channels):
                where = torch.stack([torch.arange(len(x), device=x.device) + start,
                                     positions[:, i] // width, positions[:, i] % width], 1).cpu()
                scores = torch.cat([best[channel][0], values[:, i].cpu()])
                places = torch.cat([best[channel][1], where])
                order = scores.argsort(descending=True)[:k]
                best[channel] = (scores[order], places[order])
    return {c: [(float(s), *map(int, p)) for s, p in zip(*best[c])] for c in channels}


def crop_to_field(image: torch.Tensor, field: Field, row: int, col: int) -> torch.Tensor:
    """The pixels unit (row, col) sees, zero-padded where its field runs past the image edge."""
    top, left, bottom, right = field.box(row, col)
    top, left = math.floor(top + 1e-9), math.floor(left + 1e-9)
    bottom, right = math.ceil(bottom - 1e-9), math.ceil(right - 1e-9)
    height, width = image.shape[-2:]
    padding = (max(0, -left), max(0, right - width), max(0, -top), max(0, bottom - height))
    padded = F.pad(image, padding)
    return padded[..., top + padding[2]:bottom + padding[2], left + padding[0]:right + padding[0]]
