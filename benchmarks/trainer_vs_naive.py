"""Our trainer's fast path against the loop of a PyTorch tutorial (issue 6, item 3).

Both train the same network (default `resnet9_slim`; `--model`, `--model-args`) on the same N Fashion-MNIST images for one epoch with the default
recipe's optimiser (Nesterov SGD, one-cycle, label smoothing 0.1) and augmentation (random crop
with padding 2, horizontal flip):

* ours — `visionzoo.train.train`: the split held as one uint8 tensor, batches gathered by index,
  crop/flip applied to the whole batch at once, channels_last, bf16 autocast where the CPU has it;
* naive, two loaders feeding the same loop (NCHW fp32, a default `DataLoader` collating images one
  by one, `torch.optim.SGD` with its default implementation):
  - "tutorial": the PyTorch tutorial's loader verbatim — `torchvision.datasets.FashionMNIST` (a PIL
    image per item) with `RandomCrop`, `RandomHorizontalFlip`, `ToTensor`, `Normalize`;
  - "tensor": a stronger one — the images normalised to float tensors once, before timing, and each
    item cropped and flipped as a tensor (no PIL, no per-item conversion).

Only the epoch's training loop is timed (ours: `Trainer.train_epoch`; naive: the loop), in wall
time and in process CPU time (steadier on a shared machine, where wall time also counts waits for
a core). The three alternate for `--rounds` rounds so that the load falls on all; the ratios of
each round are printed, then the medians.

    .venv/bin/python benchmarks/trainer_vs_naive.py [--images 10000] [--rounds 3] [--batch-size 256] [--threads N]
        [--model resnet9 --model-args '{"widths": [24, 48, 96, 192]}']
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from visionzoo.data.datasets import find_fashion_mnist, load_data
from visionzoo.engine.trainer import TrainConfig, Trainer
from visionzoo.registry import create_model


class PerSampleImages(Dataset):
    """A stronger naive loader: images normalised once, each item cropped and flipped as a tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float):
        self.images = [(image.float() / 255 - mean) / std for image in images]
        self.labels = labels.tolist()
        self.augment = transforms.Compose([transforms.RandomCrop(28, padding=2), transforms.RandomHorizontalFlip()])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.augment(self.images[i]), self.labels[i]


def tutorial_dataset(folder: Path, images: torch.Tensor, mean: float, std: float) -> Dataset:
    """`torchvision.datasets.FashionMNIST` as the tutorial builds it, over the raw IDX files
    decompressed into `folder` (torchvision looks for them there and would otherwise download),
    restricted to the training images given (found by content, so both loops see the same ones)."""
    raw = folder / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in find_fashion_mnist().glob("*-ubyte.gz"):
        with gzip.open(gz) as source, open(raw / gz.stem, "wb") as target:
            shutil.copyfileobj(source, target)
    augment = transforms.Compose([transforms.RandomCrop(28, padding=2), transforms.RandomHorizontalFlip(),
                                  transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    full = datasets.FashionMNIST(folder, train=True, transform=augment)
    position = {bytes(image.numpy()): i for i, image in enumerate(full.data)}
    return Subset(full, [position[bytes(image[0].numpy())] for image in images])


def naive_epoch(cfg: TrainConfig, dataset: Dataset) -> tuple[float, float, int]:
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=10, in_chans=1, image_size=28, **cfg.model_args)
    # The tutorial's optimiser: torch's default implementation (a loop over tensors on the CPU),
    # the same Nesterov rule and rates as ours (which runs the fused kernel).
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                                weight_decay=cfg.weight_decay)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=len(loader))
    model.train()
    seen = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for images, labels in loader:
        loss = F.cross_entropy(model(images), labels, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        seen += len(labels)
    return time.perf_counter() - started, time.process_time() - cpu_started, seen


def our_epoch(cfg: TrainConfig) -> tuple[float, float, int, Trainer]:
    trainer = Trainer(cfg)
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer.train_epoch()
    return (time.perf_counter() - started, time.process_time() - cpu_started,
            trainer.steps_per_epoch * cfg.batch_size, trainer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000, help="training images per epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    parser.add_argument("--model", default="resnet9_slim")
    parser.add_argument("--model-args", type=json.loads, default={}, help="builder arguments as JSON")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(model=args.model, model_args=args.model_args, epochs=1, batch_size=args.batch_size, train_limit=args.images,
                      val_size=1000, quiet=True)
    data = load_data(cfg.data, val_size=cfg.val_size, seed=cfg.seed)
    subset = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(cfg.seed))[:args.images]
    images, labels = data.train.fetch(subset)
    mean, std = data.mean[0], data.std[0]
    with tempfile.TemporaryDirectory() as folder:
        loaders = {"tutorial": tutorial_dataset(Path(folder), images, mean, std),
                   "tensor": PerSampleImages(images, labels, mean, std)}
        ratios = {name: ([], []) for name in loaders}    # by wall time, by CPU time
        for round_ in range(1, args.rounds + 1):
            line = []
            for name, dataset in loaders.items():
                naive_wall, naive_cpu, naive_seen = naive_epoch(cfg, dataset)
                line.append((name, naive_seen / naive_wall, naive_seen / naive_cpu))
            ours_wall, ours_cpu, ours_seen, trainer = our_epoch(cfg)
            ours_rate, ours_cpu_rate = ours_seen / ours_wall, ours_seen / ours_cpu
            print(f"round {round_}: ours {ours_rate:.0f} img/s, {ours_cpu_rate:.0f} img/CPU-s (amp={trainer.amp}, "
                  f"channels_last={trainer.channels_last})", flush=True)
            for name, rate, cpu_rate in line:
                ratios[name][0].append(ours_rate / rate)
                ratios[name][1].append(ours_cpu_rate / cpu_rate)
                print(f"  naive ({name}) {rate:.0f} img/s, {cpu_rate:.0f} img/CPU-s: ratio {ratios[name][0][-1]:.2f} "
                      f"(by CPU time {ratios[name][1][-1]:.2f})", flush=True)
    print(f"median ratio ours/naive over {args.rounds} rounds ({args.model} {args.model_args or ''}, {args.images} images, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads):")
    for name, (wall, cpu) in ratios.items():
        print(f"  vs {name}: {statistics.median(wall):.2f} (by CPU time {statistics.median(cpu):.2f})")

if __name__ == "__main__":
    main()
