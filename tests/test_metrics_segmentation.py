"""visionzoo.metrics.segmentation: confusion matrix by its definition, Dice/IoU/pixel accuracy by
their formulas and against torchmetrics, the empty-class convention, accumulation and bad input."""
from __future__ import annotations

import math

import pytest
import torch

from visionzoo import metrics
from visionzoo.core.errors import UsageError

IGNORE = 255


def _label_maps(seed: int, *, shape=(6, 12, 12), target_labels=(0, 1, 2), pred_labels=(0, 1, 2, 3),
                ignore_fraction=0.1):
    """Random (pred, target) label maps; a fraction of target pixels set to the ignore label."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.tensor(target_labels)[torch.randint(len(target_labels), shape, generator=generator)]
    pred = torch.tensor(pred_labels)[torch.randint(len(pred_labels), shape, generator=generator)]
    # Predictions right about half the time, so the scores are far from 0 and from 1.
    copy = torch.rand(shape, generator=generator) < 0.5
    pred = torch.where(copy, target, pred)
    target[torch.rand(shape, generator=generator) < ignore_fraction] = IGNORE
    return pred, target


def test_confusion_matrix_counts_each_pair_of_true_and_predicted_label():
    pred, target = _label_maps(0)
    confusion = metrics.confusion_matrix(pred, target, 4)
    assert confusion.dtype == torch.int64 and confusion.shape == (4, 4)
    evaluated = target != IGNORE
    for true in range(4):
        for predicted in range(4):
            expected = ((target == true) & (pred == predicted) & evaluated).sum().item()
            assert confusion[true, predicted].item() == expected
    assert confusion.sum().item() == evaluated.sum().item()


def test_confusion_matrices_of_batches_sum_to_the_matrix_of_all_pixels():
    pred, target = _label_maps(1)
    whole = metrics.confusion_matrix(pred, target, 4)
    summed = sum(metrics.confusion_matrix(p, t, 4) for p, t in zip(pred.split(2), target.split(2)))
    assert torch.equal(summed, whole)
    # Set-level scores are not the mean of per-batch scores.
    per_batch = [metrics.iou(p, t, 4).mean for p, t in zip(pred.split(2), target.split(2))]
    assert metrics.iou_from_confusion(summed).mean == metrics.iou(pred, target, 4).mean
    assert not math.isclose(sum(per_batch) / len(per_batch), metrics.iou(pred, target, 4).mean, rel_tol=1e-12)


def test_uint8_masks_with_the_ignore_label_are_accepted():
    pred, target = _label_maps(2)
    assert torch.equal(metrics.confusion_matrix(pred.to(torch.uint8), target.to(torch.uint8), 4),
                       metrics.confusion_matrix(pred, target, 4))


def test_predictions_at_ignored_pixels_are_not_checked_or_counted():
    target = torch.tensor([[0, IGNORE], [1, 1]])
    pred = torch.tensor([[0, 99], [1, 0]])
    assert metrics.confusion_matrix(pred, target, 2).tolist() == [[1, 0], [1, 1]]


def test_scores_of_a_hand_worked_example():
    # Class 1: TP = 2, FP = 1, FN = 1; class 2: TP = 1, FP = 1, FN = 0; class 0: TP = 1, FP = 0, FN = 1.
    target = torch.tensor([0, 0, 1, 1, 1, 2, IGNORE])
    pred = torch.tensor([0, 1, 1, 1, 2, 2, 0])
    dice = metrics.dice(pred, target, 3)
    iou = metrics.iou(pred, target, 3)
    assert dice.per_class.dtype == torch.float64
    assert dice.per_class.tolist() == pytest.approx([2 / 3, 4 / 6, 2 / 3])
    assert iou.per_class.tolist() == pytest.approx([1 / 2, 2 / 4, 1 / 2])
    assert dice.mean == pytest.approx((4 / 6 + 2 / 3) / 2)
    assert metrics.pixel_accuracy(pred, target, 3) == pytest.approx(4 / 6)


def test_dice_is_two_iou_over_one_plus_iou_per_class():
    pred, target = _label_maps(3, target_labels=(0, 1, 2), pred_labels=(0, 1, 2))
    dice = metrics.dice(pred, target, 5).per_class
    iou = metrics.iou(pred, target, 5).per_class
    defined = ~iou.isnan()
    assert defined.tolist() == [True, True, True, False, False]
    assert dice.isnan().tolist() == iou.isnan().tolist()
    torch.testing.assert_close(dice[defined], 2 * iou[defined] / (1 + iou[defined]))


def test_class_absent_from_target_and_prediction_is_undefined_and_left_out_of_the_mean():
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 1, 1, 3])  # class 2 nowhere; class 3 predicted but never true
    for score in (metrics.dice(pred, target, 4), metrics.iou(pred, target, 4)):
        assert math.isnan(score.per_class[2])
        assert score.per_class[3].item() == 0.0
        foreground = score.per_class[[1, 3]]
        assert score.mean == pytest.approx(foreground.mean().item())


def test_mean_is_nan_when_every_averaged_class_is_undefined():
    only_background = torch.zeros(3, 4, dtype=torch.long)
    score = metrics.iou(only_background, only_background, 3)
    assert score.per_class[0].item() == 1.0 and score.per_class[1:].isnan().all()
    assert math.isnan(score.mean)
    assert metrics.iou(only_background, only_background, 3, include_background=True).mean == 1.0


def test_include_background_averages_class_zero_too():
    pred, target = _label_maps(4)
    per_class = metrics.dice(pred, target, 4).per_class
    assert metrics.dice(pred, target, 4).mean == pytest.approx(per_class[1:].mean().item())
    assert metrics.dice(pred, target, 4, include_background=True).mean == pytest.approx(per_class.mean().item())


def test_no_evaluated_pixel_gives_nan_pixel_accuracy():
    target = torch.full((2, 2), IGNORE)
    assert math.isnan(metrics.pixel_accuracy(torch.zeros(2, 2, dtype=torch.long), target, 2))


def test_scores_from_confusion_gives_the_eval_keys():
    pred, target = _label_maps(5)
    confusion = metrics.confusion_matrix(pred, target, 4)
    scores = metrics.scores_from_confusion(confusion)
    assert scores["dice"] == metrics.dice(pred, target, 4).mean
    assert scores["iou"] == metrics.iou(pred, target, 4).mean
    assert scores["pixel_acc"] == metrics.pixel_accuracy(pred, target, 4)
    assert scores["iou_per_class"] == metrics.iou(pred, target, 4).per_class.tolist()
    assert len(scores["dice_per_class"]) == 4


@pytest.mark.parametrize(("pred", "target", "words"), [
    (torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), ["(2, 3)", "(3, 2)"]),
    (torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 7, 1]), ["target", "label 7"]),
    (torch.tensor([0, -1, 0, 0]), torch.zeros(4, dtype=torch.long), ["pred", "label -1"]),
    (torch.tensor([0, 255, 0, 0]), torch.zeros(4, dtype=torch.long), ["pred", "label 255"]),
    (torch.zeros(4), torch.zeros(4, dtype=torch.long), ["pred", "float32", "argmax"]),
])
def test_bad_label_maps_are_usage_errors_naming_the_problem(pred, target, words):
    with pytest.raises(UsageError) as error:
        metrics.confusion_matrix(pred, target, 3)
    assert "\n" not in str(error.value)
    for word in words:
        assert word in str(error.value)


def test_bad_num_classes_ignore_index_or_confusion_are_usage_errors():
    labels = torch.zeros(4, dtype=torch.long)
    with pytest.raises(UsageError, match="num_classes=0"):
        metrics.confusion_matrix(labels, labels, 0)
    with pytest.raises(UsageError, match="ignore_index=1 is a class label"):
        metrics.confusion_matrix(labels, labels, 3, ignore_index=1)
    with pytest.raises(UsageError, match=r"shape \(3, 2\)"):
        metrics.dice_from_confusion(torch.zeros(3, 2))
    # ignore_index=None: every pixel counts, so 255 is an ordinary (bad) label.
    with pytest.raises(UsageError, match="label 255"):
        metrics.confusion_matrix(labels, torch.tensor([0, 0, 255, 0]), 3, ignore_index=None)


# --- against torchmetrics -------------------------------------------------------------------------------------

@pytest.mark.parametrize("pred_labels", [(0, 1, 2, 3), (0, 1, 2)], ids=["3-predicted-not-true", "3-nowhere"])
def test_per_class_iou_dice_and_pixel_accuracy_match_torchmetrics(pred_labels):
    classification = pytest.importorskip("torchmetrics.classification")
    pred, target = _label_maps(6, pred_labels=pred_labels)
    jaccard = classification.MulticlassJaccardIndex(num_classes=4, average=None, ignore_index=IGNORE)
    f1 = classification.MulticlassF1Score(num_classes=4, average=None, multidim_average="global",
                                          ignore_index=IGNORE)
    accuracy = classification.MulticlassAccuracy(num_classes=4, average="micro", ignore_index=IGNORE)
    confusion = torch.zeros(4, 4, dtype=torch.int64)
    # Accumulated over batches on both sides.
    for batch_pred, batch_target in zip(pred.split(2), target.split(2)):
        confusion += metrics.confusion_matrix(batch_pred, batch_target, 4)
        for metric in (jaccard, f1, accuracy):
            metric.update(batch_pred, batch_target)
    ours_iou = metrics.iou_from_confusion(confusion).per_class
    ours_dice = metrics.dice_from_confusion(confusion).per_class
    theirs_iou, theirs_dice = jaccard.compute().double(), f1.compute().double()

    defined = ~ours_iou.isnan()
    torch.testing.assert_close(ours_iou[defined], theirs_iou[defined])
    torch.testing.assert_close(ours_dice[defined], theirs_dice[defined])
    if 3 in pred_labels:
        # Predicted but never true: both give 0.
        assert defined.all() and ours_iou[3].item() == 0.0 and ours_dice[3].item() == 0.0
    else:
        # Absent from both: ours is NaN, torchmetrics' (zero_division=0) is 0 — the documented difference.
        assert defined.tolist() == [True, True, True, False]
        assert ours_dice[3].isnan() and theirs_iou[3].item() == 0.0 and theirs_dice[3].item() == 0.0
    assert metrics.pixel_accuracy_from_confusion(confusion) == pytest.approx(accuracy.compute().item(), rel=1e-6)
    # One pass over everything gives the same set-level values as the accumulation.
    torch.testing.assert_close(metrics.iou(pred, target, 4).per_class, ours_iou, equal_nan=True)


@pytest.mark.parametrize("pred_labels", [(0, 1, 2, 3), (0, 1, 2)], ids=["3-predicted-not-true", "3-nowhere"])
def test_mean_with_background_equals_torchmetrics_macro_average(pred_labels):
    functional = pytest.importorskip("torchmetrics.functional.classification")
    pred, target = _label_maps(7, pred_labels=pred_labels)
    ours_iou = metrics.iou(pred, target, 4, include_background=True).mean
    ours_dice = metrics.dice(pred, target, 4, include_background=True).mean
    theirs_iou = functional.multiclass_jaccard_index(pred, target, 4, average="macro", ignore_index=IGNORE)
    theirs_dice = functional.multiclass_f1_score(pred, target, 4, average="macro", ignore_index=IGNORE)
    assert ours_iou == pytest.approx(theirs_iou.item(), rel=1e-6)
    assert ours_dice == pytest.approx(theirs_dice.item(), rel=1e-6)


def test_dice_matches_torchmetrics_dice_score_including_its_nan_for_absent_classes():
    segmentation = pytest.importorskip("torchmetrics.segmentation")
    # DiceScore has no ignore_index, so no ignored pixels here.
    pred, target = _label_maps(8, pred_labels=(0, 1, 2), ignore_fraction=0.0)
    dice_score = segmentation.DiceScore(num_classes=4, include_background=True, average="none",
                                        input_format="index", aggregation_level="global")
    theirs = dice_score(pred, target).double().reshape(-1)
    ours = metrics.dice(pred, target, 4).per_class
    assert ours[3].isnan() and theirs[3].isnan()
    torch.testing.assert_close(ours, theirs, equal_nan=True)


@pytest.mark.parametrize("which", ["pred", "target"])
def test_a_label_equal_to_num_classes_is_outside_the_classes(which):
    """Labels run 0..K−1: K itself is refused, in either map (not counted as another cell of the matrix)."""
    maps = {"pred": torch.tensor([0, 1, 2, 0]), "target": torch.tensor([0, 1, 1, 2])}
    maps[which] = torch.tensor([0, 1, 3, 2])
    with pytest.raises(UsageError, match=f"{which} holds label 3"):
        metrics.confusion_matrix(maps["pred"], maps["target"], 3)


def test_class_zero_cannot_be_the_ignore_index():
    labels = torch.zeros(4, dtype=torch.long)
    with pytest.raises(UsageError, match="ignore_index=0 is a class label"):
        metrics.confusion_matrix(labels, labels, 3, ignore_index=0)
