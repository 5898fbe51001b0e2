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

import functools
import math
from contextlib import ExitStack

import torch
import torch.nn.functional as F
from torch import nn

from ..core.distributed import all_reduce_sum
from ..core.options import option, option_group, within
from ..core.probe import check_buildable_input
from ..core.progress import progress
from ..core.runtime import autocast, evaluating, evaluation_autocast
from ..data.datasets import load_data
from ..data.loader import Normalizer, eval_batches
from ..registry import create_model, get_entry
from .adversarial import AdversarialTraining
from .base import ImageTask, StepOutput
from .distillation import Teacher, distillation_loss
from .plots import plot_confusion, plot_curves
from .techniques import build_augmentation, check_model_fits

# Mirrored digits and characters are other symbols: no flips there unless asked for.
NO_FLIP_DATA = {"mnist", "kmnist", "svhn", "digits"}

TTA_MODES = ("none", "flip", "tencrop", "multiscale")
TTA_ALIASES = {"multicrop": "tencrop"}
MULTISCALE = (1.0, 1.15, 1.3)
SMOOTHING_FORMS = ("uniform", "notes")


@option_group("classification", "the loss and the final test")
class ClassificationOptions:
    label_smoothing: float = option(0.1, "ε (default {default})", check=within("[0, 1)"))
    label_smoothing_form: str = option("uniform", "uniform (default, as before: true class 1 − ε + ε/K, the others "
                                                  "ε/K, PyTorch's) or notes (true class 1 − ε, the others "
                                                  "ε/(K − 1))", choices=SMOOTHING_FORMS)
    test_tta: str = option("none", "test-time augmentation of the final test evaluation (default {default}; "
                                   "`eval --tta` likewise)", choices=TTA_MODES)


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
             world: int = 1, tta: str = "none", quiet: bool = True, amp: bool = False) -> dict:
    """Metrics of `model` (or a list of models, an ensemble, with a list of normalisers) on `split`;
    with `num_classes`, also the confusion matrix (true × predicted) and per-class accuracy. Unless
    `quiet`, progress on stderr (core/progress.py). `amp`: the networks run under the training step's
    autocast on a CUDA device (core/runtime.py `evaluation_dtype`), in fp32 elsewhere."""
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    normalizers = list(normalizer) if isinstance(normalizer, (list, tuple)) else [normalizer]
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # n, top1, top5, loss sum
    confusion = torch.zeros(num_classes or 1, num_classes or 1, dtype=torch.int64, device=device)
    with torch.no_grad(), evaluation_autocast(device, amp), ExitStack() as modes:
        for m in models:
            modes.enter_context(evaluating(m))
        ensemble = members(models, normalizers, tta)
        shown = modes.enter_context(progress(total=len(split) // world, desc="evaluating", unit="images",
                                             quiet=quiet or rank != 0))
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
            shown.update(len(labels))
    totals = all_reduce_sum(totals)
    n = int(totals[0].item())
    result = {"n": n, "top1": totals[1].item() / max(n, 1), "top5": totals[2].item() / max(n, 1),
              "loss": totals[3].item() / max(n, 1)}
    if num_classes:
        confusion = all_reduce_sum(confusion).cpu()
        result["confusion"] = confusion.tolist()
        result["per_class_top1"] = (confusion.diag() / confusion.sum(1).clamp_min(1)).tolist()
    return result


def smoothed_targets(labels: torch.Tensor, num_classes: int, epsilon: float, form: str = "uniform") -> torch.Tensor:
    """Label-smoothed target distributions (n, K) of class indices, or of soft targets (mixup/CutMix),
    linearly: `uniform` (Szegedy et al., Inception-v3, Sec. 7, as PyTorch) q = (1 − ε)·y + ε/K;
    `notes` (001, "Label smoothing") q = (1 − ε)·y + ε/(K − 1)·(1 − y), i.e. 1 − ε on the true class."""
    y = F.one_hot(labels, num_classes).float() if labels.dim() == 1 else labels.float()
    if form == "uniform":
        return (1 - epsilon) * y + epsilon / num_classes
    if form == "notes":
        return (1 - epsilon) * y + epsilon / (num_classes - 1) * (1 - y)
    raise ValueError(f"unknown label smoothing form {form!r}; choose one of {', '.join(SMOOTHING_FORMS)}")


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, epsilon: float, form: str) -> torch.Tensor:
    logits = logits.float()
    if form == "uniform" or not epsilon:
        return F.cross_entropy(logits, labels, label_smoothing=epsilon)
    return F.cross_entropy(logits, smoothed_targets(labels, logits.shape[1], epsilon, form))


def classification_loss(output, labels, model, label_smoothing: float, smoothing_form: str = "uniform"):
    """Cross-entropy against label-smoothed targets (`smoothed_targets`), plus `aux_weight`·CE of
    auxiliary heads when the network returns them.

    A network with its own objective (e.g. CapsNet's margin + reconstruction loss) defines
    ``training_loss(output, labels, label_smoothing) -> (loss, logits)``, which is used instead.
    """
    if hasattr(model, "training_loss"):
        return model.training_loss(output, labels, label_smoothing)
    if isinstance(output, tuple):
        logits, aux = output
        loss = _cross_entropy(logits, labels, label_smoothing, smoothing_form)
        weight = getattr(model, "aux_weight", 0.3)
        for aux_logits in aux:
            loss = loss + weight * _cross_entropy(aux_logits, labels, label_smoothing, smoothing_form)
        return loss, logits
    return _cross_entropy(output, labels, label_smoothing, smoothing_form), output


class ClassificationTask(ImageTask):
    """Images → one of K classes: cross-entropy (label smoothing, auxiliary heads, mixup/CutMix soft
    targets), top-1 per epoch, and a final test with top-5, per-class accuracy, TTA and the
    confusion matrix. Distillation (Hinton et al.) and adversarial training (Goodfellow et al.,
    Madry et al.) change its batch and objective, through `Teacher` and `AdversarialTraining`."""

    name = "classification"
    default_data = "fashion-mnist"
    record_keys = ("loss", "top1")
    monitor, monitor_mode = "top1", "max"

    def load_data(self) -> None:
        cfg = self.cfg
        self.data = load_data(cfg.data, data_dir=cfg.data_dir, download=cfg.download, val_size=cfg.val_size,
                              seed=cfg.seed, image_size=cfg.image_size, train_limit=cfg.train_limit,
                              test_limit=cfg.test_limit)
        self.normalizer = Normalizer(self.data.mean, self.data.std)
        self.input_size = self.data.input_size
        self.classes = self.data.classes
        self.flip = cfg.flip if cfg.flip is not None else cfg.data not in NO_FLIP_DATA
        self.augmentation = build_augmentation(cfg, self.data, self.flip)
        self.teacher = Teacher(cfg.teacher, self.device, len(self.classes), self.input_size) if cfg.teacher else None
        self.adversarial = AdversarialTraining(cfg) if cfg.adv else None

    def build_model(self, **builder_kwargs) -> nn.Module:
        cfg = self.cfg
        # fine-tuning ImageNet weights with their stem: the network as at its paper size (its stem)
        stem_side = get_entry(cfg.model).input_size[-1] if cfg.finetune and cfg.finetune_stem == "keep" \
            else self.input_size[-1]
        self.model_kwargs = {"num_classes": len(self.classes), "in_chans": self.input_size[0],
                             "image_size": stem_side, **builder_kwargs}
        build = lambda side: create_model(cfg.model, **{**self.model_kwargs, "image_size": side})
        model = self.build_network(self.model_kwargs)
        what = f"--image-size {cfg.image_size}" if cfg.image_size else f"--data {cfg.data}"
        check_buildable_input(model, build, self.input_size, get_entry(cfg.model).input_size[-1], what)
        return model

    def check_model(self, model: nn.Module) -> None:
        check_model_fits(self.cfg, model)

    def prepare(self, batch, generator):
        images, labels = batch
        images, targets = self.augmentation(images, labels, len(self.classes), generator)
        return self.shard(images, labels, targets)

    def training_step(self, batch, phase: str, generator) -> StepOutput:
        cfg = self.cfg
        images, labels, targets = batch
        x = self.normalizer(images, self.channels_last)
        if self.adversarial:  # FGSM trains on [x; x̃], PGD on x̃ alone
            x, labels = self.adversarial.batch(self.model, self.normalizer, x, labels, generator,
                                               self.channels_last)
            targets = labels
        with autocast(self.device, self.amp):
            output = self.net(x)
        loss_fn = functools.partial(classification_loss, smoothing_form=cfg.label_smoothing_form)
        if self.adversarial and self.adversarial.objective:
            loss, logits = self.adversarial.objective(loss_fn, output, labels, self.model, cfg.label_smoothing)
        else:
            loss, logits = loss_fn(output, targets, self.model, cfg.label_smoothing)
        if self.teacher:  # soft targets at T; the hard objective (CE + aux heads) weighted 1 − α
            loss = distillation_loss(logits, self.teacher(images), targets, cfg.kd_temperature, cfg.kd_alpha,
                                     hard_loss=loss)
        sums = {"loss": loss.detach().double() * len(labels),
                "top1": (logits.detach().argmax(1) == labels).sum().double()}
        return StepOutput({"loss": loss}, sums, len(labels))

    def evaluate(self, model: nn.Module, split: str) -> dict:
        # the per-epoch validation under the step's autocast on CUDA; the final test (`test`) stays in fp32
        return evaluate(model, getattr(self.data, split), self.normalizer, batch_size=self.cfg.eval_batch_size,
                        device=self.device, channels_last=self.channels_last, rank=self.rank, world=self.world,
                        amp=self.amp)

    def test(self, model: nn.Module, out, title: str) -> dict:
        cfg = self.cfg
        test = evaluate(model, self.data.test, self.normalizer, batch_size=cfg.eval_batch_size,
                        device=self.device, channels_last=self.channels_last, num_classes=len(self.classes),
                        rank=self.rank, world=self.world, tta=cfg.test_tta)
        if out is not None:
            plot_confusion(test["confusion"], self.classes, out / "confusion.png",
                           f"{title} test: top-1 {test['top1']:.4f}")
        self.log(f"test top1 {test['top1']:.4f}  top5 {test['top5']:.4f}  loss {test['loss']:.4f}  "
                 f"({test['n']} images)")
        return {"test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
                "test_n": test["n"], "test_tta": cfg.test_tta,
                "test_per_class_top1": dict(zip(self.classes, test["per_class_top1"]))}

    def resolved(self) -> dict:
        pca = self.augmentation.pca
        return {"flip": self.flip,
                "fancy_pca": pca and {"eigenvalues": pca[0].tolist(), "eigenvectors": pca[1].tolist()},
                **super().resolved()}

    def plot_curves(self, history: list[dict], path) -> None:
        smoothing = self.cfg.label_smoothing
        plot_curves(history, path, loss_label=f"cross-entropy (with label smoothing ε = {smoothing:g})"
                    if smoothing else "cross-entropy")
