"""Evaluation metrics, pure torch (design/interface.md, "Metrics"); segmentation scores from
`visionzoo.metrics.segmentation` (Dice, IoU, pixel accuracy; see its docstring for the papers);
viewpoint errors from `visionzoo.metrics.viewpoint` (geodesic rotation distance, MedErr, Acc_π/6);
the Fréchet distance of GAN samples (FID) from `visionzoo.metrics.generative`; language-model scores
from `visionzoo.metrics.language` (bits per character, perplexity, word perplexity from BPC);
detection mAP (COCO, VOC07 11-point, VOC 2010+ all-point) from `visionzoo.metrics.detection`.
Corpus BLEU as sacrebleu computes it (13a tokenisation) from `visionzoo.metrics.bleu`.

Each metric module imports only torch and `visionzoo.core`, so any layer above can use it.
"""

from __future__ import annotations

from visionzoo.metrics.bleu import bleu
from visionzoo.metrics.detection import detection_map
from visionzoo.metrics.generative import feature_statistics, fid_from_features, frechet_distance
from visionzoo.metrics.language import bits_per_char, perplexity, word_perplexity_from_bpc
from visionzoo.metrics.segmentation import (
    PerClass,
    confusion_matrix,
    dice,
    dice_from_confusion,
    iou,
    iou_from_confusion,
    pixel_accuracy,
    pixel_accuracy_from_confusion,
    scores_from_confusion,
)
from visionzoo.metrics.viewpoint import (
    accuracy_within,
    angle_error,
    circular_difference,
    geodesic_distance,
    median_angle_error,
    rotation_from_viewpoint,
)

__all__ = [
    "PerClass",
    "confusion_matrix",
    "dice",
    "dice_from_confusion",
    "iou",
    "iou_from_confusion",
    "pixel_accuracy",
    "pixel_accuracy_from_confusion",
    "scores_from_confusion",
    "accuracy_within",
    "angle_error",
    "circular_difference",
    "geodesic_distance",
    "median_angle_error",
    "rotation_from_viewpoint",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "bits_per_char",
    "perplexity",
    "word_perplexity_from_bpc",
    "detection_map",
    "bleu",
]
