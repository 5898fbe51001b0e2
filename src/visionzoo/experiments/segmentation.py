"""U-Net's two design claims (Ronneberger, Fischer, Brox 2015; notes 003, "U-Net"), run with the engine.

1. Skip connections: "high resolution features from the contracting path are combined with the
   upsampled output" so that "a successive convolution layer can then learn to assemble a more
   precise output" (§2). The same padded U-Net is trained with and without its crop-and-concatenate
   connections on `lv-phantom`; besides Dice, the accuracy on the pixels within two pixels of a true
   class boundary measures localisation.
2. The weight map (Eq. 2): "the separation border is computed using morphological operations. The
   weight map is then computed to force the network to learn the small separation borders between
   touching cells" (§3). On `cells` (touching cells with one- or two-pixel background borders) the
   same network is trained with and without it; measured are the accuracy on the true separation
   border pixels and the share of true cells found as their own connected component (IoU ≥ 0.5).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.runtime import evaluating
from ..data.cells import cells_test_instances
from ..data.segmentation import IGNORE_INDEX
from ..data.weight_map import connected_components
from ..tasks.segmentation import predict
from .base import Context, Outcome, experiment, verdict
from .common import figure, save_figure, train_registered

NETWORK = "unet_small"


def boundary_band(masks: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels within `width` pixels (chessboard distance) of a change of class in `masks` (N, H, W)."""
    m = masks.float()[:, None]
    size = 2 * width + 1
    high = F.max_pool2d(m, size, stride=1, padding=width)
    low = -F.max_pool2d(-m, size, stride=1, padding=width)
    return (high != low)[:, 0]


def separation_border(instances: torch.Tensor) -> torch.Tensor:
    """Background pixels whose 3×3 neighbourhood touches two different cells (N, H, W)."""
    ids = instances.float()[:, None]
    biggest = F.max_pool2d(ids, 3, stride=1, padding=1)
    smallest_cell = -F.max_pool2d(-torch.where(ids > 0, ids, torch.inf), 3, stride=1, padding=1)
    return ((instances == 0) & (biggest[:, 0] > smallest_cell[:, 0]))


def instances_found(predicted: torch.Tensor, instances: torch.Tensor) -> tuple[int, int]:
    """(true cells matched by a predicted connected component with IoU ≥ 0.5, true cells)."""
    components, _ = connected_components(predicted)
    found = total = 0
    for pred_ids, true_ids in zip(components, instances):
        for k in true_ids.unique():
            if k == 0:
                continue
            cell = true_ids == k
            total += 1
            overlap = pred_ids[cell]
            overlap = overlap[overlap > 0]
            if len(overlap) == 0:
                continue
            best = overlap.mode().values
            component = pred_ids == best
            iou = (cell & component).sum() / (cell | component).sum()
            found += int(iou >= 0.5)
    return found, total


def _standard_error(p1: float, p2: float, n: int) -> float:
    """Standard error of p2 − p1 for two proportions measured on n items each (treated as independent)."""
    return ((p1 * (1 - p1) + p2 * (1 - p2)) / max(n, 1)) ** 0.5


def _predictions(trainer, split) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images, masks = split.images, split.labels
    model = trainer.eval_model
    out = []
    with torch.no_grad(), evaluating(model):
        for chunk in images.split(256):
            x = trainer.task.normalizer(chunk.to(trainer.device))
            out.append(predict(model, x).argmax(1).cpu())
    return images, masks, torch.cat(out)


def _settings(ctx: Context, data: str) -> dict:
    return dict(data=data, epochs=ctx.pick(1, 4, 12), batch_size=32, lr=ctx.pick(0.01, 0.01, 0.01),
                optimizer="adamw", weight_decay=1e-4, schedule="onecycle", keep="last",
                train_limit=ctx.pick(64, 1200, None), val_size=0.1, test_limit=ctx.pick(32, 300, None))


@experiment("unet-skip-connections", notes="003", heading="U-Net",
            claim="U-Net's skip connections (crop and concatenate) recover localisation: with them the network "
                  "segments more precisely, above all along the boundaries, than the same network without")
def skip_connections(ctx: Context) -> Outcome:
    rows, histories = [], {}
    for skip in (True, False):
        label = "with skips" if skip else "without skips"
        summary, trainer = train_registered(ctx, NETWORK, f"unet-skip-{skip}".lower(),
                                            model_args={"skip": skip}, **_settings(ctx, "lv-phantom"))
        _, masks, predicted = _predictions(trainer, trainer.task.data.test)
        band = boundary_band(masks, 2) & (masks != IGNORE_INDEX)
        rows.append({"variant": label, "test_dice": summary["test_dice"], "test_iou": summary["test_iou"],
                     "boundary_accuracy": (predicted[band] == masks[band]).double().mean().item(),
                     "params": summary["params"]})
        histories[label] = [h["val_dice"] for h in trainer.history]
    with_skips, without = rows
    gain_dice = with_skips["test_dice"] - without["test_dice"]
    gain_band = with_skips["boundary_accuracy"] - without["boundary_accuracy"]
    fig, axes = figure(1, 2)
    for label, curve in histories.items():
        axes[0, 0].plot(range(1, len(curve) + 1), curve, "-o", label=label)
    axes[0, 0].set(xlabel="epoch", ylabel="validation Dice (myocardium, cavity)", title="lv-phantom")
    axes[0, 0].legend(fontsize=8)
    axes[0, 0].xaxis.get_major_locator().set_params(integer=True)
    names = [r["variant"] for r in rows]
    axes[0, 1].bar([0, 1], [r["test_dice"] for r in rows], 0.35, label="test Dice")
    axes[0, 1].bar([0.35, 1.35], [r["boundary_accuracy"] for r in rows], 0.35, label="accuracy ≤ 2 px from a boundary")
    axes[0, 1].set_xticks([0.17, 1.17], names)
    axes[0, 1].set_ylim(min(r["boundary_accuracy"] for r in rows) - 0.1, 1.0)
    axes[0, 1].legend(fontsize=8)
    return Outcome(
        verdict(gain_dice > 0 and gain_band > 0, conclusive=abs(gain_dice) >= 0.005 or abs(gain_band) >= 0.005),
        f"Test Dice with skips {with_skips['test_dice']:.4f}, without {without['test_dice']:.4f} ({gain_dice:+.4f}); "
        f"accuracy within 2 px of a boundary {with_skips['boundary_accuracy']:.4f} vs {without['boundary_accuracy']:.4f} "
        f"({gain_band:+.4f}). Inconclusive when both differences are under 0.005.",
        f"{NETWORK} (padded U-Net, batch norm) with and without its crop-and-concatenate connections, lv-phantom, "
        f"{_settings(ctx, 'lv-phantom')}; same seed.",
        {"variants": rows, "val_dice": histories}, [save_figure(fig, ctx, "unet-skip-connections.png")], rows)


@experiment("unet-weight-map", notes="003", heading="U-Net",
            claim="U-Net's weight map (Eq. 2: w0·exp(−(d1+d2)²/2σ²) on the background between touching objects) "
                  "makes the network learn the thin borders that separate touching cells")
def weight_map(ctx: Context) -> Outcome:
    rows = []
    pictures = {}
    for weighted in (False, True):
        label = "weight map" if weighted else "plain cross-entropy"
        summary, trainer = train_registered(ctx, NETWORK, f"unet-weight-map-{weighted}".lower(),
                                            weight_map=weighted, **_settings(ctx, "cells"))
        images, masks, predicted = _predictions(trainer, trainer.task.data.test)
        instances = cells_test_instances()[:len(masks)]
        border = separation_border(instances)
        found, total = instances_found(predicted, instances)
        rows.append({"variant": label, "test_dice": summary["test_dice"],
                     "border_accuracy": (predicted[border] == 0).double().mean().item(),
                     "border_pixels": int(border.sum()),
                     "cells_separated": found / max(total, 1), "cells": total})
        pictures[label] = predicted[:4]
    plain, weighted = rows
    gain_border = weighted["border_accuracy"] - plain["border_accuracy"]
    gain_cells = weighted["cells_separated"] - plain["cells_separated"]
    # a difference counts when it exceeds two standard errors of a difference of two proportions
    noise_border = 2 * _standard_error(plain["border_accuracy"], weighted["border_accuracy"], plain["border_pixels"])
    noise_cells = 2 * _standard_error(plain["cells_separated"], weighted["cells_separated"], plain["cells"])
    fig, axes = figure(3, 4, width=2.2, height=2.2)
    for column in range(4):
        axes[0, column].imshow(images[column, 0].numpy(), cmap="gray")
        for row, label in enumerate(pictures, start=1):
            axes[row, column].imshow(pictures[label][column].numpy(), cmap="gray", interpolation="nearest")
            axes[row, 0].set_ylabel(label, fontsize=8)
    axes[0, 0].set_ylabel("image", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return Outcome(
        verdict(gain_border > 0 and gain_cells >= 0,
                conclusive=abs(gain_border) > noise_border or abs(gain_cells) > noise_cells),
        f"Background predicted on the true separation borders ({plain['border_pixels']} pixels): "
        f"{plain['border_accuracy']:.3f} without, {weighted['border_accuracy']:.3f} with the weight map "
        f"({gain_border:+.3f}, two standard errors {noise_border:.3f}); cells found as their own component "
        f"(IoU ≥ 0.5, {plain['cells']} cells): {plain['cells_separated']:.3f} vs {weighted['cells_separated']:.3f} "
        f"({gain_cells:+.3f}, two standard errors {noise_cells:.3f}); Dice {plain['test_dice']:.4f} vs "
        f"{weighted['test_dice']:.4f}. Inconclusive when neither difference exceeds two standard errors.",
        f"{NETWORK} on cells (touching cells, 1.5-px borders), w0 = 10, σ = 5 px as in the paper, "
        f"{_settings(ctx, 'cells')}; same seed.",
        {"variants": rows}, [save_figure(fig, ctx, "unet-weight-map.png")], rows)
