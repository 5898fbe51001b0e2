"""Our Faster R-CNN against torchvision's `FasterRCNN` built with the same backbone, anchors, RoI
max pooling, proposal counts and image size (issue 21's target: ≥ 1.0× in training img/s and
inference ms per image).

The twin is torchvision's detector on our backbone's layers (a copy), its RPN and two-FC head sized
as ours, our settings passed to its constructor, RoI max pooling (torchvision's `roi_pool` on the one
feature map, instead of its default multi-scale RoIAlign) and its GeneralizedRCNNTransform without
the resize (our detector takes images at their final size); torchvision samples background RoIs
with IoU in [0, 0.5), ours in [0.1, 0.5) (Fast R-CNN's), the same count. Our weights are loaded from the
twin's through the registry's converter, so both start from the same weights and make the same
proposals and detections (tests/test_rcnn.py). Both are fed the same normalised batch and targets
(torchvision as a list). Training steps (forward, the four losses summed, backward, SGD step) and
inference forwards alternate between the two, `--repeats` times; the medians are compared:
ratio = ours / torchvision for img/s, torchvision / ours for ms per image (> 1: ours faster).

    .venv/bin/python benchmarks/detection_speed.py [--models faster_rcnn_small,faster_rcnn_vgg16]
        [--size-small 128] [--size-vgg16 224] [--batch-small 8] [--batch-vgg16 2] [--repeats 5]
        [--steps 2] [--threads N] [--quick]

`--quick` (a smoke check, < 60 s): faster_rcnn_small only, batch 2, 2 repeats of 1 step.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import visionzoo as vz
from visionzoo.models.rcnn import torchvision_twin
from visionzoo.registry import convert_state_dict

# The backbone layers torchvision's twin runs: our trunk's sequential features (VGG-16: conv1_1–conv5_3 + ReLU).
TWIN_BODY = {"faster_rcnn_small": lambda ours: ours.backbone.body.features,
             "faster_rcnn_vgg16": lambda ours: ours.backbone.body.features[:30]}


def detector_pair(name: str, side: int) -> tuple[nn.Module, nn.Module]:
    """Our detector and its torchvision twin, with the same weights."""
    torch.manual_seed(0)
    ours = vz.create_model(name)
    theirs = torchvision_twin(ours, TWIN_BODY[name](ours))
    ours.load_state_dict(convert_state_dict(name, theirs.state_dict(), "torchvision"))
    return ours, theirs


def scene_batch(batch: int, channels: int, side: int, generator: torch.Generator):
    """Random normalised images and 1–4 random boxes (sides 15–50 % of the image) per image with labels 1–10."""
    images = torch.randn(batch, channels, side, side, generator=generator)
    targets = []
    for _ in range(batch):
        count = int(torch.randint(1, 5, (), generator=generator))
        sides = side * (0.15 + 0.35 * torch.rand(count, 2, generator=generator))
        corners = (side - sides) * torch.rand(count, 2, generator=generator)
        targets.append({"boxes": torch.cat([corners, corners + sides], 1),
                        "labels": torch.randint(1, 11, (count,), generator=generator)})
    return images, targets


def run_steps(model, images, targets, *, as_list: bool, train: bool, steps: int) -> float:
    """Seconds per image over `steps` training steps (SGD) or inference forwards of `model`."""
    batch = list(images) if as_list else images
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9) if train else None
    model.train(train)
    started = time.perf_counter()
    for _ in range(steps):
        if train:
            losses = model(batch, copy.deepcopy(targets))
            optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optimizer.step()
        else:
            with torch.no_grad():
                model(batch)
    return (time.perf_counter() - started) / (steps * len(images))


def compare(ours, theirs, images, targets, *, repeats: int, steps: int) -> dict:
    """{"train": (ours, torchvision) img/s, "infer": (ours, torchvision) ms per image}: medians of interleaved
    repeats, after one warm-up step each."""
    found = {}
    for mode in ("train", "infer"):
        train = mode == "train"
        pair = ((ours, False), (theirs, True))
        for model, as_list in pair:
            run_steps(model, images, targets, as_list=as_list, train=train, steps=1)
        seconds: tuple[list, list] = ([], [])
        for _ in range(repeats):
            for slot, (model, as_list) in enumerate(pair):
                seconds[slot].append(run_steps(model, images, targets, as_list=as_list, train=train, steps=steps))
        medians = [statistics.median(values) for values in seconds]
        found[mode] = tuple(1 / s for s in medians) if train else tuple(1000 * s for s in medians)
    return found


def table_row(name: str, side: int, batch: int, params: tuple[int, int], found: dict) -> str:
    (train_ours, train_theirs), (infer_ours, infer_theirs) = found["train"], found["infer"]
    cells = [name, f"{side}×{side}", str(batch), f"{params[0]:,} / {params[1]:,}",
             f"{train_ours:.2f}", f"{train_theirs:.2f}", f"{train_ours / train_theirs:.3f}",
             f"{infer_ours:.1f}", f"{infer_theirs:.1f}", f"{infer_theirs / infer_ours:.3f}"]
    return "| " + " | ".join(cells) + " |"


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    return f"{names[0] if names else platform.processor() or platform.machine()}, {len(names) or '?'} logical CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="faster_rcnn_small,faster_rcnn_vgg16")
    parser.add_argument("--size-small", type=int, default=128)
    parser.add_argument("--size-vgg16", type=int, default=224)
    parser.add_argument("--batch-small", type=int, default=8)
    parser.add_argument("--batch-vgg16", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--quick", action="store_true", help="smoke check: faster_rcnn_small, batch 2, 2 × 1 step")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.batch_small, args.repeats, args.steps = "faster_rcnn_small", 2, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "benchmarks/detection_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"Command: `.venv/bin/python {command.strip()}`; {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"Machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads, fp32; median of "
          f"{args.repeats} interleaved repeats of {args.steps} steps")
    print("| detector | image | batch | params ours / torchvision | train img/s ours | torchvision | ratio "
          "| infer ms/image ours | torchvision | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    generator = torch.Generator().manual_seed(0)
    for name in args.models.split(","):
        small = name == "faster_rcnn_small"
        side, batch = (args.size_small, args.batch_small) if small else (args.size_vgg16, args.batch_vgg16)
        ours, theirs = detector_pair(name, side)
        images, targets = scene_batch(batch, ours.pretrained_cfg["input_size"][0], side, generator)
        found = compare(ours, theirs, images, targets, repeats=args.repeats, steps=args.steps)
        params = tuple(sum(p.numel() for p in m.parameters()) for m in (ours, theirs))
        print(table_row(name, side, batch, params, found), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
