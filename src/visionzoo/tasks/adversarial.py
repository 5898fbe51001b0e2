"""Adversarial training inside the trainer (`visionzoo train --adv fgsm|pgd`).

FGSM: Goodfellow, Shlens, Szegedy, ICLR 2015, Sec. 5 (notes 000 and 003, "Adversarial Training"):
    J̃(θ, x, y) = α·J(θ, x, y) + (1 − α)·J(θ, x + ε·sign(∇ₓJ(θ, x, y)), y),  α = 0.5;
the step trains on the batch [x; x̃] and `goodfellow_objective` weights its two halves.
PGD: Madry et al., ICLR 2018, Eq. 2.1 and notes 003 Algorithm 1: min_θ Σ max_{‖δ‖∞≤ε} ℓ(f_θ(x + δ), y),
the inner maximum approximated by K PGD steps of size α from a random start; the step trains on
x + δ alone.

The trainer feeds standardised inputs x = (p − mean)/std. The adversary works in pixel space p
through `Normalized`, so ε and α are pixels of [0, 1] — ε/std_c in each channel's standardised
units — and x̃ goes back to standardised units. The examples are made with the network in eval
mode (as TRADES does), so the attack's forward passes leave the batch-norm statistics alone;
random starts come from the step's seeded generator, which keeps `--resume` bit-identical.
"""
from __future__ import annotations

import torch

from ..core.errors import UsageError
from ..attacks.base import Normalized
from ..attacks.gradient import FGSM, PGD

ADVERSARIAL_TRAINING = ("fgsm", "pgd")


def validate_adversarial(cfg) -> None:
    if cfg.adv is None:
        return
    if cfg.adv not in ADVERSARIAL_TRAINING:
        raise UsageError(f"--adv {cfg.adv!r}: choose one of {', '.join(ADVERSARIAL_TRAINING)}")
    if not 0 < cfg.adv_eps <= 1:
        raise UsageError(f"--adv-eps {cfg.adv_eps}: ε is in pixels of [0, 1], give 0 < ε ≤ 1")
    if cfg.adv == "pgd" and not (cfg.adv_alpha > 0 and cfg.adv_steps >= 1):
        raise UsageError("--adv-alpha must be positive and --adv-steps at least 1")
    if not 0 <= cfg.adv_weight <= 1:
        raise UsageError(f"--adv-weight {cfg.adv_weight}: α weighs the clean loss, give 0 ≤ α ≤ 1")


def adversarial_batch(trainer, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
    """The standardised batch to train on: [x; x̃] with labels [y; y] (FGSM) or x̃ (PGD)."""
    cfg, normalizer = trainer.cfg, trainer.normalizer
    # The unwrapped model: the adversary needs input gradients only, no DDP gradient sync.
    pixel_model = Normalized(trainer.model, normalizer.mean, normalizer.std).to(x.device)
    mean, std = pixel_model.mean, pixel_model.std
    pixels = (x.float() * std + mean).clamp(0, 1)
    if cfg.adv == "fgsm":
        attack = FGSM(pixel_model, cfg.adv_eps)
    else:
        attack = PGD(pixel_model, cfg.adv_eps, cfg.adv_alpha, cfg.adv_steps, generator=generator)
    adversarial = (attack(pixels, labels) - mean) / std
    if trainer.channels_last:
        adversarial = adversarial.contiguous(memory_format=torch.channels_last)
    if cfg.adv == "fgsm":
        return torch.cat([x, adversarial.to(x.dtype)]), torch.cat([labels, labels])
    return adversarial.to(x.dtype), labels


def _half(output, part: slice):
    if isinstance(output, (tuple, list)):
        return type(output)(_half(item, part) for item in output)
    return output[part]


def goodfellow_objective(loss_fn, output, labels, model, label_smoothing: float, clean_weight: float):
    """α·J on the clean half of [x; x̃] + (1 − α)·J on the adversarial half; logits of both."""
    n = len(labels) // 2
    clean_loss, clean_logits = loss_fn(_half(output, slice(0, n)), labels[:n], model, label_smoothing)
    adv_loss, adv_logits = loss_fn(_half(output, slice(n, None)), labels[n:], model, label_smoothing)
    return clean_weight * clean_loss + (1 - clean_weight) * adv_loss, torch.cat([clean_logits, adv_logits])
