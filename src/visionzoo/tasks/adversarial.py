"""Adversarial training inside the trainer (`visionzoo train --adv fgsm|pgd|fgsm_first_order`).

FGSM: Goodfellow, Shlens, Szegedy, ICLR 2015, Sec. 5 (notes 000 and 003, "Adversarial Training"):
    J̃(θ, x, y) = α·J(θ, x, y) + (1 − α)·J(θ, x + ε·sign(∇ₓJ(θ, x, y)), y),  α = 0.5;
the step trains on the batch [x; x̃] and `goodfellow_objective` weights its two halves.
FGSM to first order (Goodfellow et al. Sec. 5–6, the regulariser view): J(x + ε·sign(∇ₓJ)) =
J(x) + ε‖∇ₓJ‖₁ + O(ε²), so J̃ = J(x) + (1 − α)·ε‖∇ₓJ‖₁ + O(ε²): an ℓ1 penalty on the input
gradient, trained by double backpropagation (`first_order_objective`) on the clean batch alone.
(Read literally, "α·J + (1 − α)·ε‖∇ₓJ‖₁" would drop the (1 − α)·J of the adversarial term;
we keep it, so that the penalised loss is J̃ to first order.) ∇ₓJ is each example's own
gradient, that of the summed loss; with batch norm in training mode examples share statistics,
a coupling the derivation ignores.
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

from ..attacks.base import Normalized
from ..attacks.gradient import FGSM, PGD
from ..core.options import at_least, option, option_group, positive, within

ADVERSARIAL_TRAINING = ("fgsm", "pgd", "fgsm_first_order")


@option_group("adversarial training", "ε and α in pixels of [0, 1] (visionzoo.attacks)")
class AdversarialOptions:
    adv: str | None = option(None, "FGSM objective J̃ (Goodfellow), its first-order ℓ1 input-gradient "
                                   "penalty, or PGD min-max (Madry)",
                             choices=ADVERSARIAL_TRAINING)
    adv_eps: float = option(0.1, "perturbation radius ε (default {default})",
                            check=within("(0, 1]", "ε is in pixels of [0, 1]"))
    adv_alpha: float = option(0.01, "PGD step size α (default {default})", check=positive)
    adv_steps: int = option(40, "PGD steps K (default {default})", check=at_least(1))
    adv_weight: float = option(0.5, "FGSM (both forms): weight α of the clean loss (default {default})",
                               check=within("[0, 1]", "α weighs the clean loss"))


class AdversarialTraining:
    """The classification task's batch and objective under `--adv` (see the module docstring)."""

    def __init__(self, cfg):
        self.method, self.eps, self.alpha, self.steps = cfg.adv, cfg.adv_eps, cfg.adv_alpha, cfg.adv_steps
        self.clean_weight = cfg.adv_weight
        self.inputs = self.pixel_std = None  # fgsm_first_order: the batch the objective differentiates

    def batch(self, model, normalizer, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
              channels_last: bool = False):
        """The standardised batch to train on: [x; x̃] with labels [y; y] (FGSM) or x̃ (PGD).
        `model` is the unwrapped network: the adversary needs input gradients only, no DDP sync."""
        pixel_model = Normalized(model, normalizer.mean, normalizer.std).to(x.device)
        mean, std = pixel_model.mean, pixel_model.std
        if self.method == "fgsm_first_order":
            self.inputs, self.pixel_std = x.detach().requires_grad_(), std
            return self.inputs, labels
        pixels = (x.float() * std + mean).clamp(0, 1)
        if self.method == "fgsm":
            attack = FGSM(pixel_model, self.eps)
        else:
            attack = PGD(pixel_model, self.eps, self.alpha, self.steps, generator=generator)
        adversarial = (attack(pixels, labels) - mean) / std
        if channels_last:
            adversarial = adversarial.contiguous(memory_format=torch.channels_last)
        if self.method == "fgsm":
            return torch.cat([x, adversarial.to(x.dtype)]), torch.cat([labels, labels])
        return adversarial.to(x.dtype), labels

    @property
    def objective(self):
        """Goodfellow's J̃ over the two halves for FGSM, its first-order form for fgsm_first_order;
        None (the plain loss on x̃) for PGD."""
        if self.method == "fgsm_first_order":
            return lambda loss_fn, output, labels, model, smoothing: first_order_objective(
                loss_fn, output, labels, model, smoothing, self.inputs, self.pixel_std, self.eps, self.clean_weight)
        if self.method != "fgsm":
            return None
        return lambda loss_fn, output, labels, model, smoothing: goodfellow_objective(
            loss_fn, output, labels, model, smoothing, self.clean_weight)


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


def first_order_objective(loss_fn, output, labels, model, label_smoothing: float, inputs: torch.Tensor,
                          pixel_std, eps: float, clean_weight: float):
    """J + (1 − α)·ε·mean‖∇_p J‖₁ on the clean batch; `inputs` are the standardised x the network read, so
    the pixel-space gradient is ∇ₓJ / std. The gradient keeps its graph: the penalty is trained through."""
    loss, logits = loss_fn(output, labels, model, label_smoothing)
    (gradient,) = torch.autograd.grad(loss * len(labels), inputs, create_graph=True)
    penalty = (gradient / pixel_std).abs().flatten(1).sum(1).mean()
    return loss + (1 - clean_weight) * eps * penalty, logits
