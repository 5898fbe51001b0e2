"""SqueezeNet 1.1 in the family-table experiment: ours beside torchvision's, one plain loop (issue 26, item 13).

Iandola et al., SqueezeNet, arXiv 2016: conv10 (1×1 to the classes) → ReLU → global average pool, so
every class score is ≥ 0, and a class whose conv10 output is negative at every position of every
image scores exactly 0 and passes no gradient. This script asks whether our network stalls because of
a defect or because of that head under the experiment's optimiser:

* `ours`: `create_model("squeezenet1_1", image_size=28)`, the small-input form the Trainer builds;
* `torchvision`: `torchvision.models.squeezenet1_1(num_classes=10)` with its own initialisation, given
  the same small-input stem (conv1 → a 3×3 stride-1 convolution from 1 channel, the first max-pool
  removed), the only place our small-input form differs from it. The script first loads our weights
  into this network (strict) and checks both compute the same scores, so the two differ only in the
  random draw of their initial weights.

The loop is the family-table's settings written out: the engine's optimiser for them (`engine.optim`:
Nesterov SGD, momentum 0.9, weight decay 5e-4 on weights only — TrainConfig's defaults), batch 64
drawn without replacement from the seeded Fashion-MNIST subset at 28×28, cross-entropy, no
augmentation, and the engine's one-cycle multiplier
(`engine.schedules.lr_factor`) over `--total-steps` (the full run's 375), of which the first `--steps`
are run: what the experiment does in its first steps. `--schedule poly --lr 0.005` is the paper's
solver at batch 64 (0.04 at the authors' batch 512, scaled linearly; linear decay to 0), `--init
authors` the authors' released initialisation, `--warmup-steps T` a linear ramp over the first T steps
(a diagnostic: the paper has none). At the listed steps it prints, in eval mode: the share of class
scores exactly 0 on the first 250 training images, how many distinct classes the network predicts
there, their top-1 and that of 250 validation images; at the end, how many class maps are dead
against how much of the trunk is.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/squeezenet_reference.py [--networks ours torchvision]
        [--init own|authors] [--lr 0.05] [--schedule onecycle|poly] [--steps 60] [--total-steps 375]
        [--warmup-steps 0] [--limit 2000] [--seed 0]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from visionzoo.data.datasets import load_data
from visionzoo.data.loader import Normalizer
from visionzoo.engine.optim import build_optimizer
from visionzoo.engine.schedules import lr_factor
from visionzoo.engine.trainer import TrainConfig
from visionzoo.registry import create_model

CLASSES = 10
REPORT_IMAGES = 250    # training and validation images scored per report: a report costs about two steps
REPORTED_STEPS = (0, 1, 2, 5, 10, 25, 50, 100)


def torchvision_small(in_chans: int = 1) -> nn.Module:
    """torchvision's SqueezeNet 1.1 with our small-input stem (conv1 3×3/1, padding 1; no first pool)."""
    model = torchvision.models.squeezenet1_1(num_classes=CLASSES)
    model.features[0] = nn.Conv2d(in_chans, 64, 3, 1, 1)
    nn.init.kaiming_uniform_(model.features[0].weight)   # torchvision's rule for every conv but the last
    nn.init.zeros_(model.features[0].bias)
    model.features[2] = nn.Identity()
    return model


def authors_init(model: nn.Module) -> nn.Module:
    """The authors' released initialisation (their train_val.prototxt): Caffe's "xavier" filler, uniform
    ±√(3/fan_in), on every convolution but conv10 (kept N(0, 0.01)), biases 0 — half the variance of
    torchvision's kaiming_uniform (±√(6/fan_in)) at each of the 17 rectified layers below conv10."""
    for m in model.features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, nonlinearity="linear")
            nn.init.zeros_(m.bias)
    return model


def same_function(ours: nn.Module) -> float:
    """Largest score difference after loading our weights into torchvision's layout (strict)."""
    twin = torchvision_small()
    twin.load_state_dict(ours.state_dict(), strict=True)
    ours.eval()
    twin.eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        return float((ours(x) - twin(x)).abs().max())


def scores_of(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x) for x in inputs.split(500)])


def report(model, step, train_x, train_y, val_x, val_y) -> str:
    train_x, train_y = train_x[:REPORT_IMAGES], train_y[:REPORT_IMAGES]
    train_scores, val_scores = scores_of(model, train_x), scores_of(model, val_x)
    predicted = train_scores.argmax(1)
    return (f"step {step:4d}: zero scores {float((train_scores == 0).float().mean()):.2f}, "
            f"{len(predicted.unique())} classes predicted, "
            f"train top-1 {float((predicted == train_y).float().mean()):.3f}, "
            f"val top-1 {float((val_scores.argmax(1) == val_y).float().mean()):.3f}")


def head_and_trunk(model: nn.Module, inputs: torch.Tensor) -> str:
    """Where the network is dead: class maps (conv10 before its ReLU) negative at every position of every
    image, against the share of positive outputs and the never-positive channels of the last Fire module."""
    model.eval()
    with torch.no_grad():
        features = model.features(inputs)
        maps = model.classifier[1](features)
    dead_classes = int((maps.amax((0, 2, 3)) < 0).sum())
    dead_channels = int((features.amax((0, 2, 3)) == 0).sum())
    return (f"{dead_classes} of {maps.shape[1]} class maps negative everywhere; last Fire module: "
            f"{float((features > 0).float().mean()):.2f} of its outputs positive, "
            f"{dead_channels} of {features.shape[1]} channels never")


def multiplier(step: int, *, schedule: str, total_steps: int, warmup_steps: int) -> float:
    """The rate's multiplier: the experiment's one-cycle (`engine.schedules`), or the paper's solver
    (Caffe's "poly" policy with power 1: linear decay to 0 over the run), times an optional linear
    warm-up ramp (t+1)/T over the first T steps (a diagnostic: the paper has none)."""
    ramp = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    if schedule == "poly":
        return ramp * (1 - step / total_steps)
    return ramp * lr_factor(step, total_steps=total_steps, steps_per_epoch=1, schedule="onecycle")


def run(network: str, *, init: str, lr: float, steps: int, total_steps: int, schedule: str, warmup_steps: int,
        limit: int, seed: int, batch_size: int = 64) -> None:
    """Train `network` for `steps` steps, printing the reports."""
    data = load_data("fashion-mnist", seed=seed, val_size=5000, train_limit=limit)
    normalise = Normalizer(data.mean, data.std)
    train_images, train_y = data.train.fetch(torch.arange(len(data.train)))
    val_images, val_y = data.val.fetch(torch.arange(REPORT_IMAGES))
    train_x, val_x = normalise(train_images), normalise(val_images)
    torch.manual_seed(seed)
    ours = create_model("squeezenet1_1", num_classes=CLASSES, in_chans=1, image_size=28)
    print(f"largest score difference, our weights in torchvision's network: {same_function(ours):.1e}")
    torch.manual_seed(seed)
    model = ours if network == "ours" else torchvision_small()
    if init == "authors":
        authors_init(model)
    # the experiment's optimiser: TrainConfig's defaults (Nesterov, momentum 0.9, decay 5e-4 on weights only)
    optimizer = build_optimizer(model, TrainConfig(optimizer="nesterov", lr=lr))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: multiplier(
        step, schedule=schedule, total_steps=total_steps, warmup_steps=warmup_steps))
    generator = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.long)
    started = time.perf_counter()
    print(f"{network} ({init} init): lr {lr} {schedule} over {total_steps} steps, the first {steps} run, "
          f"warm-up {warmup_steps}")
    for step in range(steps):
        if step in REPORTED_STEPS:
            print("  " + report(model, step, train_x, train_y, val_x, val_y), flush=True)
        if len(order) < batch_size:
            order = torch.randperm(len(train_x), generator=generator)
        batch, order = order[:batch_size], order[batch_size:]
        model.train()
        loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    print("  " + report(model, steps, train_x, train_y, val_x, val_y) + f" ({time.perf_counter() - started:.0f} s)")
    print("  " + head_and_trunk(model, train_x[:REPORT_IMAGES]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", nargs="+", choices=("ours", "torchvision"), default=["ours", "torchvision"])
    parser.add_argument("--init", choices=("own", "authors"), default="own",
                        help="each network's own initialisation, or the authors' Caffe one (default %(default)s)")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=60, help="steps run (default %(default)s)")
    parser.add_argument("--total-steps", type=int, default=375,
                        help="the schedule's length (default %(default)s: the full run's 3 epochs of 8 000 images)")
    parser.add_argument("--schedule", choices=("onecycle", "poly"), default="onecycle")
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--limit", type=int, default=2000, help="training images (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for network in args.networks:
        run(network, init=args.init, lr=args.lr, steps=args.steps, total_steps=args.total_steps,
            schedule=args.schedule, warmup_steps=args.warmup_steps, limit=args.limit, seed=args.seed)


if __name__ == "__main__":
    main()
