"""Dropout at test time: Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov. Dropout: A Simple
Way to Prevent Neural Networks from Overfitting. JMLR 2014, §7.5 and Fig. 11 (notes 002, "Dropout";
notes 001, "Inverted dropout"): scaling the weights by the retention probability q (equivalently,
inverted dropout's identity at test time) approximates averaging the predictions of the
exponentially many thinned networks; Monte-Carlo averaging of k sampled masks approaches the
weight-scaled network's accuracy as k grows (the paper: from k ≈ 50 on).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.loader import eval_batches
from .base import Context, Outcome, experiment, verdict
from .common import budget_data, figure, fit, save_figure


def mlp(inputs: int, classes: int, hidden: int, p: float) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(inputs, hidden), nn.ReLU(), nn.Dropout(p),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(p), nn.Linear(hidden, classes))


def accuracies(net: nn.Module, split, normalizer, samples: list[int], seed: int, device) -> tuple[float, dict]:
    """(weight-scaled accuracy, {k: accuracy of the mean softmax of k sampled dropout masks})."""
    torch.manual_seed(seed)
    correct_scaled, correct_mc, n = 0, {k: 0 for k in samples}, 0
    with torch.no_grad():
        for images, labels in eval_batches(split, 500, device=device):
            x = normalizer(images)
            net.eval()
            correct_scaled += int((net(x).argmax(1) == labels).sum())
            net.train()  # dropout active: each forward is one thinned network
            running = torch.zeros(len(labels), net[-1].out_features, device=device)
            for k in range(1, max(samples) + 1):
                running += net(x).softmax(1)
                if k in correct_mc:
                    correct_mc[k] += int((running.argmax(1) == labels).sum())
            n += len(labels)
    net.eval()
    return correct_scaled / n, {k: c / n for k, c in correct_mc.items()}


@experiment("dropout-ensemble", notes="002", heading="Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
            claim="weight scaling at test time matches Monte-Carlo averaging over many dropout masks "
                  "(k ≈ 50), and beats a single sampled mask (Srivastava et al. Fig. 11)")
def dropout_ensemble(ctx: Context) -> Outcome:
    bundle, train, normalizer = budget_data(ctx, ctx.pick(256, 10000, None))
    c, h, w = bundle.input_size
    samples = ctx.pick([1, 2, 5], [1, 2, 5, 10, 20, 50, 100], [1, 2, 5, 10, 20, 50, 100, 200])
    torch.manual_seed(ctx.seed)
    net = mlp(c * h * w, len(bundle.classes), ctx.pick(64, 512, 1024), 0.5)
    fit(net, train, normalizer, epochs=ctx.pick(1, 5, 10), lr=0.05, seed=ctx.seed, device=ctx.device)
    # Each image is seen max(samples) times: the quick budget scores a seeded share of the test set.
    test = bundle.test if ctx.budget != "smoke" else bundle.val
    test = test.take(torch.randperm(len(test), generator=torch.Generator().manual_seed(ctx.seed))[:ctx.pick(None, 2000, None)])
    scaled, mc = accuracies(net, test, normalizer, samples, ctx.seed, ctx.device)
    largest = mc[max(samples)]
    n = len(test)
    noise = 2 * (scaled * (1 - scaled) / n) ** 0.5  # two binomial standard errors of one accuracy
    held = abs(largest - scaled) <= noise and mc[1] < scaled

    fig, axes = figure(1, 1, width=6)
    axes[0, 0].plot(samples, [1 - mc[k] for k in samples], "-o", label="Monte-Carlo average of k masks")
    axes[0, 0].axhline(1 - scaled, color="tab:red", label="weight scaling (inverted dropout, eval mode)")
    axes[0, 0].set(xscale="log", xlabel="k (sampled networks)", ylabel="test error", title="Srivastava et al. Fig. 11 on "
                   + bundle.name)
    axes[0, 0].legend()
    table = [{"inference": "weight scaling", "accuracy": scaled}] + [
        {"inference": f"MC average of {k}", "accuracy": acc} for k, acc in mc.items()]
    return Outcome(
        verdict(held),
        f"Weight scaling {scaled:.4f}; one sampled mask {mc[1]:.4f}; average of {max(samples)} masks {largest:.4f} "
        f"(difference {largest - scaled:+.4f}, held means within ±{noise:.4f}, two standard errors, and one mask worse).",
        f"{bundle.name}: MLP {c * h * w}-hidden-hidden-{len(bundle.classes)} with dropout 0.2 on the input and 0.5 on the "
        f"hidden units (inverted dropout), SGD momentum 0.9 lr 0.05 on {len(train)} images; evaluated on {n} "
        f"{'test' if ctx.budget != 'smoke' else 'validation'} images, masks seeded by {ctx.seed}.",
        {"weight_scaling": scaled, "monte_carlo": mc, "n": n}, [save_figure(fig, ctx, "dropout-ensemble.png")], table)
