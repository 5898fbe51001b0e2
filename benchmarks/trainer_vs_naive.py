"""Our trainer's fast path against the loop of a PyTorch tutorial (issue 6, item 3).

Both train the same network (default `resnet9_slim`; `--model`, `--model-args`) on the same N Fashion-MNIST images for one epoch with the default
recipe's optimiser (Nesterov SGD, one-cycle, label smoothing 0.1) and augmentation (random crop
with padding 2, horizontal flip):

* ours — `visionzoo.train.train`: the split held as one uint8 tensor, batches gathered by index,
  crop/flip applied to the whole batch at once, channels_last, bf16 autocast where the CPU has it;
* naive — a `torch.utils.data.Dataset` of float tensors (no PIL) whose `__getitem__` crops and
  flips one image with torchvision transforms, a `DataLoader` collating them one by one, NCHW fp32.

Only the epoch's training loop is timed (ours: `Trainer.train_epoch`; naive: the loop), in wall
time and in process CPU time (steadier on a shared machine, where wall time also counts waits for
a core). The two alternate for `--rounds` rounds so that the load falls on both; the ratio of
each round is printed, then the median.

    .venv/bin/python benchmarks/trainer_vs_naive.py [--images 10000] [--rounds 2] [--batch-size 256] [--threads N]
        [--model resnet9 --model-args '{"widths": [24, 48, 96, 192]}']
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from visionzoo.data.datasets import load_data
from visionzoo.registry import create_model
from visionzoo.train.trainer import Trainer, TrainConfig, build_optimizer

class PerSampleImages(Dataset):
    """What a tutorial writes: one normalised float image per item, augmented one at a time."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float):
        self.images = [(image.float() / 255 - mean) / std for image in images]
        self.labels = labels.tolist()
        self.augment = transforms.Compose([transforms.RandomCrop(28, padding=2), transforms.RandomHorizontalFlip()])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.augment(self.images[i]), self.labels[i]


def naive_epoch(cfg: TrainConfig, dataset: Dataset) -> tuple[float, float, int]:
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=10, in_chans=1, image_size=28, **cfg.model_args)
    optimizer = build_optimizer(model, cfg)
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
    parser.add_argument("--rounds", type=int, default=2)
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
    dataset = PerSampleImages(images, labels, data.mean[0], data.std[0])
    ratios, cpu_ratios = [], []
    for round_ in range(1, args.rounds + 1):
        naive_wall, naive_cpu, naive_seen = naive_epoch(cfg, dataset)
        ours_wall, ours_cpu, ours_seen, trainer = our_epoch(cfg)
        ratios.append((ours_seen / ours_wall) / (naive_seen / naive_wall))
        cpu_ratios.append((ours_seen / ours_cpu) / (naive_seen / naive_cpu))
        print(f"round {round_}: ours {ours_seen / ours_wall:.0f} img/s (amp={trainer.amp}, channels_last="
              f"{trainer.channels_last}), naive {naive_seen / naive_wall:.0f} img/s, ratio {ratios[-1]:.2f}; "
              f"by CPU time {ours_seen / ours_cpu:.0f} vs {naive_seen / naive_cpu:.0f} img/CPU-s, "
              f"ratio {cpu_ratios[-1]:.2f}", flush=True)
    print(f"median ratio ours/naive over {args.rounds} rounds: {statistics.median(ratios):.2f} "
          f"(by CPU time {statistics.median(cpu_ratios):.2f}; {args.model} {args.model_args or ''}, {args.images} images, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
