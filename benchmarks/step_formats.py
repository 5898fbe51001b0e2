"""How much faster one bare training step gets from bf16 autocast and channels_last (issue 6, item 3).

The trainer's advantage over a naive loop, once its data path costs nothing, is the model step's own
speed-up; this measures that bound with no data loading at all. The same network (default the
3/8-width ResNet-9 of `fmnist95`) is built four times — fp32 or bf16 autocast × NCHW or
channels_last — and each takes forward, label-smoothed loss, backward and a Nesterov step on one
fixed random batch of 28×28 grey images. The four alternate for `--rounds` rounds of `--steps`
steps; the median img/s of each is printed with its ratio to fp32 NCHW (the naive loop's format).

    .venv/bin/python benchmarks/step_formats.py [--model resnet9] [--model-args '{"widths": [24, 48, 96, 192]}']
        [--batch-size 256] [--steps 5] [--rounds 3] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from visionzoo.registry import create_model

FORMATS = {"fp32 NCHW": (False, False), "fp32 channels_last": (False, True),
           "bf16 NCHW": (True, False), "bf16 channels_last": (True, True)}


def training_step(args, bf16: bool, channels_last: bool):
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, in_chans=1, image_size=28, **args.model_args)
    images, labels = torch.randn(args.batch_size, 1, 28, 28), torch.randint(0, 10, (args.batch_size,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def step():
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet9")
    parser.add_argument("--model-args", type=json.loads, default={"widths": [24, 48, 96, 192]},
                        help="builder arguments as JSON")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = {name: training_step(args, *flags) for name, flags in FORMATS.items()}
    for step in steps.values():   # warm-up: oneDNN picks and caches its kernels
        step(), step()
    rates = {name: [] for name in FORMATS}
    for _ in range(args.rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates[name].append(args.steps * args.batch_size / (time.perf_counter() - started))
    baseline = statistics.median(rates["fp32 NCHW"])
    print(f"{args.model} {args.model_args or ''}, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} rounds × {args.steps} steps")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  {name:<20} {rate:7.0f} img/s   {rate / baseline:.2f}× fp32 NCHW")


if __name__ == "__main__":
    main()
