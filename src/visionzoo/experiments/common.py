"""What several experiments share: the data of a budget, a small training loop, figures.

Experiments that train a registered network go through the Trainer (train/trainer.py). Those that
train a network built for the experiment (an activation swapped, a head replaced), or need
measurements the Trainer does not make, use `fit` here: SGD with momentum on in-memory batches,
the Trainer's batching and normalisation, one record per epoch.
"""
from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from ..core import figures
from ..core.progress import note
from ..data.datasets import load_data
from ..data.loader import Normalizer, train_batches
from ..tasks.classification import evaluate
from .base import Context


def data_spec(ctx: Context) -> str:
    """Scikit-learn's 8×8 digits for smoke runs (loads in milliseconds), Fashion-MNIST otherwise."""
    return ctx.pick("digits", "fashion-mnist", "fashion-mnist")


@lru_cache(maxsize=4)
def _bundle(spec: str, seed: int, image_size: int | None):
    return load_data(spec, seed=seed, val_size=0.1 if spec == "digits" else 5000, image_size=image_size)


def budget_data(ctx: Context, train_limit: int | None = None, image_size: int | None = None):
    """The budget's data set (a seeded subset of `train_limit` training images) and its Normalizer."""
    bundle = _bundle(data_spec(ctx), ctx.seed, image_size)
    train = bundle.train
    if train_limit and train_limit < len(train):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(ctx.seed))
        train = train.take(order[:train_limit])
    return bundle, train, Normalizer(bundle.mean, bundle.std)


def fit(model, train, normalizer, *, epochs: int, lr: float, seed: int, batch_size: int = 128,
        momentum: float = 0.9, weight_decay: float = 0.0, label_smoothing: float = 0.0,
        val=None, device="cpu", steps: list | None = None, augment=None) -> list[dict]:
    """Train `model` in place; per epoch: training loss and error (as trained, in train mode).

    With a `steps` list, (loss, error) of every step is appended to it; `augment(images, generator)`
    transforms each batch of pixel images (0–255) before normalisation.
    """
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    history = []
    for epoch in range(epochs):
        model.train()
        loss_sum, wrong, seen = 0.0, 0, 0
        generator = torch.Generator(device).manual_seed(seed * 1_000_003 + epoch)
        for images, labels in train_batches(train, batch_size, seed=seed, epoch=epoch, device=device):
            if augment is not None:
                images = augment(images.float(), generator)
            logits = model(normalizer(images))
            loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if not torch.isfinite(loss):
                break  # diverged: the record says so with an infinite loss
            step_wrong = int((logits.argmax(1) != labels).sum())
            loss_sum += loss.item() * len(labels)
            wrong += step_wrong
            seen += len(labels)
            if steps is not None:
                steps.append((loss.item(), step_wrong / len(labels)))
        record = {"epoch": epoch + 1, "train_loss": loss_sum / seen if seen else float("inf"),
                  "train_error": wrong / seen if seen else 1.0}
        if val is not None:
            record["val_top1"] = evaluate(model, val, normalizer, device=device)["top1"]
        history.append(record)
        if not seen:
            break
    return history


def trainer_amp(ctx: Context) -> str:
    return ctx.pick("off", "off", "auto")


def precision_note(ctx: Context) -> str:
    """The setup text's words for the precision `train_registered` trains in at this budget."""
    return "; mixed precision (--amp auto: bf16 autocast where the CPU has it)" if trainer_amp(ctx) == "auto" else "; fp32"


def train_registered(ctx: Context, model: str, run_name: str, *, hooks: tuple = (), **settings):
    """Train a registered network with the Trainer; returns the summary and the Trainer (its
    `history` holds the per-epoch records, `model` the best weights, `normalizer` the input scaling).

    Settings override TrainConfig; the defaults here drop augmentation and label smoothing so the
    runs measure the network. Full runs use the Trainer's own mixed precision (`amp="auto"`: bf16
    autocast on CPUs that have it, CUDA) to afford their size; smoke and quick runs stay in fp32.
    Quick and full runs keep their run directory in out/runs/RUN_NAME (checkpoints, curves); smoke
    runs write nothing, the Trainer's plots would dominate their time. With `ctx.resume`, a run
    directory holding a checkpoint of the same settings is resumed (a finished run only re-evaluated).
    `hooks` join the Trainer's (e.g. on_epoch_end(trainer, record) to look at the network as it trains).
    """
    from ..engine.trainer import TrainConfig, Trainer
    spec = data_spec(ctx)
    cfg = TrainConfig(model=model, data=spec, quiet=True, seed=ctx.seed, crop=0, flip=False, label_smoothing=0.0,
                      amp=trainer_amp(ctx), val_size=ctx.pick(64, 5000, 5000),
                      out=None if ctx.budget == "smoke" else str(ctx.out / "runs" / run_name),
                      overwrite=True)   # the experiment's own directory is claimed by `visionzoo reproduce`
    cfg = dataclasses.replace(cfg, **settings)
    note(f"training {run_name}: {cfg.model} on {cfg.data}, {cfg.epochs} epochs", quiet=ctx.quiet)
    trainer = Trainer(cfg, resume=cfg.out if ctx.resume and _same_run(cfg) else None)
    trainer.hooks.extend(hooks)
    return trainer.run(), trainer


def _same_run(cfg) -> bool:
    """Whether cfg.out holds a checkpoint of a run with these settings (all but where it writes and how loudly)."""
    if cfg.out is None or not (Path(cfg.out) / "checkpoint.pt").exists():
        return False
    saved = json.loads((Path(cfg.out) / "config.json").read_text())
    wanted = json.loads(json.dumps(dataclasses.asdict(cfg)))
    return all(saved.get(key) == value for key, value in wanted.items() if key not in ("out", "quiet", "overwrite"))


def save_figure(fig, ctx: Context, name: str) -> str:
    """Write the figure atomically into the run directory; returns its file name for the report."""
    figures.save_figure(fig, ctx.out / name)
    return name


def figure(*shape, width: float = 5.0, height: float = 3.8):
    rows, cols = shape or (1, 1)
    return figures.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
