"""Training techniques compared at equal budget, each a sweep of Trainer options on one network.

regularisation — notes 001, "Regularization" (dropout, inverted dropout, "Dropout + L2":
L = E(y, F(W; x)) + (λ/2)‖W‖²; Srivastava et al. JMLR 2014, Table 9: dropout and max-norm/L2
together beat either alone): none vs L2 vs dropout vs both.
augmentation — notes 002, "Random Erasing Data Augmentation" (Zhong et al. AAAI 2020, Table 1)
and "CutMix" (Yun et al. ICCV 2019, Table 1, with Mixup and Cutout): each augmentation lowers
the test error of the same network trained without it.
large-batch — notes 002, "Linear Scaling Rule" and "Gradual Warmup" (Goyal et al. 2017, §2.1–2.2,
Fig. 2): with η = η₀·|B|/B₀ and a warmup, a k-times larger batch reaches the small batch's
accuracy in the same number of epochs; without the warmup the large batch falls behind.
"""
from __future__ import annotations

from .base import Context, Outcome, experiment, verdict
from .common import figure, precision_note, save_figure, train_registered

MODEL = "lenet"


def sweep_settings(ctx: Context, **overrides) -> dict:
    """The Trainer options every variant of a sweep shares at this budget."""
    settings = dict(train_limit=ctx.pick(64, 6000, 15000), epochs=ctx.pick(1, 4, 15), batch_size=64, lr=0.05,
                    optimizer="sgd", schedule="cosine", weight_decay=0.0, image_size=ctx.pick(28, None, None))
    return {**settings, **overrides}


def run_sweep(ctx: Context, variants: dict[str, dict], settings: dict) -> list[dict]:
    """Train MODEL once per variant (Trainer options over `settings`); one row per variant with its curves."""
    rows = []
    for label, options in variants.items():
        summary, trainer = train_registered(ctx, MODEL, label.replace(" ", "-").replace("+", "and"),
                                            **{**settings, **options})
        rows.append({"variant": label, "train_top1": trainer.history[-1]["train_top1"],
                     "test_top1": summary["test_top1"], "val_curve": [h["val_top1"] for h in trainer.history]})
    return rows


def sweep_outcome(ctx: Context, name: str, rows: list[dict], held: bool, conclusive: bool, result: str,
                  setup: str) -> Outcome:
    fig, axes = figure(1, 2)
    for row in rows:
        axes[0, 0].plot(range(1, len(row["val_curve"]) + 1), row["val_curve"], "-o", ms=3, label=row["variant"])
    axes[0, 0].set(xlabel="epoch", ylabel="validation top-1", title=name)
    axes[0, 0].legend(fontsize=7)
    axes[0, 1].barh([r["variant"] for r in rows], [1 - r["test_top1"] for r in rows])
    axes[0, 1].set(xlabel="test error")
    table = [{k: v for k, v in row.items() if k != "val_curve"} for row in rows]
    return Outcome(verdict(held, conclusive), result, setup, {"variants": rows},
                   [save_figure(fig, ctx, f"{name}.png")], table)


def _describe(ctx: Context, settings: dict) -> str:
    return (f"{MODEL} trained by the Trainer on {ctx.pick('digits (resized to 28×28)', 'Fashion-MNIST', 'Fashion-MNIST')}, "
            f"{settings['train_limit'] or 'all'} training images, {settings['epochs']} epoch(s), SGD momentum 0.9, "
            f"{settings['schedule']} schedule, no label smoothing, same seed for every variant{precision_note(ctx)}")


@experiment("regularisation", notes="001", heading="Regularization",
            claim="L2 and dropout each reduce over-fitting and raise test accuracy; together they do best "
                  "(the notes' Dropout + L2)")
def regularisation(ctx: Context) -> Outcome:
    settings = sweep_settings(ctx)
    rows = run_sweep(ctx, {"none": {}, "L2": {"weight_decay": 5e-4, "wd_mode": "l2"}, "dropout": {"dropout": 0.5},
                           "dropout + L2": {"dropout": 0.5, "weight_decay": 5e-4, "wd_mode": "l2"}}, settings)
    by = {r["variant"]: r for r in rows}
    gap = {k: r["train_top1"] - r["test_top1"] for k, r in by.items()}
    best = max(rows, key=lambda r: r["test_top1"])["variant"]
    spread = max(r["test_top1"] for r in rows) - min(r["test_top1"] for r in rows)
    return sweep_outcome(
        ctx, "regularisation", rows, best == "dropout + L2" and gap["dropout + L2"] < gap["none"], spread >= 0.005,
        "Test top-1 (train − test gap): " + ", ".join(f"{k} {by[k]['test_top1']:.4f} ({gap[k]:+.4f})" for k in by)
        + f"; best: {best} (a spread under 0.005 reads as inconclusive).",
        _describe(ctx, settings) + "; L2 is λ = 5e-4 added to the gradient (wd_mode l2), dropout p = 0.5 (--dropout).")


@experiment("augmentation", notes="002", heading="Random Erasing Data Augmentation",
            claim="crop + flip, random erasing, cutout, mixup and CutMix each lower the test error of the same "
                  "network trained without augmentation (Random Erasing and CutMix tables)")
def augmentation(ctx: Context) -> Outcome:
    settings = sweep_settings(ctx)
    rows = run_sweep(ctx, {"none": {}, "crop + flip": {"crop": 2, "flip": True},
                           "random erasing": {"random_erasing": 0.5}, "cutout": {"cutout": 8},
                           "mixup": {"mixup": 0.2}, "cutmix": {"cutmix": 1.0}}, settings)
    none = rows[0]["test_top1"]
    gains = {r["variant"]: r["test_top1"] - none for r in rows[1:]}
    return sweep_outcome(
        ctx, "augmentation", rows, all(g > 0 for g in gains.values()), max(map(abs, gains.values())) >= 0.005,
        f"Test top-1 without augmentation {none:.4f}; change with: "
        + ", ".join(f"{k} {g:+.4f}" for k, g in gains.items()) + ".",
        _describe(ctx, settings) + "; crop = 2-pixel padded random crops, random erasing p = 0.5, cutout 8×8, mixup α = 0.2, "
                         "CutMix α = 1 (the papers' CIFAR settings).")


@experiment("large-batch", notes="002", heading="Linear Scaling Rule",
            claim="with the linear scaling rule and a gradual warmup a larger batch matches the small batch's "
                  "accuracy in the same epochs; without warmup it falls behind (Goyal et al. Fig. 2)")
def large_batch(ctx: Context) -> Outcome:
    small, large = ctx.pick((16, 64), (32, 512), (64, 1024))
    # η₀ = 0.005 keeps kη₀ (0.08 at k = 16) inside LeNet's stable range: the rule assumes the scaled rate is
    # still one the network can train at (with η₀ = 0.02, kη₀ = 0.32 diverged, warmup or not).
    base_lr = 0.005
    base = {"lr": base_lr, "lr_scale_batch": small}
    # Goyal et al. train on all images: the full budget does too, for fewer epochs than the other sweeps.
    settings = sweep_settings(ctx, schedule="constant", **ctx.pick({}, {}, {"train_limit": None, "epochs": 6}))
    rows = run_sweep(ctx, {f"batch {small}": {"batch_size": small, **base},
                           f"batch {large}, scaled lr": {"batch_size": large, **base},
                           f"batch {large}, scaled lr + warmup": {"batch_size": large, "warmup_epochs": 1, **base}},
                     settings)
    reference, no_warmup, warmup = (r["test_top1"] for r in rows)
    return sweep_outcome(
        ctx, "large-batch", rows, abs(warmup - reference) <= 0.01 and warmup >= no_warmup,
        abs(warmup - no_warmup) >= 0.005 or abs(warmup - reference) > 0.01,
        f"Test top-1: batch {small} {reference:.4f}; batch {large} with lr × {large // small}: {no_warmup:.4f} without "
        f"warmup, {warmup:.4f} with a 1-epoch warmup (held: within 0.01 of the small batch and not below no-warmup).",
        _describe(ctx, settings) + f"; constant learning rate {base_lr}·batch/{small} (--lr-scale-batch {small}), warmup from "
                         f"the unscaled rate over 1 epoch (--warmup-epochs 1).")
