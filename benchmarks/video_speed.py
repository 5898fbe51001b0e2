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
import copy
import sys

import torch
import torch.nn.functional as F
import torchvision.models.video as tv_video
from side_by_side import compare, table_row

import visionzoo as vz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="r3d_18,mc3_18,r2plus1d_18")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--control", action="store_true", help="time a copy of torchvision's network too (A/A)")
    parser.add_argument("--clock", default="wall", choices=("wall", "cpu"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"clips 3×{args.frames}×{args.size}², {args.dtype}, median of {args.repeats} interleaved repeats, "
          f"clips per {args.clock} second")
    control = " | A/A" if args.control else ""
    print(f"| network | params ours / torchvision | train clips/s ours | torchvision | ratio{control} "
          f"| infer clips/s ours | torchvision | ratio{control} |")
    print("| --- " * (8 + 2 * args.control) + "|", flush=True)
    generator = torch.Generator().manual_seed(0)
    clips = torch.randn(args.batch_size, 3, args.frames, args.size, args.size, generator=generator)
    labels = torch.randint(0, args.classes, (args.batch_size,), generator=generator)
    for name in args.models.split(","):
        torch.manual_seed(0)
        ours = vz.create_model(name, num_classes=args.classes)
        torch.manual_seed(0)
        theirs = getattr(tv_video, name)(num_classes=args.classes)
        found = compare(ours, theirs, clips, lambda logits: F.cross_entropy(logits, labels), repeats=args.repeats,
                        steps=args.steps, dtype=args.dtype,
                        control=copy.deepcopy(theirs) if args.control else None, clock=args.clock)
        params = tuple(sum(p.numel() for p in m.parameters()) for m in (ours, theirs))
        print(table_row(name, params, found), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
