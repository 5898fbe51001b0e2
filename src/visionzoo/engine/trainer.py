"""The engine behind `visionzoo train`: one loop for every task, in-memory batches, the run directory.

Every setting lives in `TrainConfig`, the composition of option groups declared with what they
configure (core/options.py: help, choices, parsing and checks; the CLI is generated from them);
what is particular to a kind of learning (its data, batches, losses, phases, metrics, pictures)
lives in its task (visionzoo.tasks). Each epoch trains on the training split, evaluates on the
validation split carved from it, and keeps the best-validation weights by the task's monitored
metric (`keep="last"`: the last epoch's); the test split is read once at the end. The engine
owns AMP, channels_last, DDP, one optimiser / schedule / gradient scaler per trained module,
clipping, AGC, EMA, the NaN stop, progress, TensorBoard and the run directory; `--compile` compiles
the network the training step calls, never the module whose weights are saved, averaged and
evaluated. Checkpoints are written atomically at the end of each epoch (and every
`checkpoint_every` steps); they hold everything that decides the future of the run — weights,
every optimiser's and schedule's state, RNG states, position in the epoch, running sums — so
`resume` after a kill at any point ends with the same weights, bit for bit on CPU, as an
uninterrupted run. Augmentation draws come from a generator seeded by (seed, epoch, step), never
from saved state.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import json
import math
import random
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import registry
from ..core import distributed
from ..core.errors import DataError, UsageError
from ..core.io import json_text, read_torch, write_json, write_safetensors, write_text, write_torch
from ..core.options import (
    at_least,
    check_options,
    count_or_fraction,
    option,
    option_group,
    positive,
    seed_range,
    type_problems,
    within,
)
from ..core.profile import count_macs, count_params
from ..core.progress import progress
from ..core.rundir import claim_output, no_space
from ..core.runtime import DEVICES, bf16_supported, compile_problem, resolve_device, seed_everything
from ..data.datasets import DATA_ROOT_HELP
from ..data.loader import steps_per_epoch
from ..layers.batchnorm import recalibrate_batchnorm, running_batch_norms
from ..tasks.adversarial import AdversarialOptions
from ..tasks.classification import ClassificationOptions, ClassificationTask
from ..tasks.cloze import ClozeOptions, ClozeTask
from ..tasks.detection import DetectionOptions, DetectionTask
from ..tasks.distillation import DistillationOptions
from ..tasks.generative import GenerativeOptions, GenerativeTask
from ..tasks.language import LanguageOptions, LanguageTask
from ..tasks.segmentation import SegmentationOptions, SegmentationTask
from ..tasks.sequence_regression import SequenceRegressionTask
from ..tasks.techniques import AugmentationOptions
from ..tasks.translation import TranslationOptions, TranslationTask
from ..tasks.video import VideoOptions, VideoTask
from ..tasks.viewpoint import ViewpointOptions, ViewpointTask
from .agc import adaptive_clip_, clipped_parameters
from .ema import ModelEMA
from .finetune import freeze_backbone, load_for_finetuning
from .model_options import (
    InitialisationOptions,
    NormalisationOptions,
    RegularisationOptions,
    after_optimizer,
    apply_model_options,
    builder_kwargs,
    structure_options,
)
from .optim import (
    FULL_RATE_STEPS,
    OPTIMIZERS,
    PEAK_LR,
    SHORTEST_RUN_FRACTION,
    WD_MODES,
    build_optimizer,
    default_lr,
    resolved_wd_mode,
    scaled_lr,
)
from .recipes import RECIPES
from .schedules import ANNEALING, SCHEDULES, WARMUP_FORMS, LRSchedule

# A finite loss this many times the first epoch's, or ln K, is reported as divergence.
DIVERGENCE_FACTOR = 10
# The task of a run follows from its model's registry card.
TASK_CLASSES = {"classification": ClassificationTask, "segmentation": SegmentationTask, "viewpoint": ViewpointTask,
                "video": VideoTask, "generative": GenerativeTask, "language": LanguageTask,
                "detection": DetectionTask, "translation": TranslationTask, "cloze": ClozeTask,
                "sequence-regression": SequenceRegressionTask}
# The option groups that belong to one task: set away from its default, an option of another task's group is
# refused in one line (a --bptt on an image classifier, a --d-steps on a segmentation network) instead of ignored.
TASK_OPTIONS = {"segmentation": SegmentationOptions, "viewpoint": ViewpointOptions, "video": VideoOptions,
                "generative": GenerativeOptions, "language": LanguageOptions, "detection": DetectionOptions,
                "translation": TranslationOptions, "cloze": ClozeOptions}
SWITCH = ("auto", "on", "off")


def _registered(name: str) -> None:
    registry.get_entry(name)  # raises, naming the close matches


def default_data(model: str) -> str:
    """The --data a run of `model` trains on when none is given: its card's, else its task's."""
    entry = registry.get_entry(model)
    return entry.default_data or TASK_CLASSES[entry.task].default_data


def _key_value(text: str):
    """KEY=VALUE with VALUE read as JSON (false, [4, 8]) or a Python literal (False, None, (4, 8)), else
    kept as text (shortcut=A): a builder never receives the string 'False' for a switch."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--model-arg {text!r}: write KEY=VALUE, e.g. shortcut=A")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        pass
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return key, value


def _epoch_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--milestones {text!r}: give epochs separated by commas, e.g. 30,60,80") from None


def _betas(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2:
        raise UsageError(f"--betas {text!r}: give Adam's two decay rates separated by a comma, e.g. 0.5,0.999")
    return values


def _decay_rates(betas) -> str | None:
    return None if all(0 <= beta < 1 for beta in betas) else "each β must lie in [0, 1)"


def _increasing(epochs) -> str | None:
    if sorted(epochs) != list(epochs) or any(epoch <= 0 for epoch in epochs):
        return "give increasing positive epochs, e.g. 30,60,80"
    return None


@option_group("model and data")
class ModelDataOptions:
    recipe: str | None = option(None, f"a named set of settings ({', '.join(RECIPES)}; `--recipe list` describes "
                                      "them); explicit options win", metavar="NAME")
    model: str = option("resnet9_slim", "registered name (default {default}; see `visionzoo models`)",
                        check=_registered)
    model_args: dict = option({}, "builder keyword, repeatable", parse=_key_value, metavar="KEY=VALUE",
                              flag="--model-arg")
    data: str | None = option(None, "data set spec (default: the model's task's, "
                                    f"{', '.join(f'{task.default_data} for {name}' for name, task in TASK_CLASSES.items())}"
                                    ", or the one its card names); classifiers also read mnist, kmnist, cifar10, "
                                    "cifar100, svhn, digits, folder:PATH and fake; the README lists every task's specs",
                              metavar="SPEC")
    data_dir: str | None = option(None, DATA_ROOT_HELP)
    download: bool = option(False, "fetch a missing data set")
    image_size: int | None = option(None, "resize images to this square side", check=positive)
    train_limit: int | None = option(None, "train on a seeded subset of N examples (a language run: the first N "
                                           "lines of its text's training part; quick experiments)", metavar="N",
                                     check=positive)
    test_limit: int | None = option(None, "final test on the first N test examples (a language run: lines) only "
                                          "(quick experiments)", metavar="N", check=positive)
    val_size: float = option(5000, "validation images carved from train: count or fraction (default {default}; the "
                                   "text data sets keep their fixed validation split)", check=count_or_fraction)


@option_group("optimisation")
class OptimisationOptions:
    epochs: int = option(7, "default {default}", check=positive)
    batch_size: int = option(256, "global batch (default {default})", check=positive)
    lr: float | None = option(None, f"peak learning rate (default {PEAK_LR}, × the run's steps / {FULL_RATE_STEPS} "
                                    f"below {FULL_RATE_STEPS} steps, at least {PEAK_LR * SHORTEST_RUN_FRACTION:g}: "
                                    f"short runs diverged at {PEAK_LR})", check=positive)
    optimizer: str = option("nesterov", "default {default}", choices=OPTIMIZERS)
    momentum: float = option(0.9, "default {default}", check=within("[0, 1)"))
    betas: list | None = option(None, "Adam's decay rates β1,β2 (default torch's 0.9,0.999; GANs take 0.5,0.999 "
                                      "after Radford et al.)", parse=_betas, metavar="B1,B2", check=_decay_rates)
    weight_decay: float = option(5e-4, "on weights, not biases/norms (default {default})", check=at_least(0))
    schedule: str = option("onecycle", "default {default}", choices=SCHEDULES)
    lr_floor: float = option(0.0, f"{' and '.join(ANNEALING)} anneal to this fraction of the peak rate (SGDR's "
                                  "η_min/η; default {default})", metavar="FRACTION", check=within("[0, 1)"))
    warmup_epochs: float = option(0.0, "linear warmup length (default {default})", check=at_least(0))
    step_size: int = option(30, "epochs between step decays (default {default})", check=positive)
    gamma: float = option(0.1, "decay factor of step, multistep and plateau (default {default})", check=positive)
    clip_grad: float | None = option(None, "clip the global gradient norm", check=positive)
    milestones: list = option([], "multistep: epochs where the rate is multiplied by γ", parse=_epoch_list,
                              metavar="E1,E2,...", check=_increasing)
    plateau_patience: int = option(2, "plateau: epochs without a lower val loss before the rate is multiplied "
                                      "by γ (default {default})", metavar="N", check=at_least(0))
    wd_mode: str | None = option(None, "weight decay as L2 in the loss or decoupled (default: decoupled for adamw, "
                                       "else l2)", choices=WD_MODES)
    agc: float | None = option(None, "adaptive gradient clipping, unit-wise (NFNet; classifier excluded)",
                               metavar="λ", check=positive)
    ema: float | None = option(None, "evaluate and save an exponential moving average of the weights (0 = off, "
                                     "e.g. over a recipe's)", metavar="DECAY",
                               check=within("[0, 1)", "a decay such as 0.999, or 0 for none"))
    early_stop: int | None = option(None, "stop after PATIENCE epochs without a better val top-1; the best "
                                          "weights are kept", metavar="PATIENCE", check=positive)
    keep: str = option("best", "weights tested and saved: the best validation epoch's (default) or the last "
                               "epoch's (for schedules that anneal to zero, where a small validation split's "
                               "pick is noise)", choices=("best", "last"))
    bn_recalibrate: bool = option(False, "before the final test, set every BN's running statistics to the training "
                                         "set's: one pass, μ = E[μ_B], σ² = m/(m−1)·E[σ²_B] (Ioffe & Szegedy, Alg. 2)")

    def check_combination(self) -> None:
        if self.optimizer == "adamw" and self.wd_mode == "l2":
            raise UsageError("--optimizer adamw decouples weight decay by definition; for Adam with L2 use "
                             "--optimizer adam --wd-mode l2")
        if self.betas and self.optimizer not in ("adam", "adamw"):
            raise UsageError(f"--betas is for --optimizer adam or adamw, not {self.optimizer}")
        if self.schedule == "multistep" and not self.milestones:
            raise UsageError("--schedule multistep needs --milestones, e.g. --milestones 30,60,80")
        if self.milestones and self.schedule != "multistep":
            raise UsageError(f"--milestones are where --schedule multistep decays; --schedule {self.schedule} has "
                             "none: give --schedule multistep, or leave --milestones out")
        if self.warmup_epochs > self.epochs:
            raise UsageError(f"--warmup-epochs {self.warmup_epochs:g} is longer than the run (--epochs {self.epochs}): "
                             f"the rate would still be rising when it ends; give --warmup-epochs {self.epochs} or less")
        if self.lr_floor and self.schedule not in ANNEALING:
            raise UsageError(f"--lr-floor is where {' and '.join(ANNEALING)} anneal to; --schedule {self.schedule} "
                             f"does not anneal: give --schedule {' or '.join(ANNEALING)}, or leave --lr-floor out")


@option_group("transfer learning")
class TransferOptions:
    finetune: str | None = option(None, "start from a visionzoo run/.safetensors or a torchvision/timm state_dict "
                                        "of the same network; a head of another size is replaced", metavar="WEIGHTS")
    finetune_stem: str = option("data", "ImageNet weights on small images: data (default) builds the network for "
                                        "the data's size (its small-input stem, where it has one); keep builds it as at "
                                        "its paper size, with the file's stem; map resizes the file's stem kernels onto "
                                        "the small-input stem (area-scaled)", choices=("data", "keep", "map"))
    freeze_backbone: bool = option(False, "feature extraction: only the head trains")
    backbone_lr_mult: float = option(1.0, "backbone learning rate = M × --lr (default {default})", metavar="M",
                                     check=positive)

    def check_combination(self) -> None:
        if self.freeze_backbone and not self.finetune:
            raise UsageError("--freeze-backbone needs --finetune CHECKPOINT: a random backbone is no feature extractor")


@option_group("large batches", "under torchrun, --batch-size is the global batch of all workers")
class LargeBatchOptions:
    lr_scale_batch: int | None = option(None, "linear scaling rule: learning rate = --lr × batch/B0 (Goyal: 256)",
                                        metavar="B0", check=positive)
    sync_bn: bool = option(False, "BN statistics over the global batch, CUDA workers only (default: per worker, "
                                  "as in Goyal et al.)")
    warmup_form: str = option("zero", "zero (default: the warmup rises from near 0 to the rate) or goyal (gradual "
                                      "warmup from --lr to --lr × k, k = batch/B0; needs --lr-scale-batch)",
                              choices=WARMUP_FORMS)

    def check_combination(self) -> None:
        if self.warmup_form != "goyal":
            return
        if not self.lr_scale_batch or not self.warmup_epochs:
            raise UsageError("--warmup-form goyal rises from --lr to k × --lr: it needs --lr-scale-batch B0 "
                             "(k = batch/B0) and --warmup-epochs, e.g. --lr-scale-batch 256 --warmup-epochs 5")
        if self.batch_size <= self.lr_scale_batch:
            raise UsageError(f"--warmup-form goyal: --batch-size {self.batch_size} ≤ --lr-scale-batch "
                             f"{self.lr_scale_batch} gives k ≤ 1, nothing to warm up to; use a larger batch "
                             "or --warmup-form zero")


@option_group("speed and device")
class DeviceOptions:
    amp: str = option("auto", "bf16 autocast on CPU when supported, AMP on CUDA (default {default})", choices=SWITCH)
    channels_last: str = option("auto", "default {default} (on)", choices=SWITCH)
    device: str = option("auto", "default {default}: CUDA when present", choices=DEVICES)
    eval_batch_size: int = option(500, "default {default}", check=positive)
    compile: str = option("auto", "torch.compile the network the training step runs; saved and evaluated weights "
                                  "stay those of the plain network (default {default}: on only where a CUDA device "
                                  "is used, off on CPU)", choices=SWITCH)


@option_group("run directory")
class RunOptions:
    out: str | None = option(None, "write the run directory here")
    overwrite: bool = option(False, "replace the run already in --out (its files are deleted first)")
    checkpoint_every: int = option(0, "also checkpoint every N steps (default: epochs only)", metavar="N",
                                   check=at_least(0))
    seed: int = option(0, "default {default}", check=seed_range)
    tensorboard: bool = option(False, "write TensorBoard events: train/loss and lr/… every --tensorboard-every "
                                      "steps, the epoch's train_epoch/… and val/…, test/…, diagnostics/…")
    tensorboard_every: int = option(20, "TensorBoard: the step's loss and learning rates every N steps, one host "
                                        "sync each (default {default})", metavar="N", check=positive)
    diagnostics: bool = option(False, "record per-layer gradient norms, activation percentiles, dead ReLUs")
    quiet: bool = option(False, "no progress bar or epoch lines")


@dataclass
class TrainConfig(ClozeOptions, TranslationOptions, DetectionOptions, LanguageOptions, GenerativeOptions,
                  VideoOptions, ViewpointOptions, SegmentationOptions, RegularisationOptions, NormalisationOptions,
                  InitialisationOptions, AdversarialOptions, RunOptions, DeviceOptions, LargeBatchOptions,
                  TransferOptions, DistillationOptions, AugmentationOptions, ClassificationOptions,
                  OptimisationOptions, ModelDataOptions):
    """Every setting of a run, flat: the option groups of the engine, the tasks and the network options.

    The groups are listed last first: a dataclass takes the fields of its last base first, and
    config.json and `visionzoo train --help` follow the field order, model and data first.
    """

    def validate(self) -> None:
        """Raise UsageError, one line naming the option, for a value or combination that cannot work."""
        check_options(self)

    def check_combination(self) -> None:
        """Combinations of values from several groups."""
        if self.adv and (self.mixup or self.cutmix or self.teacher):
            raise UsageError("--adv cannot be combined with --mixup/--cutmix/--teacher: adversarial training uses "
                             "hard labels")
        if self.max_norm and self.norm == "spectral":
            raise UsageError("--max-norm with --norm spectral: W/σ(W) has no per-unit norm to clamp; use one of them")
        if self.compile_players != "all" and self.compile == "off":
            raise UsageError(f"--compile-players {self.compile_players} chooses what --compile compiles, and "
                             "--compile is off: give --compile on or leave --compile-players out")


class NonFiniteLoss(RuntimeError):
    pass


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped the run after a checkpoint; `signum` says which."""
    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum


def saved_config(run: Path) -> dict:
    """The options a run's config.json holds, checked: a JSON object naming the model, each value of its
    option's type (DataError naming the file otherwise; UsageError where there is none)."""
    path = run / "config.json"
    if not path.is_file():
        raise UsageError(f"--resume {run}: no config.json there; give a run directory written by `visionzoo train --out`")
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: damaged ({exc}); resume from a run directory `visionzoo train` wrote") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), str):
        raise DataError(f"{path}: no \"model\" in it; not the configuration `visionzoo train` wrote")
    saved = {key: value for key, value in saved.items() if key in TrainConfig.__dataclass_fields__}
    problems = type_problems(TrainConfig, saved)
    if problems:
        raise DataError(f"{path}: {problems[0]}; not the configuration `visionzoo train` wrote")
    return saved


class Trainer:
    """The engine: builds the task, its network and optimisers, and runs the loop of the docstring."""

    def __init__(self, cfg: TrainConfig, resume: str | None = None):
        if resume:
            saved = saved_config(Path(resume))
            cfg = TrainConfig(**{**saved, "out": str(resume), "quiet": cfg.quiet})
            try:
                cfg.validate()
            except UsageError as exc:
                raise DataError(f"{Path(resume) / 'config.json'}: {exc}; not the configuration `visionzoo train` "
                                "wrote") from None
        else:
            cfg.validate()
            if cfg.data is None:   # resolved here, so config.json and model.json name the data set
                cfg = dataclasses.replace(cfg, data=default_data(cfg.model))
        self.cfg = cfg
        self.out = Path(cfg.out) if cfg.out else None
        self.rank, self.world, local_rank = distributed.world_info()
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        distributed.init(self.device)
        if cfg.batch_size % self.world:
            raise UsageError(f"--batch-size {cfg.batch_size} must be divisible by the {self.world} processes")
        self.amp = cfg.amp == "on" or (cfg.amp == "auto" and (self.device.type == "cuda" or bf16_supported(self.device)))
        self.channels_last = cfg.channels_last != "off"
        self.is_main = self.rank == 0
        self.compiled = cfg.compile == "on" or (cfg.compile == "auto" and self.device.type == "cuda")
        problem = compile_problem(self.device) if self.compiled else None
        if problem and cfg.compile == "on":   # refused before the run, not at its first step
            raise UsageError(f"--compile on: torch.compile cannot build kernels for {self.device} ({problem}); "
                             "use --compile off")
        if problem:
            self.compiled = False
            self._log(f"--compile auto: training uncompiled, torch.compile cannot build kernels here ({problem})")
        self.resume_from = Path(resume) if resume else None

        seed_everything(cfg.seed)
        task_name = registry.get_entry(cfg.model).task
        if task_name not in TASK_CLASSES:
            raise UsageError(f"--model {cfg.model} is a {task_name} network; `visionzoo train` has no "
                             f"{task_name} task yet (tasks: {', '.join(TASK_CLASSES)})")
        self.task = TASK_CLASSES[task_name](cfg, device=self.device, rank=self.rank, world=self.world,
                                            channels_last=self.channels_last, amp=self.amp, log=self._log)
        self.channels_last = self.task.channels_last   # a task may refuse the layout (video: 5-D tensors)
        for owner, group in TASK_OPTIONS.items():
            if owner != task_name:
                self.task.refuse_options([field.name for field in dataclasses.fields(group)], f"a {owner}")
        self.task.load_data()
        model = self.task.build_model(**builder_kwargs(cfg), **cfg.model_args)
        self.input_size = self.task.input_size   # after the build: a generator's input is its noise z
        self.model_kwargs = self.task.model_kwargs
        model = apply_model_options(model, cfg, input_size=self.input_size, input_batches=self.task.input_batches,
                                    device=self.device, resume=bool(resume), log=self._log)
        self.source_classes = load_for_finetuning(model, cfg.model, cfg.finetune, cfg.finetune_stem) \
            if cfg.finetune else None
        if cfg.freeze_backbone:
            freeze_backbone(model)
        self.task.check_model(model)
        if cfg.bn_recalibrate and not running_batch_norms(model):
            raise UsageError(f"--bn-recalibrate: {cfg.model} has no batch normalisation with running statistics")
        self.steps_per_epoch = steps_per_epoch(self.task.train_size, cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        # no --lr: the default peak, lower for runs too short to recover from a spike (engine/optim.py)
        self.base_lr = default_lr(self.total_steps) if cfg.lr is None else cfg.lr
        self.lr = scaled_lr(self.base_lr, cfg.batch_size, cfg.lr_scale_batch)  # global batch of all workers
        self.set_model(model)
        self.ema = ModelEMA(self.model, cfg.ema) if cfg.ema else None
        # Position and running state of the run; all of it goes into the checkpoint.
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        # the task's running sums (record_keys) and their count; on the device, so that a step never waits for the host
        self.running = torch.zeros(len(self.task.record_keys) + 1, dtype=torch.float64, device=self.device)
        self.history: list[dict] = []
        self.monitor = f"val_{self.task.monitor}"
        self.best = {self.monitor: None, "epoch": 0}
        self.best_state: dict | None = None
        self.train_seconds = 0.0
        self.stop_requested = False
        self.phase = "model"
        self.writer = None
        # Extensions (diagnostics, …): objects with any of after_backward(trainer),
        # on_epoch_end(trainer, record), on_finish(trainer, summary).
        self.hooks: list = []
        if cfg.diagnostics:
            from .diagnostics import TrainingDiagnostics
            self.hooks.append(TrainingDiagnostics(self))

    def set_model(self, model: torch.nn.Module) -> None:
        """Train `model`: placed on the device, wrapped for DDP, with fresh optimisers, schedules and
        gradient scalers, one per module the task trains (also used to train a given network in place)."""
        cfg = self.cfg
        if cfg.sync_bn and self.world > 1:  # otherwise BN statistics stay per worker (Goyal et al.)
            if self.device.type != "cuda":
                raise UsageError("--sync-bn needs CUDA workers (torch's SyncBatchNorm has no CPU kernel); "
                                 "leave it off to keep BN statistics per worker")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.compiled:   # only the step's calls: state_dict, EMA and evaluation use the plain self.model
            self.net = self.task.compile(self.net)
        self.task.attach(self.model, self.net)
        self.trained_modules = self.task.optimized_modules()
        self.optimizers, self.schedulers, self.scalers, self.agc_parameters = {}, {}, {}, {}
        agc_parameters = clipped_parameters(self.model)
        for name, module in self.trained_modules.items():
            self.optimizers[name] = optimizer = build_optimizer(module, cfg, self.lr)
            after_optimizer(optimizer, module, cfg)
            schedule = LRSchedule(  # its own object: LambdaLR saves the plateau state it carries
                patience=cfg.plateau_patience, total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch,
                schedule=cfg.schedule, warmup_steps=int(cfg.warmup_epochs * self.steps_per_epoch),
                warmup_from=self.base_lr / self.lr if cfg.warmup_form == "goyal" else None,
                step_size=cfg.step_size, gamma=cfg.gamma, milestones=list(cfg.milestones), final_factor=cfg.lr_floor)
            self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
            self.scalers[name] = torch.amp.GradScaler(
                "cuda", enabled=self.amp and self.device.type == "cuda" and not bf16_supported(self.device))
            trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
            self.agc_parameters[name] = [p for p in agc_parameters if id(p) in trained]

    # The optimiser, schedule and scaler of the phase being run (the only one for a classifier).
    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.optimizers[self.phase]

    @property
    def scheduler(self):
        return self.schedulers[self.phase]

    @property
    def scaler(self) -> torch.amp.GradScaler:
        return self.scalers[self.phase]

    @property
    def data(self):
        return self.task.data

    @property
    def normalizer(self):
        return self.task.normalizer

    @property
    def eval_model(self) -> torch.nn.Module:
        """What is evaluated and saved: the weight average with --ema, else the trained weights."""
        return self.ema.module if self.ema else self.model

    @property
    def stopped_early(self) -> bool:
        """--early-stop: `early_stop` epochs in a row without a better monitored validation metric."""
        return bool(self.cfg.early_stop) and self.epoch - self.best["epoch"] >= self.cfg.early_stop

    def _improved(self, value: float) -> bool:
        if self.task.monitor_mode == "last":   # a task with no measure to select by: every epoch is the newest
            return True
        best = self.best[self.monitor]
        return best is None or (value > best if self.task.monitor_mode == "max" else value < best)

    # ---- checkpoints -------------------------------------------------------------------------
    def _checkpoint_state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: sched.state_dict() for name, sched in self.schedulers.items()},
            "scalers": {name: scaler.state_dict() for name, scaler in self.scalers.items()},
            "ema": self.ema.state_dict() if self.ema else {},
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "running": self.running.cpu().clone(), "history": self.history, "best": self.best,
            "train_seconds": self.train_seconds, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy_rng": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            "python_rng": json.dumps(random.getstate()),
            "task": self.task.state_dict(),
        }

    def save_checkpoint(self) -> None:
        if self.is_main and self.out:
            write_torch(self.out / "checkpoint.pt", self._checkpoint_state())

    def load_checkpoint(self, path: Path) -> None:
        if not path.exists():
            raise UsageError(f"--resume: {path} does not exist (the run saved no checkpoint yet); start it again without --resume")
        try:
            state = read_torch(path)
        except UsageError as exc:
            raise UsageError(f"--resume: {exc}") from None
        if not isinstance(state, dict) or set(state.get("optimizers", {})) != set(self.optimizers):
            raise UsageError(f"--resume: {path} holds no state for the optimisers {', '.join(self.optimizers)} "
                             "(written by an older visionzoo, or for another task); start the run again")
        self._check_checkpoint(state, path)
        try:
            self.model.load_state_dict(state["model"])
            if self.ema:
                self.ema.load_state_dict(state["ema"])
            for name in self.optimizers:
                self.optimizers[name].load_state_dict(state["optimizers"][name])
                self.schedulers[name].load_state_dict(state["schedulers"][name])
                self.scalers[name].load_state_dict(state["scalers"][name])
            self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
            self.global_step = state["global_step"]
            self.running = state["running"].clone().to(self.device)
            self.history, self.best = state["history"], state["best"]
            self.train_seconds = state["train_seconds"]
            torch.set_rng_state(state["torch_rng"])
            if state["cuda_rng"]:
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            np_state = list(np.random.get_state())
            np_state[1] = state["numpy_rng"].numpy().astype(np.uint32)
            np.random.set_state(tuple(np_state))
            py_state = json.loads(state["python_rng"])
            random.setstate((py_state[0], tuple(py_state[1]), py_state[2]))
            self.task.load_state_dict(state.get("task", {}))   # absent from checkpoints of older versions
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            raise UsageError(f"--resume: {path} is damaged ({str(exc).strip().splitlines()[0]}); "
                             "start the run again") from None

    # what a checkpoint must hold, and of which type, before any of it is loaded
    _CHECKPOINT_FIELDS = {"model": dict, "optimizers": dict, "schedulers": dict, "scalers": dict, "ema": dict,
                          "epoch": int, "step_in_epoch": int, "global_step": int, "running": torch.Tensor,
                          "history": list, "best": dict, "train_seconds": (int, float), "torch_rng": torch.Tensor,
                          "cuda_rng": list, "numpy_rng": torch.Tensor, "python_rng": str}

    def _check_checkpoint(self, state: dict, path: Path) -> None:
        """UsageError, one line, unless `state` has this run's fields, types, weight shapes and position."""
        def damaged(what: str):
            return UsageError(f"--resume: {path} is damaged ({what}); start the run again")
        for key, kind in self._CHECKPOINT_FIELDS.items():
            if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
                raise damaged(f"{key} is missing or not a {getattr(kind, '__name__', 'number')}")
        own = self.model.state_dict()
        saved = state["model"]
        if set(saved) != set(own):
            raise damaged(f"its weights are those of another network, e.g. {sorted(set(saved) ^ set(own))[0]}")
        for name, tensor in own.items():
            if not isinstance(saved[name], torch.Tensor) or saved[name].shape != tensor.shape:
                raise damaged(f"{name} is not a tensor of shape {tuple(tensor.shape)}")
        if not (0 <= state["epoch"] <= self.cfg.epochs and 0 <= state["step_in_epoch"] <= self.steps_per_epoch
                and state["global_step"] >= 0):
            raise damaged(f"epoch {state['epoch']}, step {state['step_in_epoch']} lie outside the run")
        if state["running"].shape != self.running.shape:
            raise damaged("its running sums belong to another task")

    # ---- the run directory -------------------------------------------------------------------
    def model_meta(self) -> dict:
        return {"name": self.cfg.model, "kwargs": self.model_kwargs, "task": self.task.name,
                **self.task.model_meta(), "options": structure_options(self.cfg)}

    def _write_start(self) -> None:
        if not (self.is_main and self.out):
            return
        self.out.mkdir(parents=True, exist_ok=True)
        config = dataclasses.asdict(self.cfg)
        config.update(resolved={"device": str(self.device), "amp": self.amp, "channels_last": self.channels_last,
                                "compile": self.compiled,
                                "lr": self.lr, "wd_mode": resolved_wd_mode(self.cfg.optimizer, self.cfg.wd_mode),
                                "finetune_source_classes": self.source_classes, "task": self.task.name,
                                "world_size": self.world, "steps_per_epoch": self.steps_per_epoch,
                                **self.task.resolved()})
        write_json(self.out / "config.json", config)
        write_json(self.out / "model.json", self.model_meta())
        if self.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UsageError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.writer = SummaryWriter(str(self.out / "tensorboard"))

    def _write_epoch(self, record: dict) -> None:
        if not (self.is_main and self.out):
            return
        write_text(self.out / "metrics.jsonl", "".join(json_text(h) + "\n" for h in self.history))
        self.task.plot_curves(self.history, self.out / "curves.png")
        if self.writer:
            # one x axis for every tag, the global step, so epoch points line up with the step curves
            for key, value in record.items():
                group, _, metric = key.partition("_")
                if group in ("train", "val"):
                    self.writer.add_scalar(f"{'train_epoch' if group == 'train' else 'val'}/{metric}", value,
                                           self.global_step)
            self.writer.flush()

    def _write_step(self, loss: torch.Tensor) -> None:
        """TensorBoard's per-step curves: this step's loss and every optimiser's learning rates."""
        self.writer.add_scalar("train/loss", loss.item(), self.global_step)
        for phase, optimizer in self.optimizers.items():
            rates = [group["lr"] for group in optimizer.param_groups]
            if len(set(rates)) == 1:   # groups that differ only in weight decay share one curve
                self.writer.add_scalar(f"lr/{phase}", rates[0], self.global_step)
                continue
            for i, rate in enumerate(rates):
                self.writer.add_scalar(f"lr/{phase}/group{i}", rate, self.global_step)

    # ---- the loop ----------------------------------------------------------------------------
    def _call_hooks(self, event: str, *args) -> None:
        for hook in self.hooks:
            if hasattr(hook, event):
                getattr(hook, event)(self, *args)

    def _log(self, text: str) -> None:
        if self.is_main and not self.cfg.quiet:
            print(text, flush=True)

    def _on_sigint(self, signum, frame):
        self.stop_requested = True
        self.stop_signal = signum

    def _optimise(self, phase: str, loss: torch.Tensor) -> None:
        """Backward pass and step of one phase's optimiser: gradient scaling, clipping, AGC."""
        cfg, self.phase = self.cfg, phase
        optimizer, scaler = self.optimizers[phase], self.scalers[phase]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        self._call_hooks("after_backward")
        if cfg.clip_grad or cfg.agc:
            scaler.unscale_(optimizer)
        if cfg.agc:
            adaptive_clip_(self.agc_parameters[phase], cfg.agc)
        if cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.trained_modules[phase].parameters(), cfg.clip_grad)
        scaler.step(optimizer)
        scaler.update()

    def train_epoch(self) -> None:
        cfg = self.cfg
        self.net.train()
        check_every = 1 if self.device.type == "cpu" else 25
        started = time.perf_counter()
        seen = 0

        def status() -> dict:   # read only when shown: one host sync per display, not per step
            rate = seen / max(time.perf_counter() - started, 1e-9)
            return {"loss": f"{self.running[0].item() / max(self.running[-1].item(), 1):.3f}",
                    "img/s": f"{rate:.0f}"}
        # a bar on a terminal, a plain line every 30 s in a log; the epoch line follows it
        bar = progress(total=self.steps_per_epoch, initial=self.step_in_epoch, unit="steps", status=status,
                       desc=f"epoch {self.epoch + 1}/{cfg.epochs}", quiet=not self.is_main or cfg.quiet, final=False)
        for raw in self.task.train_batches(self.epoch, self.step_in_epoch):
            generator = torch.Generator(self.device).manual_seed(
                (cfg.seed * 1_000_003 + self.epoch) * 1_000_003 + self.step_in_epoch)
            batch = self.task.prepare(raw, generator)
            for phase in self.task.phases(self.global_step):
                step = self.task.training_step(batch, phase, generator)
                self._optimise(phase, step.loss)
            with warnings.catch_warnings():  # schedules count batches, also those where a phase did not step
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
                for scheduler in self.schedulers.values():
                    scheduler.step()
            if self.ema:
                self.ema.update(self.model)
            self.running[:-1] += torch.stack([step.sums[key] for key in self.task.record_keys])
            self.running[-1] += step.count
            self.step_in_epoch += 1
            self.global_step += 1
            seen += step.count * self.world
            if self.writer and self.global_step % cfg.tensorboard_every == 0:
                self._write_step(step.loss)
            if self.global_step % check_every == 0 and not math.isfinite(step.loss.item()):
                raise NonFiniteLoss(f"loss became {step.loss.item()} at epoch {self.epoch + 1}, step "
                                    f"{self.step_in_epoch}")
            bar.update(1)
            if distributed.broadcast_flag(self.stop_requested, self.device):
                self.train_seconds += time.perf_counter() - started
                raise Interrupted(getattr(self, "stop_signal", signal.SIGINT))
            if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0 \
                    and self.step_in_epoch < self.steps_per_epoch:
                self.train_seconds += time.perf_counter() - started
                started, seen = time.perf_counter(), 0
                self.save_checkpoint()
        bar.close()
        self.train_seconds += time.perf_counter() - started

    def end_epoch(self, seconds: float) -> None:
        totals = distributed.all_reduce_sum(self.running.to(self.device)).cpu()
        val = self.task.evaluate(self.eval_model, "val")
        keys = self.task.record_keys
        shown = dict.fromkeys((*keys, self.task.monitor, *self.task.val_keys))   # validation keys recorded
        record = {"epoch": self.epoch + 1,
                  **{f"train_{key}": totals[i].item() / totals[-1].item() for i, key in enumerate(keys)},
                  # the monitored value may be a validation-only metric (a detector's mAP)
                  **{f"val_{key}": val[key] for key in shown},
                  "lr": self.optimizers[next(iter(self.optimizers))].param_groups[0]["lr"],
                  "seconds": round(seconds, 3)}
        if not math.isfinite(record["train_loss"]):
            raise NonFiniteLoss(f"loss became {record['train_loss']} in epoch {self.epoch + 1}")
        # a finite loss is computed before the step: the last step can still leave NaN or infinite weights
        if not all(torch.isfinite(value).all() for value in self.eval_model.state_dict().values()
                   if value.is_floating_point()):
            raise NonFiniteLoss(f"the weights became non-finite in epoch {self.epoch + 1}")
        warning = self._divergence(record)
        if warning:
            record["warning"] = warning
        self.history.append(record)
        self._call_hooks("on_epoch_end", record)
        rate = totals[-1].item() / max(seconds, 1e-9)
        if self._improved(record[self.monitor]):
            self.best = {self.monitor: record[self.monitor], "epoch": record["epoch"]}
            self.best_state = {k: v.detach().clone() for k, v in self.eval_model.state_dict().items()}
            if self.is_main and self.out:
                write_safetensors(self.out / "best.safetensors", self.eval_model.state_dict())
        for scheduler in self.schedulers.values():
            scheduler.lr_lambdas[0].epoch_end(record["val_loss"], scheduler)
        self.epoch += 1
        self.step_in_epoch = 0
        self.running.zero_()
        self._write_epoch(record)
        self.save_checkpoint()
        train = " ".join(f"{key} {record['train_' + key]:.4f}" for key in keys)
        val = " ".join(f"{key} {record['val_' + key]:.4f}" for key in shown)
        self._log(f"epoch {record['epoch']:>3}/{self.cfg.epochs}  train {train} | val {val}"
                  f" | lr {record['lr']:.4g} | {seconds:.1f}s {rate:.0f} img/s")
        if warning:
            self._log(f"warning: {warning}")

    def _divergence(self, record: dict) -> str | None:
        """Why a finite epoch looks diverged, or None: its training loss above DIVERGENCE_FACTOR × the first
        epoch's, or its validation loss above DIVERGENCE_FACTOR × the task's chance loss (a uniform guess: ln K for K classes)."""
        first = self.history[0]["train_loss"] if self.history else record["train_loss"]
        if record["train_loss"] > DIVERGENCE_FACTOR * first:
            return (f"the training loss {record['train_loss']:.4g} is over {DIVERGENCE_FACTOR}× the first epoch's "
                    f"({first:.4g}): the run is diverging; try a lower --lr")
        uniform = self.task.chance_loss
        if record["val_loss"] > DIVERGENCE_FACTOR * uniform:
            return (f"the validation loss {record['val_loss']:.4g} is over {DIVERGENCE_FACTOR}× {uniform:.3g}, the "
                    f"loss of a uniform guess: the run is diverging; try a lower --lr")
        return None

    def finish(self) -> dict:
        cfg = self.cfg
        if cfg.keep == "best":
            if self.best_state is None and self.out and (self.out / "best.safetensors").exists():
                from safetensors.torch import load_file  # resumed after the best epoch
                self.best_state = load_file(str(self.out / "best.safetensors"))
            if self.best_state is not None:
                self.eval_model.load_state_dict(self.best_state)
        if cfg.bn_recalibrate:  # the saved model.safetensors carries these statistics too
            batches = recalibrate_batchnorm(self.eval_model, self.task.input_batches(cfg.batch_size))
            self._log(f"BN statistics recalibrated over {batches} training batches")
        out = self.out if self.is_main else None
        test = self.task.test(self.eval_model, out, f"{cfg.model} on {cfg.data}")
        summary = {"model": cfg.model, "task": self.task.name, "data": cfg.data, "epochs": cfg.epochs,
                   "params": count_params(self.model), "macs": self._macs(),
                   **test,
                   "train_seconds": round(self.train_seconds, 3),
                   "train_img_s": round(self.epoch * self.steps_per_epoch * cfg.batch_size / max(self.train_seconds, 1e-9), 1),
                   "best_epoch": self.best["epoch"], f"best_{self.monitor}": self.best[self.monitor],
                   "kept": cfg.keep, "epochs_run": self.epoch, "stopped_early": self.stopped_early,
                   f"final_{self.monitor}": self.history[-1][self.monitor] if self.history else None,
                   "device": str(self.device), "amp": self.amp, "channels_last": self.channels_last,
                   "compile": self.compiled, "world_size": self.world, "seed": cfg.seed}
        if out is not None:
            write_safetensors(self.out / "model.safetensors", self.eval_model.state_dict())
            write_json(self.out / "summary.json", summary)
        self._call_hooks("on_finish", summary)
        if self.writer:
            for key, value in test.items():
                if key.startswith("test_") and isinstance(value, float):
                    self.writer.add_scalar(f"test/{key[len('test_'):]}", value, self.global_step)
        self._log(f"{self.train_seconds:.0f}s training")
        return summary

    def _macs(self) -> int:
        """MACs of one example through the network, or through the part its registry card measures (a GAN:
        its generator, on one z), counted as the card counts them: on a copy on the meta device, where a
        network whose cost depends on the data (a detector's proposals after NMS) counts its fixed budget."""
        measured = copy.deepcopy(getattr(self.model, "card_module", self.model)).to("meta")
        return count_macs(measured, getattr(self.model, "card_input_size", self.input_size))

    # what a run writes: a directory holding any of them holds a run (core/rundir.py)
    RUN_PRODUCTS = ("config.json", "model.json", "checkpoint.pt", "metrics.jsonl", "best.safetensors",
                    "model.safetensors", "summary.json", "curves.png", "confusion.png", "segmentation.png",
                    "viewpoints.png", "clips.png", "detections.png", "samples.png", "modes.png", "sample.txt",
                    "diagnostics.json", "diagnostics.png", "tensorboard", "translations.txt", "bleu_by_length.png",
                    "alignments.png")

    def run(self) -> dict:
        """Train to the end, holding the run directory (one run, one process) meanwhile."""
        if not (self.is_main and self.out):
            return self._run_held()
        with claim_output(self.out, self.RUN_PRODUCTS, overwrite=self.cfg.overwrite,
                          resume=self.resume_from is not None, flag="--resume" if self.resume_from else "--out"):
            try:
                return self._run_held()
            except OSError as exc:
                if no_space(exc):
                    raise UsageError(f"no space left on {self.out}: free some and continue with --resume "
                                     f"{self.out}") from None
                raise

    def _run_held(self) -> dict:
        if self.resume_from:
            self.load_checkpoint(self.resume_from / "checkpoint.pt")
            self._log(f"resuming {self.resume_from} at epoch {self.epoch + 1}, step {self.step_in_epoch}")
        self._write_start()
        self._log(f"{self.cfg.model} ({count_params(self.model):,} params) on {self.cfg.data} "
                  f"{tuple(self.input_size)}: {self.task.describe_data()}, {self.device}, "
                  f"amp={'bf16' if self.amp and bf16_supported(self.device) else self.amp}, "
                  f"channels_last={self.channels_last}, compile={self.compiled}, {self.world} process(es)")
        # SIGTERM (kill, a scheduler's stop) is handled as Ctrl-C: checkpoint, message, exit
        handled = (signal.SIGINT, signal.SIGTERM) if self._main_thread() else ()
        previous = {signum: signal.signal(signum, self._on_sigint) for signum in handled}
        try:
            while self.epoch < self.cfg.epochs and not self.stopped_early:
                started = self.train_seconds
                self.train_epoch()
                self.end_epoch(self.train_seconds - started)
            summary = self.finish()
        except Interrupted:
            self.save_checkpoint()
            raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self.writer:
                self.writer.close()
        # A signal after the last step: the run is complete, its caller still stops. Looked at only once the
        # handlers are restored, so that a signal in between raises KeyboardInterrupt instead of being lost.
        if self.stop_requested:
            self.save_checkpoint()
            raise Interrupted(self.stop_signal)
        return summary

    @staticmethod
    def _main_thread() -> bool:
        import threading
        return threading.current_thread() is threading.main_thread()


def train(cfg: TrainConfig | None = None, resume: str | None = None, **overrides) -> dict:
    """Train and return the summary (Python API of `visionzoo train`)."""
    cfg = dataclasses.replace(cfg or TrainConfig(), **overrides)
    trainer = Trainer(cfg, resume)
    try:
        return trainer.run()
    finally:
        distributed.shutdown()
