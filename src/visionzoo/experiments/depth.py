"""Degradation: He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016, Fig. 1
and Fig. 6 (notes 002, "ResNet"; notes 004, "Residual connections"): on CIFAR-10 the 56-layer plain
network has a higher *training* error than the 20-layer one — not over-fitting, an optimisation
difficulty — while with identity shortcuts the deeper network trains at least as well.

Here: plain20/56_cifar and resnet20/56_cifar (models/resnet.py, option A shortcuts, BN) trained
by the Trainer on Fashion-MNIST with the same schedule; the verdict is read from the final
training error (as measured while training, the paper's thin curves).
"""
from __future__ import annotations

from .base import Context, Outcome, experiment, verdict
from .common import figure, precision_note, save_figure, train_registered

NETWORKS = ("plain20_cifar", "plain56_cifar", "resnet20_cifar", "resnet56_cifar")


@experiment("degradation", notes="002", heading="Deep Residual Learning for Image Recognition",
            claim="the 56-layer plain net has a higher training error than the 20-layer plain net; "
                  "the 56-layer residual net does not (ResNet Fig. 1/6)")
def degradation(ctx: Context) -> Outcome:
    settings = dict(train_limit=ctx.pick(64, 1500, 12000), epochs=ctx.pick(1, 3, 10),
                    image_size=ctx.pick(None, 14, None), batch_size=ctx.pick(32, 64, 128),
                    lr=0.1, optimizer="sgd", weight_decay=1e-4, schedule="cosine")
    runs = {}
    for name in NETWORKS:
        summary, trainer = train_registered(ctx, name, name, **settings)
        runs[name] = {"train_error": [1 - h["train_top1"] for h in trainer.history], "test_top1": summary["test_top1"],
                      "params": summary["params"]}
    final = {name: run["train_error"][-1] for name, run in runs.items()}
    plain_gap = final["plain56_cifar"] - final["plain20_cifar"]
    residual_gap = final["resnet56_cifar"] - final["resnet20_cifar"]
    # Differences within one point of training error are read as noise of a short run.
    held = plain_gap > 0.01 and residual_gap < plain_gap and residual_gap <= 0.01
    conclusive = abs(plain_gap) > 0.01 or abs(residual_gap) > 0.01

    fig, axes = figure(1, 2)
    for ax, family in zip(axes[0], ("plain", "resnet")):
        for name, style in ((f"{family}20_cifar", "--"), (f"{family}56_cifar", "-")):
            errors = runs[name]["train_error"]
            ax.plot(range(1, len(errors) + 1), errors, style, marker="o", label=name)
        ax.set(xlabel="epoch", ylabel="training error", title=family)
        ax.legend()
    table = [{"network": name, "params": run["params"], "final_train_error": run["train_error"][-1],
              "test_top1": run["test_top1"]} for name, run in runs.items()]
    return Outcome(
        verdict(held, conclusive),
        f"Final training error: plain 20 → 56 layers {final['plain20_cifar']:.3f} → {final['plain56_cifar']:.3f} "
        f"({plain_gap:+.3f}); residual {final['resnet20_cifar']:.3f} → {final['resnet56_cifar']:.3f} ({residual_gap:+.3f}).",
        f"{', '.join(NETWORKS)} trained by the Trainer: SGD momentum 0.9, lr 0.1 cosine, weight decay 1e-4, no "
        f"augmentation, no label smoothing, {settings['epochs']} epoch(s), batch {settings['batch_size']}, "
        f"{settings['train_limit'] or 'all'} training images{' at 14×14' if settings['image_size'] else ''}{precision_note(ctx)}; seed {ctx.seed}.",
        {"settings": settings, "runs": runs}, [save_figure(fig, ctx, "degradation.png")], table)
