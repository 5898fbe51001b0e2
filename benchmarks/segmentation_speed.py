"""Our encoder U-Net against segmentation_models_pytorch's `Unet`, same encoder and image size (issue 22).

Both networks are built in one process with the same encoder (a ResNet, random weights: smp's
`encoder_weights=None`, ours from the zoo), the same decoder channels (256, 128, 64, 32, 16) and
classes; their parameter counts are printed so that the same network is compared. Training steps
(forward, pixel-wise cross-entropy, backward, SGD step) and inference forwards alternate between
the two, `--repeats` times (side_by_side.py): ratio = the median of ours / smp within a repeat (> 1: ours faster).
smp is a benchmark-only dependency (`pip install segmentation-models-pytorch`), never imported by
visionzoo.

    .venv/bin/python benchmarks/segmentation_speed.py [--encoders resnet18,resnet34] [--size 128]
        [--channels 3] [--batch-size 16] [--dtype fp32|bf16] [--repeats 5] [--steps 5] [--threads N]
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from side_by_side import compare, table_row

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
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.channels}×{args.size}², {args.dtype}, channels_last, median of {args.repeats} interleaved repeats")
    print("| encoder | params ours / smp | train img/s ours | smp | ratio | infer img/s ours | smp | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    for encoder in args.encoders.split(","):
        ours, theirs = build(encoder, args.classes, args.channels)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch_size, args.channels, args.size, args.size, generator=generator)
        x = x.contiguous(memory_format=torch.channels_last)
        masks = torch.randint(0, args.classes, (args.batch_size, args.size, args.size), generator=generator)
        ours, theirs = (m.to(memory_format=torch.channels_last) for m in (ours, theirs))
        found = compare(ours, theirs, x, lambda logits: F.cross_entropy(logits, masks), repeats=args.repeats,
                        steps=args.steps, dtype=args.dtype)
        params = tuple(sum(p.numel() for p in m.parameters()) for m in (ours, theirs))
        print(table_row(encoder, params, found), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
