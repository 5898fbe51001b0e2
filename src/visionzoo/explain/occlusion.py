"""Occlusion sensitivity: Zeiler & Fergus. Visualizing and Understanding Convolutional Networks.
ECCV 2014, Sec. 4.2 and Fig. 7 (notes seed 004: "block part of image with a grey square and record
class score; move the grey square over the image to get a 2D array of scores").

The grey square holds the data set's mean colour, which is 0 after input normalisation. The
probability of the class at each square position forms the score map (low = important); the
per-pixel sensitivity is the unoccluded probability minus the mean score of the squares covering
the pixel, so that, like the other saliency maps, high means important.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attribution import logits
from .hooks import evaluating


def _positions(length: int, size: int, stride: int) -> list[int]:
    last = max(length - size, 0)
    positions = list(range(0, last + 1, stride))
    return positions if positions[-1] == last else positions + [last]  # the far edge is covered too


def occlusion(model: nn.Module, x: torch.Tensor, target: int, size: int | None = None,
              stride: int | None = None, fill: float = 0.0, batch_size: int = 64):
    """Score map (n_rows, n_cols) of class probabilities and the (H, W) sensitivity map."""
    height, width = x.shape[-2:]
    size = size or max(1, min(height, width) // 4)
    stride = stride or max(1, size // 2)
    rows, cols = _positions(height, size, stride), _positions(width, size, stride)
    corners = [(r, c) for r in rows for c in cols]
    scores = []
    with evaluating(model), torch.no_grad():
        base = F.softmax(logits(model, x).float(), 1)[0, target]
        for start in range(0, len(corners), batch_size):
            chunk = corners[start:start + batch_size]
            occluded = x.repeat(len(chunk), 1, 1, 1)
            for i, (r, c) in enumerate(chunk):
                occluded[i, :, r:r + size, c:c + size] = fill
            scores.append(F.softmax(logits(model, occluded).float(), 1)[:, target])
    scores = torch.cat(scores).view(len(rows), len(cols))
    covered_sum = torch.zeros(height, width, device=x.device)
    covered_count = torch.zeros(height, width, device=x.device)
    for (r, c), score in zip(corners, scores.flatten()):
        covered_sum[r:r + size, c:c + size] += score
        covered_count[r:r + size, c:c + size] += 1
    sensitivity = base - covered_sum / covered_count.clamp_min(1)
    return scores.cpu(), sensitivity.cpu()
