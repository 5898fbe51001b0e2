"""Robustness to translated, rotated and scaled images.

stn-translation — Jaderberg, Simonyan, Zisserman, Kavukcuoglu. Spatial Transformer Networks.
NeurIPS 2015, §4.1 and Table 1 (notes 002, "Spatial Transformer Networks"): on distorted MNIST
(rotated, translated, scaled) the ST-CNN makes fewer errors than the same CNN without the
transformer. Here: models/stn.py's `stn_cnn` and the same network with its transformer removed,
both trained on randomly distorted Fashion-MNIST and tested on increasingly distorted test images.

capsules-vs-cnn — Sabour, Frosst, Hinton. Dynamic Routing Between Capsules. NeurIPS 2017, §5.2
(notes 002, "Dynamic Routing Between Capsules"): trained on digits shifted by up to 2 pixels only,
CapsNet keeps more of its accuracy on affinely transformed digits (affNIST: 79 %) than a CNN of
equal clean accuracy (66 %). Here: `capsnet` and `lenet` trained by the Trainer with 2-pixel
random crops, tested under random rotation, scaling and translation (an affNIST stand-in).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import registry
from ..core.runtime import evaluating
from ..data.loader import eval_batches
from .base import Context, Outcome, experiment, verdict
from .common import budget_data, figure, fit, precision_note, save_figure, train_registered


def distort(images: torch.Tensor, generator: torch.Generator, *, degrees: float = 0.0, shift: float = 0.0,
            scale: float = 0.0) -> torch.Tensor:
    """Each image rotated by U(±degrees), scaled by U(1 ± scale), moved by U(±shift) pixels per axis
    (bilinear, zero background); pixel values keep their range."""
    n, _, h, w = images.shape

    def uniform(low, high):
        return torch.rand(n, generator=generator, device=generator.device).to(images.device) * (high - low) + low
    angle = uniform(-degrees, degrees) * math.pi / 180
    factor = uniform(1 - scale, 1 + scale)
    # affine_grid maps output to input coordinates in [−1, 1]: the inverse of the wanted motion.
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, -sin, -uniform(-shift, shift) * 2 / w], 1),
                         torch.stack([sin, cos, -uniform(-shift, shift) * 2 / h], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images.float(), grid, align_corners=False, padding_mode="zeros")


def distorted_accuracy(model: nn.Module, split, normalizer, seed: int, device, limit: int, **distortion) -> float:
    generator = torch.Generator().manual_seed(seed)
    correct = seen = 0
    with torch.no_grad(), evaluating(model):
        for images, labels in eval_batches(split, 500, device=device):
            images, labels = images[:limit - seen], labels[:limit - seen]
            if not len(labels):
                break
            x = normalizer(distort(images, generator, **distortion))
            correct += int((model(x).argmax(1) == labels).sum())
            seen += len(labels)
    return correct / seen


@experiment("stn-translation", notes="002", heading="Spatial Transformer Networks",
            claim="a spatial transformer in front of a CNN makes it more accurate on rotated, translated and "
                  "scaled images than the same CNN without it (ST-CNN Table 1)")
def stn_translation(ctx: Context) -> Outcome:
    # The ST-CNN's 9×9 and 7×7 convolutions need 28×28: the smoke budget's 8×8 digits are resized.
    bundle, train, normalizer = budget_data(ctx, ctx.pick(128, 6000, 20000), image_size=ctx.pick(28, None, None))
    training = dict(degrees=45.0, shift=4.0, scale=0.2)  # the paper's RTS-style training distortion
    epochs = ctx.pick(1, 3, 8)
    networks = {}
    for name in ("CNN", "ST-CNN"):
        torch.manual_seed(ctx.seed)
        net = registry.create_model("stn_cnn", num_classes=len(bundle.classes), in_chans=bundle.input_size[0],
                                    image_size=bundle.input_size[-1])
        if name == "CNN":
            net.transformer = nn.Identity()
        fit(net, train, normalizer, epochs=epochs, lr=0.01, seed=ctx.seed, batch_size=64,
            device=ctx.device, augment=lambda images, g: distort(images, g, **training))
        networks[name] = net
    levels = [dict(degrees=d, shift=s, scale=z) for d, s, z in ((0, 0, 0), (15, 2, 0.1), (30, 3, 0.15), (45, 4, 0.2),
                                                                (60, 6, 0.3))]
    limit = ctx.pick(100, 2000, 10000)
    table = [{"distortion": f"±{lv['degrees']}°, ±{lv['shift']} px, ×(1±{lv['scale']})",
              **{name: distorted_accuracy(net, bundle.test, normalizer, ctx.seed, ctx.device, limit, **lv)
                 for name, net in networks.items()}} for lv in levels]
    distorted = table[1:]
    gain = sum(r["ST-CNN"] - r["CNN"] for r in distorted) / len(distorted)

    fig, axes = figure(1, 1, width=6)
    for name in networks:
        axes[0, 0].plot(range(len(levels)), [1 - r[name] for r in table], "-o", label=name)
    axes[0, 0].set_xticks(range(len(levels)), [r["distortion"] for r in table], rotation=20, fontsize=7)
    axes[0, 0].set(ylabel="test error", title=f"distorted {bundle.name}")
    axes[0, 0].legend()
    return Outcome(
        verdict(gain > 0, conclusive=abs(gain) >= 0.005),
        "Test accuracy CNN / ST-CNN: " + "; ".join(f"{r['distortion']} {r['CNN']:.3f} / {r['ST-CNN']:.3f}" for r in table)
        + f". Mean gain of the transformer on distorted images {gain:+.4f} (|gain| < 0.005 reads as inconclusive).",
        f"{bundle.name}, {len(train)} training images randomly rotated ±45°, shifted ±4 px, scaled ×(1±0.2); stn_cnn "
        f"and the same network with its transformer replaced by the identity, same seed, SGD momentum 0.9 lr 0.01, "
        f"batch 64, {epochs} epoch(s); {limit} test images per distortion level.",
        {"levels": levels, "accuracy": table, "mean_gain": gain}, [save_figure(fig, ctx, "stn-translation.png")], table)


AFFINE_TEST = dict(degrees=20.0, shift=3.0, scale=0.2)


@experiment("capsules-vs-cnn", notes="002", heading="Dynamic Routing Between Capsules",
            claim="trained with 2-pixel shifts only, CapsNet keeps more of its accuracy on affinely transformed "
                  "digits than a CNN (CapsNet §5.2: 79 % vs 66 % on affNIST)")
def capsules_vs_cnn(ctx: Context) -> Outcome:
    settings = dict(train_limit=ctx.pick(64, 3000, 10000), epochs=ctx.pick(1, 2, 5), batch_size=ctx.pick(32, 64, 128),
                    lr=ctx.pick(1e-3, 1e-3, 1e-3), optimizer="adamw", weight_decay=0.0, schedule="cosine", crop=2,
                    image_size=ctx.pick(18, None, None))  # smoke: the smallest side CapsNet takes
    limit = ctx.pick(64, 2000, 10000)
    table = []
    for name in ("lenet", "capsnet"):
        summary, trainer = train_registered(ctx, name, name, **settings)
        args = (trainer.model, trainer.data.test, trainer.normalizer, ctx.seed, trainer.device, limit)
        clean, affine = distorted_accuracy(*args), distorted_accuracy(*args, **AFFINE_TEST)
        table.append({"network": name, "params": summary["params"], "clean_acc": clean, "affine_acc": affine,
                      "kept": affine / max(clean, 1e-9)})
    cnn, caps = table
    held = caps["kept"] > cnn["kept"]

    fig, axes = figure(1, 1, width=5.5)
    for offset, key in ((-0.2, "clean_acc"), (0.2, "affine_acc")):
        axes[0, 0].bar([i + offset for i in range(len(table))], [r[key] for r in table], 0.4, label=key.replace("_acc", ""))
    axes[0, 0].set_xticks(range(len(table)), [r["network"] for r in table])
    axes[0, 0].set(ylabel="test accuracy", title="trained with 2-px shifts; tested clean and affine")
    axes[0, 0].legend()
    return Outcome(
        verdict(held, conclusive=abs(caps["kept"] - cnn["kept"]) >= 0.01),
        f"LeNet {cnn['clean_acc']:.3f} clean → {cnn['affine_acc']:.3f} affine (keeps {cnn['kept']:.1%}); CapsNet "
        f"{caps['clean_acc']:.3f} → {caps['affine_acc']:.3f} (keeps {caps['kept']:.1%}). Differences in the kept "
        f"fraction under 1 point read as inconclusive.",
        f"Trainer: {settings['train_limit'] or 'all'} training images, {settings['epochs']} epoch(s), AdamW lr 1e-3 "
        f"cosine, random 2-pixel crops (the paper's shifts), CapsNet's own margin + reconstruction loss; {limit} test "
        f"images clean and rotated ±20°, scaled ×(1±0.2), shifted ±3 px (affNIST stand-in){precision_note(ctx)}.",
        {"settings": settings, "networks": table, "affine_test": AFFINE_TEST},
        [save_figure(fig, ctx, "capsules-vs-cnn.png")], table)
