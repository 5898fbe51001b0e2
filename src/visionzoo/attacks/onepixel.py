"""One-pixel attack: Su, Vargas, Sakurai, "One Pixel Attack for Fooling Deep Neural Networks",
IEEE TEVC 2019 (notes 000, "One pixel Attack").

Black box: only the class probabilities f(x + e(x)) are read, ‖e(x)‖₀ ≤ d pixels. A candidate is
d tuples (x_i, y_i, value_i) — value = (r, g, b), or one intensity for grey images — evolved by
differential evolution without crossover: child_i = χ_j + F·(χ_k − χ_l) with j ≠ k ≠ l drawn at
random and F = 0.5; a child replaces its parent when its fitness is better, so the best fitness
never gets worse. Initial positions are uniform over the image, values ~ N(128, 127)/255 as in
the paper. Population 400, at most 100 generations. Fitness, minimised here: the true class's
probability (untargeted; stop below 5 %) or 1 − the target's probability (targeted; stop when
the target's probability exceeds 90 %). With ε given, a pixel's new value stays within ±ε.
"""
from __future__ import annotations

import torch

from .base import Attack, choose_targets

UNTARGETED_STOP = 0.05   # true-class probability below which the search stops (ImageNet setting)
TARGETED_STOP = 0.90     # target probability above which the search stops (CIFAR-10 setting)


def _rows(population: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """population[b, index[b, i]] for every image b and child i."""
    return population.gather(1, index[..., None, None].expand_as(population))


class OnePixel(Attack):
    def __init__(self, model, pixels: int = 1, popsize: int = 400, max_iter: int = 100, F: float = 0.5,
                 target=None, eps: float | None = None, seed: int = 0, chunk: int = 512):
        super().__init__(model, eps)
        if popsize < 4:
            raise ValueError("popsize must be at least 4: each child needs three other members")
        self.pixels, self.popsize, self.max_iter, self.F = pixels, popsize, max_iter, F
        # Candidates go through the model `chunk` images at a time: on CPU, LeNet ran 1.6× faster
        # in chunks of 512 than of 4096 (activations stay in cache).
        self.target, self.chunk = target, chunk
        self.generator = torch.Generator().manual_seed(seed)
        self.history: torch.Tensor | None = None  # best fitness per generation × image

    def _rand(self, *shape) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator)

    def render(self, x: torch.Tensor, owner: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Images x[owner] with each candidate's pixels written in (candidates: (M, d, 2 + C))."""
        n, channels, height, width = len(owner), *x.shape[1:]
        images = x[owner].flatten(2).clone()
        cols = candidates[..., 0].long().clamp(0, width - 1)
        rows = candidates[..., 1].long().clamp(0, height - 1)
        where = (rows * width + cols).unsqueeze(1).expand(n, channels, self.pixels)
        values = candidates[..., 2:].transpose(1, 2)
        images.scatter_(2, where, values)
        return self.project(x[owner], images.view(n, channels, height, width))

    def fitness(self, x, owner, candidates, classes, targeted: bool) -> torch.Tensor:
        scores = []
        with torch.no_grad():
            for start in range(0, len(owner), self.chunk):
                part = slice(start, start + self.chunk)
                images = self.render(x, owner[part], candidates[part].to(x))
                probability = self.logits(images).float().softmax(1)
                scores.append(probability.gather(1, classes[owner[part], None]).squeeze(1))
        score = torch.cat(scores).cpu()
        return 1 - score if targeted else score

    def perturb(self, x, y):
        batch, channels, height, width = x.shape
        with torch.no_grad():
            targets = choose_targets(self.target, self.logits(x).float(), y, self.generator)
        targeted = targets is not None
        classes = (targets if targeted else y).to(x.device)
        stop = 1 - TARGETED_STOP if targeted else UNTARGETED_STOP
        size, d = self.popsize, self.pixels
        population = torch.cat([self._rand(batch, size, d, 1) * width, self._rand(batch, size, d, 1) * height,
                                torch.normal(128.0, 127.0, (batch, size, d, channels),
                                             generator=self.generator).clamp(0, 255) / 255], dim=3)
        owner = torch.arange(batch).repeat_interleave(size)
        fitness = self.fitness(x, owner.to(x.device), population.flatten(0, 1), classes, targeted).view(batch, size)
        history = [fitness.min(1).values]
        low = torch.tensor([0.0, 0.0] + [0.0] * channels)
        high = torch.tensor([width - 1e-3, height - 1e-3] + [1.0] * channels)
        for _ in range(self.max_iter):
            active = (fitness.min(1).values >= stop).nonzero().squeeze(1)
            if len(active) == 0:
                break
            # Three distinct members per child: j, then k and l at distinct non-zero offsets from j.
            j = (self._rand(len(active), size) * size).long()
            a = 1 + (self._rand(len(active), size) * (size - 1)).long()
            b = 1 + (self._rand(len(active), size) * (size - 2)).long()
            b = b + (b >= a).long()
            k, l = (j + a) % size, (j + b) % size
            members = population[active]
            mutant = _rows(members, j) + self.F * (_rows(members, k) - _rows(members, l))
            children = torch.minimum(torch.maximum(mutant, low), high)
            owner = active.repeat_interleave(size)
            child_fitness = self.fitness(x, owner.to(x.device), children.flatten(0, 1), classes,
                                         targeted).view(len(active), size)
            better = child_fitness < fitness[active]
            population[active] = torch.where(better[..., None, None], children, members)
            fitness[active] = torch.where(better, child_fitness, fitness[active])
            history.append(fitness.min(1).values)
        self.history = torch.stack(history)
        best = population[torch.arange(batch), fitness.argmin(1)]
        return self.render(x, torch.arange(batch, device=x.device), best.to(x))
