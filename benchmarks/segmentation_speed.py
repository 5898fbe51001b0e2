"""Our encoder U-Net against segmentation_models_pytorch's `Unet`, same encoder and image size (issue 22).

Both networks are built in one process with the same encoder (a ResNet, random weights: smp's
`encoder_weights=None`, ours from the zoo), the same decoder channels (256, 128, 64, 32, 16) and
classes; their parameter counts are printed so that the same network is compared. Training steps
(forward, pixel-wise cross-entropy, backward, SGD step) and inference forwards alternate between
the two, `--repeats` times (side_by_side.py): ratio = the median of ours / smp within a repeat (> 1: ours faster).
smp is a benchmark-only dependency (`pip install segmentation-models-pytorch`), never imported by
visionzoo.

    .venv/bin/python benchmarks/segmentation_speed.py [--encoders resnet18,resnet34] [--size 128]
        [--channels 3] [--batch-size 16] [--dtype fp32|bf16] [--repeats 5] [--steps 5] [--threads N] [--control]
        [--clock wall|cpu]
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from side_by_side import add_comparison_options, compare_row, start_table

import visionzoo as vz


def build(encoder: str, classes: int, channels: int):
    import segmentation_models_pytorch as smp
    torch.manual_seed(0)
    ours = vz.create_model(f"unet_{encoder}", num_classes=classes, in_chans=channels)
    torch.manual_seed(0)
    theirs = smp.Unet(encoder, encoder_weights=None, in_channels=channels, classes=classes)
    return ours, theirs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", default="resnet18,resnet34")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    add_comparison_options(parser, repeats=5, steps=5)
    args = parser.parse_args()
    start_table(args, f"batch {args.batch_size}, {args.channels}×{args.size}², channels_last", "encoder", "smp",
                "img")
    for encoder in args.encoders.split(","):
        ours, theirs = build(encoder, args.classes, args.channels)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch_size, args.channels, args.size, args.size, generator=generator)
        x = x.contiguous(memory_format=torch.channels_last)
        masks = torch.randint(0, args.classes, (args.batch_size, args.size, args.size), generator=generator)
        ours, theirs = (m.to(memory_format=torch.channels_last) for m in (ours, theirs))
        compare_row(args, encoder, ours, theirs, x, lambda logits: F.cross_entropy(logits, masks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
