"""Evaluation: top-1, top-5, mean cross-entropy and per-class accuracy on a split, summed exactly
across ranks; optionally with test-time augmentation and over an ensemble of networks.

Predictions are softmax outputs averaged over views and networks (AlexNet, Sec. 6: "averaging
the predictions of five similar CNNs", and over ten patches at test time), so the loss is the
negative log of the averaged probability of the true class; with one network and no TTA it is the
ordinary cross-entropy. Views (`tta`):
- `flip`: the image and its mirror;
- `tencrop` (alias `multicrop`): AlexNet's ten patches — four corners and the centre of the
  zero-padded image and their mirrors (torchvision's ten_crop), padded by 1/8 of the side;
- `multiscale`: the image rescaled by each factor of MULTISCALE (VGG, Sec. 3.2 and 4.2: test
  scales Q around the training scale); networks with dense evaluation (VGG's `dense()`: the FC
  layers as convolutions, the class score map averaged) see the whole rescaled image, others its
  central crop at the training size; each scale also with its mirror, as in VGG.
"""
from __future__ import annotations

import math
from contextlib import ExitStack

import torch
import torch.nn.functional as F

from ..data.loader import Normalizer, eval_batches
from ..core.runtime import evaluating
from ..core.distributed import all_reduce_sum

TTA_MODES = ("none", "flip", "tencrop", "multiscale")
TTA_ALIASES = {"multicrop": "tencrop"}
MULTISCALE = (1.0, 1.15, 1.3)


def tencrop_views(pixels: torch.Tensor, padding: int) -> list[torch.Tensor]:
    """Corners and centre of the zero-padded images at their original size, then their mirrors."""
    from torchvision.transforms.v2.functional import ten_crop
    h, w = pixels.shape[-2:]
    return list(ten_crop(F.pad(pixels.float(), (padding,) * 4), [h, w]))


def multiscale_views(pixels: torch.Tensor, scales=MULTISCALE, dense: bool = False) -> list[torch.Tensor]:
    """The images rescaled by each factor (and mirrored); cropped back to their size unless `dense`."""
    from torchvision.transforms.v2.functional import center_crop
    h, w = pixels.shape[-2:]
    views = []
    for scale in scales:
        size = [round(h * scale), round(w * scale)]
        view = F.interpolate(pixels.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        view = view if dense else center_crop(view, [h, w])
        views += [view, view.flip(3)]
    return views


def views(pixels: torch.Tensor, tta: str, dense: bool = False) -> list[torch.Tensor]:
    tta = TTA_ALIASES.get(tta, tta)
    if tta == "none":
        return [pixels]
    if tta == "flip":
        return [pixels, pixels.flip(3)]
    if tta == "tencrop":
        return tencrop_views(pixels, max(1, pixels.shape[-1] // 8))
    if tta == "multiscale":
        return multiscale_views(pixels, dense=dense)
    raise ValueError(f"unknown tta {tta!r}; choose one of {', '.join(TTA_MODES)}")


def members(models, normalizers, tta: str) -> list[tuple]:
    """(network to run, its normaliser, dense?) per model; `multiscale` runs VGG-style dense copies."""
    out = []
    for model, normalizer in zip(models, normalizers):
        dense = tta == "multiscale" and hasattr(model, "dense")
        out.append((model.dense() if dense else model, normalizer, dense))
    return out


def log_probabilities(ensemble, pixels: torch.Tensor, *, tta: str = "none", channels_last: bool = False) -> torch.Tensor:
    """log of the softmax averaged over every view and every member of `members(...)`: (n, classes)."""
    outputs = [F.log_softmax(network(normalizer(view, channels_last)).float(), dim=1)
               for network, normalizer, dense in ensemble for view in views(pixels, tta, dense)]
    return torch.logsumexp(torch.stack(outputs), dim=0) - math.log(len(outputs))


def evaluate(model, split, normalizer: Normalizer, *, batch_size: int = 500, device="cpu",
             channels_last: bool = False, num_classes: int | None = None, rank: int = 0,
             world: int = 1, tta: str = "none") -> dict:
    """Metrics of `model` (or a list of models, an ensemble, with a list of normalisers) on `split`;
    with `num_classes`, also the confusion matrix (true × predicted) and per-class accuracy."""
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    normalizers = list(normalizer) if isinstance(normalizer, (list, tuple)) else [normalizer]
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # n, top1, top5, loss sum
    confusion = torch.zeros(num_classes or 1, num_classes or 1, dtype=torch.int64, device=device)
    with torch.no_grad(), ExitStack() as modes:
        for m in models:
            modes.enter_context(evaluating(m))
        ensemble = members(models, normalizers, tta)
        for images, labels in eval_batches(split, batch_size, rank=rank, world=world, device=device):
            log_p = log_probabilities(ensemble, images, tta=tta, channels_last=channels_last)
            k = min(5, log_p.shape[1])
            top = log_p.topk(k, 1).indices
            hits = top == labels[:, None]
            totals += torch.stack([torch.tensor(len(labels), device=device, dtype=torch.float64),
                                   hits[:, 0].sum().double(), hits.any(1).sum().double(),
                                   F.nll_loss(log_p, labels, reduction="sum").double()])
            if num_classes:
                confusion.index_put_((labels, top[:, 0]), torch.ones_like(labels), accumulate=True)
    totals = all_reduce_sum(totals)
    n = int(totals[0].item())
    result = {"n": n, "top1": totals[1].item() / max(n, 1), "top5": totals[2].item() / max(n, 1),
              "loss": totals[3].item() / max(n, 1)}
    if num_classes:
        confusion = all_reduce_sum(confusion).cpu()
        result["confusion"] = confusion.tolist()
        result["per_class_top1"] = (confusion.diag() / confusion.sum(1).clamp_min(1)).tolist()
    return result
