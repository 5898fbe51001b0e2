"""Cheaper convolutional blocks: Howard et al. MobileNets, arXiv 2017, §3.1 (notes 000, "MobileNets")
and notes 004, "Cheaper convolutional blocks" (grouped convolutions, bottlenecks).

A D_K×D_K convolution from M to N channels on a D_F×D_F map costs D_K²·M·N·D_F² multiply-adds;
depthwise-separable (depthwise D_K×D_K then pointwise 1×1) costs D_K²·M·D_F² + M·N·D_F², a
fraction 1/N + 1/D_K² of it; a convolution in g groups costs D_K²·M·N·D_F²/g; a bottleneck
(1×1 M→b, D_K×D_K b→b, 1×1 b→N) costs (M·b + D_K²·b² + b·N)·D_F². Parameters are the same
expressions without D_F². Each is compared with count_params/count_macs of the block, and small
networks built from each block are trained to compare accuracy (MobileNet Table 4: separable
loses ~1 point for ~8× fewer mult-adds).
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.profile import count_macs, count_params
from .base import Context, Outcome, experiment, verdict
from .common import budget_data, figure, fit, save_figure

GROUPS = 4


def block(kind: str, m: int, n: int, k: int = 3) -> nn.Sequential:
    """One bias-free block of `kind` from m to n channels, spatial size kept."""
    pad = k // 2
    if kind == "standard":
        return nn.Sequential(nn.Conv2d(m, n, k, padding=pad, bias=False))
    if kind == "depthwise-separable":
        return nn.Sequential(nn.Conv2d(m, m, k, padding=pad, groups=m, bias=False), nn.Conv2d(m, n, 1, bias=False))
    if kind == "grouped":
        return nn.Sequential(nn.Conv2d(m, n, k, padding=pad, groups=GROUPS, bias=False))
    b = n // 4  # the bottleneck width of ResNet's 1×1–3×3–1×1 block
    return nn.Sequential(nn.Conv2d(m, b, 1, bias=False), nn.Conv2d(b, b, k, padding=pad, bias=False),
                         nn.Conv2d(b, n, 1, bias=False))


def formula_cost(kind: str, m: int, n: int, k: int, side: int) -> tuple[int, int]:
    """(parameters, MACs) by the notes' formulas."""
    per_pixel = {"standard": k * k * m * n, "depthwise-separable": k * k * m + m * n,
                 "grouped": k * k * m * n // GROUPS,
                 "bottleneck": m * (n // 4) + k * k * (n // 4) ** 2 + (n // 4) * n}[kind]
    return per_pixel, per_pixel * side * side


KINDS = ("standard", "depthwise-separable", "grouped", "bottleneck")


def _network(kind: str, in_chans: int, width: int, classes: int) -> nn.Module:
    """stem conv → two blocks of `kind` with BN-ReLU (the second halving the map) → GAP → linear."""
    def unit(m, n):
        return [*block(kind, m, n), nn.BatchNorm2d(n), nn.ReLU()]
    return nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                         *unit(width, width), nn.MaxPool2d(2), *unit(width, 2 * width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes))


@experiment("efficiency", notes="000", heading="MobileNets",
            claim="standard convolution costs D_K²MND_F², depthwise-separable D_K²MD_F² + MND_F² "
                  "(1/N + 1/D_K² of it) for a small loss of accuracy; grouped and bottleneck blocks cut cost too")
def efficiency(ctx: Context) -> Outcome:
    k, side = 3, 14
    shapes = [(32, 64), (64, 128), (128, 256), (256, 512)]
    table, mismatches = [], 0
    for m, n in shapes:
        standard_macs = None
        for kind in KINDS:
            with torch.device("meta"):  # counting needs shapes only
                net = block(kind, m, n, k)
            params, macs = count_params(net), count_macs(net, (m, side, side))
            formula_params, formula_macs = formula_cost(kind, m, n, k, side)
            mismatches += (params, macs) != (formula_params, formula_macs)
            standard_macs = standard_macs or macs
            table.append({"M→N": f"{m}→{n}", "block": kind, "params": params, "formula_params": formula_params,
                          "macs": macs, "formula_macs": formula_macs, "macs_vs_standard": macs / standard_macs})
    separable = [r for r in table if r["block"] == "depthwise-separable"]
    ratio_ok = all(abs(r["macs_vs_standard"] - (1 / int(r["M→N"].split("→")[1]) + 1 / k ** 2)) < 1e-9
                   for r in separable)

    bundle, train, normalizer = budget_data(ctx, ctx.pick(300, 3000, 15000))
    epochs, width = ctx.pick(1, 3, 5), ctx.pick(8, 16, 16)
    accuracy = []
    for kind in KINDS:
        torch.manual_seed(ctx.seed)
        net = _network(kind, bundle.input_size[0], width, len(bundle.classes))
        history = fit(net, train, normalizer, epochs=epochs, lr=0.05, seed=ctx.seed, batch_size=32, val=bundle.val,
                      device=ctx.device)
        accuracy.append({"block": kind, "params": count_params(net), "macs": count_macs(net, bundle.input_size),
                         "val_top1": history[-1]["val_top1"]})
    acc = {r["block"]: r for r in accuracy}
    drop = acc["standard"]["val_top1"] - acc["depthwise-separable"]["val_top1"]

    fig, axes = figure(1, 2)
    for kind in KINDS:
        rows = [r for r in table if r["block"] == kind]
        axes[0, 0].plot([r["M→N"] for r in rows], [r["macs"] for r in rows], "o", label=f"{kind} (measured)")
        axes[0, 0].plot([r["M→N"] for r in rows], [r["formula_macs"] for r in rows], "k+", ms=10)
        axes[0, 1].plot(acc[kind]["macs"], acc[kind]["val_top1"], "o", ms=8, label=kind)
    axes[0, 0].set(yscale="log", xlabel="M→N (D_K=3, D_F=14)", ylabel="MACs", title="measured (dots) vs formula (+)")
    axes[0, 1].set(xscale="log", xlabel="network MACs", ylabel="validation top-1",
                   title=f"{bundle.name}, {len(train)} images, {epochs} epoch(s)")
    axes[0, 0].legend(fontsize=7)
    axes[0, 1].legend(fontsize=7)
    # Accuracy differences below ~2 points are noise at these sizes; the MobileNet gap is 1.1.
    return Outcome(
        verdict(mismatches == 0 and ratio_ok and drop <= 0.02),
        f"{len(table) - mismatches}/{len(table)} (params, MACs) pairs equal the formulas; separable/standard MACs = "
        f"1/N + 1/D_K² exactly ({', '.join(format(r['macs_vs_standard'], '.3f') for r in separable)}). Accuracy: "
        + ", ".join(f"{r['block']} {r['val_top1']:.3f} at {r['macs'] / 1e6:.2f} MMACs" for r in accuracy)
        + f"; separable − standard = {-drop:+.3f}.",
        f"Single bias-free blocks with D_K={k}, D_F={side}, grouped g={GROUPS}, bottleneck width N/4, counted by "
        f"visionzoo.profile. Accuracy: stem + two blocks of each kind (width {width}, BN-ReLU) + GAP + linear, SGD "
        f"lr 0.05, batch 32, {epochs} epoch(s) on {len(train)} {bundle.name} images, validation split.",
        {"blocks": table, "networks": accuracy}, [save_figure(fig, ctx, "efficiency.png")], table)
