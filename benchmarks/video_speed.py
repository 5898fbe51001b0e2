"""Our video ResNets against torchvision's video models, same network and clip (issue 23).

`r3d_18`, `mc3_18` and `r2plus1d_18` are built in one process beside torchvision's
`torchvision.models.video` namesakes (random weights; parameter counts printed so that the same
network is compared). Training steps (forward, cross-entropy, backward, SGD step) and inference
forwards take turns between the two in a rotating order, `--repeats` times (side_by_side.py);
ratio = the median of ours / torchvision within a repeat (> 1: ours faster). `--control` adds a copy
of torchvision's network to the rotation (A/A): its ratio to torchvision, which should be 1, shows
how finely the run resolves. `--clock cpu` times the process's CPU seconds instead of wall seconds, for
a machine shared by more processes than cores.

    .venv/bin/python benchmarks/video_speed.py [--models r3d_18,mc3_18,r2plus1d_18] [--frames 8]
        [--size 56] [--batch-size 4] [--dtype fp32|bf16] [--repeats 6] [--steps 3] [--threads N] [--control]
        [--clock wall|cpu]
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
import torchvision.models.video as tv_video
from side_by_side import add_comparison_options, compare_row, start_table

import visionzoo as vz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="r3d_18,mc3_18,r2plus1d_18")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    add_comparison_options(parser, repeats=6, steps=3)
    args = parser.parse_args()
    start_table(args, f"batch {args.batch_size}, clips 3×{args.frames}×{args.size}²", "network", "torchvision",
                "clips")
    generator = torch.Generator().manual_seed(0)
    clips = torch.randn(args.batch_size, 3, args.frames, args.size, args.size, generator=generator)
    labels = torch.randint(0, args.classes, (args.batch_size,), generator=generator)
    for name in args.models.split(","):
        torch.manual_seed(0)
        ours = vz.create_model(name, num_classes=args.classes)
        torch.manual_seed(0)
        theirs = getattr(tv_video, name)(num_classes=args.classes)
        compare_row(args, name, ours, theirs, clips, lambda logits: F.cross_entropy(logits, labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
