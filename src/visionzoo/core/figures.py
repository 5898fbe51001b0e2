"""Figures without pyplot: `subplots` makes a matplotlib Figure bound to no GUI backend, so that
importing visionzoo never calls ``matplotlib.use`` and a user's own backend choice is left alone."""
from __future__ import annotations

from pathlib import Path

from .io import write_atomic


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, layout=None, **kwargs):
    """``plt.subplots`` for files: (figure, axes) drawn with the Agg canvas, freed when dropped."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig, path: Path) -> None:
    """Write `fig` as a PNG atomically."""
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
