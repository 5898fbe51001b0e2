"""Batch normalisation: Ioffe, Szegedy. Batch Normalization: Accelerating Deep Network Training by
Reducing Internal Covariate Shift. ICML 2015, §4.1 and Fig. 1 (notes 002, "Batch Normalization …";
notes 000 "Batch Normalization", Benefits: higher learning rate, …): an MLP with three hidden
layers of 100 sigmoid units on MNIST trains faster and to a higher accuracy with BN before each
sigmoid (Fig. 1a), and the input distribution of a typical sigmoid — its {15, 50, 85}th
percentiles — stays stable with BN and drifts without it (Fig. 1b, c).

Here on Fashion-MNIST, at the paper's learning rate and at 5× and 25× higher ones; the
percentiles are those of the last hidden layer's sigmoid inputs, per training step.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Context, Outcome, experiment, verdict
from .common import budget_data, figure, fit, save_figure

PERCENTILES = (0.15, 0.50, 0.85)


def sigmoid_mlp(inputs: int, classes: int, batch_norm: bool, hidden: int = 100) -> nn.Sequential:
    layers, width = [nn.Flatten()], inputs
    for _ in range(3):
        layers += [nn.Linear(width, hidden), *([nn.BatchNorm1d(hidden)] if batch_norm else []), nn.Sigmoid()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, classes))


def record_sigmoid_inputs(net: nn.Sequential, unit: int = 0) -> list[list[float]]:
    """Per training step, the percentiles of one unit's input to the last sigmoid."""
    records: list[list[float]] = []
    last_sigmoid = max(i for i, m in enumerate(net) if isinstance(m, nn.Sigmoid))

    def hook(module, args):
        if module.training:
            records.append(torch.quantile(args[0][:, unit].detach().float(), torch.tensor(PERCENTILES)).tolist())
    net[last_sigmoid].register_forward_pre_hook(hook)
    return records


@experiment("batch-norm", notes="000", heading="Batch Normalization",
            claim="with batch normalisation the network trains to a higher accuracy, tolerates higher learning "
                  "rates, and the input distribution of its sigmoids stays stable (BN Fig. 1)")
def batch_norm(ctx: Context) -> Outcome:
    bundle, train, normalizer = budget_data(ctx, ctx.pick(256, 20000, None))
    c, h, w = bundle.input_size
    base_lr = 0.01
    rates = ctx.pick((base_lr, 25 * base_lr), (base_lr, 5 * base_lr, 25 * base_lr), (base_lr, 5 * base_lr, 25 * base_lr))
    epochs = ctx.pick(1, 3, 15)
    table, curves, percentiles = [], {}, {}
    for lr in rates:
        for use_bn in (False, True):
            label = f"{'BN' if use_bn else 'no BN'}, lr {lr:g}"
            torch.manual_seed(ctx.seed)
            net = sigmoid_mlp(c * h * w, len(bundle.classes), use_bn)
            records = record_sigmoid_inputs(net)
            history = fit(net, train, normalizer, epochs=epochs, lr=lr, seed=ctx.seed, batch_size=60, val=bundle.val,
                          device=ctx.device)
            curves[label] = [r["val_top1"] for r in history]
            if lr == base_lr:
                percentiles[label] = records
            table.append({"network": label, "lr": lr, "batch_norm": use_bn, "val_top1": history[-1]["val_top1"],
                          "train_loss": history[-1]["train_loss"]})
    accuracy = {(r["lr"], r["batch_norm"]): r["val_top1"] for r in table}
    better_everywhere = all(accuracy[lr, True] >= accuracy[lr, False] for lr in rates)
    # "Tolerates higher rates": BN at the highest rate is still as good as plain training at its best rate.
    tolerates_high_rate = accuracy[rates[-1], True] >= max(accuracy[lr, False] for lr in rates)
    drift = {label: abs(r[-1][1] - r[0][1]) for label, r in percentiles.items()}
    stable = drift[f"BN, lr {base_lr:g}"] < drift[f"no BN, lr {base_lr:g}"]

    fig, axes = figure(1, 3, width=4.4)
    for label, accuracies in curves.items():
        axes[0, 0].plot(range(1, len(accuracies) + 1), accuracies, "-o" if "no BN" not in label else "--o", ms=3,
                        label=label)
    axes[0, 0].set(xlabel="epoch", ylabel="validation top-1", title="(a) accuracy")
    axes[0, 0].legend(fontsize=7)
    for ax, (label, records) in zip(axes[0, 1:], percentiles.items()):
        series = torch.tensor(records)
        for q, column in zip(PERCENTILES, series.T):
            ax.plot(column, label=f"{q:.0%}")
        ax.set(xlabel="step", ylabel="sigmoid input", title=f"({'b' if 'no BN' in label else 'c'}) {label}")
        ax.legend(fontsize=7)
    return Outcome(
        verdict(better_everywhere and tolerates_high_rate and stable),
        "Validation top-1: " + ", ".join(f"{r['network']} {r['val_top1']:.4f}" for r in table)
        + f". BN at least as accurate at every rate: {better_everywhere}; BN at lr {rates[-1]:g} at least as accurate "
        f"as the best run without BN: {tolerates_high_rate}. Median sigmoid input moved by {drift.get(f'no BN, lr {base_lr:g}', 0):.2f} "
        f"without BN and {drift.get(f'BN, lr {base_lr:g}', 0):.2f} with BN over training.",
        f"{bundle.name}, {len(train)} training images, MLP {c * h * w}-100-100-100-{len(bundle.classes)} with sigmoids, "
        f"BN before each sigmoid or not, SGD momentum 0.9, batch 60 (the paper's), {epochs} epoch(s) at learning rates "
        f"{', '.join(f'{lr:g}' for lr in rates)}; percentiles of unit 0's input to the last sigmoid.",
        {"runs": table, "median_drift": drift, "percentiles": percentiles},
        [save_figure(fig, ctx, "batch-norm.png")], table)
