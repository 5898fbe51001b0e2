"""Fashion-MNIST accuracy of one network per family of the zoo under one fixed budget.

Budget: 1 epoch over 10 000 training images (a seeded subset of the training split),
batch 128, the default recipe otherwise (Nesterov SGD, one-cycle at 0.1, label smoothing 0.1,
crop + flip, bf16 autocast), each network in its documented small-input form at 28×28×1.
Prints a Markdown table; this is a benchmark, not a test. The networks of 0.4–1.6 G MACs per
28×28 image ran under a smaller stated budget (`--limit 3000 --val-size 1000 --test-limit 2000`).

One rate does not fit every family (issue 26, item 13): the networks of `OWN_SETTINGS` train with
their own peak rate and, for AlexNet and ZFNet, He et al.'s initialisation (`--init he_fan_in`;
benchmarks/alexnet_start.py says why), measured in BENCHMARKS.md ("Family table") and in the
family-table experiment's docstring; every other network at 0.1 with its own initialisation. `--lr`
and `--init` given set the rate and the initialisation (`--init paper`: the network's own) of every
network. The row prints the settings used.

    .venv/bin/python benchmarks/family_table.py [--epochs 1] [--limit 10000] [--val-size 5000]
        [--test-limit N] [--image-size S] [--lr LR] [--init SCHEME] [MODEL ...]
"""
from __future__ import annotations

import argparse
import tempfile
import time

from visionzoo.engine.trainer import NonFiniteLoss, train
from visionzoo.experiments.family_table import OWN_LR
from visionzoo.layers.init import INIT_SCHEMES
from visionzoo.registry import get_entry

SHARED_LR = 0.1
# Networks left at chance by the shared rate, with what made them learn: NiN's rate is the
# experiment's, the others were measured with this script (BENCHMARKS.md, "Family table"); why
# AlexNet and ZFNet need He's initialisation: models/alexnet.py.
OWN_SETTINGS = {
    **{name: {"lr": lr} for name, lr in OWN_LR.items()},
    "zfnet": {"lr": 0.01, "init": "he_fan_in"},
    "alexnet": {"lr": 0.01, "init": "he_fan_in"},
    "resnext50_32x4d": {"lr": 0.02},
    "resnest50d": {"lr": 0.02},
    "nonlocal_resnet50": {"lr": 0.02},
}

# Cheapest first; GoogLeNet keeps its full 28×28 grid through every module (1.1 G MACs).
# Part I (the CNN lineage), then part II (efficient, attention, capsule, transformer, NF networks).
LINEAGE = ["lenet5", "lenet", "highway_fc", "resnet20_cifar", "nin_cifar10", "vgg11_bn",
           "densenet_bc_100_12", "highway_conv", "zfnet", "wrn16_4", "alexnet", "googlenet"]
MODERN = ["mcdnn", "stn_cnn", "mobilenet_v2", "shufflenet_v2_x0_5", "efficientnet_b0", "odenet_mnist",
          "aig_resnet20_cifar", "squeezenet1_1", "capsnet", "vit_tiny_patch4_28", "convnext_tiny",
          "xnor_nin_cifar10", "seresnet18", "cbam_resnet18", "nfnet_f0", "nf_resnet50", "mixer_s16_224",
          "nonlocal_resnet50", "resnest50d", "attention56"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", default=LINEAGE + MODERN)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--lr", type=float, help=f"peak rate of every network (default: {SHARED_LR}, "
                        "or the network's own in OWN_SETTINGS)")
    parser.add_argument("--init", choices=INIT_SCHEMES, help="initialisation of every network (default: its own, "
                        "or the one in OWN_SETTINGS)")
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--test-limit", type=int, help="test on the first N test images (default: all 10 000)")
    parser.add_argument("--image-size", type=int, help="resize the images to this side (default: 28, as stored)")
    args = parser.parse_args()
    print(f"| network | family | params | MACs ({args.image_size or 28}²) | settings | test top-1 "
          "| training s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        own = {"lr": SHARED_LR, **OWN_SETTINGS.get(name, {})}
        own.update({key: value for key, value in (("lr", args.lr), ("init", args.init)) if value is not None})
        setting = ", ".join(f"{key} {value}" for key, value in own.items())
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            try:
                summary = train(model=name, data="fashion-mnist", epochs=args.epochs, batch_size=128,
                                train_limit=args.limit, val_size=args.val_size, test_limit=args.test_limit,
                                image_size=args.image_size, quiet=True, out=out, **own)
            except NonFiniteLoss as exc:  # a network that diverges at this rate is a result too
                print(f"| {name} | {get_entry(name).family} | | | {setting} | diverged: {exc} | |", flush=True)
                continue
        print(f"| {name} | {get_entry(name).family} | {summary['params'] / 1e6:.2f} M | "
              f"{summary['macs'] / 1e6:.1f} M | {setting} | {summary['test_top1']:.4f} | "
              f"{summary['train_seconds']:.0f} (wall {time.perf_counter() - started:.0f}) |", flush=True)


if __name__ == "__main__":
    main()
