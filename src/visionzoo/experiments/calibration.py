"""Label smoothing and calibration: Szegedy et al. Rethinking the Inception Architecture for
Computer Vision. CVPR 2016, §7 (notes 000, "Label Smoothing Normalization": q̃(k|x) =
(1 − ε)q(k|x) + ε u(k); notes 001: it "prevents the network from becoming too confident about a
class"), measured as Müller, Kornblith, Hinton. When Does Label Smoothing Help? NeurIPS 2019 do:
the reliability diagram (accuracy against confidence in equal-width bins) and the expected
calibration error ECE = Σ_b (n_b/n)·|acc_b − conf_b| (Guo et al. ICML 2017, Eq. 3).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.loader import eval_batches
from .activations import four_layer_cnn
from .base import Context, Outcome, experiment, verdict
from .common import budget_data, figure, fit, save_figure

BINS = 15


def predictions(net: nn.Module, split, normalizer, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence = max softmax probability, correct) for every image of the split."""
    net.eval()
    confidence, correct = [], []
    with torch.no_grad():
        for images, labels in eval_batches(split, 500, device=device):
            p = net(normalizer(images)).softmax(1)
            top = p.max(1)
            confidence.append(top.values.cpu())
            correct.append((top.indices == labels).cpu())
    return torch.cat(confidence), torch.cat(correct).float()


def reliability(confidence: torch.Tensor, correct: torch.Tensor, bins: int = BINS) -> tuple[float, list[dict]]:
    """ECE and the per-bin (count, accuracy, confidence) of equal-width confidence bins."""
    which = ((confidence * bins).long()).clamp(max=bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        if n:
            acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
            ece += n / len(confidence) * abs(acc - conf)
            rows.append({"bin": b, "count": n, "accuracy": acc, "confidence": conf})
    return ece, rows


@experiment("label-smoothing", notes="001", heading="Label smoothing",
            claim="label smoothing keeps the network from becoming over-confident: lower mean confidence "
                  "and a lower expected calibration error than training on one-hot targets")
def label_smoothing(ctx: Context) -> Outcome:
    bundle, train, normalizer = budget_data(ctx, ctx.pick(256, 3000, 20000))
    epochs, width = ctx.pick(1, 6, 10), ctx.pick(8, 16, 24)
    test = bundle.test
    results, diagrams = [], {}
    for eps in (0.0, 0.1):
        torch.manual_seed(ctx.seed)
        net = four_layer_cnn(nn.ReLU, bundle.input_size[0], bundle.input_size[-1], len(bundle.classes), width)
        fit(net, train, normalizer, epochs=epochs, lr=0.02, seed=ctx.seed, batch_size=64, label_smoothing=eps,
            device=ctx.device)
        confidence, correct = predictions(net, test, normalizer, ctx.device)
        ece, diagrams[eps] = reliability(confidence, correct)
        results.append({"label_smoothing": eps, "test_top1": float(correct.mean()),
                        "mean_confidence": float(confidence.mean()), "ece": ece})
    plain, smooth = results
    held = smooth["ece"] < plain["ece"] and smooth["mean_confidence"] < plain["mean_confidence"]

    fig, axes = figure(1, 2, width=4.5, height=4.2)
    for ax, eps, row in zip(axes[0], diagrams, results):
        bins = diagrams[eps]
        ax.bar([(b["bin"] + 0.5) / BINS for b in bins], [b["accuracy"] for b in bins], 1 / BINS, edgecolor="k",
               label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "r.", label="(confidence, accuracy)")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
               title=f"ε = {eps}: ECE {row['ece']:.3f}, top-1 {row['test_top1']:.3f}")
        ax.legend(fontsize=8, loc="upper left")
    return Outcome(
        verdict(held),
        f"Without smoothing: top-1 {plain['test_top1']:.4f}, mean confidence {plain['mean_confidence']:.3f}, ECE "
        f"{plain['ece']:.4f}; with ε = 0.1: top-1 {smooth['test_top1']:.4f}, mean confidence "
        f"{smooth['mean_confidence']:.3f}, ECE {smooth['ece']:.4f}.",
        f"{bundle.name}, {len(train)} training images, {epochs} epoch(s), the relu-vs-tanh four-layer CNN (ReLU, width {width}), SGD "
        f"momentum 0.9 lr 0.02, batch 64, cross-entropy with ε = 0 and 0.1; {len(test)} test images, {BINS} bins.",
        {"runs": results, "bins": {str(eps): rows for eps, rows in diagrams.items()}},
        [save_figure(fig, ctx, "reliability.png")], results)
