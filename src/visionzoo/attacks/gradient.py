"""Gradient attacks: FGSM and its random-noise control (Goodfellow, Shlens, Szegedy, "Explaining
and Harnessing Adversarial Examples", ICLR 2015, Sec. 3 and 6) and PGD with random restarts
(Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to Adversarial
Attacks", ICLR 2018, Sec. 2–3).

FGSM:  x̃ = x + ε·sign(∇ₓJ(θ, x, y))                                   (notes 000, Sec. "FGSM")
PGD:   x^{t+1} = Π_{x+S}(x^t + α·sign(∇ₓL(θ, x^t, y)))                 (notes 000, "Robust
       Optimization"; notes 003, Algorithm 1), S the ℓ∞ ball of radius ε; for ℓ2 the step is
       α·∇/‖∇‖₂ and Π rescales δ onto the ℓ2 ball.
Restarts start from independent uniform points of the ball and keep, per sample, the worst
case: a restart replaces the kept example when it fools the model and the kept one does not,
or when both agree on that and its loss is higher (lower to the target, when targeted).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import NORMS, Attack, choose_targets, per_sample_norm


class FGSM(Attack):
    """One step of size ε along the gradient sign; `targeted=True` reads y as the target classes
    and steps down the target's loss instead."""

    def __init__(self, model, eps: float, targeted: bool = False):
        super().__init__(model, eps)
        self.targeted = targeted

    def perturb(self, x, y):
        return x + self.eps * self.loss_gradient(x, y, self.targeted).sign()


class RandomNoise(Attack):
    """The control of Goodfellow et al. Sec. 6: uniform noise in [−ε, ε] on every pixel."""

    def __init__(self, model, eps: float, seed: int = 0):
        super().__init__(model, eps)
        self.generator = torch.Generator().manual_seed(seed)

    def perturb(self, x, y):
        noise = torch.rand(x.shape, generator=self.generator).to(x) * 2 - 1
        return x + self.eps * noise


class PGD(Attack):
    """Projected gradient ascent of the loss in the ε-ball, `restarts` times from random starts.

    `target`: None (untargeted), "random", "least_likely", a class index, or a tensor of
    per-sample classes; a targeted attack descends the target's cross-entropy. Random starts
    and random targets come from `generator` (default: a CPU generator seeded with `seed`).
    """

    def __init__(self, model, eps: float, alpha: float, steps: int, restarts: int = 1,
                 norm: str = "linf", random_start: bool = True, target=None, seed: int = 0,
                 generator: torch.Generator | None = None):
        super().__init__(model, eps)
        if norm not in NORMS:
            raise ValueError(f"norm {norm!r}: choose one of {', '.join(NORMS)}")
        if not (alpha > 0 and steps >= 1 and restarts >= 1):
            raise ValueError("alpha must be positive, steps and restarts at least 1")
        self.alpha, self.steps, self.restarts, self.norm = alpha, steps, restarts, norm
        self.random_start, self.target = random_start, target
        self.generator = generator or torch.Generator().manual_seed(seed)

    def _uniform(self, shape, like: torch.Tensor) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.generator.device).to(like)

    def random_delta(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return self.eps * (2 * self._uniform(x.shape, x) - 1)
        # Uniform in the ℓ2 ball: a Gaussian direction, radius ε·u^(1/d).
        direction = torch.randn(x.shape, generator=self.generator, device=self.generator.device).to(x)
        direction = direction / per_sample_norm(direction, "l2").clamp_min(1e-12).view(-1, 1, 1, 1)
        radius = self.eps * self._uniform((len(x),), x) ** (1.0 / x[0].numel())
        return direction * radius.view(-1, 1, 1, 1)

    def step(self, gradient: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return self.alpha * gradient.sign()
        return self.alpha * gradient / per_sample_norm(gradient, "l2").clamp_min(1e-12).view(-1, 1, 1, 1)

    def outcome(self, x_adv, y, targets) -> tuple[torch.Tensor, torch.Tensor]:
        """(fooled, loss to maximise) per sample: the order in which restarts are ranked."""
        with torch.no_grad():
            logits = self.logits(x_adv).float()
        if targets is None:
            return logits.argmax(1) != y, F.cross_entropy(logits, y, reduction="none")
        return logits.argmax(1) == targets, -F.cross_entropy(logits, targets, reduction="none")

    def perturb(self, x, y):
        targets = None
        if self.target is not None:
            with torch.no_grad():
                targets = choose_targets(self.target, self.logits(x).float(), y, self.generator)
            targets = targets.to(y.device)
        labels = y if targets is None else targets
        worst = x.clone()
        worst_fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        worst_loss = torch.full((len(x),), -float("inf"), device=x.device)
        for _ in range(self.restarts):
            x_adv = self.project(x, x + self.random_delta(x)) if self.random_start else x.clone()
            for _ in range(self.steps):
                gradient = self.loss_gradient(x_adv, labels, targeted=targets is not None)
                x_adv = self.project(x, x_adv + self.step(gradient))
            fooled, loss = self.outcome(x_adv, y, targets)
            worse = (fooled & ~worst_fooled) | ((fooled == worst_fooled) & (loss > worst_loss))
            worst[worse] = x_adv[worse]
            worst_fooled = torch.where(worse, fooled, worst_fooled)
            worst_loss = torch.where(worse, loss, worst_loss)
        return worst
