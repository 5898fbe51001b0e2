"""Black-box transfer attack through a substitute: Papernot, McDaniel, Goodfellow, Jha, Celik,
Swami, "Practical Black-Box Attacks against Machine Learning", ASIA CCS 2017 (notes 000,
"Black-Box Attacks", Algorithm 1).

The oracle Õ answers labels only, argmax_j O_j(x). Starting from a small seed set S₀, each of the
max_ρ substitute epochs labels S_ρ through the oracle, trains the substitute F on it, and grows
the set by Jacobian-based augmentation,

    S_{ρ+1} = {x + λ·sign(J_F(x)[Õ(x)]) : x ∈ S_ρ} ∪ S_ρ,

the step following the gradient of F's logit for the oracle's label. Labels are kept, so each
point is sent to the oracle once: |S₀|·2^(max_ρ − 1) queries (the last augmentation of the
algorithm is never labelled, so it is not made). Adversarial examples are FGSM on F, and their
success is the transfer rate on the oracle. Defaults follow the paper's MNIST setting:
max_ρ = 6, λ = 0.1, 10 training epochs per round; the substitute is a 200-200 MLP.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Attack
from .gradient import FGSM


def _mlp_substitute(input_shape, num_classes: int) -> nn.Module:
    features = 1
    for side in input_shape:
        features *= side
    return nn.Sequential(nn.Flatten(), nn.Linear(features, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(),
                         nn.Linear(200, num_classes))


class SubstituteAttack(Attack):
    def __init__(self, model, eps: float, seed_images: torch.Tensor, num_classes: int,
                 substitute: nn.Module | None = None, rounds: int = 6, lam: float = 0.1,
                 epochs: int = 10, batch_size: int = 32, lr: float = 1e-3, seed: int = 0):
        super().__init__(model, eps)
        self.seed_images = seed_images.detach()
        self.num_classes, self.rounds, self.lam = num_classes, rounds, lam
        self.epochs, self.batch_size, self.lr, self.seed = epochs, batch_size, lr, seed
        if substitute is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                substitute = _mlp_substitute(seed_images.shape[1:], num_classes)
        self.substitute = substitute.to(seed_images.device)
        self.fitted = False

    def oracle(self, x: torch.Tensor) -> torch.Tensor:
        """Õ(x): the label, nothing else."""
        with torch.no_grad():
            return self.logits(x).argmax(1)

    def _train_substitute(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        optimizer = torch.optim.Adam(self.substitute.parameters(), lr=self.lr)
        generator = torch.Generator().manual_seed(self.seed)
        self.substitute.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(images), generator=generator).to(images.device)
            for start in range(0, len(images), self.batch_size):
                batch = order[start:start + self.batch_size]
                loss = F.cross_entropy(self.substitute(images[batch]), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        self.substitute.eval()

    def _jacobian_augmentation(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.detach().requires_grad_(True)
        with torch.enable_grad():
            chosen = self.substitute(images).gather(1, labels[:, None]).sum()
            jacobian_row, = torch.autograd.grad(chosen, images)
        return (images + self.lam * jacobian_row.sign()).clamp(0, 1).detach()

    def fit(self) -> "SubstituteAttack":
        """Algorithm 1: train the substitute from the seed set and the oracle's labels."""
        images = self.seed_images
        labels = self.oracle(images)
        for rho in range(self.rounds):
            self._train_substitute(images, labels)
            if rho < self.rounds - 1:
                new = self._jacobian_augmentation(images, labels)
                images, labels = torch.cat([images, new]), torch.cat([labels, self.oracle(new)])
        self.training_set_size, self.fitted = len(images), True
        return self

    def perturb(self, x, y):
        if not self.fitted:
            self.fit()
        return FGSM(self.substitute, self.eps)(x, y)
