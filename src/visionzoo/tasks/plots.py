"""The run's pictures: training curves per epoch and the test confusion matrix."""
from __future__ import annotations

from pathlib import Path

from ..core.figures import save_figure, subplots


def plot_curves(history: list[dict], path: Path, *, metric: str = "top1", metric_label: str = "top-1 accuracy",
                loss_label: str = "cross-entropy") -> None:
    """Loss and the task's metric per epoch, training and validation (the metric's training curve only
    where the records have one: a detector's mAP or a translation's BLEU is measured on validation only)."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_metric) = subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-o"), ("val", "-s")):
        ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], style, label=split)
        if all(f"{split}_{metric}" in h for h in history):
            ax_metric.plot(epochs, [h[f"{split}_{metric}"] for h in history], style, label=split)
    ax_loss.set(xlabel="epoch", ylabel=loss_label, title="loss")
    ax_metric.set(xlabel="epoch", ylabel=metric_label, title=metric)
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    save_figure(fig, path)


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    k = len(classes)
    fig, ax = subplots(figsize=(max(5, 0.55 * k + 2), max(4, 0.5 * k + 1.5)))
    image = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(image, ax=ax, label="images")
    if k <= 30:
        ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        peak = max(max(row) for row in confusion) or 1
        for i in range(k):
            for j in range(k):
                ax.text(j, i, confusion[i][j], ha="center", va="center", fontsize=7,
                        color="white" if confusion[i][j] > peak / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    save_figure(fig, path)
