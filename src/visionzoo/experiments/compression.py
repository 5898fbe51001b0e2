"""Compression without retraining: Han, Mao, Dally. Deep Compression. ICLR 2016, §2–3 and Fig. 6
(notes 000, "Pruning" and "Deep Compression"): the smallest-magnitude connections can be removed
and the remaining weights shared among 2^b values (8 bits for conv, 5 for FC in the paper) with
little loss of accuracy, until sparsity or the number of bits becomes extreme.

A LeNet trained by the Trainer is pruned layer by layer to each sparsity (compress/prune.py) and,
separately, k-means weight-shared to each bit width (compress/quantize.py), and evaluated on the
test split each time; no retraining, so these are the curves before fine-tuning.
"""
from __future__ import annotations

import copy

from ..compress.prune import prune, resolve_targets
from ..compress.quantize import share_weights
from ..tasks.classification import evaluate
from .base import Context, Outcome, experiment, verdict
from .common import figure, precision_note, save_figure, train_registered

SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
BITS = (8, 6, 5, 4, 3, 2, 1)


@experiment("compression", notes="000", heading="Deep Compression",
            claim="half the weights can be pruned by magnitude, and the weights shared among 2^5 values, with less "
                  "than a point of accuracy lost and no retraining; accuracy collapses at extreme sparsity")
def compression(ctx: Context) -> Outcome:
    summary, trainer = train_registered(ctx, "lenet", "lenet", train_limit=ctx.pick(64, 10000, None),
                                        epochs=ctx.pick(1, 3, 6), batch_size=64, lr=0.05, optimizer="sgd",
                                        schedule="cosine", image_size=ctx.pick(28, None, None))
    test = trainer.data.test

    def accuracy(model) -> float:
        return evaluate(model, test, trainer.normalizer, device=trainer.device)["top1"]

    # The smoke budget keeps the points the verdict reads: k-means at every width is the slow part.
    sparsities, bit_widths = ctx.pick((0.0, 0.5, 0.98), SPARSITIES, SPARSITIES), ctx.pick((5, 2), BITS, BITS)
    pruned = {}
    for sparsity in sparsities:
        model = copy.deepcopy(trainer.model)
        prune(model, resolve_targets(model, sparsity))
        pruned[sparsity] = accuracy(model)
    shared = {}
    for bits in bit_widths:
        model = copy.deepcopy(trainer.model)
        share_weights(model, conv_bits=bits, fc_bits=bits, seed=ctx.seed)
        shared[bits] = accuracy(model)
    base = pruned[0.0]
    held = pruned[0.5] >= base - 0.01 and shared[5] >= base - 0.01 and pruned[0.98] < base - 0.05

    fig, axes = figure(1, 2)
    axes[0, 0].plot(list(pruned), list(pruned.values()), "-o")
    axes[0, 0].set(xlabel="fraction of weights pruned (every layer)", ylabel="test top-1", title="magnitude pruning")
    axes[0, 1].plot(list(shared), list(shared.values()), "-o")
    axes[0, 1].set(xlabel="bits per weight (k-means shared values)", ylabel="test top-1", title="weight sharing")
    axes[0, 1].invert_xaxis()
    table = [{"compression": f"pruned {s:.0%}", "test_top1": a} for s, a in pruned.items()] + \
            [{"compression": f"{b}-bit shared", "test_top1": a} for b, a in shared.items()]
    return Outcome(
        verdict(held),
        f"Test top-1 {base:.4f} uncompressed; pruned " + ", ".join(f"{s:.0%} {a:.4f}" for s, a in pruned.items())
        + "; shared " + ", ".join(f"{b} bits {a:.4f}" for b, a in shared.items()) + ".",
        f"lenet trained by the Trainer ({trainer.data.name}, {len(trainer.data.train)} images, {trainer.cfg.epochs} "
        f"epoch(s), SGD lr 0.05 cosine); every Conv/Linear layer pruned to the same sparsity, or k-means (linear "
        f"init) shared to 2^b values; {summary['test_n']} test images, no retraining{precision_note(ctx)}.",
        {"pruned": pruned, "shared": shared}, [save_figure(fig, ctx, "compression.png")], table)
