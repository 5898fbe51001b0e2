"""Training img/s of our DCGAN through the engine against the PyTorch DCGAN example's loop (issue 24's target:
≥ 1.0× on the same network and batch).

Ours: a Trainer for `dcgan` on Fashion-MNIST (28 × 28, the fmnist-dcgan recipe's networks — width and extra
convolutions — and batch; Adam, non-saturating loss, k = 1; fp32 as the example, or with `--amp auto` as
`visionzoo train` runs by default: bf16 autocast on the CPU), timed over `train_epoch` — the engine's own step:
batch fetch and scaling, the discriminator phase, then the generator phase on fresh noise (Algorithm 1) with D
frozen, schedules.
Reference: the training loop of the well-known PyTorch example (examples/dcgan/main.py) written out here:
BCELoss on D's sigmoid output, Adam 2e-4 β1 0.5, D on a real batch (backward), then on G's fakes detached
(backward), D's step; G's step through D on the same fakes with the real label. It runs on copies of our
generator and discriminator (same weights; D followed by a Sigmoid, as the example's D ends) and on the
same images, already scaled to [−1, 1] (its data loading is not timed). The work differs in two places:
the example reuses the D step's fakes for G's step (one generator forward per iteration; ours by default two,
Algorithm 1's fresh noise per phase — `--g-fakes reuse` runs ours as the example does) and its G step also
computes D's weight gradients (ours freezes D).

Each repeat times `--steps` iterations of one loop, then of the other, interleaved, so a slow moment of the
shared machine hits both; the median rates are compared, ratio = ours / reference (> 1: ours faster).

    .venv/bin/python benchmarks/gan_speed.py [--quick] [--width W] [--batch-size B] [--steps 20]
        [--repeats 5] [--threads N] [--amp off|auto] [--g-fakes fresh|reuse]     (W, B: the recipe's unless given)
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
from torch import nn


def engine_trainer(model_args: dict, batch_size: int, steps: int, amp: str = "off", g_fakes: str = "fresh"):
    """A Trainer for dcgan whose epoch is `steps` steps of `batch_size` images."""
    from visionzoo.engine.trainer import TrainConfig, Trainer
    cfg = TrainConfig(model="dcgan", data="fashion-mnist", model_args=model_args, epochs=1000,
                      batch_size=batch_size, train_limit=steps * batch_size, val_size=500, fid_reference="none",
                      optimizer="adam", lr=2e-4, betas=[0.5, 0.999], weight_decay=0.0, schedule="constant",
                      amp=amp, g_fakes=g_fakes, quiet=True, seed=0)
    return Trainer(cfg)


def engine_rate(trainer) -> float:
    """Images per second over one epoch of the engine's training step (no evaluation)."""
    trainer.step_in_epoch = 0
    trainer.running.zero_()
    started = time.perf_counter()
    trainer.train_epoch()
    seconds = time.perf_counter() - started
    trainer.epoch += 1
    return trainer.steps_per_epoch * trainer.cfg.batch_size / seconds


class ExampleLoop:
    """The PyTorch DCGAN example's training iteration on copies of our networks."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, latent_dim: int):
        self.net_g = copy.deepcopy(generator).train()
        self.net_d = nn.Sequential(copy.deepcopy(discriminator), nn.Sigmoid()).train()
        self.latent_dim = latent_dim
        self.criterion = nn.BCELoss()
        self.optimizer_d = torch.optim.Adam(self.net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optimizer_g = torch.optim.Adam(self.net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def step(self, real: torch.Tensor) -> None:
        b = len(real)
        self.net_d.zero_grad()
        label = torch.full((b,), 1.0)
        error_real = self.criterion(self.net_d(real).view(-1), label)
        error_real.backward()
        fake = self.net_g(torch.randn(b, self.latent_dim))
        label.fill_(0.0)
        error_fake = self.criterion(self.net_d(fake.detach()).view(-1), label)
        error_fake.backward()
        self.optimizer_d.step()
        self.net_g.zero_grad()
        label.fill_(1.0)
        error_g = self.criterion(self.net_d(fake).view(-1), label)
        error_g.backward()
        self.optimizer_g.step()

    def rate(self, batches: list[torch.Tensor]) -> float:
        started = time.perf_counter()
        for real in batches:
            self.step(real)
        return sum(map(len, batches)) / (time.perf_counter() - started)


def compare(trainer, loop: ExampleLoop, batches: list[torch.Tensor], repeats: int) -> tuple[float, float]:
    """Median img/s (ours, the example's) over interleaved repeats, after one warm-up of each."""
    engine_rate(trainer)
    loop.rate(batches[:1])
    rates = ([], [])
    for _ in range(repeats):
        rates[0].append(engine_rate(trainer))
        rates[1].append(loop.rate(batches))
    return statistics.median(rates[0]), statistics.median(rates[1])


def main(argv: list[str] | None = None) -> int:
    from visionzoo.engine.recipes import RECIPES
    from visionzoo.tasks.generative import GENERATOR_FAKES
    recipe = RECIPES["fmnist-dcgan"].values
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="width 32, batch 64, 3 steps × 3 repeats (< 60 s)")
    parser.add_argument("--width", type=int, default=recipe["model_args"]["width"])
    parser.add_argument("--batch-size", type=int, default=recipe["batch_size"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--amp", choices=("off", "auto"), default="off",
                        help="ours in fp32 as the example (off, default) or as `visionzoo train` runs (auto)")
    parser.add_argument("--g-fakes", choices=GENERATOR_FAKES, default="fresh",
                        help="ours on Algorithm 1's fresh noise (default, as the recipe) or on the discriminator "
                             "step's fakes (reuse, as the example)")
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.batch_size, args.steps, args.repeats = 32, 64, 3, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    model_args = {**recipe["model_args"], "width": args.width}
    trainer = engine_trainer(model_args, args.batch_size, args.steps, args.amp, args.g_fakes)
    split = trainer.task.splits["train"]
    images = trainer.task.scale(split.fetch(torch.arange(len(split)))[0])    # [−1, 1], as the example's Normalize
    batches = list(images.split(args.batch_size))
    model = trainer.model
    loop = ExampleLoop(model.generator, model.discriminator, model.latent_dim)
    params = sum(p.numel() for p in model.parameters())
    reference_params = sum(p.numel() for p in (*loop.net_g.parameters(), *loop.net_d.parameters()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, dcgan 28×28 {model_args}, batch "
          f"{args.batch_size}, {args.steps} steps per timing, median of {args.repeats} interleaved repeats, "
          f"ours amp {args.amp} g_fakes {args.g_fakes}, the example fp32")
    print("| network | params ours / example | train img/s ours | example | ratio |")
    print("| --- | --- | --- | --- | --- |", flush=True)
    ours, theirs = compare(trainer, loop, batches, args.repeats)
    print(f"| dcgan ({model_args}, batch {args.batch_size}) | {params:,} / {reference_params:,} | {ours:.1f} | "
          f"{theirs:.1f} | {ours / theirs:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
