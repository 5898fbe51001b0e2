"""Detection mean average precision in the three styles the field reports.

- "coco": Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014, and the COCO
  detection evaluation (pycocotools ``COCOeval``, area range "all", at most `max_detections` per
  image and class): detections matched greedily in score order to the unmatched ground truth of
  highest IoU ≥ t (crowd boxes match any number of times and are ignored, as are detections
  matched to them); AP = mean of the interpolated precision at the 101 recalls 0, 0.01, …, 1;
  "map" averages over the IoU thresholds (COCO's .50:.05:.95 with ``iou_thresholds=None``).
- "voc07": Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010,
  Sec. 4.2: the devkit's matching (each detection, in score order, takes the ground truth of
  highest IoU; IoU ≥ 0.5 and not yet taken → true positive, taken → false positive (a duplicate),
  difficult → ignored) and 11-point AP = (1/11) Σ_{r ∈ {0, .1, …, 1}} max_{r' ≥ r} p(r').
- "voc": the same matching with the VOC 2010+ devkit's all-point AP: the area under the
  precision-recall curve made monotone (precision at r = the highest precision at any r' ≥ r).

Box convention: (x1, y1, x2, y2) in continuous coordinates, area = (x2 − x1)(y2 − y1), in every
style. pycocotools does the same on (x, y, w, h) boxes; the VOC devkit counts pixels inclusively
(+1 on widths and heights), which we do not, so VOC numbers on integer pixel boxes differ from the
devkit's very slightly. Difficult boxes (VOC) are ignored in all styles; in the COCO style they are
treated as pycocotools treats an ignored non-crowd box (matched at most once, the match ignored).
In the VOC styles crowd boxes count as difficult. A class with no (non-ignored) ground truth has no
AP (NaN in "ap_per_class") and is left out of every mean, as pycocotools' −1 entries are; its
detections are not counted anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from visionzoo.core.errors import UsageError

__all__ = ["COCO_IOU_THRESHOLDS", "STYLES", "detection_map"]

STYLES = ("coco", "voc07", "voc")
COCO_IOU_THRESHOLDS = tuple(0.5 + k * ((0.95 - 0.5) / 9) for k in range(9)) + (0.95,)
"""0.50, 0.55, …, 0.95, computed as numpy.linspace does, so the comparisons equal pycocotools'."""
_COCO_RECALLS = torch.cat((torch.arange(100, dtype=torch.float64) * (1.0 / 100), torch.ones(1, dtype=torch.float64)))
_VOC07_RECALLS = torch.tensor([k / 10 for k in range(11)], dtype=torch.float64)


class _Matched(NamedTuple):
    """One image and class after matching: detection scores (D,), and per threshold (T, D) which are
    true positives and which are ignored (neither true nor false positive)."""

    scores: Tensor
    true_positive: Tensor
    ignored: Tensor


def _iou(detections: Tensor, truths: Tensor, crowd: Tensor) -> Tensor:
    """(D, G) IoU; against a crowd box the union is the detection's own area (pycocotools' iscrowd).
    Zero-area boxes overlap nothing (IoU 0, not 0/0)."""
    top_left = torch.maximum(detections[:, None, :2], truths[None, :, :2])
    bottom_right = torch.minimum(detections[:, None, 2:], truths[None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(-1)
    detection_area = (detections[:, 2:] - detections[:, :2]).prod(-1)[:, None]
    truth_area = (truths[:, 2:] - truths[:, :2]).prod(-1)[None, :]
    union = torch.where(crowd[None, :], detection_area, detection_area + truth_area - intersection)
    return (intersection / union).nan_to_num(nan=0.0)


def _match_coco(iou: list[list[float]], ignore: list[bool], crowd: list[bool], thresholds: Sequence[float]):
    """pycocotools' greedy matching; `iou` rows are detections in score order, columns ground truths
    with the ignored ones last. Returns (T, D) true-positive and ignored flags."""
    num_detections = len(iou)
    true_positive = torch.zeros(len(thresholds), num_detections, dtype=torch.bool)
    ignored = torch.zeros(len(thresholds), num_detections, dtype=torch.bool)
    for t, threshold in enumerate(thresholds):
        taken = [False] * len(ignore)
        for d, row in enumerate(iou):
            best_iou, best = min(threshold, 1 - 1e-10), -1
            for g, overlap in enumerate(row):
                if taken[g] and not crowd[g]:
                    continue
                if best > -1 and not ignore[best] and ignore[g]:
                    break  # a match to a counted box beats any ignored one
                if overlap < best_iou:
                    continue
                best_iou, best = overlap, g
            if best == -1:
                continue
            taken[best] = True
            ignored[t, d] = ignore[best]
            true_positive[t, d] = not ignore[best]
    return true_positive, ignored


def _match_voc(iou: list[list[float]], difficult: list[bool], thresholds: Sequence[float]):
    """The VOC devkit's matching; `iou` rows are detections in score order. Returns (T, D) flags."""
    num_detections = len(iou)
    true_positive = torch.zeros(len(thresholds), num_detections, dtype=torch.bool)
    ignored = torch.zeros(len(thresholds), num_detections, dtype=torch.bool)
    for t, threshold in enumerate(thresholds):
        taken = [False] * len(difficult)
        for d, row in enumerate(iou):
            best = max(range(len(row)), key=row.__getitem__)  # the first of equal maxima
            if row[best] < threshold:
                continue
            if difficult[best]:
                ignored[t, d] = True
            elif not taken[best]:
                taken[best] = True
                true_positive[t, d] = True
    return true_positive, ignored


def _average_precision(true_positive: Tensor, relevant: int, style: str) -> float:
    """AP of one class at one threshold from its ranked, non-ignored detections' TP flags."""
    if len(true_positive) == 0:
        return 0.0
    true_positives = true_positive.to(torch.float64).cumsum(0)
    recall = true_positives / relevant
    precision = true_positives / torch.arange(1, len(true_positive) + 1, dtype=torch.float64)
    if style == "voc07":
        # A recall level never reached contributes 0 (precisions are >= 0, so 0 stands for "none").
        reached = recall[None, :] >= _VOC07_RECALLS[:, None]
        return float(torch.where(reached, precision[None, :], 0.0).amax(1).mean())
    envelope = precision.flip(0).cummax(0).values.flip(0)
    if style == "voc":
        steps = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
        return float((steps * envelope).sum())
    positions = torch.searchsorted(recall, _COCO_RECALLS, side="left")
    padded = torch.cat((envelope, torch.zeros(1, dtype=torch.float64)))
    return float(padded[positions.clamp(max=len(envelope))].mean())


def _match_image(
    found: dict[str, Tensor],
    known: dict[str, Tensor],
    label: int,
    style: str,
    thresholds: Sequence[float],
    max_detections: int,
) -> tuple[_Matched, int]:
    """Match one image's detections of `label` (already in score order) to its ground truth of
    `label`; also returns how many of those ground-truth boxes count (are not ignored)."""
    keep = found["labels"] == label
    scores, boxes = found["scores"][keep], found["boxes"][keep]
    if style == "coco":
        scores, boxes = scores[:max_detections], boxes[:max_detections]
    mine = known["labels"] == label
    ignore = (known["difficult"] | known["iscrowd"])[mine]
    relevant = int((~ignore).sum())
    if len(ignore) == 0 or len(scores) == 0:
        unmatched = torch.zeros(len(thresholds), len(scores), dtype=torch.bool)
        return _Matched(scores, unmatched, unmatched), relevant
    if style == "coco":
        truth_order = torch.sort(ignore.to(torch.uint8), stable=True).indices  # ignored boxes last
        ignore, crowd = ignore[truth_order], known["iscrowd"][mine][truth_order]
        iou = _iou(boxes, known["boxes"][mine][truth_order], crowd).tolist()
        flags = _match_coco(iou, ignore.tolist(), crowd.tolist(), thresholds)
    else:
        iou = _iou(boxes, known["boxes"][mine], torch.zeros_like(ignore)).tolist()
        flags = _match_voc(iou, ignore.tolist(), thresholds)
    return _Matched(scores, *flags), relevant


def _field(record: Mapping, key: str, image: int, what: str, dtype: torch.dtype, required: bool = True):
    if key not in record:
        if required:
            raise UsageError(f"{what} {image} has no {key!r}; give boxes, labels (and scores for detections)")
        return None
    return torch.as_tensor(record[key]).detach().to("cpu", dtype)


def _read(records: Sequence[Mapping], what: str, num_classes: int | None) -> list[dict[str, Tensor]]:
    images = []
    for image, record in enumerate(records):
        boxes = _field(record, "boxes", image, what, torch.float64).reshape(-1, 4)
        labels = _field(record, "labels", image, what, torch.long).reshape(-1)
        read = {"boxes": boxes, "labels": labels}
        if what == "detection":
            read["scores"] = _field(record, "scores", image, what, torch.float64).reshape(-1)
        else:
            for flag in ("difficult", "iscrowd"):
                given = _field(record, flag, image, what, torch.bool, required=False)
                read[flag] = torch.zeros(len(labels), dtype=torch.bool) if given is None else given.reshape(-1)
        lengths = {key: len(value) for key, value in read.items()}
        if len(set(lengths.values())) > 1:
            raise UsageError(f"{what} {image}: {lengths} differ in length; give one entry per box in each")
        if num_classes is not None and len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
            bad = int(labels[(labels < 0) | (labels >= num_classes)][0])
            raise UsageError(f"{what} {image}: label {bad} is outside 0..{num_classes - 1} (num_classes={num_classes})")
        images.append(read)
    return images


def detection_map(
    detections: Sequence[Mapping],
    targets: Sequence[Mapping],
    *,
    iou_thresholds: Sequence[float] | None = (0.5,),
    style: str = "coco",
    num_classes: int | None = None,
    max_detections: int = 100,
) -> dict:
    """Mean average precision of `detections` against `targets`, one mapping per image each.

    detections[i]: "boxes" (N, 4) x1 y1 x2 y2, "scores" (N,), "labels" (N,). targets[i]: "boxes",
    "labels", optionally "difficult" and "iscrowd" (bool, (G,)). Tensors, arrays or lists.
    `iou_thresholds=None` means COCO's ten, 0.50:0.05:0.95. `style`: "coco", "voc07" or "voc" (see the
    module docstring). `num_classes`: report classes 0..num_classes−1 (and reject other labels);
    default: every label seen in the targets or detections. `max_detections` caps the detections
    per image and class in the COCO style (pycocotools' maxDets; the VOC devkit has no cap).

    Returns a dict with "map" (mean over classes with ground truth and over the thresholds; NaN
    if no class has any), "map50" and "map75" when 0.5 / 0.75 are among the thresholds,
    "ap_per_threshold" {threshold: mAP}, "ap_per_class" {label: AP averaged over the thresholds,
    NaN without ground truth}, "ap50_per_class" when 0.5 is among them, "style" and
    "iou_thresholds".
    """
    if style not in STYLES:
        raise UsageError(f"detection_map style {style!r} is unknown; use one of {', '.join(STYLES)}")
    if len(detections) != len(targets):
        raise UsageError(f"detection_map got {len(detections)} detection entries for {len(targets)} images")
    thresholds = COCO_IOU_THRESHOLDS if iou_thresholds is None else tuple(float(t) for t in iou_thresholds)
    if not thresholds or not all(0 < t <= 1 for t in thresholds):
        raise UsageError(f"iou_thresholds {iou_thresholds!r} must be a non-empty list of values in (0, 1]")
    if max_detections < 1:
        raise UsageError(f"max_detections={max_detections} must be at least 1")
    predicted, truth = _read(detections, "detection", num_classes), _read(targets, "target", num_classes)
    if num_classes is None:
        seen = torch.cat([image["labels"] for image in predicted + truth] + [torch.zeros(0, dtype=torch.long)])
        classes = sorted(set(seen.tolist()))
    else:
        classes = list(range(num_classes))

    matched: dict[int, list[_Matched]] = {label: [] for label in classes}
    relevant = dict.fromkeys(classes, 0)
    for found, known in zip(predicted, truth):
        # One stable sort per image; masking a class out of it keeps the order (ties: input order).
        order = torch.sort(found["scores"], descending=True, stable=True).indices
        found = {key: value[order] for key, value in found.items()}
        for label in set(found["labels"].tolist()) | set(known["labels"].tolist()):
            one_class, count = _match_image(found, known, label, style, thresholds, max_detections)
            matched[label].append(one_class)
            relevant[label] += count

    per_class = torch.full((len(classes), len(thresholds)), math.nan, dtype=torch.float64)
    for row, label in enumerate(classes):
        if relevant[label] == 0:
            continue
        scores = torch.cat([m.scores for m in matched[label]])
        ranking = torch.sort(scores, descending=True, stable=True).indices
        true_positive = torch.cat([m.true_positive for m in matched[label]], dim=1)[:, ranking]
        ignored = torch.cat([m.ignored for m in matched[label]], dim=1)[:, ranking]
        for column in range(len(thresholds)):
            counted = true_positive[column][~ignored[column]]
            per_class[row, column] = _average_precision(counted, relevant[label], style)

    def mean(values: Tensor) -> float:
        defined = values[~values.isnan()]
        return float(defined.mean()) if len(defined) else math.nan

    by_threshold = {round(t, 4): mean(per_class[:, column]) for column, t in enumerate(thresholds)}
    result = {
        "map": mean(per_class.flatten()),
        "ap_per_threshold": by_threshold,
        "ap_per_class": {label: float(per_class[row].mean()) for row, label in enumerate(classes)},
        "style": style,
        "iou_thresholds": [round(t, 4) for t in thresholds],
    }
    for key, threshold in (("map50", 0.5), ("map75", 0.75)):
        if threshold in by_threshold:
            result[key] = by_threshold[threshold]
    if 0.5 in by_threshold:
        column = [round(t, 4) for t in thresholds].index(0.5)
        result["ap50_per_class"] = {label: float(per_class[row, column]) for row, label in enumerate(classes)}
    return result
