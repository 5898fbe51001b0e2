"""Retraining a compressed model with the zoo's trainer (`train.trainer.Trainer`).

Pruning, weight sharing, binarisation and channel removal are each followed by retraining
(Han et al. 2015 Sec. 3; Deep Compression Sec. 3.3; XNOR-Net Sec. 3.1; Li et al. 2017 Sec. 3).
The trainer builds the checkpoint's network on the checkpoint's data (same validation carve,
seed and image size); the compressed model then takes its place, with a fresh optimiser on its
own parameters and the trainer's learning-rate schedule, and the method's hooks (masks,
centroid gradients) run after every backward pass. The best-validation epoch is kept.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass
class RetrainSettings:
    """The trainer settings a user sets for retraining (the rest come from the checkpoint)."""
    epochs: int = 2
    lr: float = 0.01
    optimizer: str = "nesterov"
    momentum: float = 0.9
    schedule: str = "cosine"
    batch_size: int = 128
    weight_decay: float = 5e-4
    train_limit: int | None = None
    device: str = "auto"
    data_dir: str | None = None
    seed: int = 0
    quiet: bool = True


def train_config(meta: dict, settings: RetrainSettings, **overrides):
    """The trainer's TrainConfig for retraining on the checkpoint's data; `overrides` are further fields."""
    from ..engine.trainer import TrainConfig
    data_args = meta.get("data_args", {})
    fields = dict(model=meta["name"], model_args=dict(meta["kwargs"]), data=meta["data"],
                  data_dir=settings.data_dir, val_size=data_args.get("val_size", 5000),
                  image_size=data_args.get("image_size"), epochs=settings.epochs, lr=settings.lr,
                  optimizer=settings.optimizer, momentum=settings.momentum, schedule=settings.schedule,
                  batch_size=settings.batch_size, weight_decay=settings.weight_decay,
                  label_smoothing=0.0, train_limit=settings.train_limit, device=settings.device,
                  channels_last="off", seed=settings.seed, quiet=settings.quiet)
    return TrainConfig(**{**fields, **overrides})


def run_trainer(meta: dict, settings: RetrainSettings, network: nn.Module | None = None, hooks=(),
                **overrides):
    """Run the trainer on the checkpoint's data; `network` (trained in place) replaces the network
    it builds, `overrides` are further TrainConfig fields (e.g. a student and its teacher)."""
    from ..engine.trainer import Trainer
    trainer = Trainer(train_config(meta, settings, **overrides))
    if network is not None:
        trainer.set_model(network)
    trainer.hooks.extend(hooks)
    trainer.run()
    trainer.model.eval()
    return trainer


def retrain(model: nn.Module, meta: dict, settings: RetrainSettings, hooks=()) -> list[dict]:
    """Train `model` in place for `settings.epochs` epochs; returns the trainer's epoch records."""
    if settings.epochs <= 0:
        return []
    return run_trainer(meta, settings, model, hooks).history
