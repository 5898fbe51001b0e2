"""Video classification: one label per clip (the notes' 3D CNN chapter: Ji et al., TPAMI 2013;
Karpathy et al., CVPR 2014; Tran et al., C3D, ICCV 2015 and "A Closer Look at Spatiotemporal
Convolutions", CVPR 2018).

A network takes float clips (B, C, T, H, W) and returns logits. The loss is the classifier's
cross-entropy with its label smoothing (tasks/classification.py), the metrics its top-1/top-5,
loss and per-class accuracy. Training clips are augmented by `data.video.ClipAugmentation`:
a random temporal window (`--clip-frames`, C3D's random 16-frame crops; evaluation then reads
the central window), a padded spatial crop (`--crop`), a mirror that swaps the mirrored motions
(`--flip`) and, with `--time-reverse`, a reversal in time that swaps the reversed ones.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from ..core.errors import UsageError
from ..core.figures import save_figure, subplots
from ..core.options import option, option_group
from ..core.runtime import autocast, evaluating
from ..data.video import ClipAugmentation, ClipNormalizer, load_video_data
from ..registry import get_entry
from .base import CLASSIFICATION_OPTIONS, ImageTask, StepOutput
from .classification import classification_loss, evaluate
from .plots import plot_confusion, plot_curves

SHOWN_CLIPS, SHOWN_FRAMES = 6, 8   # clips.png: test clips as rows of evenly spaced frames


def _at_least_two(value) -> str | None:
    return None if value is None or value >= 2 else "a clip needs at least 2 frames"


@option_group("video")
class VideoOptions:
    frames: int | None = option(None, "frames per clip of generated video data (moving-fmnist: default 16); "
                                      "Moving MNIST: its first N frames", metavar="N", check=_at_least_two)
    clip_frames: int | None = option(None, "train on random windows of N consecutive frames, evaluate on the "
                                           "central window (C3D's temporal crops)", metavar="N", check=_at_least_two)
    time_reverse: bool = option(False, "also play half the training clips backwards, their labels reversed "
                                       "(left↔right, up↔down, zoom in↔out, clockwise↔anticlockwise)")


def plot_clips(clips: torch.Tensor, truths: list[str], predictions: list[str], path, title: str) -> None:
    """One row per clip (uint8 (N, C, T, H, W)): up to SHOWN_FRAMES evenly spaced frames, true and predicted labels."""
    count, frames = len(clips), clips.shape[2]
    shown = torch.linspace(0, frames - 1, min(SHOWN_FRAMES, frames)).round().long().unique()
    fig, axes = subplots(count, len(shown), figsize=(1.3 * len(shown) + 0.4, 1.45 * count + 0.6), squeeze=False,
                         layout="constrained")
    for row, clip in enumerate(clips):
        for column, t in enumerate(shown.tolist()):
            frame = clip[:, t]
            ax = axes[row][column]
            ax.imshow(frame[0].numpy() if len(frame) == 1 else frame.permute(1, 2, 0).numpy(), cmap="gray",
                      vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t={t}", fontsize=8)
        right = truths[row] == predictions[row]
        axes[row][0].set_ylabel(f"{truths[row]}\n→ {predictions[row]}", fontsize=8,
                                color="black" if right else "crimson")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


class VideoTask(ImageTask):
    """Clips → one of K classes: cross-entropy, clip augmentation, top-1/top-5 and per-class accuracy."""

    name = "video"
    default_data = "moving-fmnist"
    examples = "clips"
    record_keys = ("loss", "top1")
    monitor, monitor_mode = "top1", "max"

    def __init__(self, cfg, *, device, rank, world, channels_last, amp, log):
        # channels_last is a 4-D layout: clips and 3-D convolution weights are 5-D
        super().__init__(cfg, device=device, rank=rank, world=world, channels_last=False, amp=amp, log=log)

    def load_data(self) -> None:
        cfg = self.cfg
        self.refuse_options(CLASSIFICATION_OPTIONS, "an image classification")
        self.data = load_video_data(cfg.data, data_dir=cfg.data_dir, download=cfg.download, val_size=cfg.val_size,
                                    seed=cfg.seed, frames=cfg.frames, image_size=cfg.image_size)
        if len(self.data.classes) < 2:
            raise UsageError(f"--data {cfg.data} has no labels (every clip is of the one class "
                             f"{self.data.classes[0]!r}): it is for frame prediction; train a video classifier on "
                             "moving-fmnist")
        length = self.data.input_size[1]
        if cfg.clip_frames and cfg.clip_frames > length:
            raise UsageError(f"--clip-frames {cfg.clip_frames}: the clips of {cfg.data} have {length} frames")
        self.limit_splits()
        self.normalizer = ClipNormalizer(self.data.mean, self.data.std, cfg.clip_frames)
        channels, _, height, width = self.data.input_size
        self.input_size = (channels, cfg.clip_frames or length, height, width)
        self.classes = self.data.classes
        self.augmentation = ClipAugmentation(self.classes, frames=cfg.clip_frames, crop=cfg.crop,
                                             flip=cfg.flip is not False, reverse=cfg.time_reverse)

    def size_keywords(self) -> dict:
        """`frames` and `image_size` of the data, for builders that take them (networks with fixed FC layers)."""
        parameters = inspect.signature(get_entry(self.cfg.model).builder).parameters
        _, frames, height, width = self.input_size
        found = {"frames": frames, "image_size": height if height == width else (height, width)}
        return {key: value for key, value in found.items() if key in parameters}

    def prepare(self, batch, generator):
        clips, labels = self.augmentation(*batch, generator)
        return self.shard(clips, labels)

    def training_step(self, batch, phase: str, generator) -> StepOutput:
        clips, labels = batch
        with autocast(self.device, self.amp):
            output = self.net(self.normalizer(clips))
        loss, logits = classification_loss(output, labels, self.model, self.cfg.label_smoothing,
                                           self.cfg.label_smoothing_form)
        sums = {"loss": loss.detach().double() * len(labels),
                "top1": (logits.detach().argmax(1) == labels).sum().double()}
        return StepOutput({"loss": loss}, sums, len(labels))

    def evaluate(self, model: nn.Module, split: str, num_classes: int | None = None) -> dict:
        return evaluate(model, getattr(self.data, split), self.normalizer, batch_size=self.cfg.eval_batch_size,
                        device=self.device, num_classes=num_classes, rank=self.rank, world=self.world)

    def test(self, model: nn.Module, out, title: str) -> dict:
        test = self.evaluate(model, "test", num_classes=len(self.classes))
        if out is not None:
            plot_confusion(test["confusion"], self.classes, out / "confusion.png",
                           f"{title} test: top-1 {test['top1']:.4f}")
            clips, labels = self.data.test.fetch(torch.arange(min(SHOWN_CLIPS, len(self.data.test))))
            with torch.no_grad(), evaluating(model):
                predicted = model(self.normalizer(clips.to(self.device))).argmax(1).cpu()
            plot_clips(clips, [self.classes[k] for k in labels], [self.classes[k] for k in predicted],
                       out / "clips.png", f"{title} test: top-1 {test['top1']:.4f} (true → predicted)")
        self.log(f"test top1 {test['top1']:.4f}  top5 {test['top5']:.4f}  loss {test['loss']:.4f}  "
                 f"({test['n']} clips)")
        return {"test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
                "test_n": test["n"], "test_per_class_top1": dict(zip(self.classes, test["per_class_top1"]))}

    def resolved(self) -> dict:
        return {**super().resolved(), "classes": self.classes, "flip": self.augmentation.flip}

    def model_meta(self) -> dict:
        meta = super().model_meta()
        meta["data_args"]["frames"] = self.cfg.frames
        return {**meta, "clip_frames": self.cfg.clip_frames}

    def plot_curves(self, history: list[dict], path) -> None:
        smoothing = self.cfg.label_smoothing
        plot_curves(history, path, loss_label=f"cross-entropy (with label smoothing ε = {smoothing:g})"
                    if smoothing else "cross-entropy")
