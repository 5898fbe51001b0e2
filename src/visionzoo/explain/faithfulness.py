"""Deletion and insertion: Petsiuk, Das, Saenko. RISE: Randomized Input Sampling for Explanation of
Black-box Models. BMVC 2018, Sec. 4.1 (the causal metrics).

Deletion removes pixels, most salient first, replacing them by grey (0 after normalisation, the
data set's mean colour), and records the class probability after each step; a faithful map makes
it fall fast, so a LOW area under the curve is good. Insertion starts from a blurred copy and puts
pixels back in the same order; a HIGH area is good. Areas are trapezoids over the fraction of
pixels changed, so both lie in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attribution import logits
from .hooks import evaluating


def _blurred(x: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms.v2.functional import gaussian_blur
    side = min(x.shape[-2:])
    kernel = max(3, (side // 4) | 1)  # odd, about a quarter of the image
    return gaussian_blur(x, [kernel, kernel], [kernel / 3.0, kernel / 3.0])


def causal_curve(model: nn.Module, x: torch.Tensor, target: int, saliency: torch.Tensor,
                 mode: str, steps: int = 32, batch_size: int = 64) -> torch.Tensor:
    """Class probability after 0, 1/steps, …, all pixels deleted (or inserted) in saliency order."""
    height, width = x.shape[-2:]
    order = saliency.flatten().argsort(descending=True)
    start, finish = (x, torch.zeros_like(x)) if mode == "deletion" else (_blurred(x), x)
    counts = [round(i * height * width / steps) for i in range(steps + 1)]
    probabilities = []
    with evaluating(model), torch.no_grad():
        for lo in range(0, len(counts), batch_size):
            chunk = counts[lo:lo + batch_size]
            masks = torch.zeros(len(chunk), height * width, device=x.device)
            for i, count in enumerate(chunk):
                masks[i, order[:count]] = 1.0
            masks = masks.view(len(chunk), 1, height, width)
            images = start * (1 - masks) + finish * masks
            probabilities.append(F.softmax(logits(model, images).float(), 1)[:, target])
    return torch.cat(probabilities).cpu()


def area_under(curve: torch.Tensor) -> float:
    return float(torch.trapezoid(curve, dx=1.0 / (len(curve) - 1)))


def deletion_insertion(model: nn.Module, x: torch.Tensor, target: int, saliency: torch.Tensor,
                       steps: int = 32) -> tuple[dict, dict]:
    """The deletion and insertion curves of one (H, W) saliency map, and the area under each:
    ({'deletion_auc', 'insertion_auc'}, {'deletion': curve, 'insertion': curve})."""
    curves = {mode: causal_curve(model, x, target, saliency, mode, steps) for mode in ("deletion", "insertion")}
    return {f"{mode}_auc": area_under(curve) for mode, curve in curves.items()}, curves
