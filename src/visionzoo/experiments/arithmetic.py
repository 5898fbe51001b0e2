"""Convolution arithmetic and receptive fields, checked against the library.

conv-arithmetic — notes 003, "CNN - Convolution with stride=1": the output size
n_out = ⌊(n_in + 2p − d(k − 1) − 1)/s⌋ + 1 (d = 1: ⌊(n_in + 2p − k)/s⌋ + 1), and the exercise
"find the formula for stride > 1": with stride s, output unit (i, j) (from 1) reads the window
starting at row (i − 1)s + 1,

    q_ij = Σ_{r=(i−1)s+1}^{(i−1)s+k} Σ_{t=(j−1)s+1}^{(j−1)s+k} p_rt · w_{(r−(i−1)s)(t−(j−1)s)},

which is evaluated literally here and compared with torch's convolution.

receptive-field — notes 003, "CNN - VGG Net": "a stack of 2 convolution layers each with 3×3
filters achieves the receptive field of one 5×5 filter" and "small receptive field leads to a
reduction in the number of weights" (check this claim!). Receptive fields come from
explain/receptive.py (Araujo et al. 2019 recurrences) and, independently, from the support of the
gradient of one output unit with respect to the input.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from ..core.profile import count_params
from ..explain.receptive import trace_receptive_fields
from .base import Context, Outcome, experiment, verdict
from .common import figure, save_figure


def output_size(n_in: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """The notes' formula, with dilation; ≤ 0 means the kernel does not fit."""
    return (n_in + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def strided_convolution(p: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """q_ij of the module docstring, loop by loop, for one (H, W) image and one (k, k) kernel."""
    k = w.shape[0]
    n_out = output_size(p.shape[0], k, stride, 0)
    q = torch.zeros(n_out, n_out, dtype=p.dtype)
    for i, j in itertools.product(range(1, n_out + 1), repeat=2):
        top, left = (i - 1) * stride + 1, (j - 1) * stride + 1
        q[i - 1, j - 1] = sum(p[r - 1, t - 1] * w[r - top, t - left]
                              for r in range(top, top + k) for t in range(left, left + k))
    return q


def _torch_size(n_in, kernel, stride, padding, dilation) -> int:
    x = torch.zeros(1, 1, n_in, n_in, device="meta")
    try:
        return F.conv2d(x, torch.zeros(1, 1, kernel, kernel, device="meta"), stride=stride,
                        padding=padding, dilation=dilation).shape[-1]
    except RuntimeError:  # the kernel does not fit in the padded input
        return 0


@experiment("conv-arithmetic", notes="003", heading="CNN - Convolution with stride=1",
            claim="n_out = ⌊(n_in + 2p − k)/s⌋ + 1 gives every convolution's output size; the stride-s "
                  "formula q_ij (exercise) computes torch's strided convolution")
def conv_arithmetic(ctx: Context) -> Outcome:
    sizes = ctx.pick(range(1, 9), range(1, 33), range(1, 65))
    rows, mismatches = [], []
    for n_in, k, s, p, d in itertools.product(sizes, range(1, 8), range(1, 5), range(0, 4), (1, 2)):
        predicted, measured = max(0, output_size(n_in, k, s, p, d)), _torch_size(n_in, k, s, p, d)
        rows.append((n_in, k, s, p, d, predicted, measured))
        if predicted != measured:
            mismatches.append(dict(n_in=n_in, k=k, s=s, p=p, d=d, formula=predicted, torch=measured))
    generator = torch.Generator().manual_seed(ctx.seed)
    stride_checks, pairs = [], []
    for side, k, s in ((7, 3, 2), (9, 3, 3), (11, 5, 2), (10, 4, 3)):
        image = torch.randn(side, side, generator=generator, dtype=torch.float64)
        kernel = torch.randn(k, k, generator=generator, dtype=torch.float64)
        ours = strided_convolution(image, kernel, s)
        reference = F.conv2d(image[None, None], kernel[None, None], stride=s)[0, 0]
        pairs.append((f"{side}×{side}, k={k}, s={s}", reference.flatten(), ours.flatten()))
        stride_checks.append({"image": f"{side}×{side}", "kernel": f"{k}×{k}", "stride": s,
                              "n_out": ours.shape[-1], "max_abs_diff": float((ours - reference).abs().max())})
    worst = max(c["max_abs_diff"] for c in stride_checks)

    fig, axes = figure(1, 2)
    for s in range(1, 5):
        axes[0, 0].plot(list(sizes), [max(0, output_size(n, 3, s, 1)) for n in sizes], "-", label=f"formula, s={s}")
        axes[0, 0].plot(list(sizes), [_torch_size(n, 3, s, 1, 1) for n in sizes], "k.", ms=4)
    axes[0, 0].set(xlabel="n_in", ylabel="n_out (k=3, p=1)",
                   title=f"formula (lines) vs torch (dots): {len(mismatches)} of {len(rows)} differ")
    axes[0, 0].legend(fontsize=8)
    for label, reference, ours in pairs:
        axes[0, 1].plot(reference, ours, "o", ms=3, label=label)
    axes[0, 1].set(xlabel="F.conv2d output", ylabel="q_ij of the stride-s formula",
                   title=f"stride-s formula vs torch: max |diff| {worst:.1e}")
    axes[0, 1].legend(fontsize=8)
    figures = [save_figure(fig, ctx, "conv-arithmetic.png")]

    held = not mismatches and worst < 1e-10
    return Outcome(
        verdict(held),
        f"{len(rows)} (n_in, k, s, p, d) settings checked: {len(mismatches)} where the formula and torch "
        f"disagree. The stride-s formula reproduces F.conv2d with max |difference| {worst:.2e} in float64.",
        f"n_in in 1..{max(sizes)}, k 1..7, s 1..4, p 0..3, d 1..2: the formula against the output shape of "
        f"torch.nn.functional.conv2d (on the meta device; a kernel that does not fit counts as size 0). "
        f"The literal q_ij loop on 4 random float64 images against F.conv2d.",
        {"settings": len(rows), "mismatches": mismatches, "stride_checks": stride_checks},
        figures, stride_checks)


def _stack(kernels: tuple[int, ...], channels: int) -> nn.Sequential:
    layers = []
    for k in kernels:  # "same" padding, as in VGG
        layers += [nn.Conv2d(channels, channels, k, padding=k // 2, bias=False), nn.ReLU()]
    return nn.Sequential(*layers)


def gradient_support(model: nn.Module, channels: int, side: int) -> tuple[int, torch.Tensor]:
    """Width of the input region that reaches the centre output unit (non-zero gradient)."""
    x = torch.randn(1, channels, side, side, requires_grad=True)
    with torch.no_grad():  # positive weights: no cancellation or dead ReLU hides a pixel
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.abs_()
    model(x.abs())[0, :, side // 2, side // 2].sum().backward()
    support = x.grad.abs().sum((0, 1)) > 0
    rows = support.any(1).nonzero()
    return int(rows.max() - rows.min() + 1), support


@experiment("receptive-field", notes="003", heading="CNN - VGG Net",
            claim="two stacked 3×3 convolutions see a 5×5 field (three see 7×7) with fewer weights "
                  "than one 5×5 (7×7) convolution: 2·9C² < 25C², 3·9C² < 49C²")
def receptive_field(ctx: Context) -> Outcome:
    channels = ctx.pick(4, 64, 64)
    side = 15
    designs = {"3×3": (3,), "2 × 3×3": (3, 3), "5×5": (5,), "3 × 3×3": (3, 3, 3), "7×7": (7,)}
    table, supports = [], {}
    for label, kernels in designs.items():
        torch.manual_seed(ctx.seed)
        model = _stack(kernels, channels)
        traced = trace_receptive_fields(model, (channels, side, side))[-1].field.size[0]
        measured, supports[label] = gradient_support(model, channels, side)
        table.append({"design": label, "receptive_field": int(traced), "gradient_support": measured,
                      "weights": count_params(model),
                      "weights_over_C2": count_params(model) / channels ** 2})
    by = {row["design"]: row for row in table}
    pairs = [("2 × 3×3", "5×5"), ("3 × 3×3", "7×7")]
    same_field = all(by[a]["receptive_field"] == by[b]["receptive_field"] == by[a]["gradient_support"]
                     == by[b]["gradient_support"] for a, b in pairs)
    fewer = all(by[a]["weights"] < by[b]["weights"] for a, b in pairs)

    fig, axes = figure(1, len(designs) + 1, width=2.6, height=2.8)
    for ax, (label, support) in zip(axes[0], supports.items()):
        ax.imshow(support.numpy(), cmap="Greys", vmin=0, vmax=1)
        ax.set(title=f"{label}: {by[label]['gradient_support']}×{by[label]['gradient_support']}", xticks=[], yticks=[])
    axes[0, -1].bar(list(by), [r["weights_over_C2"] for r in table], color="tab:blue")
    axes[0, -1].set(title="weights / C²")
    axes[0, -1].tick_params(axis="x", rotation=60, labelsize=7)
    figures = [save_figure(fig, ctx, "receptive-field.png")]
    return Outcome(
        verdict(same_field and fewer),
        "; ".join(f"{a}: field {by[a]['receptive_field']}, {by[a]['weights_over_C2']:g}C² weights vs {b}: field "
                  f"{by[b]['receptive_field']}, {by[b]['weights_over_C2']:g}C²" for a, b in pairs)
        + f". Gradient support agrees with the traced fields: {same_field}.",
        f"Stacks of C={channels}-channel bias-free convolutions with same padding on a {side}×{side} input; receptive "
        "field traced by explain/receptive.py and measured as the extent of the input gradient of the centre "
        "output unit (positive weights and inputs so no path cancels).",
        {"channels": channels, "designs": table}, figures, table)
