"""Why AlexNet and ZFNet stay at chance in the family table: how much of the image reaches their scores.

Krizhevsky et al. (NeurIPS 2012, Sec. 5) draw every weight from N(0, 0.01²) and start the biases of
conv2, conv4, conv5, FC6 and FC7 at 1; Zeiler & Fergus (ECCV 2014, Sec. 3) the same weights with biases
0. He et al. (ICCV 2015, Sec. 2.2) observe that deep rectifier networks drawn with such a fixed std
stall, and draw N(0, 2/fan_in) instead (Eq. 10, the engine's `--init he_fan_in`). BVLC's Caffe
reproduction of AlexNet (models/bvlc_alexnet: readme and train_val.prototxt) set those biases to 0.1
"(found necessary for training, as initialization to 1 gave flat loss)" and drew FC6/FC7 from
N(0, 0.005²). This script trains each initialisation in one plain loop with the family-table
benchmark's optimiser and, at the listed steps, looks at the network on 256 training images (eval
mode):

* per ReLU, the share of its activations' mean square that varies across images (1e-8: every image
  gives nearly the same activations; the image is invisible behind the biases);
* the spread of the class scores across images (their std over images, averaged over classes), the
  spread of the classes' mean scores (the offsets the network learns first), how many classes it
  predicts, the loss, and the share of FC7's units that are 0 for every image.

The loop: Fashion-MNIST resized to `--image-size` (14, as the benchmark's longer look), a seeded
subset of `--limit` training images, batch 128 drawn with replacement, the engine's Nesterov SGD
(`engine.optim.build_optimizer`: momentum 0.9, weight decay 5e-4 on weights only), label smoothing 0.1, the engine's one-cycle multiplier over
`--steps`, fp32, no augmentation.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/alexnet_start.py [--network alexnet|zfnet]
        [--init paper|caffe|he_fan_in] [--lr 0.01] [--steps 69] [--image-size 14] [--limit 3000] [--seed 0]
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from visionzoo.data.datasets import load_data
from visionzoo.data.loader import Normalizer
from visionzoo.engine.optim import build_optimizer
from visionzoo.engine.schedules import lr_factor
from visionzoo.engine.trainer import TrainConfig
from visionzoo.layers.init import initialise
from visionzoo.registry import create_model

PROBE_IMAGES = 256
REPORTED_STEPS = (0, 5, 20, 69, 200)
BATCH = 128


def caffe_init(model: nn.Module) -> None:
    """BVLC's AlexNet: N(0, 0.01²) weights but N(0, 0.005²) in FC6 and FC7; the paper's non-zero biases 0.1."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    hidden_fc = [m for m in layers if isinstance(m, nn.Linear)][:-1]
    for layer in layers:
        nn.init.normal_(layer.weight, 0.0, 0.005 if layer in hidden_fc else 0.01)
        if float(layer.bias.detach().abs().max()) > 0:   # the layers the paper starts at 1
            nn.init.constant_(layer.bias, 0.1)


@torch.no_grad()
def look(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> str:
    activations = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: activations.append(out.flatten(1)))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    model.eval()
    scores = model(images)
    model.train()
    for hook in hooks:
        hook.remove()
    image_share = [float(a.var(0).mean() / (a ** 2).mean().clamp_min(1e-30)) for a in activations]
    last_dead = float((activations[-1] <= 0).all(0).double().mean())
    return (f"image share per ReLU {' '.join(f'{s:.0e}' for s in image_share)} | scores' spread across images "
            f"{float(scores.std(0).mean()):.1e}, class offsets {float(scores.mean(0).std()):.1e}, "
            f"{len(set(scores.argmax(1).tolist()))} classes predicted, loss {float(F.cross_entropy(scores, labels)):.3f}, "
            f"FC7 units dead {last_dead:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", default="alexnet", choices=("alexnet", "zfnet"))
    parser.add_argument("--init", default="paper", choices=("paper", "caffe", "he_fan_in"))
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=69)
    parser.add_argument("--image-size", type=int, default=14)
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.init == "caffe" and args.network != "alexnet":
        parser.error("--init caffe is BVLC's AlexNet initialisation; zfnet takes paper or he_fan_in")

    torch.manual_seed(args.seed)
    data = load_data("fashion-mnist", image_size=args.image_size, train_limit=args.limit, val_size=1000)
    images, labels = data.train.fetch(torch.arange(len(data.train)))
    images = Normalizer(data.mean, data.std)(images)
    model = create_model(args.network, num_classes=10, in_chans=1, image_size=args.image_size)
    if args.init == "caffe":
        caffe_init(model)
    elif args.init != "paper":
        initialise(model, args.init)
    optimizer = build_optimizer(model, TrainConfig(optimizer="nesterov", lr=args.lr, weight_decay=5e-4))
    draw = torch.Generator().manual_seed(args.seed)
    probe, probe_labels = images[:PROBE_IMAGES], labels[:PROBE_IMAGES]
    print(f"{args.network}, init {args.init}, lr {args.lr}, {args.image_size}×{args.image_size}")
    print(f"step 0: {look(model, probe, probe_labels)}", flush=True)
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * lr_factor(step, total_steps=args.steps, steps_per_epoch=len(images) // BATCH,
                                              schedule="onecycle")
        index = torch.randint(len(images), (BATCH,), generator=draw)
        loss = F.cross_entropy(model(images[index]), labels[index], label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step + 1 in REPORTED_STEPS or step + 1 == args.steps:
            print(f"step {step + 1}: {look(model, probe, probe_labels)}", flush=True)


if __name__ == "__main__":
    main()
