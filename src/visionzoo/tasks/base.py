"""What a kind of learning knows, apart from the loop that runs it (engine/trainer.py).

A task owns its data (splits, batches, per-step preparation such as augmentation and the DDP
shard), builds its network, says which modules each optimiser trains and in which phases a step
runs them (one phase for a classifier; a GAN's discriminator and generator), computes a phase's
losses as a dict (torchvision's convention: the engine back-propagates their sum), evaluates a
split, and writes its own summary keys and pictures. Everything generic — AMP, channels_last,
DDP, optimisers, schedules, gradient scaling and clipping, EMA, checkpoints and resume, the NaN
stop, progress, TensorBoard, the run directory — stays in the engine.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..core.errors import UsageError
from ..core.options import set_away_from_default
from ..data.loader import train_batches
from ..registry import create_model


@dataclass
class StepOutput:
    """One phase of one step: its losses (summed for the backward pass) and running sums.

    `sums` are per-batch totals (e.g. loss × n, correct predictions) kept on the device in float64
    by the engine and divided by the summed `count` at the end of the epoch: keys as in
    `Task.record_keys`.
    """
    losses: dict[str, torch.Tensor]
    sums: dict[str, torch.Tensor]
    count: int

    @property
    def loss(self) -> torch.Tensor:
        losses = list(self.losses.values())
        return losses[0] if len(losses) == 1 else sum(losses)


class Task:
    """The interface the engine calls; see the module docstring. Subclasses fill in the rest."""

    name = "task"
    default_data: str | None = None   # the --data of a run that names none, unless its registry card does
    record_keys: tuple[str, ...] = ("loss",)   # train_* / val_* columns of every epoch record
    monitor, monitor_mode = "loss", "min"      # val_<monitor> picks the best epoch: "max", "min" or "last"
    val_keys: tuple[str, ...] = ()             # validation-only metrics recorded beside them (val_*)

    def __init__(self, cfg, *, device: torch.device, rank: int, world: int, channels_last: bool, amp: bool, log):
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        self.channels_last, self.amp, self.log = channels_last, amp, log
        self.model: nn.Module | None = None
        self.net: nn.Module | None = None

    # ---- data and network ---------------------------------------------------------------------
    def refuse_options(self, names: Iterable[str], kind: str) -> None:
        """Refuse, before the data are made, an option of another task (`names`; `kind`: "a
        classification", …) set away from its declared default, in one line naming the first."""
        given = set_away_from_default(self.cfg, names)
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} is {kind} option; a {self.name} run "
                             f"(--model {self.cfg.model}) cannot use it")

    def load_data(self) -> None:
        raise NotImplementedError

    @property
    def train_size(self) -> int:
        raise NotImplementedError

    def describe_data(self) -> str:
        """The splits' sizes, for the run's first log line."""
        raise NotImplementedError

    def build_model(self, **builder_kwargs) -> nn.Module:
        raise NotImplementedError

    def build_network(self, kwargs: dict, options: str = "--model-arg") -> nn.Module:
        """The registered network `cfg.model` built with `kwargs`; a keyword its builder refuses is
        reported in one line naming the `options` that set it."""
        try:
            return create_model(self.cfg.model, **kwargs)
        except (TypeError, ValueError, RuntimeError) as exc:   # a keyword it does not take, a value it cannot
            raise UsageError(f"{options} for {self.cfg.model}: {str(exc).splitlines()[0]}") from None

    def input_batches(self, batch_size: int, epoch: int = 0) -> Iterator[torch.Tensor]:
        """Network inputs of the training split, ready to feed (data-dependent initialisation)."""
        raise NotImplementedError

    def check_model(self, model: nn.Module) -> None:
        """Refuse option combinations the built network cannot train with."""

    def compile(self, net: nn.Module) -> nn.Module:
        """`--compile`: `net` (the network, wrapped for DDP where there are several processes) with what the
        training step calls compiled; by default the whole of it."""
        return torch.compile(net)

    def attach(self, model: nn.Module, net: nn.Module) -> None:
        """The network to train (`net` is it wrapped for DDP where there are several processes, and
        `compile`'s result under `--compile`)."""
        self.model, self.net = model, net

    def optimized_modules(self) -> dict[str, nn.Module]:
        """Optimiser name → the module whose parameters it trains."""
        return {"model": self.model}

    @property
    def chance_loss(self) -> float:
        """The validation loss of a uniform guess (the engine's divergence check compares with it): ln K
        for one K-way cross-entropy; infinite (no check) for a task without classes."""
        classes = getattr(self, "classes", None)
        return math.log(max(len(classes), 2)) if classes else math.inf

    def phases(self, step: int) -> list[str]:
        """The optimisers stepped, in order, at global step `step`."""
        return ["model"]

    # ---- training -----------------------------------------------------------------------------
    def train_batches(self, epoch: int, start_step: int) -> Iterable:
        raise NotImplementedError

    def prepare(self, batch, generator: torch.Generator):
        """A raw batch made ready for the step (augmentation, this process's shard): a tensor or a tuple
        of tensors, sharded by rows."""
        if isinstance(batch, torch.Tensor):
            return self.shard(batch)[0]
        return self.shard(*batch)

    def shard(self, *parts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This process's rows of a batch's tensors: rank r of W takes rows r, r + W, r + 2W, …"""
        if self.world == 1:
            return parts
        return tuple(part[self.rank::self.world] for part in parts)

    def training_step(self, batch, phase: str, generator: torch.Generator) -> StepOutput:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What the task carries from step to step besides the weights (a language model's recurrent
        state between windows), tensors and plain containers: the checkpoint keeps it for --resume."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back what `state_dict` gave, when a run resumes."""

    # ---- evaluation and the run directory ------------------------------------------------------
    def evaluate(self, model: nn.Module, split: str) -> dict:
        """Metrics on "val" (each epoch): at least every key of `record_keys`."""
        raise NotImplementedError

    def test(self, model: nn.Module, out, title: str) -> dict:
        """The final test: the summary's task keys; pictures into the run directory `out` (if any)."""
        raise NotImplementedError

    def resolved(self) -> dict:
        """Settings derived from the data, recorded in config.json's "resolved"."""
        return {}

    def model_meta(self) -> dict:
        """What model.json needs beyond the network's name and builder arguments."""
        return {}

    def plot_curves(self, history: list[dict], path) -> None:
        """The per-epoch curves picture."""


class SplitsTask(Task):
    """A task whose data holds train / val / test splits of tensors (`data.train`, … with `take`):
    seeded, resumable batches (data/loader.py), --train-limit and --test-limit."""

    @property
    def train_size(self) -> int:
        return len(self.data.train)

    def limit_splits(self) -> None:
        """--train-limit: a subset of the training split drawn with the run's seed; --test-limit: the
        first examples of the test split."""
        cfg = self.cfg
        if cfg.train_limit and cfg.train_limit < len(self.data.train):
            subset = torch.randperm(len(self.data.train), generator=torch.Generator().manual_seed(cfg.seed))
            self.data.train = self.data.train.take(subset[:cfg.train_limit])
        if cfg.test_limit and cfg.test_limit < len(self.data.test):
            self.data.test = self.data.test.take(torch.arange(cfg.test_limit))

    def network_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """A batch's inputs as the network reads them (an image task normalises them)."""
        return inputs

    def input_batches(self, batch_size: int, epoch: int = 0):
        for inputs, _ in train_batches(self.data.train, batch_size, seed=self.cfg.seed, epoch=epoch,
                                       device=self.device):
            yield self.network_inputs(inputs)

    def train_batches(self, epoch: int, start_step: int):
        return train_batches(self.data.train, self.cfg.batch_size, seed=self.cfg.seed, epoch=epoch,
                             start_step=start_step, device=self.device)


class ImageTask(SplitsTask):
    """A task whose data is an image `DataBundle` (data/datasets.py): splits, classes, mean and std.

    What its run directory records about the data is the same for every such task, and so is the
    network built with the data's classes and channels; subclasses set `data`, `classes`,
    `input_size` and `normalizer` in `load_data`.
    """

    examples = "images"         # what one example of the data is called, in describe_data
    class_word: str | None = None   # list the classes in describe_data under this word (None: not)

    def describe_data(self) -> str:
        counts = (f"{len(self.data.train)} train / {len(self.data.val)} val / {len(self.data.test)} test "
                  f"{self.examples}")
        return counts + (f", {self.class_word} {', '.join(self.classes)}" if self.class_word else "")

    def network_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.normalizer(inputs)

    def size_keywords(self) -> dict:
        """Builder keywords that the data's size decides (a video network's frames, for example)."""
        return {}

    def build_model(self, **builder_kwargs) -> nn.Module:
        self.model_kwargs = {"num_classes": len(self.classes), "in_chans": self.input_size[0],
                             **self.size_keywords(), **builder_kwargs}
        return self.build_network(self.model_kwargs)

    def resolved(self) -> dict:
        return {"input_size": list(self.input_size), "num_classes": len(self.classes),
                "train_images": len(self.data.train), "val_images": len(self.data.val),
                "test_images": len(self.data.test), "mean": self.data.mean, "std": self.data.std}

    def model_meta(self) -> dict:
        cfg = self.cfg
        return {"classes": self.classes, "mean": self.data.mean, "std": self.data.std,
                "input_size": list(self.input_size), "data": cfg.data,
                "data_args": {"val_size": cfg.val_size, "seed": cfg.seed, "image_size": cfg.image_size},
                "eval": {"batch_size": cfg.eval_batch_size, "channels_last": self.channels_last}}


# Options of image classification, refused by the tasks they mean nothing to; each task adds what else it cannot use.
CLASSIFICATION_OPTIONS = ("mixup", "cutmix", "teacher", "adv", "test_tta", "scale_jitter", "fancy_pca",
                          "random_erasing", "cutout", "gauss_noise")
# Tasks that smooth labels with PyTorch's uniform form only (segmentation, viewpoint) refuse the notes' form too.
CLASSIFICATION_OPTIONS_UNIFORM_SMOOTHING = (*CLASSIFICATION_OPTIONS, "label_smoothing_form")
# Options of the image tasks that have no meaning for sequences.
IMAGE_OPTIONS = (*CLASSIFICATION_OPTIONS, "image_size", "whiten", "pretrain", "bn_recalibrate")


class SequenceTask(Task):
    """A task whose examples are sequences (of tokens or of numbers): no image layout, the image
    options refused."""

    def __init__(self, cfg, *, device, rank, world, channels_last, amp, log):
        # channels_last is an image layout; sequences have none
        super().__init__(cfg, device=device, rank=rank, world=world, channels_last=False, amp=amp, log=log)
        self.refuse_options(IMAGE_OPTIONS, "an image")


class TextTask(SequenceTask):
    """A task whose examples are token sequences (language, translation, cloze): --train-limit a seeded
    subset of its training examples."""

    def limit_examples(self, examples: list) -> list:
        """--train-limit: a subset of `examples` drawn with the run's seed (all of them without it)."""
        limit = self.cfg.train_limit
        if not limit or limit >= len(examples):
            return examples
        subset = torch.randperm(len(examples), generator=torch.Generator().manual_seed(self.cfg.seed))
        return [examples[i] for i in subset[:limit].tolist()]
