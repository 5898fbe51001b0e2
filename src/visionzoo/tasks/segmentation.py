"""Semantic segmentation: a label for every pixel (U-Net, Ronneberger et al. 2015, and encoder U-Nets).

The loss is the paper's pixel-wise soft-max cross-entropy, Eq. (1), E = Σ_x w(x) log p_ℓ(x)(x),
here averaged over the pixels; with `--weight-map` w(x) is the paper's Eq. (2) (class balance
plus w₀·exp(−(d₁ + d₂)²/2σ²) on the background between touching objects, data/weight_map.py),
otherwise 1. Pixels labelled 255 (void, as in Pascal VOC) count in neither the loss nor the
metrics. A network that does not pad its convolutions (the paper's U-Net) sees its input
mirror-extended by its margin, the overlap-tile strategy of the paper's Fig. 2
(models/unet.py), so that every image gets a prediction for each of its pixels; a padded one
is fed the image, reflection-padded to the multiple of its `size_divisor` and cropped back.

The metrics are those of `visionzoo.metrics`: Dice and IoU per class from the confusion matrix
summed over the whole split (so a class that appears in neither the truth nor the prediction
is undefined, NaN, and left out of the means), their means over the foreground classes, and
pixel accuracy. The best epoch is the one with the highest validation Dice.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.distributed import all_reduce_sum
from ..core.figures import save_figure, subplots
from ..core.options import at_least, option, option_group, positive
from ..core.runtime import autocast, evaluating
from ..data.loader import Normalizer, eval_batches
from ..data.segmentation import IGNORE_INDEX, PairAugmentation, load_segmentation_data
from ..data.weight_map import unet_weight_map
from ..metrics import confusion_matrix, scores_from_confusion
from ..models.unet import mirror_pad, overlap_tile
from .base import CLASSIFICATION_OPTIONS_UNIFORM_SMOOTHING, ImageTask, StepOutput
from .plots import plot_curves

OVERLAYS = 8   # test images drawn in the run directory's segmentation.png


@option_group("segmentation")
class SegmentationOptions:
    weight_map: bool = option(False, "U-Net's weighted loss (Eq. 2): class balance + w0·exp(−(d1+d2)²/2σ²) "
                                     "between touching objects")
    weight_map_w0: float = option(10.0, "w0 of the weight map (default {default})", metavar="W0", check=at_least(0))
    weight_map_sigma: float = option(5.0, "σ of the weight map, pixels (default {default})", metavar="PIXELS",
                                     check=positive)
    elastic: float = option(0.0, "elastic deformation (the paper's 3×3 grid of Gaussian displacements): their σ "
                                 "in pixels (the paper: 10 at 572 px; 0 = off)", metavar="PIXELS", check=at_least(0))


def predict(model: nn.Module, x: torch.Tensor, run: nn.Module | None = None) -> torch.Tensor:
    """Logits (N, K, H, W) for every pixel of `x` (N, C, H, W), whatever the network's padding; `run`
    computes them when it is not `model` itself (its DDP wrapper: the padding is read from `model`)."""
    if getattr(model, "padding", "same") == "valid":
        return overlap_tile(model, x, run=run)
    divisor = getattr(model, "size_divisor", 1)
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % divisor, -width % divisor
    if pad_h or pad_w:   # F.pad's reflection, continued where the pad exceeds the image (a 1×1 picture)
        x = mirror_pad(x, (0, pad_w, 0, pad_h))
    return (run or model)(x)[..., :height, :width]


def pixel_loss(logits: torch.Tensor, masks: torch.Tensor, weights: torch.Tensor | None = None,
               label_smoothing: float = 0.0) -> torch.Tensor:
    """Eq. (1) averaged over the labelled pixels: Σ w(x)·CE(x) / #pixels (void pixels weigh 0)."""
    per_pixel = F.cross_entropy(logits.float(), masks, ignore_index=IGNORE_INDEX, reduction="none",
                                label_smoothing=label_smoothing)
    if weights is not None:
        per_pixel = per_pixel * weights
    return per_pixel.sum() / (masks != IGNORE_INDEX).sum().clamp_min(1)


def evaluate(model, split, normalizer: Normalizer, *, num_classes: int, batch_size: int = 64, device="cpu",
             channels_last: bool = False, rank: int = 0, world: int = 1) -> dict:
    """Loss, Dice, IoU (means over the foreground classes and per class) and pixel accuracy on `split`."""
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # images, loss sum, labelled pixels
    with torch.no_grad(), evaluating(model):
        for images, masks in eval_batches(split, batch_size, rank=rank, world=world, device=device):
            logits = predict(model, normalizer(images, channels_last)).float()
            labelled = (masks != IGNORE_INDEX).sum()
            totals += torch.stack([torch.tensor(float(len(masks)), device=device, dtype=torch.float64),
                                   pixel_loss(logits, masks).double() * labelled, labelled.double()])
            confusion += confusion_matrix(logits.argmax(1), masks, num_classes, ignore_index=IGNORE_INDEX)
    totals, confusion = all_reduce_sum(totals).cpu(), all_reduce_sum(confusion).cpu()
    scores = scores_from_confusion(confusion)
    return {"n": int(totals[0].item()), "loss": totals[1].item() / max(totals[2].item(), 1), **scores}


def finite_or_none(values) -> list:
    """Per-class scores for JSON: an undefined (NaN) class becomes null."""
    return [None if value is None or not math.isfinite(value) else value for value in values]


MASK_COLOURS = torch.tensor([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                             [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60],
                             [250, 190, 212], [0, 128, 128], [220, 190, 255], [170, 110, 40]], dtype=torch.uint8)


def colourise(mask: torch.Tensor) -> torch.Tensor:
    """Index mask (H, W) → RGB uint8 (H, W, 3): a fixed colour per class (void in white)."""
    colours = MASK_COLOURS[torch.arange(256) % len(MASK_COLOURS)].clone()
    colours[IGNORE_INDEX] = 255
    return colours[mask.long().clamp(0, 255)]


def overlay(image: torch.Tensor, mask: torch.Tensor, alpha: float = 0.45) -> torch.Tensor:
    """uint8 image (C, H, W) with the classes of `mask` (H, W) blended in; background left as it is."""
    rgb = image.expand(3, -1, -1).permute(1, 2, 0).float() if len(image) == 1 else image.permute(1, 2, 0).float()
    coloured = colourise(mask).float()
    blend = torch.where((mask > 0)[..., None], (1 - alpha) * rgb + alpha * coloured, rgb)
    return blend.round().clamp(0, 255).to(torch.uint8)


def plot_segmentations(images, truths, predictions, classes: list[str], path, title: str) -> None:
    """Rows of (image, true mask, predicted mask), masks drawn over the image; `truths` may be None."""
    columns = ["image", "predicted"] if truths is None else ["image", "true mask", "predicted"]
    fig, axes = subplots(len(images), len(columns), figsize=(2.4 * len(columns), 2.4 * len(images) + 0.8),
                         squeeze=False, layout="constrained")
    for row, image in enumerate(images):
        panels = [image.expand(3, -1, -1).permute(1, 2, 0) if len(image) == 1 else image.permute(1, 2, 0)]
        if truths is not None:
            panels.append(overlay(image, truths[row]))
        panels.append(overlay(image, predictions[row]))
        for ax, panel, name in zip(axes[row], panels, columns):
            ax.imshow(panel.numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
    handles = [_patch(MASK_COLOURS[k % len(MASK_COLOURS)], name) for k, name in enumerate(classes) if k > 0]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def _patch(colour: torch.Tensor, label: str):
    from matplotlib.patches import Patch
    return Patch(facecolor=(colour.float() / 255).tolist(), label=label)


class SegmentationTask(ImageTask):
    """Images → a class per pixel: pixel-wise cross-entropy (optionally U-Net's weight map), image and
    mask augmented together (flips, crops, elastic deformation), Dice/IoU/pixel accuracy."""

    name = "segmentation"
    default_data = "lv-phantom"
    class_word = "classes"
    record_keys = ("loss", "dice")
    monitor, monitor_mode = "dice", "max"

    def load_data(self) -> None:
        cfg = self.cfg
        self.refuse_options(CLASSIFICATION_OPTIONS_UNIFORM_SMOOTHING, "a classification")
        self.data = load_segmentation_data(cfg.data, data_dir=cfg.data_dir, val_size=cfg.val_size, seed=cfg.seed,
                                           image_size=cfg.image_size)
        self.limit_splits()
        self.normalizer = Normalizer(self.data.mean, self.data.std)
        self.input_size = self.data.input_size
        self.classes = self.data.classes
        self.augmentation = PairAugmentation(flip=cfg.flip is not False, crop=cfg.crop, elastic_sigma=cfg.elastic)

    def prepare(self, batch, generator):
        images, masks = self.augmentation(*batch, generator)
        images, masks = self.shard(images, masks)
        weights = None
        if self.cfg.weight_map:
            weights = unet_weight_map(masks, len(self.classes), w0=self.cfg.weight_map_w0,
                                      sigma=self.cfg.weight_map_sigma)
        return images, masks, weights

    def training_step(self, batch, phase: str, generator) -> StepOutput:
        images, masks, weights = batch
        with autocast(self.device, self.amp):
            logits = predict(self.model, self.normalizer(images, self.channels_last), run=self.net)
        loss = pixel_loss(logits, masks, weights, self.cfg.label_smoothing)
        predicted = logits.detach().argmax(1)
        dice = scores_from_confusion(confusion_matrix(predicted, masks, len(self.classes),
                                                      ignore_index=IGNORE_INDEX))["dice"]
        dice = torch.tensor(0.0 if math.isnan(dice) else dice, dtype=torch.float64, device=self.device)
        return StepOutput({"loss": loss}, {"loss": loss.detach().double() * len(masks), "dice": dice * len(masks)},
                          len(masks))

    def evaluate(self, model: nn.Module, split: str) -> dict:
        return evaluate(model, getattr(self.data, split), self.normalizer, num_classes=len(self.classes),
                        batch_size=self.cfg.eval_batch_size, device=self.device, channels_last=self.channels_last,
                        rank=self.rank, world=self.world)

    def test(self, model: nn.Module, out, title: str) -> dict:
        test = self.evaluate(model, "test")
        if out is not None:
            images, masks = self.data.test.fetch(torch.arange(min(OVERLAYS, len(self.data.test))))
            with torch.no_grad(), evaluating(model):
                predicted = predict(model, self.normalizer(images.to(self.device))).argmax(1).cpu()
            plot_segmentations(images, masks, predicted, self.classes, out / "segmentation.png",
                               f"{title} test: Dice {test['dice']:.4f}, IoU {test['iou']:.4f}")
        per_class = "  ".join(f"{name} {value:.4f}" for name, value in zip(self.classes, test["dice_per_class"]))
        self.log(f"test dice {test['dice']:.4f}  iou {test['iou']:.4f}  pixel_acc {test['pixel_acc']:.4f}  "
                 f"({test['n']} images; Dice per class: {per_class})")
        return {"test_dice": test["dice"], "test_iou": test["iou"], "test_pixel_acc": test["pixel_acc"],
                "test_loss": test["loss"], "test_n": test["n"],
                "test_dice_per_class": dict(zip(self.classes, finite_or_none(test["dice_per_class"]))),
                "test_iou_per_class": dict(zip(self.classes, finite_or_none(test["iou_per_class"])))}

    def resolved(self) -> dict:
        return {**super().resolved(), "classes": self.classes}

    def plot_curves(self, history: list[dict], path) -> None:
        plot_curves(history, path, metric="dice", metric_label="mean foreground Dice (train: mean over batches)",
                    loss_label="pixel-wise cross-entropy")
