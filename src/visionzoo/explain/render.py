"""Pictures of the explanations and the `index.html` that shows an output directory's pictures together.

Every file is written atomically (temporary name, then rename), as the run directory is.
`explain.json` in the directory lists its pictures with their captions and faithfulness metrics;
each `visionzoo explain` adds to it and rewrites `index.html` from it.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib
import matplotlib.patches
import numpy as np
import torch

from ..core.figures import save_figure, subplots
from ..core.io import write_json, write_text

MANIFEST = "explain.json"


def _displayable(image: torch.Tensor) -> np.ndarray:
    """uint8 (C, H, W) → what imshow takes: (H, W) for grey, (H, W, 3) for colour."""
    array = image.detach().cpu().numpy()
    return array[0] if array.shape[0] == 1 else np.transpose(array[:3], (1, 2, 0))


def _show(ax, image: torch.Tensor) -> None:
    ax.imshow(_displayable(image), cmap="gray", vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([])


def save_heatmap(path: Path, image: torch.Tensor, heatmap: torch.Tensor, title: str, label: str,
                 signed: bool = False) -> None:
    """The image beside the image overlaid with an (H, W) map, with a colour bar."""
    fig, (ax_image, ax_map) = subplots(1, 2, figsize=(8, 4))
    _show(ax_image, image)
    ax_image.set_title("input")
    _show(ax_map, image)
    values = heatmap.detach().float().cpu().numpy()
    limit = float(np.abs(values).max()) or 1.0
    shown = ax_map.imshow(values, cmap="coolwarm" if signed else "jet", alpha=0.55,
                          vmin=-limit if signed else min(0.0, float(values.min())), vmax=limit)
    fig.colorbar(shown, ax=ax_map, label=label, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    save_figure(fig, path)


def save_gradient_image(path: Path, image: torch.Tensor, gradient: torch.Tensor, title: str) -> None:
    """A (C, H, W) gradient shown as an image (Springenberg et al. Fig. 1 style), with a colour bar."""
    fig, (ax_image, ax_grad) = subplots(1, 2, figsize=(8, 4))
    _show(ax_image, image)
    ax_image.set_title("input")
    values = gradient.detach().float().cpu()
    values = values / (values.abs().max() + 1e-12)
    array = values[0].numpy() if values.shape[0] == 1 else (values[:3].permute(1, 2, 0).numpy() + 1) / 2
    shown = ax_grad.imshow(array, cmap="coolwarm" if values.shape[0] == 1 else None,
                           vmin=-1 if values.shape[0] == 1 else 0, vmax=1)
    ax_grad.set_xticks([])
    ax_grad.set_yticks([])
    fig.colorbar(shown, ax=ax_grad, label="gradient / max |gradient|", fraction=0.046, pad=0.04)
    fig.suptitle(title)
    save_figure(fig, path)


def save_tiles(path: Path, tiles: list[list[np.ndarray]], row_labels: list[str], title: str,
               captions: list[list[str]] | None = None, cmap: str = "gray", symmetric: bool = False) -> None:
    """A grid of small images, one row per label. Signed tiles (`symmetric`: filter weights) share
    one scale symmetric about 0, shown by a colour bar, so that tiles compare; image tiles are
    each scaled on their own. The constrained layout keeps every caption over its own tile."""
    n_rows, n_cols = len(tiles), max(len(row) for row in tiles)
    fig, axes = subplots(n_rows, n_cols, figsize=(1.3 * n_cols + 1.4, 1.4 * n_rows + 0.8), squeeze=False,
                         layout="constrained")
    limit = max((float(np.abs(tile).max()) for row in tiles for tile in row), default=1.0) or 1.0
    shown = None
    for r, row in enumerate(tiles):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            if symmetric:
                shown = ax.imshow(row[c], cmap=cmap, vmin=-limit, vmax=limit)
            else:
                ax.imshow(row[c], cmap=cmap)
            if captions and c < len(captions[r]):
                ax.set_title(captions[r][c], fontsize=7, loc="center")
        axes[r][0].set_ylabel(row_labels[r], fontsize=8)
    if shown is not None:
        fig.colorbar(shown, ax=axes, label="weight", fraction=0.02, pad=0.01)
    fig.suptitle(title)
    save_figure(fig, path)


def save_boxes(path: Path, image: torch.Tensor, boxes: list[tuple[str, tuple]], title: str) -> None:
    """Receptive-field boxes (top, left, bottom, right), one colour per layer, on the image."""
    fig, ax = subplots(figsize=(6, 5))
    _show(ax, image)
    height, width = image.shape[-2:]
    colours = matplotlib.colormaps["viridis"](np.linspace(0, 1, max(len(boxes), 2)))
    for (name, (top, left, bottom, right)), colour in zip(boxes, colours):
        # Pixel i spans [i, i + 1]; imshow centres pixel i on i, hence the half-pixel shift.
        ax.add_patch(matplotlib.patches.Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                   edgecolor=colour, linewidth=1.5, label=name))
    ax.set_xlim(min(-0.5, min(b[1][1] for b in boxes) - 1), max(width - 0.5, max(b[1][3] for b in boxes)))
    ax.set_ylim(max(height - 0.5, max(b[1][2] for b in boxes)), min(-0.5, min(b[1][0] for b in boxes) - 1))
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def save_curves(path: Path, curves: dict[str, dict[str, list[float]]], title: str) -> None:
    """Deletion and insertion curves of each saliency method."""
    fig, axes = subplots(1, 2, figsize=(10, 4))
    for ax, mode in zip(axes, ("deletion", "insertion")):
        for method, by_mode in curves.items():
            values = by_mode[mode]
            ax.plot(np.linspace(0, 1, len(values)), values, label=method)
        ax.set(xlabel=f"fraction of pixels {'deleted' if mode == 'deletion' else 'inserted'}",
               ylabel="class probability",
               title=f"{mode} ({'lower' if mode == 'deletion' else 'higher'} area is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)


def add_to_index(out: Path, entries: list[dict], heading: str, skipped: dict[str, str] | None = None) -> None:
    """Record pictures (dicts with file, method, caption and optional metrics) and the methods `skipped`
    (method → why it does not apply), and rewrite index.html."""
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"entries": []}
    files = {e["file"] for e in entries}
    manifest["entries"] = [e for e in manifest["entries"] if e["file"] not in files] + entries
    made = {e["method"] for e in entries}
    manifest["skipped"] = {**{m: why for m, why in manifest.get("skipped", {}).items() if m not in made},
                           **(skipped or {})}
    manifest["heading"] = heading
    write_json(manifest_path, manifest)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(heading)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:1em;"
             "vertical-align:top}img{max-width:720px;border:1px solid #ccc}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px}</style></head><body>",
             f"<h1>{html.escape(heading)}</h1>"]
    if manifest["skipped"]:
        parts.append("<h2>Skipped</h2><ul>" + "".join(
            f"<li>{html.escape(method)}: {html.escape(why)}</li>" for method, why in manifest["skipped"].items())
            + "</ul>")
    scored = [e for e in manifest["entries"] if e.get("metrics")]
    if scored:
        parts.append("<h2>Faithfulness (Petsiuk et al. 2018)</h2><table><tr><th>picture</th><th>method</th>"
                     "<th>deletion AUC ↓</th><th>insertion AUC ↑</th></tr>")
        for e in scored:
            link = f"<a href='{html.escape(e['file'])}'>{html.escape(e['file'])}</a>"
            if e["metrics"].get("constant"):
                areas = "<td colspan='2'>constant map: it ranks no pixel, so it has no areas</td>"
            else:
                areas = (f"<td>{e['metrics']['deletion_auc']:.4f}</td>"
                         f"<td>{e['metrics']['insertion_auc']:.4f}</td>")
            parts.append(f"<tr><td>{link}</td><td>{html.escape(e['method'])}</td>{areas}</tr>")
        parts.append("</table>")
    for e in manifest["entries"]:
        parts.append(f"<figure><a href='{html.escape(e['file'])}'><img src='{html.escape(e['file'])}' "
                     f"alt='{html.escape(e['method'])}'></a>"
                     f"<figcaption>{html.escape(e['caption'])}</figcaption></figure>")
    parts.append("</body></html>\n")
    write_text(out / "index.html", "\n".join(parts))
