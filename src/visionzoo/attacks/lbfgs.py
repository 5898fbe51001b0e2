"""Box-constrained L-BFGS: Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow, Fergus,
"Intriguing properties of neural networks", ICLR 2014, Sec. 4.1 (notes 000, "Adversarial Examples").

The closest image x + r classified as l is approximated by

    minimise  c·|r| + loss_f(x + r, l)   subject to  x + r ∈ [0, 1]^m

solved image by image with scipy's L-BFGS-B, whose bounds are exactly the box (intersected with
the ℓ∞ ball x ± ε when ε is given). |r| is taken as ‖r‖₂², smooth at r = 0 where the search starts.
A search over c follows the paper: a larger c buys a smaller r, so c grows (×10, then bisection)
while the minimiser still reaches l and shrinks when it does not; each sample keeps its smallest
successful r. Without a target, l is the clean image's runner-up class, the nearest wrong label.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import Attack, choose_targets


class LBFGS(Attack):
    def __init__(self, model, eps: float | None = None, target=None, c: float = 1.0,
                 search_steps: int = 6, max_iter: int = 50, seed: int = 0):
        super().__init__(model, eps)
        self.target, self.c, self.search_steps, self.max_iter = target, c, search_steps, max_iter
        self.generator = torch.Generator().manual_seed(seed)

    def _minimise(self, x: torch.Tensor, labels: torch.Tensor, c: torch.Tensor,
                  lower: np.ndarray, upper: np.ndarray) -> torch.Tensor:
        """Each image on its own: summed into one problem, the stiff (large-c) images would set
        the shared line search and curvature estimate, and the others would hardly move."""
        from scipy.optimize import Bounds, minimize
        from threadpoolctl import threadpool_limits
        solutions = []
        for i in range(len(x)):
            image, label, weight = x[i:i + 1], labels[i:i + 1], c[i].item()

            def objective(flat: np.ndarray):
                candidate = torch.from_numpy(flat).view_as(image).to(image).requires_grad_(True)
                with torch.enable_grad():
                    loss = weight * ((candidate - image) ** 2).sum() + \
                        F.cross_entropy(self.logits(candidate).float(), label, reduction="sum")
                    gradient, = torch.autograd.grad(loss, candidate)
                return loss.item(), gradient.double().cpu().numpy().ravel()

            # L-BFGS-B's vector updates are tiny: BLAS threads only add synchronisation cost.
            with threadpool_limits(1, user_api="blas"):
                result = minimize(objective, image.double().cpu().numpy().ravel(), jac=True, method="L-BFGS-B",
                                  bounds=Bounds(lower[i], upper[i]), options={"maxiter": self.max_iter})
            solutions.append(torch.from_numpy(result.x).view_as(image).to(image))
        return torch.cat(solutions)

    def perturb(self, x, y):
        with torch.no_grad():
            logits = self.logits(x).float()
        targets = choose_targets(self.target, logits, y, self.generator)
        if targets is None:
            targets = logits.topk(2, 1).indices[:, 1]
            targets = torch.where(targets == y, logits.argmax(1), targets)
        targets = targets.to(y.device)
        flat = x.double().cpu().numpy().reshape(len(x), -1)
        eps = np.inf if self.eps is None else self.eps
        lower, upper = np.maximum(flat - eps, 0.0), np.minimum(flat + eps, 1.0)
        c = torch.full((len(x),), self.c, device=x.device)
        low, high = torch.zeros_like(c), torch.full_like(c, float("inf"))
        best = x.clone()
        best_size = torch.full_like(c, float("inf"))
        reached_once = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.search_steps):
            candidate = self._minimise(x, targets, c, lower, upper)
            with torch.no_grad():
                reached = self.logits(candidate).argmax(1) == targets
            size = (candidate - x).flatten(1).norm(dim=1)
            keep = (reached & (size < best_size)) | (~reached & ~reached_once)
            best[keep] = candidate[keep]
            best_size = torch.where(reached & (size < best_size), size, best_size)
            reached_once |= reached
            low = torch.where(reached, c, low)
            high = torch.where(reached, high, c)
            c = torch.where(torch.isinf(high), c * 10, torch.where(low == 0, c / 10, (low + high) / 2))
        return best
