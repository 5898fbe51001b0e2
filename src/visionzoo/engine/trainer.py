"""The trainer behind `visionzoo train`: one loop, in-memory batches, the run directory.

Every setting lives in `TrainConfig`. Each epoch trains on the training split, evaluates on the
validation split carved from it, and keeps the best-validation weights (`keep="last"`: the last
epoch's); the test split is read once at the end. Checkpoints are written atomically at the end of each epoch (and every
`checkpoint_every` steps); they hold everything that decides the future of the run — weights,
optimiser and schedule state, RNG states, position in the epoch, running sums — so `resume`
after a kill at any point ends with the same weights, bit for bit on CPU, as an uninterrupted run.
Augmentation draws come from a generator seeded by (seed, epoch, step), never from saved state.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import registry
from ..tasks.adversarial import adversarial_batch, goodfellow_objective, validate_adversarial
from ..data.datasets import load_data
from ..data.loader import Normalizer, steps_per_epoch, train_batches
from ..core.errors import UsageError
from ..core.profile import count_macs, count_params
from ..core import distributed
from ..core.runtime import autocast, bf16_supported, resolve_device
from .agc import adaptive_clip_, clipped_parameters
from ..tasks.distillation import Teacher, distillation_loss
from .ema import ModelEMA
from ..tasks.classification import evaluate
from .finetune import freeze_backbone, load_for_finetuning
from ..core.io import read_torch, write_json, write_safetensors, write_text
from .model_options import (after_optimizer, apply_model_options, builder_kwargs, structure_options,
                            validate_model_options)
from .optim import OPTIMIZERS, build_optimizer, resolved_wd_mode, scaled_lr
from .schedules import SCHEDULES, LRSchedule
from .techniques import build_augmentation, check_model_fits, validate_techniques
# Mirrored digits and characters are other symbols: no flips there unless asked for.
NO_FLIP_DATA = {"mnist", "kmnist", "svhn", "digits"}


@dataclass
class TrainConfig:
    model: str = "resnet9_slim"
    model_args: dict = field(default_factory=dict)
    recipe: str | None = None        # the named recipe (train/recipes.py) whose values were applied
    data: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    image_size: int | None = None
    val_size: float = 5000
    train_limit: int | None = None
    test_limit: int | None = None    # final test on the first N test images (quick experiments)
    epochs: int = 7
    batch_size: int = 256
    lr: float = 0.2
    optimizer: str = "nesterov"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    warmup_epochs: float = 0.0
    step_size: int = 30
    gamma: float = 0.1
    label_smoothing: float = 0.1
    clip_grad: float | None = None
    milestones: list = field(default_factory=list)   # multistep: epochs where the rate is multiplied by γ
    plateau_patience: int = 2        # plateau: epochs without a lower val loss before the rate is cut
    lr_scale_batch: int | None = None   # linear scaling rule: η = lr·batch_size/lr_scale_batch
    wd_mode: str | None = None       # l2 | decoupled (default: decoupled for adamw, l2 otherwise)
    agc: float | None = None         # adaptive gradient clipping λ
    ema: float | None = None         # decay of the weight average used for evaluation
    early_stop: int | None = None    # epochs without a better val top-1 before stopping
    keep: str = "best"               # weights tested and saved: the best validation epoch's, or the last's
    test_tta: str = "none"           # test-time augmentation of the final test evaluation (evaluate.py)
    crop: int = 2
    flip: bool | None = None
    scale_jitter: str | None = None  # "SMIN,SMAX"
    fancy_pca: float = 0.0
    random_erasing: float = 0.0
    cutout: int = 0
    mixup: float = 0.0
    cutmix: float = 0.0
    # Knowledge distillation and transfer learning.
    teacher: str | None = None
    kd_temperature: float = 4.0
    kd_alpha: float = 0.9
    finetune: str | None = None
    freeze_backbone: bool = False
    backbone_lr_mult: float = 1.0
    sync_bn: bool = False
    # The network itself (model_options.py): initialisation, normalisation, activations, regularisers.
    init: str = "paper"
    init_std: float = 0.01
    whiten: bool = False             # first convolution := patch whitening of the training images, frozen
    pretrain: str = "none"
    pretrain_epochs: int = 1
    pretrain_noise: float = 0.0
    norm: str | None = None
    act: str | None = None
    maxout_k: int = 2
    pool: str | None = None
    dropout: float | None = None
    drop_connect: float | None = None
    drop_block: list | None = None   # [SIZE, P]
    drop_path: float | None = None
    max_norm: float | None = None
    amp: str = "auto"
    channels_last: str = "auto"
    device: str = "auto"
    seed: int = 0
    out: str | None = None
    checkpoint_every: int = 0
    eval_batch_size: int = 500
    tensorboard: bool = False
    # Adversarial training (visionzoo.attacks.training): ε, α in pixels of [0, 1].
    adv: str | None = None
    adv_eps: float = 0.1
    adv_alpha: float = 0.01
    adv_steps: int = 40
    adv_weight: float = 0.5
    diagnostics: bool = False
    quiet: bool = False

    def validate(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "eval_batch_size": self.eval_batch_size}
        for key, value in positive.items():
            if not value > 0:
                raise UsageError(f"--{key.replace('_', '-')} must be positive, got {value}")
        choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "amp": ("auto", "on", "off"),
                   "channels_last": ("auto", "on", "off"), "device": ("auto", "cpu", "cuda"), "keep": ("best", "last")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise UsageError(f"--{key.replace('_', '-')} {getattr(self, key)!r}: choose one of {', '.join(allowed)}")
        if not 0 <= self.label_smoothing < 1:
            raise UsageError("--label-smoothing must lie in [0, 1)")
        registry.get_entry(self.model)
        validate_adversarial(self)
        validate_techniques(self)
        validate_model_options(self)


def classification_loss(output, labels, model, label_smoothing: float):
    """Cross-entropy, plus `aux_weight`·CE of auxiliary heads when the network returns them.

    A network with its own objective (e.g. CapsNet's margin + reconstruction loss) defines
    ``training_loss(output, labels, label_smoothing) -> (loss, logits)``, which is used instead.
    """
    if hasattr(model, "training_loss"):
        return model.training_loss(output, labels, label_smoothing)
    if isinstance(output, tuple):
        logits, aux = output
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        weight = getattr(model, "aux_weight", 0.3)
        for aux_logits in aux:
            loss = loss + weight * F.cross_entropy(aux_logits.float(), labels, label_smoothing=label_smoothing)
        return loss, logits
    return F.cross_entropy(output.float(), labels, label_smoothing=label_smoothing), output


class NonFiniteLoss(RuntimeError):
    pass


class Interrupted(Exception):
    pass


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: str | None = None):
        if resume:
            saved = json.loads((Path(resume) / "config.json").read_text()) if (Path(resume) / "config.json").exists() else None
            if saved is None:
                raise UsageError(f"--resume {resume}: no config.json there; give a run directory written by `visionzoo train --out`")
            saved = {k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__}
            cfg = TrainConfig(**{**saved, "out": str(resume), "quiet": cfg.quiet})
        cfg.validate()
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
        self.flip = cfg.flip if cfg.flip is not None else cfg.data not in NO_FLIP_DATA
        self.is_main = self.rank == 0
        self.resume_from = Path(resume) if resume else None

        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.data = load_data(cfg.data, data_dir=cfg.data_dir, download=cfg.download,
                              val_size=cfg.val_size, seed=cfg.seed, image_size=cfg.image_size)
        if cfg.train_limit and cfg.train_limit < len(self.data.train):
            subset = torch.randperm(len(self.data.train), generator=torch.Generator().manual_seed(cfg.seed))
            self.data.train = self.data.train.take(subset[:cfg.train_limit])
        if cfg.test_limit and cfg.test_limit < len(self.data.test):
            self.data.test = self.data.test.take(torch.arange(cfg.test_limit))
        self.normalizer = Normalizer(self.data.mean, self.data.std)
        self.input_size = self.data.input_size
        self.model_kwargs = {"num_classes": len(self.data.classes), "in_chans": self.input_size[0],
                             "image_size": self.input_size[-1], **builder_kwargs(cfg), **cfg.model_args}
        try:
            model = registry.create_model(cfg.model, **self.model_kwargs)
        except TypeError as exc:
            raise UsageError(f"--model-arg for {cfg.model}: {exc}") from None
        model = apply_model_options(model, cfg, data=self.data, normalizer=self.normalizer, device=self.device,
                                    resume=bool(resume), log=self._log)
        self.source_classes = load_for_finetuning(model, cfg.model, cfg.finetune) if cfg.finetune else None
        if cfg.freeze_backbone:
            freeze_backbone(model)
        check_model_fits(cfg, model)
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
        self.lr = scaled_lr(cfg.lr, cfg.batch_size, cfg.lr_scale_batch)  # global batch of all workers
        self.optimizer = build_optimizer(self.model, cfg, self.lr)
        after_optimizer(self.optimizer, self.model, cfg)
        self.steps_per_epoch = steps_per_epoch(len(self.data.train), cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        schedule = dict(total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch,
                        schedule=cfg.schedule, warmup_steps=int(cfg.warmup_epochs * self.steps_per_epoch),
                        step_size=cfg.step_size, gamma=cfg.gamma, milestones=list(cfg.milestones))
        self.lr_schedule = LRSchedule(patience=cfg.plateau_patience, **schedule)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_schedule)
        self.augmentation = build_augmentation(cfg, self.data, self.flip)
        self.agc_parameters = clipped_parameters(self.model)
        self.ema = ModelEMA(self.model, cfg.ema) if cfg.ema else None
        self.teacher = Teacher(cfg.teacher, self.device, len(self.data.classes), self.input_size) if cfg.teacher else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.device.type == "cuda"
                                           and not bf16_supported(self.device))
        # Position and running state of the run; all of it goes into the checkpoint.
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        # loss sum, correct, count; kept on the device so that a step never waits for the host
        self.running = torch.zeros(3, dtype=torch.float64, device=self.device)
        self.history: list[dict] = []
        self.best = {"val_top1": -1.0, "epoch": 0}
        self.best_state: dict | None = None
        self.train_seconds = 0.0
        self.stop_requested = False
        self.writer = None
        # Extensions (diagnostics, …): objects with any of after_backward(trainer),
        # on_epoch_end(trainer, record), on_finish(trainer, summary).
        self.hooks: list = []
        if cfg.diagnostics:
            from .diagnostics import TrainingDiagnostics
            self.hooks.append(TrainingDiagnostics(self))

    @property
    def eval_model(self) -> torch.nn.Module:
        """What is evaluated and saved: the weight average with --ema, else the trained weights."""
        return self.ema.module if self.ema else self.model

    @property
    def stopped_early(self) -> bool:
        """--early-stop: `early_stop` epochs in a row without a better validation top-1."""
        return bool(self.cfg.early_stop) and self.epoch - self.best["epoch"] >= self.cfg.early_stop

    # ---- checkpoints -------------------------------------------------------------------------
    def _checkpoint_state(self) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema else {},
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "running": self.running.cpu().clone(), "history": self.history, "best": self.best,
            "train_seconds": self.train_seconds, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy_rng": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            "python_rng": json.dumps(random.getstate()),
        }

    def save_checkpoint(self) -> None:
        if self.is_main and self.out:
            from ..core.io import write_torch
            write_torch(self.out / "checkpoint.pt", self._checkpoint_state())

    def load_checkpoint(self, path: Path) -> None:
        if not path.exists():
            raise UsageError(f"--resume: {path} does not exist (the run saved no checkpoint yet); start it again without --resume")
        try:
            state = read_torch(path)
        except Exception as exc:
            raise UsageError(f"--resume: cannot read {path} ({exc})") from None
        self.model.load_state_dict(state["model"])
        if self.ema:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
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

    # ---- the run directory -------------------------------------------------------------------
    def model_meta(self) -> dict:
        return {"name": self.cfg.model, "kwargs": self.model_kwargs, "classes": self.data.classes,
                "mean": self.data.mean, "std": self.data.std, "input_size": list(self.input_size),
                "data": self.cfg.data, "data_args": {"val_size": self.cfg.val_size, "seed": self.cfg.seed,
                                                      "image_size": self.cfg.image_size},
                "eval": {"batch_size": self.cfg.eval_batch_size, "channels_last": self.channels_last},
                "options": structure_options(self.cfg)}

    def _write_start(self) -> None:
        if not (self.is_main and self.out):
            return
        self.out.mkdir(parents=True, exist_ok=True)
        config = dataclasses.asdict(self.cfg)
        config.update(resolved={"device": str(self.device), "amp": self.amp, "channels_last": self.channels_last,
                                "flip": self.flip, "lr": self.lr,
                                "wd_mode": resolved_wd_mode(self.cfg.optimizer, self.cfg.wd_mode),
                                "fancy_pca": self.augmentation.pca and {
                                    "eigenvalues": self.augmentation.pca[0].tolist(),
                                    "eigenvectors": self.augmentation.pca[1].tolist()},
                                "finetune_source_classes": self.source_classes,
                                "world_size": self.world, "steps_per_epoch": self.steps_per_epoch,
                                "input_size": list(self.input_size), "num_classes": len(self.data.classes),
                                "train_images": len(self.data.train), "val_images": len(self.data.val),
                                "test_images": len(self.data.test), "mean": self.data.mean, "std": self.data.std})
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
        write_text(self.out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in self.history))
        from .plots import plot_curves
        plot_curves(self.history, self.out / "curves.png")
        if self.writer:
            for key in ("train_loss", "train_top1", "val_loss", "val_top1", "lr"):
                self.writer.add_scalar(key, record[key], record["epoch"])
            self.writer.flush()

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

    def train_epoch(self) -> None:
        cfg = self.cfg
        self.net.train()
        bar = None
        if self.is_main and not cfg.quiet:
            from tqdm import tqdm
            bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, leave=False, unit="step",
                       desc=f"epoch {self.epoch + 1}/{cfg.epochs}", dynamic_ncols=True, mininterval=0.5,
                       disable=not sys.stderr.isatty())
        check_every = 1 if self.device.type == "cpu" else 25
        started = time.perf_counter()
        images_seen = 0
        for images, labels in train_batches(self.data.train, cfg.batch_size, seed=cfg.seed, epoch=self.epoch,
                                            start_step=self.step_in_epoch, device=self.device):
            generator = torch.Generator(self.device).manual_seed(
                (cfg.seed * 1_000_003 + self.epoch) * 1_000_003 + self.step_in_epoch)
            images, targets = self.augmentation(images, labels, len(self.data.classes), generator)
            shard = slice(self.rank, None, self.world)
            images, labels, targets = images[shard], labels[shard], targets[shard]
            x = self.normalizer(images, self.channels_last)
            if cfg.adv:  # FGSM trains on [x; x̃], PGD on x̃ alone
                x, labels = adversarial_batch(self, x, labels, generator)
            with autocast(self.device, self.amp):
                output = self.net(x)
            if cfg.adv == "fgsm":  # Goodfellow's J̃ = α J(x) + (1 − α) J(x̃)
                loss, logits = goodfellow_objective(classification_loss, output, labels, self.model,
                                                    cfg.label_smoothing, cfg.adv_weight)
            else:
                loss, logits = classification_loss(output, targets, self.model, cfg.label_smoothing)
            if self.teacher:  # soft targets at T; the hard objective (CE + aux heads) weighted 1 − α
                loss = distillation_loss(logits, self.teacher(images), targets, cfg.kd_temperature,
                                         cfg.kd_alpha, hard_loss=loss)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self._call_hooks("after_backward")
            if cfg.clip_grad or cfg.agc:
                self.scaler.unscale_(self.optimizer)
            if cfg.agc:
                adaptive_clip_(self.agc_parameters, cfg.agc)
            if cfg.clip_grad:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema:
                self.ema.update(self.model)
            self.running[:2] += torch.stack([loss.detach().double() * len(labels),
                                             (logits.detach().argmax(1) == labels).sum().double()])
            self.running[2] += len(labels)
            self.step_in_epoch += 1
            self.global_step += 1
            images_seen += len(labels) * self.world
            if self.global_step % check_every == 0 and not math.isfinite(loss.item()):
                raise NonFiniteLoss(f"loss became {loss.item()} at epoch {self.epoch + 1}, step "
                                    f"{self.step_in_epoch}")
            if bar is not None:
                rate = images_seen / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(loss=f"{self.running[0].item() / self.running[2].item():.3f}",
                                img_s=f"{rate:.0f}", refresh=False)
                bar.update(1)
            if distributed.broadcast_flag(self.stop_requested, self.device):
                self.train_seconds += time.perf_counter() - started
                raise Interrupted
            if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0 \
                    and self.step_in_epoch < self.steps_per_epoch:
                self.train_seconds += time.perf_counter() - started
                started, images_seen = time.perf_counter(), 0
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        self.train_seconds += time.perf_counter() - started

    def end_epoch(self, seconds: float) -> None:
        totals = distributed.all_reduce_sum(self.running.to(self.device)).cpu()
        val = evaluate(self.eval_model, self.data.val, self.normalizer, batch_size=self.cfg.eval_batch_size,
                       device=self.device, channels_last=self.channels_last, rank=self.rank, world=self.world)
        record = {"epoch": self.epoch + 1, "train_loss": totals[0].item() / totals[2].item(),
                  "train_top1": totals[1].item() / totals[2].item(), "val_loss": val["loss"],
                  "val_top1": val["top1"], "lr": self.optimizer.param_groups[0]["lr"],
                  "seconds": round(seconds, 3)}
        if not math.isfinite(record["train_loss"]):
            raise NonFiniteLoss(f"loss became {record['train_loss']} in epoch {self.epoch + 1}")
        self.history.append(record)
        self._call_hooks("on_epoch_end", record)
        rate = totals[2].item() / max(seconds, 1e-9)
        if record["val_top1"] > self.best["val_top1"]:
            self.best = {"val_top1": record["val_top1"], "epoch": record["epoch"]}
            self.best_state = {k: v.detach().clone() for k, v in self.eval_model.state_dict().items()}
            if self.is_main and self.out:
                write_safetensors(self.out / "best.safetensors", self.eval_model.state_dict())
        self.lr_schedule.epoch_end(record["val_loss"], self.scheduler)
        self.epoch += 1
        self.step_in_epoch = 0
        self.running.zero_()
        self._write_epoch(record)
        self.save_checkpoint()
        self._log(f"epoch {record['epoch']:>3}/{self.cfg.epochs}  train loss {record['train_loss']:.4f} "
                  f"top1 {record['train_top1']:.4f} | val loss {record['val_loss']:.4f} top1 {record['val_top1']:.4f}"
                  f" | lr {record['lr']:.4g} | {seconds:.1f}s {rate:.0f} img/s")

    def finish(self) -> dict:
        cfg = self.cfg
        if cfg.keep == "best":
            if self.best_state is None and self.out and (self.out / "best.safetensors").exists():
                from safetensors.torch import load_file  # resumed after the best epoch
                self.best_state = load_file(str(self.out / "best.safetensors"))
            if self.best_state is not None:
                self.eval_model.load_state_dict(self.best_state)
        test = evaluate(self.eval_model, self.data.test, self.normalizer, batch_size=cfg.eval_batch_size,
                        device=self.device, channels_last=self.channels_last,
                        num_classes=len(self.data.classes), rank=self.rank, world=self.world, tta=cfg.test_tta)
        summary = {"model": cfg.model, "data": cfg.data, "epochs": cfg.epochs,
                   "params": count_params(self.model),
                   "macs": count_macs(self.model, self.input_size),
                   "test_top1": test["top1"], "test_top5": test["top5"], "test_loss": test["loss"],
                   "test_n": test["n"], "test_tta": cfg.test_tta, "test_per_class_top1": dict(zip(self.data.classes, test["per_class_top1"])),
                   "train_seconds": round(self.train_seconds, 3),
                   "train_img_s": round(self.epoch * self.steps_per_epoch * cfg.batch_size / max(self.train_seconds, 1e-9), 1),
                   "best_epoch": self.best["epoch"], "best_val_top1": self.best["val_top1"], "kept": cfg.keep,
                   "epochs_run": self.epoch, "stopped_early": self.stopped_early,
                   "final_val_top1": self.history[-1]["val_top1"] if self.history else None,
                   "device": str(self.device), "amp": self.amp, "channels_last": self.channels_last,
                   "world_size": self.world, "seed": cfg.seed}
        if self.is_main and self.out:
            write_safetensors(self.out / "model.safetensors", self.eval_model.state_dict())
            write_json(self.out / "summary.json", summary)
            from .plots import plot_confusion
            plot_confusion(test["confusion"], self.data.classes, self.out / "confusion.png",
                           f"{cfg.model} on {cfg.data} test: top-1 {test['top1']:.4f}")
        self._call_hooks("on_finish", summary)
        self._log(f"test top1 {test['top1']:.4f}  top5 {test['top5']:.4f}  loss {test['loss']:.4f}  "
                  f"({test['n']} images, {self.train_seconds:.0f}s training)")
        return summary

    def run(self) -> dict:
        if self.resume_from:
            self.load_checkpoint(self.resume_from / "checkpoint.pt")
            self._log(f"resuming {self.resume_from} at epoch {self.epoch + 1}, step {self.step_in_epoch}")
        self._write_start()
        self._log(f"{self.cfg.model} ({count_params(self.model):,} params) on {self.cfg.data} "
                  f"{tuple(self.input_size)}: {len(self.data.train)} train / {len(self.data.val)} val / "
                  f"{len(self.data.test)} test, {self.device}, amp={'bf16' if self.amp and bf16_supported(self.device) else self.amp}, "
                  f"channels_last={self.channels_last}, {self.world} process(es)")
        previous = signal.signal(signal.SIGINT, self._on_sigint) if self._main_thread() else None
        try:
            while self.epoch < self.cfg.epochs and not self.stopped_early:
                started = self.train_seconds
                self.train_epoch()
                self.end_epoch(self.train_seconds - started)
            return self.finish()
        except Interrupted:
            self.save_checkpoint()
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            if self.writer:
                self.writer.close()

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
