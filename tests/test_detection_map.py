"""detection_map against pycocotools (COCO style), an independent devkit transcription (VOC styles),
and hand-computed cases."""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionzoo import metrics
from visionzoo.core.errors import UsageError
from visionzoo.metrics.detection import COCO_IOU_THRESHOLDS, detection_map

CLASSES = (1, 2, 3)


def random_scenes(seed: int, images: int = 20, crowd: bool = False, difficult: bool = False, tied: bool = True):
    """Targets with 0–5 boxes; detections = jittered copies (some duplicated, some mislabelled) plus
    random boxes, with scores rounded to 2 decimals so that ties occur."""
    rng = np.random.default_rng(seed)
    detections, targets = [], []
    for _ in range(images):
        count = int(rng.integers(0, 6))
        corner = rng.uniform(0, 80, (count, 2))
        boxes = np.concatenate((corner, corner + rng.uniform(8, 40, (count, 2))), 1)
        labels = rng.choice(CLASSES, count)
        target = {"boxes": torch.tensor(boxes), "labels": torch.tensor(labels)}
        if crowd:
            target["iscrowd"] = torch.tensor(rng.random(count) < 0.15)
        if difficult:
            target["difficult"] = torch.tensor(rng.random(count) < 0.2)
        targets.append(target)
        keep = rng.random(count) < 0.8
        found = boxes[keep] + rng.normal(0, 3, (int(keep.sum()), 4))
        found_labels = np.where(rng.random(len(found)) < 0.9, labels[keep], rng.choice(CLASSES, len(found)))
        duplicates = rng.random(len(found)) < 0.3
        noise_count = int(rng.integers(0, 4))
        noise_corner = rng.uniform(0, 90, (noise_count, 2))
        noise = np.concatenate((noise_corner, noise_corner + rng.uniform(5, 30, (noise_count, 2))), 1)
        all_boxes = np.concatenate((found, found[duplicates] + rng.normal(0, 2, (int(duplicates.sum()), 4)), noise))
        all_labels = np.concatenate((found_labels, found_labels[duplicates], rng.choice(CLASSES, noise_count)))
        all_boxes[:, 2:] = np.maximum(all_boxes[:, 2:], all_boxes[:, :2] + 1)
        scores = rng.random(len(all_boxes))
        detections.append({
            "boxes": torch.tensor(all_boxes),
            "labels": torch.tensor(all_labels),
            "scores": torch.tensor(np.round(scores, 2) if tied else scores),
        })
    return detections, targets


def pycocotools_eval(detections, targets, max_detections: int = 100) -> COCOeval:
    def xywh(box):
        x1, y1, x2, y2 = (float(v) for v in box)
        return [x1, y1, x2 - x1, y2 - y1]

    annotations = []
    for image, target in enumerate(targets):
        crowd = target.get("iscrowd", torch.zeros(len(target["labels"]), dtype=torch.bool))
        for box, label, is_crowd in zip(target["boxes"], target["labels"], crowd):
            bbox = xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": image + 1, "category_id": int(label),
                                "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": int(is_crowd)})
    truth = COCO()
    truth.dataset = {"images": [{"id": i + 1} for i in range(len(targets))],
                     "categories": [{"id": c} for c in CLASSES], "annotations": annotations}
    results = [{"image_id": image + 1, "category_id": int(label), "bbox": xywh(box), "score": float(score)}
               for image, found in enumerate(detections)
               for box, label, score in zip(found["boxes"], found["labels"], found["scores"])]
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.params.maxDets = [1, min(10, max_detections), max_detections]  # pycocotools sorts them
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


@pytest.mark.parametrize("seed, crowd", [(0, False), (1, True), (2, True)])
def test_coco_style_equals_pycocotools(seed, crowd):
    detections, targets = random_scenes(seed, crowd=crowd)
    reference = pycocotools_eval(detections, targets)
    ours = detection_map(detections, targets, iou_thresholds=None)
    assert ours["map"] == pytest.approx(reference.stats[0], abs=1e-6)
    assert ours["map50"] == pytest.approx(reference.stats[1], abs=1e-6)
    assert ours["map75"] == pytest.approx(reference.stats[2], abs=1e-6)
    assert 0.05 < ours["map"] < ours["map50"] < 1  # the scenes make a test that can fail
    precision = reference.eval["precision"][:, :, :, 0, 2]  # (T, R, K) at area "all", 100 detections
    for k, label in enumerate(CLASSES):
        assert ours["ap_per_class"][label] == pytest.approx(precision[:, :, k].mean(), abs=1e-6)
        assert ours["ap50_per_class"][label] == pytest.approx(precision[0, :, k].mean(), abs=1e-6)
    only50 = detection_map(detections, targets)
    assert only50["map"] == pytest.approx(reference.stats[1], abs=1e-6) and "map75" not in only50


def test_coco_style_caps_detections_per_image_and_class_like_pycocotools():
    detections, targets = random_scenes(3, tied=False)
    reference = pycocotools_eval(detections, targets, max_detections=2)
    ours = detection_map(detections, targets, iou_thresholds=None, max_detections=2)
    precision = reference.eval["precision"][:, :, :, 0, 2]  # (T, R, K) at area "all", at most 2 detections
    assert ours["map"] == pytest.approx(precision[precision > -1].mean(), abs=1e-6)
    assert ours["map"] < detection_map(detections, targets, iou_thresholds=None)["map"]


def test_coco_matching_edge_cases_equal_pycocotools():
    """Image 1: IoU exactly 0.5 matches. Image 2: a detection with IoU 0.5 to two boxes takes the later one,
    so the next detection (IoU 0.82 with that one) is a duplicate. Image 3: a counted box (IoU 0.8) beats a
    crowd box (IoU 1 by the detection's area), and a crowd box absorbs several detections."""
    def scene(boxes, scores, truth, crowd):
        return ({"boxes": torch.tensor(boxes, dtype=torch.float64), "scores": torch.tensor(scores),
                 "labels": torch.ones(len(scores), dtype=torch.long)},
                {"boxes": torch.tensor(truth, dtype=torch.float64), "labels": torch.ones(len(truth), dtype=torch.long),
                 "iscrowd": torch.tensor(crowd)})

    scenes = [
        scene([[0, 0, 10, 10]], [0.6], [[0, 0, 10, 5]], [False]),
        scene([[5, 0, 10, 10], [6, 0, 16, 10]], [0.9, 0.8], [[0, 0, 10, 10], [5, 0, 15, 10]], [False, False]),
        scene([[0, 0, 10, 8], [30, 30, 40, 40], [45, 45, 55, 55]], [0.7, 0.95, 0.85],
              [[0, 0, 10, 10], [0, 0, 60, 60]], [False, True]),
    ]
    detections, targets = [s[0] for s in scenes], [s[1] for s in scenes]
    reference = pycocotools_eval(detections, targets)
    ours = detection_map(detections, targets)
    assert ours["map"] == pytest.approx(reference.stats[1], abs=1e-12)
    # Ranked: .95 and .85 ignored (crowd), then .9 TP, .8 FP, .7 TP, .6 TP over 4 counted boxes:
    # (recall, precision) = (1/4, 1), (1/4, 1/2), (1/2, 2/3), (3/4, 3/4); recall 1 is never reached.
    precision_envelope = [1.0] * 26 + [0.75] * 50 + [0.0] * 25  # recall points 0….25, .26….75, .76…1
    assert ours["map"] == pytest.approx(sum(precision_envelope) / 101)


def test_coco_thresholds_are_pycocotools_own():
    params = COCOeval(iouType="bbox").params
    assert COCO_IOU_THRESHOLDS == tuple(params.iouThrs.tolist())


def devkit_ap(detections, targets, label, threshold, eleven_point):
    """A plain transcription of the VOC devkit's VOCevaldet.m / VOCap.m, with continuous widths (no +1)."""
    truth = []
    for target in targets:
        mine = target["labels"].numpy() == label
        difficult = target.get("difficult", torch.zeros(len(mine), dtype=torch.bool)).numpy()[mine]
        taken = [False] * int(mine.sum())
        truth.append({"boxes": target["boxes"].numpy()[mine], "difficult": difficult, "taken": taken})
    relevant = sum(int((~t["difficult"]).sum()) for t in truth)
    ranked = [(float(s), image, b) for image, found in enumerate(detections)
              for b, s, lab in zip(found["boxes"].numpy(), found["scores"].numpy(), found["labels"].numpy())
              if lab == label]
    ranked.sort(key=lambda entry: -entry[0])  # stable, as MATLAB's sort
    tp, fp = np.zeros(len(ranked)), np.zeros(len(ranked))
    for d, (_, image, box) in enumerate(ranked):
        best, best_j = -math.inf, -1
        for j, gt in enumerate(truth[image]["boxes"]):
            iw = min(box[2], gt[2]) - max(box[0], gt[0])
            ih = min(box[3], gt[3]) - max(box[1], gt[1])
            if iw > 0 and ih > 0:
                union = (box[2] - box[0]) * (box[3] - box[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1]) - iw * ih
                if iw * ih / union > best:
                    best, best_j = iw * ih / union, j
        if best >= threshold:
            if not truth[image]["difficult"][best_j]:
                if not truth[image]["taken"][best_j]:
                    tp[d], truth[image]["taken"][best_j] = 1, True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / relevant
    with np.errstate(invalid="ignore"):
        precision = tp / (tp + fp)  # NaN where only ignored detections so far; MATLAB's max skips NaN
    if eleven_point:
        return sum(max((p for p in precision[recall >= t] if not math.isnan(p)), default=0.0) for t in
                   [k / 10 for k in range(11)]) / 11
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = np.fmax(mpre[i], mpre[i + 1])
    changes = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[changes] - mrec[changes - 1]) * mpre[changes]))


@pytest.mark.parametrize("style", ["voc07", "voc"])
@pytest.mark.parametrize("seed", [4, 5])
def test_voc_styles_equal_the_devkit(style, seed):
    detections, targets = random_scenes(seed, difficult=True)
    ours = detection_map(detections, targets, style=style, iou_thresholds=(0.5, 0.7))
    for threshold in (0.5, 0.7):
        expected = [devkit_ap(detections, targets, label, threshold, style == "voc07") for label in CLASSES]
        assert ours["ap_per_threshold"][threshold] == pytest.approx(np.mean(expected), abs=1e-12)
        if threshold == 0.5:
            for label, value in zip(CLASSES, expected):
                assert ours["ap50_per_class"][label] == pytest.approx(value, abs=1e-12)
    assert 0.2 < ours["map50"] < 1


@pytest.mark.parametrize("style", ["voc07", "voc"])
def test_voc_matching_takes_the_first_best_box_and_iou_at_the_threshold(style):
    """IoU exactly 0.5 is a match (the devkit's ovmax >= minoverlap). A detection with IoU 0.5 to two boxes
    takes the first (the devkit's strict ov > ovmax), leaving the second for the next detection — unlike
    pycocotools, which takes the last."""
    exact, _ = one_image([[0, 0, 10, 10]], [0.6], [[0, 0, 10, 5]])
    _, exact_truth = one_image([], [], [[0, 0, 10, 5]])
    assert detection_map(exact, exact_truth, style=style)["map"] == 1.0
    detections, targets = one_image([[5, 0, 10, 10], [6, 0, 16, 10]], [0.9, 0.8], [[0, 0, 10, 10], [5, 0, 15, 10]])
    assert detection_map(detections, targets, style=style)["map"] == 1.0
    assert detection_map(detections, targets, style="coco")["map"] < 1.0


def one_image(boxes, scores, target_boxes, difficult=None):
    detection = {"boxes": torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4),
                 "scores": torch.tensor(scores, dtype=torch.float64),
                 "labels": torch.ones(len(scores), dtype=torch.long)}
    target = {"boxes": torch.tensor(target_boxes, dtype=torch.float64),
              "labels": torch.ones(len(target_boxes), dtype=torch.long)}
    if difficult is not None:
        target["difficult"] = torch.tensor(difficult)
    return [detection], [target]


@pytest.mark.parametrize("style", ["coco", "voc07", "voc"])
def test_perfect_and_empty_detections(style):
    _, targets = random_scenes(6)
    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.rand(len(t["labels"]))} for t in targets]
    assert detection_map(perfect, targets, style=style, iou_thresholds=None)["map"] == pytest.approx(1.0)
    nothing = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}
               for _ in targets]
    empty = detection_map(nothing, targets, style=style)
    assert empty["map"] == 0.0 and set(empty["ap_per_class"].values()) == {0.0}


@pytest.mark.parametrize("style", ["coco", "voc07", "voc"])
def test_a_duplicate_detection_is_a_false_positive(style):
    a, b = [0.0, 0, 10, 10], [20.0, 20, 30, 30]
    # Ranked TP, duplicate, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1;
    # the envelope is 1 up to recall 1/2, then 2/3.
    detections, targets = one_image([a, a, b], [0.9, 0.8, 0.7], [a, b])
    expected = {
        "coco": (51 * 1 + 50 * 2 / 3) / 101,  # recall points 0, .01, …, .5 and .51, …, 1
        "voc07": (6 * 1 + 5 * 2 / 3) / 11,  # recall points 0, .1, …, .5 and .6, …, 1
        "voc": 0.5 * 1 + 0.5 * 2 / 3,
    }[style]
    assert detection_map(detections, targets, style=style)["map"] == pytest.approx(expected)
    without_duplicate, _ = one_image([a, b], [0.9, 0.7], [a, b])
    assert detection_map(without_duplicate, targets, style=style)["map"] == 1.0


@pytest.mark.parametrize("style", ["coco", "voc07", "voc"])
def test_difficult_boxes_are_neither_found_nor_missed(style):
    easy, hard, elsewhere = [0.0, 0, 10, 10], [20.0, 20, 30, 30], [50.0, 50, 60, 60]
    found_hard, targets = one_image([hard, easy], [0.9, 0.5], [easy, hard], difficult=[False, True])
    assert detection_map(found_hard, targets, style=style)["map"] == 1.0  # the top detection is not a FP
    missed_hard, _ = one_image([easy], [0.5], [easy, hard])
    assert detection_map(missed_hard, targets, style=style)["map"] == 1.0  # recall counts only the easy box
    _, not_difficult = one_image([], [], [easy, hard], difficult=[False, False])
    assert detection_map(found_hard, not_difficult, style=style)["map"] == 1.0
    half_recall = {"coco": 51 / 101, "voc07": 6 / 11, "voc": 0.5}[style]  # precision 1 up to recall 1/2
    assert detection_map(missed_hard, not_difficult, style=style)["map"] == pytest.approx(half_recall)
    stray, _ = one_image([elsewhere, easy], [0.9, 0.5], [easy, hard])
    assert detection_map(stray, targets, style=style)["map"] < 1.0  # an unmatched detection still counts


def test_classes_without_ground_truth_leave_the_mean():
    detections, targets = one_image([[0.0, 0, 10, 10], [40.0, 40, 50, 50]], [0.9, 0.8], [[0.0, 0, 10, 10]])
    detections[0]["labels"] = torch.tensor([1, 4])
    result = detection_map(detections, targets, num_classes=5)
    assert result["map"] == 1.0 and set(result["ap_per_class"]) == {0, 1, 2, 3, 4}
    assert math.isnan(result["ap_per_class"][4]) and math.isnan(result["ap_per_class"][0])
    assert math.isnan(detection_map(detections, [{"boxes": [], "labels": []}])["map"])


def test_bad_input_is_a_usage_error():
    detections, targets = one_image([[0.0, 0, 10, 10]], [0.9], [[0.0, 0, 10, 10]])
    with pytest.raises(UsageError, match="style"):
        detection_map(detections, targets, style="voc12")
    with pytest.raises(UsageError, match="2 images"):
        detection_map(detections, targets * 2)
    with pytest.raises(UsageError, match="'scores'"):
        detection_map([{"boxes": [[0, 0, 1, 1]], "labels": [1]}], targets)
    with pytest.raises(UsageError, match="label 1 is outside"):
        detection_map(detections, targets, num_classes=1)
    with pytest.raises(UsageError, match="iou_thresholds"):
        detection_map(detections, targets, iou_thresholds=(0.0,))


def test_exported_from_metrics():
    assert metrics.detection_map is detection_map


def test_a_zero_area_detection_overlaps_nothing_not_even_a_crowd_box():
    """A degenerate (zero-width) detection inside a crowd region has IoU 0, not 0/0, as in pycocotools: it is a false
    positive, not absorbed by the crowd box. Ranked FP then TP: precision 1/2 at recall 1, AP 1/2."""
    easy, crowd_region = [0.0, 0, 10, 10], [20.0, 20, 60, 60]
    detections = [{"boxes": torch.tensor([[30.0, 30, 30, 40], easy]), "scores": torch.tensor([0.9, 0.8]),
                   "labels": torch.tensor([1, 1])}]
    targets = [{"boxes": torch.tensor([easy, crowd_region]), "labels": torch.tensor([1, 1]),
                "iscrowd": torch.tensor([False, True])}]
    ours = detection_map(detections, targets)["map"]
    assert ours == pytest.approx(0.5)
    assert ours == pytest.approx(pycocotools_eval(detections, targets).stats[1], abs=1e-12)


def test_at_iou_threshold_one_a_match_within_1e_10_of_perfect_counts():
    """pycocotools compares with min(t, 1 − 1e-10), so at t = 1 an IoU of 1 − 1e-11 (float-level) is a match and one
    of 1 − 1e-9 is not."""
    truth = [0.0, 0.0, 1000.0, 1000.0]
    for height, expected in ((1000.0 + 1e-8, 1.0), (1000.0 + 1e-6, 0.0), (1000.0, 1.0)):
        detections, targets = one_image([[0.0, 0.0, 1000.0, height]], [0.9], [truth])
        assert detection_map(detections, targets, iou_thresholds=(1.0,))["map"] == expected
