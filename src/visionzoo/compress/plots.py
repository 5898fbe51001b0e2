"""Pictures of a compression report: per-layer sizes, the sensitivity scan, retraining curves.

`layers.png` follows Deep Compression's per-layer tables (Han, Mao, Dally, ICLR 2016, Tables
2–3): parameters against non-zeros, float32 bytes against stored bytes. `sensitivity.png` is
its Fig. 5 for our network: accuracy with one layer at a time pruned to each sparsity.
`weights.png` is its Figs. 4 and 6: the distribution of a layer's (surviving) weights with the
shared values marked before (initialisation) and after centroid fine-tuning.
"""
from __future__ import annotations

from pathlib import Path

from ..core.figures import save_figure, subplots
from ..tasks.plots import plot_curves


def _plot_layers(layers: list[dict], path: Path, title: str) -> None:
    names = [row["layer"] for row in layers]
    positions = range(len(names))
    fig, (ax_count, ax_bytes) = subplots(1, 2, figsize=(max(8, 1.1 * len(names) + 4), 4))
    width = 0.4
    for ax, pairs, label in ((ax_count, (("params", "parameters"), ("nonzero", "non-zeros")), "count"),
                             (ax_bytes, (("bytes_float32", "float32"), ("bytes_stored", "stored")), "bytes")):
        for shift, (key, legend) in zip((-width / 2, width / 2), pairs):
            ax.bar([p + shift for p in positions], [row[key] for row in layers], width, label=legend)
        ax.set_yscale("log")
        ax.set_xticks(list(positions), names, rotation=45, ha="right", fontsize=8)
        ax.set(ylabel=label)
        ax.grid(alpha=0.3, axis="y")
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path)


def _plot_sensitivity(scan: dict, path: Path) -> None:
    fig, ax = subplots(figsize=(6, 4))
    for layer, accuracies in scan["top1"].items():
        ax.plot(scan["sparsities"], accuracies, "-o", markersize=3, label=layer)
    ax.set(xlabel="sparsity of the layer alone", ylabel="validation top-1",
           title="sensitivity to pruning, one layer at a time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _plot_codebooks(codebooks: dict, path: Path, init: str, panels: int = 4) -> None:
    largest = sorted(codebooks, key=lambda n: -sum(codebooks[n]["histogram"]["counts"]))[:panels]
    fig, axes = subplots(1, len(largest), figsize=(4.2 * len(largest), 3.6), squeeze=False)
    for ax, name in zip(axes[0], largest):
        book, histogram = codebooks[name], codebooks[name]["histogram"]
        bins = len(histogram["counts"])
        width = (histogram["high"] - histogram["low"]) / bins
        ax.bar([histogram["low"] + (i + 0.5) * width for i in range(bins)], histogram["counts"], width,
               color="0.7", label="weights" + (" (non-zero)" if book["reserved_zero"] else ""))
        top = max(histogram["counts"])
        ax.plot(book["initial"], [-0.05 * top] * len(book["initial"]), "|", color="C0", markersize=8,
                label=f"centroids, {init} init")
        ax.plot(book["final"], [-0.12 * top] * len(book["final"]), "|", color="C3", markersize=8,
                label="centroids, fine-tuned")
        ax.set(title=f"{name}: {len(book['final'])} shared values", xlabel="weight value", ylabel="count")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path)


def plot_report(report: dict, out: Path) -> list[str]:
    """Write the report's pictures into `out`; returns their file names."""
    written = ["layers.png"]
    _plot_layers(report["layers"], out / "layers.png",
                 f"{report['model']} {report['method']}: {report['compression_ratio']:.1f}× smaller on disk, "
                 f"top-1 {report['top1_before']:.4f} → {report['top1_after']:.4f}")
    if "sensitivity" in report["details"]:
        _plot_sensitivity(report["details"]["sensitivity"], out / "sensitivity.png")
        written.append("sensitivity.png")
    if "codebooks" in report["details"]:
        _plot_codebooks(report["details"]["codebooks"], out / "weights.png", report["details"]["init"])
        written.append("weights.png")
    if report["retraining"]:
        plot_curves(report["retraining"], out / "curves.png")
        written.append("curves.png")
    return written
