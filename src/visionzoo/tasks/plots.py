"""The run's pictures: training curves per epoch and the test confusion matrix."""
from __future__ import annotations

from pathlib import Path

from ..core.figures import save_figure, subplots


def plot_curves(history: list[dict], path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-o"), ("val", "-s")):
        ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], style, label=split)
        ax_acc.plot(epochs, [h[f"{split}_top1"] for h in history], style, label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
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
