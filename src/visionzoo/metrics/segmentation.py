"""Set-level segmentation scores from a pixel confusion matrix: Dice, IoU and pixel accuracy.

- IoU (Jaccard index, the PASCAL VOC segmentation measure) and pixel accuracy: Long et al.,
  "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015, Sec. 5 "Metrics", with
  n_ij the pixels of class i predicted as j and t_i = Σ_j n_ij: pixel accuracy Σ_i n_ii / Σ_i t_i,
  IU_i = n_ii / (t_i + Σ_j n_ji − n_ii) = TP / (TP + FP + FN).
- Dice: Dice, "Measures of the Amount of Ecologic Association Between Species", Ecology 1945:
  2|A ∩ B| / (|A| + |B|) = 2TP / (2TP + FP + FN), so per class Dice = 2·IoU / (1 + IoU).

Every score comes from a K×K confusion matrix (rows = true class, columns = predicted), and
confusion matrices add: the score of a data set is the score of the sum of its batches' matrices
("global" averaging over pixels, torchmetrics' ``multidim_average="global"``), not a mean of
per-image scores. Call `confusion_matrix` per batch, sum, then `*_from_confusion`; `dice`, `iou`
and `pixel_accuracy` do both steps for one batch.

Undefined scores. A class with no pixel in the target and none in the prediction over the
evaluated set has TP = FP = FN = 0, so its Dice and IoU are 0/0. Conventions (default settings),
for [absent from both | absent from the target but predicted | what is averaged]:

- visionzoo: [NaN, left out of the mean | 0 | the set]; if no class in the mean is defined, the
  mean is NaN.
- torchmetrics ``MulticlassJaccardIndex`` / ``MulticlassF1Score``: [0 with ``average=None``
  (``zero_division=0``), left out of the ``"macro"`` mean | 0 | the set].
- torchmetrics ``segmentation.DiceScore``: [NaN (``zero_division="nan"``), ``nanmean`` for
  ``"macro"`` | 0 | each image (``aggregation_level="samplewise"``)]; it has no ``ignore_index``.
- MONAI ``DiceMetric`` / ``MeanIoU`` (``ignore_empty=True``): [NaN | NaN too: any class the
  target lacks, and the nan-aware reduction leaves it out | each image].
- segmentation_models_pytorch ``iou_score`` / ``f1_score`` (``zero_division=1.0``): [1, counted
  in the mean | 0 | the set or each image, by ``reduction``].

So our per-class values equal torchmetrics' wherever ours are defined, and our mean with
``include_background=True`` equals its ``average="macro"``. The default mean skips class 0
(background), as the segmentation ``eval`` keys ``dice`` and ``iou`` do.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch
from torch import Tensor

from visionzoo.core.errors import UsageError


class PerClass(NamedTuple):
    """A score for each class (float64 on the CPU, NaN where undefined) and their mean over the chosen classes."""

    per_class: Tensor
    mean: float


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, *, ignore_index: int | None = 255) -> Tensor:
    """int64 (K, K) pixel counts: entry [t, p] counts pixels of true class t predicted as p.

    `pred` and `target` are integer label maps of one shape (any shape, e.g. (N, H, W)); take the
    argmax of logits first. Pixels whose target is `ignore_index` are skipped, whatever their
    prediction; every other pixel must hold labels 0..K-1 in both maps (`ignore_index=None`: every
    pixel counts). The result stays on the inputs' device; sum the matrices of several batches to
    score them together.
    """
    _check_num_classes(num_classes)
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        raise UsageError(f"ignore_index={ignore_index} is a class label (0..{num_classes - 1}); "
                         "pick a value outside the labels, e.g. 255")
    if pred.shape != target.shape:
        raise UsageError(f"pred has shape {tuple(pred.shape)} but target has shape {tuple(target.shape)}; "
                         "give label maps of one shape")
    for name, labels in (("pred", pred), ("target", target)):
        if labels.is_floating_point() or labels.is_complex():
            raise UsageError(f"{name} has dtype {labels.dtype}; give integer class labels (argmax the logits first)")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    if ignore_index is not None:
        evaluated = target != ignore_index
        pred, target = pred[evaluated], target[evaluated]
    for name, labels in (("target", target), ("pred", pred)):
        outside = (labels < 0) | (labels >= num_classes)
        if outside.any():
            bad = labels[outside][0].item()
            raise UsageError(f"{name} holds label {bad}, outside 0..{num_classes - 1} for num_classes={num_classes} "
                             f"(ignore_index={ignore_index}); fix num_classes or the labels")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def dice_from_confusion(confusion: Tensor, *, include_background: bool = False) -> PerClass:
    """Dice = 2TP / (2TP + FP + FN) per class, from a summed confusion matrix (NaN where undefined)."""
    true_pos, false_pos, false_neg = _counts(confusion)
    return _per_class(2 * true_pos / (2 * true_pos + false_pos + false_neg), include_background)


def iou_from_confusion(confusion: Tensor, *, include_background: bool = False) -> PerClass:
    """IoU = TP / (TP + FP + FN) per class, from a summed confusion matrix (NaN where undefined)."""
    true_pos, false_pos, false_neg = _counts(confusion)
    return _per_class(true_pos / (true_pos + false_pos + false_neg), include_background)


def pixel_accuracy_from_confusion(confusion: Tensor) -> float:
    """Correct pixels / evaluated pixels (trace / total); NaN when no pixel was evaluated."""
    confusion = _as_float64(confusion)
    return (confusion.trace() / confusion.sum()).item()


def dice(pred: Tensor, target: Tensor, num_classes: int, *, ignore_index: int | None = 255,
         include_background: bool = False) -> PerClass:
    """Dice of one batch of label maps; see `confusion_matrix` for the inputs."""
    return dice_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index=ignore_index),
                               include_background=include_background)


def iou(pred: Tensor, target: Tensor, num_classes: int, *, ignore_index: int | None = 255,
        include_background: bool = False) -> PerClass:
    """IoU of one batch of label maps; see `confusion_matrix` for the inputs."""
    return iou_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index=ignore_index),
                              include_background=include_background)


def pixel_accuracy(pred: Tensor, target: Tensor, num_classes: int, *, ignore_index: int | None = 255) -> float:
    """Pixel accuracy of one batch of label maps; see `confusion_matrix` for the inputs."""
    return pixel_accuracy_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index=ignore_index))


def scores_from_confusion(confusion: Tensor) -> dict[str, float | list[float]]:
    """The segmentation ``eval`` keys: foreground means ``dice``, ``iou``; ``pixel_acc``; per-class lists."""
    dice_scores, iou_scores = dice_from_confusion(confusion), iou_from_confusion(confusion)
    return {"dice": dice_scores.mean, "iou": iou_scores.mean, "pixel_acc": pixel_accuracy_from_confusion(confusion),
            "dice_per_class": dice_scores.per_class.tolist(), "iou_per_class": iou_scores.per_class.tolist()}


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise UsageError(f"num_classes={num_classes!r}; give the number of classes, an integer ≥ 1")


def _as_float64(confusion: Tensor) -> Tensor:
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise UsageError(f"confusion matrix has shape {tuple(confusion.shape)}; give a square (K, K) matrix "
                         "from confusion_matrix")
    return confusion.detach().to("cpu", torch.float64)


def _counts(confusion: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class true positives, false positives (column minus diagonal), false negatives (row minus diagonal)."""
    confusion = _as_float64(confusion)
    true_pos = confusion.diagonal()
    return true_pos, confusion.sum(0) - true_pos, confusion.sum(1) - true_pos


def _per_class(scores: Tensor, include_background: bool) -> PerClass:
    # 0/0 is NaN in float64: exactly the classes absent from both target and prediction.
    averaged = scores if include_background else scores[1:]
    return PerClass(scores, torch.nanmean(averaged).item())  # NaN when nothing is defined (or K = 1)
