"""ReLU vs tanh: Krizhevsky, Sutskever, Hinton. ImageNet Classification with Deep Convolutional
Neural Networks. NIPS 2012, §3.1 and Fig. 1 (notes 003, "CNN - Alex Net Architecture"): a
four-layer convolutional network with ReLUs reaches 25 % training error on CIFAR-10 six times
faster than the same network with tanh units, each with its own fastest learning rate and no
regularisation.

Here on Fashion-MNIST: conv5×5-act-pool, conv5×5-act-pool, fc-act, fc, trained with SGD momentum
0.9 at two learning rates per activation (the faster run counts); the training error is smoothed
over a window of steps and the step at which it first reaches the target is compared.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Context, Outcome, experiment, verdict
from .common import budget_data, figure, fit, save_figure

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def four_layer_cnn(act: type[nn.Module], in_chans: int, side: int, classes: int, width: int = 32) -> nn.Sequential:
    flat = 2 * width * (side // 4) ** 2
    return nn.Sequential(nn.Conv2d(in_chans, width, 5, padding=2), act(), nn.MaxPool2d(2),
                         nn.Conv2d(width, 2 * width, 5, padding=2), act(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(flat, 4 * width), act(), nn.Linear(4 * width, classes))


def steps_to_reach(errors: list[float], target: float, window: int) -> int | None:
    """First step (from 1) at which the mean error of the last `window` steps is ≤ target."""
    for step in range(window, len(errors) + 1):
        if sum(errors[step - window:step]) / window <= target:
            return step
    return None


def smoothed(errors: list[float], window: int) -> list[float]:
    return [sum(errors[max(0, i - window + 1):i + 1]) / (i + 1 - max(0, i - window + 1)) for i in range(len(errors))]


@experiment("relu-vs-tanh", notes="003", heading="CNN - Alex Net Architecture",
            claim="a four-layer CNN with ReLUs reaches a given training error several times faster "
                  "(six on CIFAR-10) than the same network with tanh units (AlexNet Fig. 1)")
def relu_vs_tanh(ctx: Context) -> Outcome:
    bundle, train, normalizer = budget_data(ctx, ctx.pick(256, 6000, None))
    epochs, window, width = ctx.pick(1, 2, 3), ctx.pick(2, 20, 50), ctx.pick(8, 16, 16)
    target = ctx.pick(0.75, 0.2, 0.15)  # the training error both are asked to reach
    channels, side = bundle.input_size[0], bundle.input_size[-1]
    curves, table = {}, []
    for name, act in ACTIVATIONS.items():
        best = None
        for lr in ctx.pick((0.05,), (0.01, 0.05), (0.01, 0.05)):
            torch.manual_seed(ctx.seed)
            net = four_layer_cnn(act, channels, side, len(bundle.classes), width)
            steps: list = []
            fit(net, train, normalizer, epochs=epochs, lr=lr, seed=ctx.seed, batch_size=64, steps=steps,
                device=ctx.device)
            errors = [e for _, e in steps]
            reached = steps_to_reach(errors, target, window)
            table.append({"activation": name, "lr": lr, "steps_to_target": reached,
                          "final_smoothed_error": smoothed(errors, window)[-1]})
            if best is None or (reached or 10 ** 9) < (best[1] or 10 ** 9):
                best = (lr, reached, errors)
        curves[name] = best
    relu_steps, tanh_steps = curves["relu"][1], curves["tanh"][1]
    if relu_steps is None:
        outcome, speedup = verdict(False, conclusive=tanh_steps is not None), None
    else:  # tanh never reaching the target within the run counts as slower
        speedup = (tanh_steps or len(curves["tanh"][2])) / relu_steps
        outcome = verdict(speedup > 1.5)

    fig, axes = figure(1, 1, width=6)
    for name, (lr, reached, errors) in curves.items():
        axes[0, 0].plot(range(1, len(errors) + 1), smoothed(errors, window),
                        "-" if name == "relu" else "--", label=f"{name} (lr {lr}): target at step {reached}")
    axes[0, 0].axhline(target, color="grey", lw=0.8)
    axes[0, 0].set(xlabel="step", ylabel=f"training error ({window}-step mean)", title="AlexNet Fig. 1 on " + bundle.name)
    axes[0, 0].legend()
    return Outcome(
        outcome,
        f"Steps to {target:.0%} training error: ReLU {relu_steps}, tanh {tanh_steps}"
        + (f" (tanh never reached it in {len(curves['tanh'][2])} steps)" if tanh_steps is None else "")
        + (f": ReLU {speedup:.1f}× faster (held means > 1.5×)." if speedup else "."),
        f"{bundle.name}, {len(train)} training images, batch 64, {epochs} epoch(s), SGD momentum 0.9, no weight decay, "
        f"no augmentation; conv({width},5×5)-pool-conv({2 * width},5×5)-pool-fc({4 * width})-fc; each activation at its faster learning "
        f"rate of {sorted({r['lr'] for r in table})}; error averaged over {window} steps.",
        {"target": target, "window": window, "runs": table,
         "curves": {name: {"lr": c[0], "steps_to_target": c[1], "errors": c[2]} for name, c in curves.items()}},
        [save_figure(fig, ctx, "relu-vs-tanh.png")], table)
