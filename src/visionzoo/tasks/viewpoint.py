"""Viewpoint estimation (Render for CNN, Su, Qi, Li, Guibas, ICCV 2015): for an image of an object of
a known category, its camera azimuth θ, elevation φ and in-plane rotation ψ, each classified into
360 one-degree bins by the category's own head (models/render_for_cnn.py, Fig. 4).

The loss is the paper's geometric structure aware classification loss, Eq. (1), for each angle:
L = −Σ_v w(v) log P(v), w(v) = exp(−d(v, v_gt)/σ), d the circular distance in bins, so that a bin
next to the truth costs less than one across the circle. Its released Caffe layer sums the weights
over a window |d| ≤ b only and divides them by their sum, and so do we: the soft label is a
probability distribution, the loss a cross-entropy against it (σ → 0 gives the plain
cross-entropy). The defaults are that layer's: σ = 5, b = 15 for the azimuth, σ = 3, b = 5 for the
elevation and the in-plane rotation; `--viewpoint-sigma S` sets σ = S and b = ⌈3S⌉ for all three.
The three angles' losses are summed, as the paper's three loss layers of weight 1 are;
`--viewpoint-loss softmax` is the plain cross-entropy per angle, the paper's baseline.
`--tilt-weight W` weights the elevation and in-plane losses by W (the azimuth's stays 1): a
network trained from scratch on the `renders` set at 64×64 does not learn the azimuth at all
with W = 1 (the noisy gradients of the two angles that the small images barely show swamp the
shared layers from the start), and learns it with W = 0.1.
(`--label-smoothing` does not apply: the soft label is this task's smoothing.)

The training set's knobs (data/viewpoint.py), for the experiments on what the rendered data need
(experiments/viewpoint.py): `--render-train-size N` renderings before the validation split,
`--render-instances K`, only the first K training meshes of each category ("more rendered models
help"), `--render-backgrounds plain`, a flat grey behind the training objects instead of the
background crops ("backgrounds help"). The test set stays the same whatever they are; model.json's
data_args keep them, so that `eval` rebuilds the data the run had.

Scores (metrics/viewpoint.py): `top1`, the azimuth bin exactly right; the geodesic error between
the predicted rotation (the argmax bin of each angle) and the true one, its median
(`median_angle_error`, degrees) and `acc_pi6`, the fraction below π/6, over the split and per
category. The best epoch is the one with the highest validation Acc_π/6.

Augmentation: the padded random crop (`--crop`, a shift of a few pixels, which leaves the viewpoint
as it is to first order). No horizontal flip by default: the mirror image of an object seen from
(θ, φ, ψ) is the mirrored object seen from (−θ, φ, −ψ), the same object only when it is
mirror-symmetric about its front-back plane, which the rendered categories are not made to be.
`--flip` mirrors half the images and relabels them so (θ → −θ, ψ → −ψ), for data whose objects
are symmetric.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.figures import save_figure, subplots
from ..core.options import option, option_group, positive
from ..core.runtime import autocast, evaluating
from ..data.augment import random_crop
from ..data.loader import Normalizer, eval_batches
from ..data.viewpoint import BACKGROUND_KINDS, RENDER_SIZES, load_render_data
from ..metrics.viewpoint import accuracy_within, angle_error, is_within, median_angle_error
from ..models.render_for_cnn import ANGLES, select_category
from .base import CLASSIFICATION_OPTIONS_UNIFORM_SMOOTHING, ImageTask, StepOutput
from .plots import plot_curves

LOSS_FORMS = ("geometric", "softmax")
# (σ, window half-width b) per angle, in bins: the released Caffe model's soft-label layers.
PAPER_SOFT_LABELS = {"azimuth": (5.0, 15), "elevation": (3.0, 5), "inplane": (3.0, 5)}
PICTURES = 8   # test images drawn in the run directory's viewpoints.png


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be ≥ 0"


@option_group("viewpoint")
class ViewpointOptions:
    viewpoint_loss: str = option("geometric", "geometric (Render for CNN's Eq. 1: soft labels exp(−d/σ) over "
                                              "neighbouring bins, default) or softmax (plain cross-entropy)",
                                 choices=LOSS_FORMS)
    viewpoint_sigma: float | None = option(None, "σ of the geometric loss in bins (= degrees), window ⌈3σ⌉, for "
                                                 "all three angles (default: the paper's 5 for azimuth, 3 for "
                                                 "elevation and in-plane)", metavar="BINS", check=positive)
    tilt_weight: float = option(1.0, "weight of the elevation and in-plane losses, the azimuth's being 1 "
                                     "(default {default}, the paper's sum)", metavar="W", check=_non_negative)
    render_train_size: int = option(RENDER_SIZES[0], "training renderings of renders data, before the "
                                                     "validation split (default {default})", metavar="N",
                                    check=positive)
    render_instances: int | None = option(None, "render the training set from the first K meshes of each category "
                                                "only (default: all)", metavar="K", check=positive)
    render_backgrounds: str = option("crops", "what the training renderings lie over: crops (background textures, "
                                              "the paper's, default) or plain (a flat random grey); the test set "
                                              "always has crops", choices=BACKGROUND_KINDS)


def load_viewpoint_data(spec: str, **kwargs):
    """The viewpoint data set `spec` (data/viewpoint.py): labels (N, 4) = category, θ, φ, ψ in degrees."""
    return load_render_data(spec, **kwargs)


def soft_viewpoint_labels(target_bins: torch.Tensor, bins: int, sigma: float, bandwidth: int | None = None,
                          dtype=torch.float32) -> torch.Tensor:
    """(B, bins) soft labels: exp(−d(v, t)/σ) over the circular distance d ≤ `bandwidth` (None: every
    bin), normalised to sum 1; σ = 0 is the one-hot label."""
    offsets = torch.arange(bins, device=target_bins.device)[None, :] - target_bins[:, None]
    distance = torch.remainder(offsets, bins)
    distance = torch.minimum(distance, bins - distance).double()
    if sigma == 0:
        weights = (distance == 0).double()
    else:
        weights = torch.exp(-distance / sigma)
        if bandwidth is not None:
            weights = weights * (distance <= bandwidth)
    return (weights / weights.sum(1, keepdim=True)).to(dtype)


def geometry_aware_loss(logits: torch.Tensor, target_bins: torch.Tensor, sigma: float,
                        bandwidth: int | None = None) -> torch.Tensor:
    """Render for CNN's Eq. (1) for one angle, averaged over the batch: −Σ_v w(v) log softmax(logits)_v
    with the normalised soft label w of `soft_viewpoint_labels`. logits (B, bins), target_bins (B,)."""
    logits = logits.float()
    labels = soft_viewpoint_labels(target_bins, logits.shape[-1], sigma, bandwidth)
    return -(labels * F.log_softmax(logits, -1)).sum(-1).mean()


def soft_label_settings(sigma: float | None) -> dict[str, tuple[float, int]]:
    """(σ, window) per angle: the paper's, or σ with the window ⌈3σ⌉ for all three."""
    if sigma is None:
        return dict(PAPER_SOFT_LABELS)
    return {angle: (sigma, math.ceil(3 * sigma)) for angle in ANGLES}


def viewpoint_loss(view_logits: torch.Tensor, view_bins: torch.Tensor, form: str = "geometric",
                   sigma: float | None = None, tilt_weight: float = 1.0) -> torch.Tensor:
    """The sum over the three angles of their losses, the elevation's and the in-plane rotation's
    weighted by `tilt_weight`: view_logits (B, 3, bins), view_bins (B, 3)."""
    settings = soft_label_settings(sigma)
    total = view_logits.new_zeros((), dtype=torch.float32)
    for k, angle in enumerate(ANGLES):
        if form == "softmax":
            loss = F.cross_entropy(view_logits[:, k].float(), view_bins[:, k])
        else:
            loss = geometry_aware_loss(view_logits[:, k], view_bins[:, k], *settings[angle])
        total = total + (1.0 if angle == "azimuth" else tilt_weight) * loss
    return total


def split_labels(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 4) labels → categories (N,) and viewpoint bins (N, 3) in 0..359."""
    return labels[:, 0], torch.remainder(labels[:, 1:], 360)


def predicted_viewpoints(view_logits: torch.Tensor) -> torch.Tensor:
    """(B, 3, bins) logits → (B, 3) predicted angles in degrees: the argmax bin of each angle."""
    return view_logits.argmax(-1) * (360.0 / view_logits.shape[-1])


def mirror_viewpoints(images: torch.Tensor, labels: torch.Tensor, mirrored: torch.Tensor):
    """Mirror the `mirrored` images left-right and relabel them: θ → −θ, φ kept, ψ → −ψ (mod 360)."""
    images = torch.where(mirrored[:, None, None, None], images.flip(3), images)
    flipped = labels.clone()
    flipped[:, 1] = torch.remainder(-labels[:, 1], 360)
    flipped[:, 3] = torch.remainder(-labels[:, 3], 360)
    return images, torch.where(mirrored[:, None], flipped, labels)


def evaluate(model: nn.Module, split, normalizer: Normalizer, *, classes: list[str], batch_size: int = 500,
             device="cpu", channels_last: bool = False, form: str = "geometric", sigma: float | None = None,
             tilt_weight: float = 1.0) -> dict:
    """Loss, azimuth top-1, median geodesic error and Acc_π/6 on `split`, overall and per category.

    Every process evaluates the whole split (a median needs every error; the splits are small)."""
    errors, azimuth_errors, categories, hits, loss_sum = [], [], [], 0, 0.0
    with torch.no_grad(), evaluating(model):
        for images, labels in eval_batches(split, batch_size, device=device):
            category, bins = split_labels(labels)
            view_logits = select_category(model(normalizer(images, channels_last)), category).float()
            loss_sum += viewpoint_loss(view_logits, bins, form, sigma, tilt_weight).item() * len(labels)
            predicted = predicted_viewpoints(view_logits)
            hits += int((view_logits[:, 0].argmax(-1) == bins[:, 0]).sum())
            errors.append(angle_error(predicted.cpu(), bins.cpu().double()))
            azimuth_errors.append(angle_error(predicted[:, 0].cpu(), bins[:, 0].cpu().double()))
            categories.append(category.cpu())
    errors = torch.cat(errors) if errors else torch.zeros(0, dtype=torch.float64)
    azimuth_errors = torch.cat(azimuth_errors) if azimuth_errors else torch.zeros(0, dtype=torch.float64)
    categories = torch.cat(categories) if categories else torch.zeros(0, dtype=torch.int64)
    n = len(errors)
    per_category = {name: median_angle_error(errors[categories == k]) for k, name in enumerate(classes)}
    return {"n": n, "loss": loss_sum / max(n, 1), "top1": hits / max(n, 1),
            "median_angle_error": median_angle_error(errors), "acc_pi6": accuracy_within(errors),
            "median_azimuth_error": median_angle_error(azimuth_errors),
            "median_angle_error_per_category": {k: None if math.isnan(v) else v for k, v in per_category.items()},
            "acc_pi6_per_category": {name: _or_none(accuracy_within(errors[categories == k]))
                                     for k, name in enumerate(classes)}}


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def plot_viewpoints(images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor, classes: list[str],
                    path, title: str) -> None:
    """Each image with its true (green) and predicted (red) azimuth as arrows on a dial (0° up,
    clockwise) and the three angles, true → predicted, underneath."""
    columns = min(4, len(images))
    rows = math.ceil(len(images) / columns)
    fig, axes = subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows + 0.6), squeeze=False,
                         layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label, guess in zip(axes.flat, images, labels, predicted):
        side = image.shape[-1]
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
        centre, length = side * 0.15, side * 0.11
        for azimuth, colour in ((float(label[1]), "lime"), (float(guess[0]), "red")):
            angle = math.radians(azimuth)
            ax.annotate("", xy=(centre + length * math.sin(angle), centre - length * math.cos(angle)),
                        xytext=(centre, centre), arrowprops=dict(arrowstyle="->", color=colour, lw=1.6))
        error = float(angle_error(guess[None].double(), label[None, 1:].double())[0])
        true = "/".join(f"{int(v) % 360}" for v in label[1:])
        guessed = "/".join(f"{int(round(float(v))) % 360}" for v in guess)
        ax.set_title(f"{classes[int(label[0])]}: error {error:.0f}°\nθ/φ/ψ {true}\npred {guessed}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


class ViewpointTask(ImageTask):
    """Images of objects of known categories → azimuth, elevation and in-plane rotation bins of the
    category's head: geometry-aware loss, median geodesic error and Acc_π/6."""

    name = "viewpoint"
    default_data = "renders"
    class_word = "categories"
    record_keys = ("loss", "top1", "acc_pi6")
    monitor, monitor_mode = "acc_pi6", "max"

    def load_data(self) -> None:
        cfg = self.cfg
        self.refuse_options(CLASSIFICATION_OPTIONS_UNIFORM_SMOOTHING, "a classification")
        self.data = load_viewpoint_data(cfg.data, data_dir=cfg.data_dir, val_size=cfg.val_size, seed=cfg.seed,
                                        image_size=cfg.image_size, **self.render_knobs())
        self.limit_splits()
        self.normalizer = Normalizer(self.data.mean, self.data.std)
        self.input_size = self.data.input_size
        self.classes = self.data.classes
        self.flip = bool(cfg.flip)

    def render_knobs(self) -> dict:
        """The training set's knobs as load_render_data's keywords (also model.json's data_args)."""
        cfg = self.cfg
        return {"train_size": cfg.render_train_size, "instances": cfg.render_instances,
                "background": cfg.render_backgrounds}

    @property
    def chance_loss(self) -> float:
        """The loss of a uniform guess over the bins (what the engine's divergence check compares with): ln 360
        per angle, the elevation's and in-plane's weighted by --tilt-weight."""
        return (1 + (len(ANGLES) - 1) * self.cfg.tilt_weight) * math.log(360)

    def prepare(self, batch, generator):
        images, labels = batch
        if self.cfg.crop:
            images = random_crop(images, self.cfg.crop, generator)
        if self.flip:
            mirrored = torch.rand(len(images), generator=generator, device=generator.device).to(images.device) < 0.5
            images, labels = mirror_viewpoints(images, labels, mirrored)
        return self.shard(images, labels)

    def training_step(self, batch, phase: str, generator) -> StepOutput:
        images, labels = batch
        category, bins = split_labels(labels)
        with autocast(self.device, self.amp):
            logits = self.net(self.normalizer(images, self.channels_last))
        view_logits = select_category(logits, category).float()
        loss = viewpoint_loss(view_logits, bins, self.cfg.viewpoint_loss, self.cfg.viewpoint_sigma,
                              self.cfg.tilt_weight)
        with torch.no_grad():
            predicted = predicted_viewpoints(view_logits)
            hits = (view_logits[:, 0].argmax(-1) == bins[:, 0]).double().sum()
            within = is_within(angle_error(predicted, bins.double())).double().sum()
        return StepOutput({"loss": loss}, {"loss": loss.detach().double() * len(labels), "top1": hits,
                                           "acc_pi6": within}, len(labels))

    def evaluate(self, model: nn.Module, split: str) -> dict:
        return evaluate(model, getattr(self.data, split), self.normalizer, classes=self.classes,
                        batch_size=self.cfg.eval_batch_size, device=self.device, channels_last=self.channels_last,
                        form=self.cfg.viewpoint_loss, sigma=self.cfg.viewpoint_sigma,
                        tilt_weight=self.cfg.tilt_weight)

    def test(self, model: nn.Module, out, title: str) -> dict:
        test = self.evaluate(model, "test")
        if out is not None:
            images, labels = self.data.test.fetch(torch.arange(min(PICTURES, len(self.data.test))))
            with torch.no_grad(), evaluating(model):
                logits = model(self.normalizer(images.to(self.device), self.channels_last))
                predicted = predicted_viewpoints(select_category(logits, labels[:, 0])).cpu()
            plot_viewpoints(images, labels, predicted, self.classes, out / "viewpoints.png",
                            f"{title} test: median error {test['median_angle_error']:.1f}°, "
                            f"Acc π/6 {test['acc_pi6']:.3f} (green: true azimuth, red: predicted)")
        medians = test["median_angle_error_per_category"]
        per_category = "  ".join(f"{name} {value:.1f}°" for name, value in medians.items() if value is not None)
        self.log(f"test top1 {test['top1']:.4f}  median error {test['median_angle_error']:.2f}° (azimuth "
                 f"{test['median_azimuth_error']:.2f}°)  "
                 f"acc_pi6 {test['acc_pi6']:.4f}  ({test['n']} images; median per category: {per_category})")
        return {"test_top1": test["top1"], "test_median_angle_error": test["median_angle_error"],
                "test_acc_pi6": test["acc_pi6"], "test_median_azimuth_error": test["median_azimuth_error"],
                "test_loss": test["loss"], "test_n": test["n"],
                "test_median_angle_error_per_category": test["median_angle_error_per_category"],
                "test_acc_pi6_per_category": test["acc_pi6_per_category"]}

    def resolved(self) -> dict:
        return {**super().resolved(), "classes": self.classes, "viewpoint_loss": self.cfg.viewpoint_loss,
                "tilt_weight": self.cfg.tilt_weight,
                "soft_labels": {k: list(v) for k, v in soft_label_settings(self.cfg.viewpoint_sigma).items()}}

    def model_meta(self) -> dict:
        meta = super().model_meta()
        meta["data_args"].update(self.render_knobs())
        return {**meta, "viewpoint_loss": self.cfg.viewpoint_loss,
                "viewpoint_sigma": self.cfg.viewpoint_sigma, "tilt_weight": self.cfg.tilt_weight}

    def plot_curves(self, history: list[dict], path) -> None:
        plot_curves(history, path, metric="acc_pi6", metric_label="Acc π/6 (geodesic error < 30°)",
                    loss_label="geometry-aware loss, three angles summed" if self.cfg.viewpoint_loss == "geometric"
                    else "cross-entropy, three angles summed")
