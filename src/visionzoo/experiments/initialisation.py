"""Initialisation and vanishing/exploding signals: Glorot & Bengio, AISTATS 2010 (Xavier, Eq. 12);
He et al. ICCV 2015 (Eq. 10); Saxe et al. ICLR 2014 (orthogonal); Mishkin & Matas ICLR 2016
(LSUV) — notes 001, "Vanishing/exploding gradients" and the initialisation sections.

A deep plain MLP (no normalisation) with tanh or ReLU is initialised by each scheme of
train/init.py; on one batch the standard deviation of every hidden layer's activations and of
every weight gradient is measured, then the network is trained briefly. The claims: a small
random init makes the signal vanish with depth, zero init leaves every unit of a layer identical,
and the scheme matched to the activation (Xavier for tanh, He for ReLU), orthogonal and LSUV keep
it at a steady scale and train.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.init import initialise
from .base import Context, Outcome, experiment, verdict
from .common import budget_data, figure, fit, save_figure

SCHEMES = ("zero", "normal", "xavier_normal", "he_fan_in", "orthogonal", "lsuv")
MATCHED = {"tanh": "xavier_normal", "relu": "he_fan_in"}


def deep_mlp(inputs: int, classes: int, act: type[nn.Module], depth: int, width: int) -> nn.Sequential:
    layers, n = [nn.Flatten()], inputs
    for _ in range(depth):
        layers += [nn.Linear(n, width), act()]
        n = width
    return nn.Sequential(*layers, nn.Linear(n, classes))


def signal_profile(net: nn.Sequential, x: torch.Tensor, labels: torch.Tensor) -> tuple[list[float], list[float]]:
    """(std of each hidden activation, std of each hidden Linear's weight gradient) on one batch."""
    activations = []
    hooks = [m.register_forward_hook(lambda mod, args, out: activations.append(out.detach().std().item()))
             for m in net if isinstance(m, (nn.Tanh, nn.ReLU))]
    net.zero_grad()
    F.cross_entropy(net(x), labels).backward()
    for h in hooks:
        h.remove()
    gradients = [m.weight.grad.std().item() for m in net if isinstance(m, nn.Linear)][:-1]
    net.zero_grad()
    return activations, gradients


@experiment("initialisation", notes="001", heading="Vanishing and exploding gradients",
            claim="small random weights make activations and gradients vanish with depth and zero weights never "
                  "break symmetry, while Xavier (tanh), He (ReLU), orthogonal and LSUV keep a steady signal and train")
def initialisation(ctx: Context) -> Outcome:
    bundle, train, normalizer = budget_data(ctx, ctx.pick(128, 5000, 20000))
    c, h, w = bundle.input_size
    depth, width, epochs = ctx.pick(6, 10, 20), ctx.pick(32, 256, 256), ctx.pick(1, 2, 3)
    images, labels = train.fetch(torch.arange(min(256, len(train))))
    x = normalizer(images)
    table, profiles = [], {}
    for act_name, act in (("tanh", nn.Tanh), ("relu", nn.ReLU)):
        for scheme in SCHEMES:
            torch.manual_seed(ctx.seed)
            net = deep_mlp(c * h * w, len(bundle.classes), act, depth, width)
            initialise(net, scheme, 0.01, x)
            activations, gradients = signal_profile(net, x, labels)
            history = fit(net, train, normalizer, epochs=epochs, lr=0.01, seed=ctx.seed, batch_size=64, device=ctx.device)
            profiles[act_name, scheme] = (activations, gradients)
            table.append({"activation": act_name, "init": scheme, "first_act_std": activations[0],
                          "last_act_std": activations[-1], "first_grad_std": gradients[0],
                          "last_grad_std": gradients[-1], "final_train_loss": history[-1]["train_loss"]})
    row = {(r["activation"], r["init"]): r for r in table}
    vanishes = all(row[a, "normal"]["last_act_std"] < 1e-3 * max(row[a, "normal"]["first_act_std"], 1e-12)
                   for a in MATCHED)
    steady = all(0.2 < row[a, MATCHED[a]]["last_act_std"] / row[a, MATCHED[a]]["first_act_std"] < 5 for a in MATCHED)
    # Zero init: every hidden unit identical, so the hidden activations have no spread at all.
    symmetric = all(row[a, "zero"]["last_act_std"] == 0 for a in MATCHED)
    trains_better = all(row[a, MATCHED[a]]["final_train_loss"] < min(row[a, "normal"]["final_train_loss"],
                                                                     row[a, "zero"]["final_train_loss"]) for a in MATCHED)

    fig, axes = figure(2, 2, width=5, height=3.6)
    for col, act_name in enumerate(MATCHED):
        for scheme in SCHEMES:
            activations, gradients = profiles[act_name, scheme]
            for r, series in enumerate((activations, gradients)):
                axes[r, col].plot(range(1, len(series) + 1), [max(v, 1e-12) for v in series], "-o", ms=3,
                                  label=scheme + (" (exactly 0, drawn at 1e-12)" if scheme == "zero" else ""))
        axes[0, col].set(yscale="log", title=f"{act_name}: activation std per layer", xlabel="hidden layer")
        axes[1, col].set(yscale="log", title=f"{act_name}: weight-gradient std per layer", xlabel="hidden layer")
        axes[0, col].legend(fontsize=7)
    ln_k = math.log(len(bundle.classes))
    return Outcome(
        verdict(vanishes and steady and symmetric and trains_better),
        "Small random N(0, 0.01²): last/first activation std "
        + ", ".join(f"{a} {row[a, 'normal']['last_act_std'] / max(row[a, 'normal']['first_act_std'], 1e-12):.1e}" for a in MATCHED)
        + "; matched scheme: " + ", ".join(f"{a}/{MATCHED[a]} {row[a, MATCHED[a]]['last_act_std'] / row[a, MATCHED[a]]['first_act_std']:.2f}" for a in MATCHED)
        + f". Zero init leaves all units identical: {symmetric}. Final training loss (ln {len(bundle.classes)} = {ln_k:.2f} is chance): "
        + ", ".join(f"{r['activation']}/{r['init']} {r['final_train_loss']:.3f}" for r in table) + ".",
        f"{bundle.name}, MLP with {depth} hidden layers of {width} units, no normalisation; activation and gradient "
        f"std on one batch of {len(labels)} images right after train/init.py's initialise(); then {epochs} epoch(s) of "
        f"SGD momentum 0.9 lr 0.01 on {len(train)} images. normal = N(0, 0.01²).",
        {"profiles": {f"{a}/{s}": {"activation_std": p[0], "gradient_std": p[1]} for (a, s), p in profiles.items()},
         "runs": table}, [save_figure(fig, ctx, "initialisation.png")], table)
