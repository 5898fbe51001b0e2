"""Measuring an attack: clean and robust accuracy, success rate, perturbation sizes, queries, time;
and the panda figure of Goodfellow et al. 2015 (Fig. 1; notes 000 and 003): clean image with its
true label, the perturbation on a colour scale in pixel units, adversarial image, each image with
the predicted label and confidence."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .base import per_sample_norm


def run_attack(make_attack, model, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 250,
               targets: torch.Tensor | None = None, quiet: bool = True) -> tuple[dict, dict]:
    """Attack `images` (pixels in [0, 1]) batch by batch; `make_attack(batch_targets)` gives the
    attack for a batch (the same object may serve every batch). Returns the metrics and the
    tensors the figure needs. Success counts among the images the model got right: for an
    untargeted attack a changed label, for a targeted one the target reached. Unless `quiet`,
    progress in images goes to stderr."""
    from ..core.progress import progress
    attacks, adversarial = [], []
    started = time.perf_counter()
    with progress(total=len(images), desc="attacking", quiet=quiet) as shown:
        for start in range(0, len(images), batch_size):
            part = slice(start, start + batch_size)
            attack = make_attack(None if targets is None else targets[part])
            adversarial.append(attack(images[part], labels[part]))
            if not any(attack is seen for seen in attacks):
                attacks.append(attack)
            shown.update(len(adversarial[-1]))
    seconds = time.perf_counter() - started
    adversarial = torch.cat(adversarial)
    with torch.no_grad():
        clean_probs = torch.cat([model(images[i:i + batch_size]).float().softmax(1)
                                 for i in range(0, len(images), batch_size)])
        adv_probs = torch.cat([model(adversarial[i:i + batch_size]).float().softmax(1)
                               for i in range(0, len(images), batch_size)])
    clean_pred, adv_pred = clean_probs.argmax(1), adv_probs.argmax(1)
    correct = clean_pred == labels
    fooled = adv_pred != labels if targets is None else adv_pred == targets
    delta = adversarial - images
    metrics = {
        "n": len(images), "clean_acc": correct.float().mean().item(),
        "robust_acc": (adv_pred == labels).float().mean().item(),
        "success_rate": (fooled & correct).sum().item() / max(int(correct.sum()), 1),
        "mean_linf": per_sample_norm(delta, "linf").mean().item(),
        "mean_l2": per_sample_norm(delta, "l2").mean().item(),
        "mean_l0": (delta.abs().amax(1) > 0).flatten(1).sum(1).float().mean().item(),
        "queries": sum(attack.queries for attack in attacks), "seconds": round(seconds, 3),
    }
    tensors = {"images": images, "adversarial": adversarial, "labels": labels, "clean_probs": clean_probs,
               "adv_probs": adv_probs, "fooled": fooled & correct}
    return metrics, tensors


def plot_adversarial_grid(tensors: dict, classes: list[str], path: Path, title: str, rows: int = 6) -> None:
    """One row per example (fooled ones first): clean (with its true label) | the perturbation η on
    a diverging colour scale in pixel units, with its colour bar | adversarial."""
    from ..core.figures import save_figure, subplots
    order = torch.argsort((~tensors["fooled"]).int(), stable=True)[:rows].tolist()
    fig, axes = subplots(len(order), 3, figsize=(7.4, 2.4 * len(order)), squeeze=False,
                         layout="constrained")
    for row, i in enumerate(order):
        clean, adv = tensors["images"][i].cpu(), tensors["adversarial"][i].cpu()
        truth = classes[int(tensors["labels"][i])]
        for ax, image, probs, name in ((axes[row, 0], clean, tensors["clean_probs"][i], "x"),
                                       (axes[row, 2], adv, tensors["adv_probs"][i], "x + η")):
            grey = image.shape[0] == 1
            ax.imshow((image[0] if grey else image.permute(1, 2, 0)).numpy(), cmap="gray" if grey else None,
                      vmin=0, vmax=1)
            k = int(probs.argmax())
            label = f"{name}: “{classes[k]}” {100 * probs[k].item():.1f}%"
            ax.set_title(label + (f"\ntrue: “{truth}”" if name == "x" else ""), fontsize=8)
            ax.axis("off")
        # η itself (mean over colour channels), symmetric about 0 so its sign reads from the colour
        delta = (adv - clean).mean(0)
        bound = max(float(delta.abs().max()), 1e-8)
        shown = axes[row, 1].imshow(delta.numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound)
        axes[row, 1].set_title("perturbation η", fontsize=8)
        axes[row, 1].axis("off")
        fig.colorbar(shown, ax=axes[row, 1], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
