"""Object detection: boxes and classes of every object (the notes' R-CNN chapter: Girshick, "Fast
R-CNN", ICCV 2015; Ren et al., "Faster R-CNN", NeurIPS 2015).

A detector (models/rcnn.py) follows torchvision's convention: in training it takes normalised
images and one target dict per image (`boxes` x1 y1 x2 y2 in pixels, `labels` 1..K, 0 being the
background) and returns its losses — the RPN's objectness and box regression and the detection
head's classification and box regression, L = L_cls + λ·L_loc with λ = 1 for each stage — whose
sum is back-propagated; in evaluation it returns one dict of `boxes`, `labels` and `scores` per
image. A Fast R-CNN (no RPN) is given proposals: selective search's (data/proposals.py, the
paper's "SS" rows) or boxes read from a file.

The metrics are `metrics.detection_map`'s: COCO-style AP at IoU 0.5 (`map50`, the monitored
value), AP averaged over IoU .50:.95 (`map`), the VOC07 11-point AP (`voc07_map`) and AP per
class. The validation loss is the four losses on the validation images with batch
normalisation and dropout in their inference mode and the RoI sampling seeded, so that it
moves only with the weights.

Training schemes (`--training-scheme`): approximate joint training (the four losses summed in
one backward pass, the paper's default) or the 4-step alternating training, its stages run one
after another over equal shares of the epochs (RPN; Fast R-CNN on the stage-1 proposals; RPN
with the shared layers frozen; the detection head with them frozen), or its first two stages
only (`unshared`: the RPN and the detector keep their own backbones, Table 2's unshared row).
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from ..core.errors import UsageError
from ..core.figures import save_figure, subplots
from ..core.options import option, option_group, positive
from ..core.runtime import autocast, evaluating
from ..data.datasets import SPLITS
from ..data.detection import BoxAugmentation, load_detection_data
from ..data.loader import Normalizer, epoch_order, steps_per_epoch
from ..metrics import detection_map
from .base import CLASSIFICATION_OPTIONS, ImageTask, StepOutput
from .plots import plot_curves

# Options of the image classifier that have no meaning (or no box version) here: refused if set. (--crop and
# --label-smoothing, on by default for classifiers, are not used: the boxes move by BoxAugmentation's rescale, and
# the detection head's cross-entropy is the papers' plain one.)
RPN_LOSSES = ("loss_objectness", "loss_rpn_box_reg")
HEAD_LOSSES = ("loss_classifier", "loss_box_reg")
SHOWN_IMAGES = 8   # test images drawn in the run directory's detections.png
VAL_SEED = 12345   # the RoI sampling of the validation loss


@option_group("detection")
class DetectionOptions:
    proposals: str = option("selective-search", "a Fast R-CNN's region proposals: selective-search (Uijlings et "
                                                "al., computed once per image) or a JSON file of boxes per image "
                                                "name; a Faster R-CNN makes its own", metavar="SOURCE")
    training_scheme: str = option("joint", "Faster R-CNN: approximate joint training, the paper's 4-step "
                                           "alternating training over equal shares of the epochs, or its first two "
                                           "steps only (unshared: the RPN and the detector each on its own backbone, "
                                           "Table 2's unshared row)",
                                  choices=("joint", "alternating", "unshared"))
    scene_count: int | None = option(None, "training images: the fmnist-scenes training scenes rendered (default "
                                           "6000), or a seeded subset of a VOC/COCO training pool; the test split "
                                           "stays the same", metavar="N", check=positive)
    score_threshold: float = option(0.05, "detections scoring below this are dropped (default {default})",
                                    metavar="S")


def stack(images) -> torch.Tensor:
    """A batch tensor from a data split's images (equal sizes: the data module resizes them)."""
    return images if isinstance(images, torch.Tensor) else torch.stack(list(images))


def to_device(targets: list[dict], device) -> list[dict]:
    return [{key: value.to(device) for key, value in target.items()} for target in targets]


def with_proposals(target: dict, proposals: torch.Tensor) -> dict:
    """The proposals joined to the true boxes (flagged), so that the augmentation moves, clips and drops
    them with the image as it does the true boxes; `without_proposals` separates them again."""
    count = len(proposals)
    joined = {"boxes": torch.cat([target["boxes"], proposals.to(target["boxes"])]),
              "proposal": torch.cat([torch.zeros(len(target["boxes"]), dtype=torch.bool),
                                     torch.ones(count, dtype=torch.bool)])}
    for key, value in target.items():
        if key != "boxes":
            joined[key] = torch.cat([value, value.new_zeros(count)])
    return joined


def without_proposals(joined: dict) -> dict:
    """The target and, under "proposals", the moved proposals (see `with_proposals`)."""
    proposal = joined["proposal"]
    target = {key: value[~proposal] for key, value in joined.items() if key != "proposal"}
    target["proposals"] = joined["boxes"][proposal]
    return target


@contextmanager
def loss_mode(model: nn.Module):
    """Training mode (the detector returns its losses) with every batch norm and dropout in their
    inference mode, so that a validation pass neither updates statistics nor drops units."""
    modes = [(module, module.training) for module in model.modules()]
    model.train()
    for module in model.modules():
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):
            module.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def split_batches(split, batch_size: int):
    """Every image of `split` once, in order: (index range, uint8 images, targets)."""
    for start in range(0, len(split), batch_size):
        index = torch.arange(start, min(start + batch_size, len(split)))
        images, targets = split.fetch(index)
        yield index, stack(images), targets


def detect(model: nn.Module, split, normalizer: Normalizer, *, batch_size: int, device, channels_last: bool = False,
           proposals: list | None = None, score_threshold: float = 0.0) -> list[dict]:
    """The detections of every image of `split` (on the CPU), above `score_threshold`."""
    found = []
    with torch.no_grad(), evaluating(model):
        for index, images, _ in split_batches(split, batch_size):
            extra = {"proposals": [proposals[i].to(device) for i in index]} if proposals is not None else {}
            outputs = model(normalizer(images.to(device), channels_last), **extra)
            for output in outputs:
                keep = output["scores"] >= score_threshold
                found.append({key: value[keep].float().cpu() if key != "labels" else value[keep].cpu()
                              for key, value in output.items() if key in ("boxes", "labels", "scores")})
    return found


def validation_losses(model: nn.Module, split, normalizer: Normalizer, *, batch_size: int, device,
                      channels_last: bool = False, proposals: list | None = None) -> dict:
    """Each loss of the detector averaged over the images of `split`, and their sum `loss`."""
    totals: dict[str, float] = {}
    generator = torch.Generator(device).manual_seed(VAL_SEED)
    with torch.no_grad(), loss_mode(model):
        for index, images, targets in split_batches(split, batch_size):
            extra = {"proposals": [proposals[i].to(device) for i in index]} if proposals is not None else {}
            losses = model(normalizer(images.to(device), channels_last), to_device(targets, device),
                           generator=generator, **extra)
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + value.item() * len(index)
    n = max(len(split), 1)
    result = {key: value / n for key, value in totals.items()}
    result["loss"] = sum(result.values())
    return result


def split_proposals(split, source: str, name: str = "test") -> list[torch.Tensor]:
    """A Fast R-CNN's proposals for every image of `split`: selective search's (`source`
    "selective-search") or the boxes a JSON file gives per image name."""
    from ..data.proposals import load_proposals, selective_search
    if source == "selective-search":
        return [selective_search(image) for _, images, _ in split_batches(split, 64) for image in images]
    boxes = load_proposals(source)
    missing = [image for image in split.names if image not in boxes]
    if missing:
        raise UsageError(f"--proposals {source} has no boxes for image {missing[0]!r} of the {name} split")
    return [torch.as_tensor(boxes[image], dtype=torch.float32) for image in split.names]


def evaluate(model: nn.Module, split, normalizer: Normalizer, *, classes: list[str], batch_size: int, device,
             channels_last: bool = False, proposals: list | None = None, score_threshold: float = 0.05,
             with_loss: bool = True) -> dict:
    """mAP in the three styles on `split` (and the validation losses): the keys of `visionzoo eval`."""
    detections = detect(model, split, normalizer, batch_size=batch_size, device=device, channels_last=channels_last,
                        proposals=proposals, score_threshold=score_threshold)
    _, targets = split.fetch(torch.arange(len(split)))
    coco = detection_map(detections, targets, iou_thresholds=None, style="coco")
    voc07 = detection_map(detections, targets, style="voc07")
    per_class = coco["ap50_per_class"]   # keyed by label 1..K; NaN for a class without true boxes in the split
    result = {"n": len(split), "map50": coco["map50"], "map": coco["map"], "voc07_map": voc07["map"],
              "ap_per_class": {name: _finite_or_none(per_class.get(k + 1)) for k, name in enumerate(classes)},
              "detections": sum(len(d["boxes"]) for d in detections)}
    if with_loss:
        result.update(validation_losses(model, split, normalizer, batch_size=batch_size, device=device,
                                        channels_last=channels_last, proposals=proposals))
    return result


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def plot_detections(images, detections: list[dict], classes: list[str], path, title: str,
                    truths: list[dict] | None = None, score_threshold: float = 0.5) -> None:
    """Images with their detections (labelled, scored boxes) and, dashed, the true boxes."""
    columns = min(4, len(images))
    rows = math.ceil(len(images) / columns)
    fig, axes = subplots(rows, columns, figsize=(3 * columns, 3 * rows + 0.5), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for k, image in enumerate(images):
        ax = axes.flat[k]
        ax.imshow(image[0].numpy() if len(image) == 1 else image.permute(1, 2, 0).numpy(), cmap="gray",
                  vmin=0, vmax=255, interpolation="nearest")
        if truths is not None:
            for box in truths[k]["boxes"].tolist():
                ax.add_patch(_rectangle(box, "white", "--"))
        found = detections[k]
        for box, label, score in zip(found["boxes"].tolist(), found["labels"].tolist(), found["scores"].tolist()):
            if score < score_threshold:
                continue
            ax.add_patch(_rectangle(box, "lime", "-"))
            ax.text(box[0], box[1] - 1, f"{classes[label - 1]} {score:.2f}", color="black", fontsize=6,
                    bbox={"facecolor": "lime", "alpha": 0.8, "pad": 1, "linewidth": 0})
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def _rectangle(box, colour: str, style: str):
    from matplotlib.patches import Rectangle
    x1, y1, x2, y2 = box
    return Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linestyle=style, linewidth=1.2)


class DetectionTask(ImageTask):
    """Images → boxes and classes: the detector's own losses, boxes moved with the augmented image,
    mAP (COCO at IoU 0.5 monitored) and AP per class."""

    name = "detection"
    default_data = "fmnist-scenes"
    class_word = "classes"
    examples = "images"
    record_keys: tuple[str, ...] = ("loss",)
    monitor, monitor_mode = "map50", "max"

    def load_data(self) -> None:
        cfg = self.cfg
        self.refuse_options(CLASSIFICATION_OPTIONS, "a classification")
        self.data = load_detection_data(cfg.data, data_dir=cfg.data_dir, download=cfg.download,
                                        val_size=cfg.val_size, seed=cfg.seed, image_size=cfg.image_size,
                                        train_size=cfg.scene_count)
        self.limit_splits()
        self.normalizer = Normalizer(self.data.mean, self.data.std)
        self.input_size = self.data.input_size
        self.classes = self.data.classes
        self.augmentation = BoxAugmentation(flip=cfg.flip is not False)
        self.proposals: dict[str, list] | None = None

    def build_model(self, **builder_kwargs) -> nn.Module:
        # torchvision's convention: the classifier's K + 1 outputs include the background
        self.model_kwargs = {"num_classes": len(self.classes) + 1, "in_chans": self.input_size[0], **builder_kwargs}
        return self.build_network(self.model_kwargs)

    def check_model(self, model: nn.Module) -> None:
        self.has_rpn = getattr(model, "rpn", None) is not None
        self.record_keys = ("loss", *(RPN_LOSSES if self.has_rpn else ()), *HEAD_LOSSES)
        if self.cfg.training_scheme != "joint" and not self.has_rpn:
            raise UsageError(f"--training-scheme {self.cfg.training_scheme} trains an RPN; {self.cfg.model} has none "
                             "(a Fast R-CNN trains on given proposals)")
        if self.cfg.training_scheme != "joint" and self.cfg.keep == "best":   # an early stage's best is another network
            raise UsageError(f"--training-scheme {self.cfg.training_scheme}: the stages train different parts, so the "
                             "best validation epoch may be an unfinished detector; add --keep last")
        if self.cfg.training_scheme != "joint" and self.world > 1:   # each stage trains other parameters
            raise UsageError(f"--training-scheme {self.cfg.training_scheme} runs in one process; use joint training "
                             "with DDP")
        if not self.has_rpn:
            self.proposals = self.load_proposals()

    def load_proposals(self) -> dict[str, list]:
        """The Fast R-CNN's proposals for every image of every split."""
        if self.cfg.proposals == "selective-search":
            self.log(f"selective search on {sum(len(self.data.split(s)) for s in SPLITS)} images (Uijlings et al.)")
        return {name: split_proposals(self.data.split(name), self.cfg.proposals, name) for name in SPLITS}

    @property
    def chance_loss(self) -> float:
        """A uniform guess: ln(K + 1) for the head's classes, ln 2 for the RPN's objectness (box losses aside)."""
        return math.log(len(self.classes) + 1) + (math.log(2) if getattr(self, "has_rpn", True) else 0.0)

    def input_batches(self, batch_size: int, epoch: int = 0):
        for _, images, _ in self.batches(self.data.train, batch_size, epoch, 0):
            yield self.normalizer(images.to(self.device), self.channels_last)

    def batches(self, split, batch_size: int, epoch: int, start_step: int):
        batch_size = min(batch_size, len(split))
        order = epoch_order(len(split), self.cfg.seed, epoch)
        for step in range(start_step, steps_per_epoch(len(split), batch_size)):
            index = order[step * batch_size:(step + 1) * batch_size]
            images, targets = split.fetch(index)
            yield index, stack(images), targets

    def train_batches(self, epoch: int, start_step: int):
        return self.batches(self.data.train, self.cfg.batch_size, epoch, start_step)

    def prepare(self, batch, generator):
        index, images, targets = batch
        if self.proposals is not None:
            targets = [with_proposals(target, self.proposals["train"][i]) for target, i in zip(targets, index)]
        images, targets = self.augmentation(images.to(self.device), to_device(targets, self.device), generator)
        if self.proposals is not None:
            targets = [without_proposals(target) for target in targets]
        shard = slice(self.rank, None, self.world)
        return images[shard], targets[shard]

    def training_step(self, batch, phase: str, generator) -> StepOutput:
        images, targets = batch
        if self.cfg.training_scheme != "joint":
            self.model.set_training_stage(self.stage)
        extra = {"proposals": [t.pop("proposals") for t in targets]} if self.proposals is not None else {}
        with autocast(self.device, self.amp):
            losses = self.net(self.normalizer(images, self.channels_last), targets, generator=generator, **extra)
        losses = {key: value.float() for key, value in losses.items()}
        n = len(images)
        sums = {key: losses[key].detach().double() * n if key in losses else torch.zeros((), dtype=torch.float64,
                                                                                             device=self.device)
                for key in self.record_keys if key != "loss"}
        sums["loss"] = sum(sums.values())
        return StepOutput(losses, sums, n)

    def phases(self, step: int) -> list[str]:
        # the alternating scheme's stage: equal shares of the run's steps (four; two when unshared)
        if self.cfg.training_scheme != "joint":
            stages = 4 if self.cfg.training_scheme == "alternating" else 2
            total = max(self.cfg.epochs * steps_per_epoch(self.train_size, self.cfg.batch_size), 1)
            self.stage = min(stages * step // total + 1, stages)
        return ["model"]

    def evaluate(self, model: nn.Module, split: str) -> dict:
        result = evaluate(model, getattr(self.data, split), self.normalizer, classes=self.classes,
                          batch_size=self.cfg.eval_batch_size, device=self.device, channels_last=self.channels_last,
                          proposals=self.proposals[split] if self.proposals else None,
                          score_threshold=self.cfg.score_threshold)
        # an alternating stage computes only the losses of what it trains; the others count 0, as in training
        return {**dict.fromkeys(self.record_keys, 0.0), **result}

    def test(self, model: nn.Module, out, title: str) -> dict:
        test = self.evaluate(model, "test")
        if out is not None:
            shown = torch.arange(min(SHOWN_IMAGES, len(self.data.test)))
            images, targets = self.data.test.fetch(shown)
            images = stack(images)
            found = detect(model, self.data.test.take(shown), self.normalizer, batch_size=len(shown),
                           device=self.device, channels_last=self.channels_last,
                           proposals=[self.proposals["test"][i] for i in shown] if self.proposals else None)
            plot_detections(images, found, self.classes, out / "detections.png",
                            f"{title} test: map50 {test['map50']:.4f} (dashed: true boxes)", truths=targets)
        per_class = "  ".join(f"{name} {value:.3f}" for name, value in test["ap_per_class"].items()
                              if value is not None)
        self.log(f"test map50 {test['map50']:.4f}  map {test['map']:.4f}  voc07_map {test['voc07_map']:.4f}  "
                 f"({test['n']} images; AP50 per class: {per_class})")
        return {"test_map50": test["map50"], "test_map": test["map"], "test_voc07_map": test["voc07_map"],
                "test_loss": test["loss"], "test_n": test["n"], "test_ap_per_class": test["ap_per_class"]}

    def resolved(self) -> dict:
        return {**super().resolved(), "classes": self.classes, "training_scheme": self.cfg.training_scheme,
                "proposals": None if getattr(self, "has_rpn", True) else self.cfg.proposals}

    def model_meta(self) -> dict:
        meta = {**super().model_meta(), "score_threshold": self.cfg.score_threshold,
                "proposals": None if self.has_rpn else self.cfg.proposals}
        meta["data_args"]["train_size"] = self.cfg.scene_count   # eval rebuilds the run's validation split
        return meta

    def plot_curves(self, history: list[dict], path) -> None:
        plot_curves(history, path, metric="map50", metric_label="AP at IoU 0.5 (COCO-style)",
                    loss_label="L_cls + L_loc (RPN and detection head)")
