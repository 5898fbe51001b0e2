"""Adversarial examples: Goodfellow, Shlens, Szegedy. Explaining and Harnessing Adversarial Examples.
ICLR 2015 (notes 000, "Fast Gradient Sign Method" and "Adversarial Training": x̃ = x + ε·sign(∇ₓJ),
J̃ = αJ(x) + (1 − α)J(x̃)); Szegedy et al. Intriguing Properties of Neural Networks. ICLR 2014
(notes 000, "Adversarial Examples": examples made for one network fool others).

Three networks trained by the Trainer: LeNet, LeNet adversarially trained with FGSM (the trainer's
--adv fgsm, α = 0.5), and a second LeNet trained independently (another seed: other initial
weights, another subset and order of images — Szegedy et al.'s cross-training-set case). Accuracy
under FGSM against ε for the first two; FGSM examples made on each standard network evaluated on
the other (transfer), next to uniform noise of the same ε (the paper's control).
"""
from __future__ import annotations

import torch

from ..attacks.base import Normalized
from ..attacks.gradient import FGSM, RandomNoise
from ..attacks.report import run_attack
from ..core.runtime import evaluating
from .base import Context, Outcome, experiment, verdict
from .common import figure, precision_note, save_figure, train_registered

EPSILONS = (0.0, 0.05, 0.1, 0.2, 0.3)
TRANSFER_EPS = 0.1


def _pixel_model(trainer) -> Normalized:
    return Normalized(trainer.model, trainer.normalizer.mean, trainer.normalizer.std).to(trainer.device)


def _accuracy(model, images, labels) -> float:
    with torch.no_grad(), evaluating(model):
        return float((model(images).argmax(1) == labels).float().mean())


@experiment("adversarial", notes="000", heading="Adversarial Training",
            claim="FGSM drives a network's accuracy down as ε grows, adversarial training makes it more robust, "
                  "and adversarial examples transfer to another network far better than noise of the same size")
def adversarial(ctx: Context) -> Outcome:
    # LeNet needs at least 28×28: the smoke budget's 8×8 digits are resized.
    settings = dict(train_limit=ctx.pick(64, 10000, None), epochs=ctx.pick(1, 2, 4), batch_size=64, lr=0.05,
                    optimizer="sgd", schedule="cosine", image_size=ctx.pick(28, None, None))
    trained = {}
    for run, extra in (("standard", {}), ("fgsm-trained", {"adv": "fgsm", "adv_eps": 0.1}),
                       ("independent", {"seed": ctx.seed + 1})):
        trained[run] = train_registered(ctx, "lenet", run, **settings, **extra)[1]
    trainer = trained["standard"]
    n = ctx.pick(64, 1000, 10000)
    images, labels = trainer.data.test.fetch(torch.arange(min(n, len(trainer.data.test))))
    images, labels = images.float().div(255).to(trainer.device), labels.to(trainer.device)
    models = {run: _pixel_model(t) for run, t in trained.items()}

    curves = {run: [run_attack(lambda _: FGSM(models[run], eps), models[run], images, labels)[0]["robust_acc"]
                    if eps else _accuracy(models[run], images, labels) for eps in EPSILONS]
              for run in ("standard", "fgsm-trained")}
    transfer = []
    for source, target in (("standard", "independent"), ("independent", "standard")):
        for name, make in (("FGSM", FGSM), ("uniform noise", RandomNoise)):
            crafted = run_attack(lambda _: make(models[source], TRANSFER_EPS), models[source], images, labels)[1]
            transfer.append({"made on": source, "evaluated on": target, "perturbation": name,
                             "clean_acc": _accuracy(models[target], images, labels),
                             "acc": _accuracy(models[target], crafted["adversarial"], labels)})
    at = EPSILONS.index(TRANSFER_EPS)
    decreasing = all(a >= b for a, b in zip(curves["standard"], curves["standard"][1:]))
    more_robust = curves["fgsm-trained"][at] > curves["standard"][at]
    fgsm_rows = [r for r in transfer if r["perturbation"] == "FGSM"]
    noise_rows = [r for r in transfer if r["perturbation"] != "FGSM"]
    # "Far better than noise": at least 2 points more accuracy lost than to noise of the same size.
    transfers = all(r["acc"] - f["acc"] > 0.02 for f, r in zip(fgsm_rows, noise_rows))

    fig, axes = figure(1, 2)
    for run, accuracy in curves.items():
        axes[0, 0].plot(EPSILONS, accuracy, "-o", label=run)
    axes[0, 0].set(xlabel="ε (pixels in [0, 1])", ylabel="test accuracy under FGSM", title="white-box FGSM")
    axes[0, 0].legend()
    labels_ = [f"{r['made on']} → {r['evaluated on']}\n{r['perturbation']}" for r in transfer]
    axes[0, 1].barh(labels_, [r["acc"] for r in transfer], color=["tab:red" if r["perturbation"] == "FGSM" else
                                                                 "tab:grey" for r in transfer])
    axes[0, 1].set(xlabel=f"accuracy of the target network (ε = {TRANSFER_EPS})", title="transfer")
    axes[0, 1].tick_params(axis="y", labelsize=7)
    table = [{"ε": eps, **{run: curves[run][i] for run in curves}} for i, eps in enumerate(EPSILONS)]
    return Outcome(
        verdict(decreasing and more_robust and transfers),
        f"At ε = {TRANSFER_EPS}: standard LeNet {curves['standard'][at]:.3f}, FGSM-trained {curves['fgsm-trained'][at]:.3f} "
        f"(clean {curves['standard'][0]:.3f} / {curves['fgsm-trained'][0]:.3f}). Transfer: "
        + "; ".join(f"{r['made on']} → {r['evaluated on']} {r['perturbation']} {r['acc']:.3f}" for r in transfer)
        + f". Accuracy falls with ε: {decreasing}; adversarial training helps: {more_robust}; FGSM transfers better "
        f"than noise (by > 0.02): {transfers}.",
        f"{trainer.data.name}, {len(trainer.data.train)} training images, {settings['epochs']} epoch(s), SGD lr 0.05 "
        f"cosine, batch 64, no augmentation; FGSM training at ε = 0.1 with α = 0.5 (Goodfellow's J̃); FGSM from "
        f"visionzoo.attacks on {len(labels)} test images in pixel space [0, 1]{precision_note(ctx)}.",
        {"epsilons": list(EPSILONS), "accuracy": curves, "transfer": transfer},
        [save_figure(fig, ctx, "adversarial.png")], table)
