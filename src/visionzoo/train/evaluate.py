"""Evaluation: top-1, top-5 and mean cross-entropy on a split, summed exactly across ranks."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.loader import Normalizer, eval_batches
from .distributed import all_reduce_sum


def evaluate(model, split, normalizer: Normalizer, *, batch_size: int = 500, device="cpu",
             channels_last: bool = False, num_classes: int | None = None, rank: int = 0,
             world: int = 1) -> dict:
    """Metrics of `model` on `split`; with `num_classes`, also the confusion matrix (true × predicted)."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # n, top1, top5, loss sum
    confusion = torch.zeros(num_classes or 1, num_classes or 1, dtype=torch.int64, device=device)
    with torch.no_grad():
        for images, labels in eval_batches(split, batch_size, rank=rank, world=world, device=device):
            logits = model(normalizer(images, channels_last)).float()
            k = min(5, logits.shape[1])
            top = logits.topk(k, 1).indices
            hits = top == labels[:, None]
            totals += torch.stack([torch.tensor(len(labels), device=device, dtype=torch.float64),
                                   hits[:, 0].sum().double(), hits.any(1).sum().double(),
                                   F.cross_entropy(logits, labels, reduction="sum").double()])
            if num_classes:
                confusion.index_put_((labels, top[:, 0]), torch.ones_like(labels), accumulate=True)
    model.train(was_training)
    totals = all_reduce_sum(totals)
    n = int(totals[0].item())
    result = {"n": n, "top1": totals[1].item() / max(n, 1), "top5": totals[2].item() / max(n, 1),
              "loss": totals[3].item() / max(n, 1)}
    if num_classes:
        result["confusion"] = all_reduce_sum(confusion).cpu().tolist()
    return result
