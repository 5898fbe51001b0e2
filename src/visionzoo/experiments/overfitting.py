"""Over-fitting a polynomial: Bishop, Pattern Recognition and Machine Learning 2006, §1.1 and
Table 1.1, as printed in notes 001 ("Regularization"): the least-squares coefficients w* of
polynomials of order M = 0, 1, 3, 9 fitted to 10 noisy samples of sin(2πx). The claim: the
order-9 polynomial passes through every training point (training error 0) with coefficients of
magnitude ~10⁵–10⁶ and generalises worse than M = 3; an L2 penalty (λ/2)‖w‖² (the notes'
"Dropout + L2" loss) tames the coefficients (Bishop's Table 1.2, ln λ = −18).
"""
from __future__ import annotations

import numpy as np

from .base import Context, Outcome, experiment, verdict
from .common import figure, save_figure

ORDERS = (0, 1, 3, 9)


def fit_polynomial(x: np.ndarray, t: np.ndarray, order: int, l2: float = 0.0) -> np.ndarray:
    """w* minimising ½Σ(y(x_n, w) − t_n)² + (λ/2)‖w‖², w_0 first.

    Solved as the least-squares problem [Φ; √λ I] w ≈ [t; 0]: the normal equations would square
    the condition number of the order-9 Vandermonde matrix (~10¹³) and lose the exact fit.
    """
    design = np.vander(x, order + 1, increasing=True)
    stacked = np.vstack([design, np.sqrt(l2) * np.eye(order + 1)])
    return np.linalg.lstsq(stacked, np.concatenate([t, np.zeros(order + 1)]), rcond=None)[0]


def rms_error(w: np.ndarray, x: np.ndarray, t: np.ndarray) -> float:
    """Bishop's E_RMS = √(2E(w)/N), E = ½Σ(y − t)²."""
    return float(np.sqrt(np.mean((np.polynomial.polynomial.polyval(x, w) - t) ** 2)))


def _samples(rng, n: int, noise: float = 0.3):
    x = np.linspace(0, 1, n) if n == 10 else rng.uniform(0, 1, n)
    return x, np.sin(2 * np.pi * x) + rng.normal(0, noise, n)


@experiment("overfitting-polynomial", notes="001", heading="Regularization (the M = 0, 1, 3, 9 coefficient table)",
            claim="the M = 9 polynomial fits 10 training points exactly with huge coefficients and "
                  "generalises worse than M = 3; L2 regularisation shrinks the coefficients")
def overfitting_polynomial(ctx: Context) -> Outcome:
    rng = np.random.default_rng(ctx.seed)
    x, t = _samples(rng, 10)
    x_test, t_test = _samples(rng, ctx.pick(100, 1000, 10000))
    fits = {f"M = {m}": fit_polynomial(x, t, m) for m in ORDERS}
    fits["M = 9, ln λ = −18"] = fit_polynomial(x, t, 9, l2=np.exp(-18))
    rows = [{"fit": name, "train_rms": rms_error(w, x, t), "test_rms": rms_error(w, x_test, t_test),
             "max_abs_w": float(np.abs(w).max())} for name, w in fits.items()]
    table = [{"coefficient": f"w{i}*", **{name: (round(float(w[i]), 2) if i < len(w) else None)
                                          for name, w in fits.items()}} for i in range(10)]
    by = {r["fit"]: r for r in rows}
    nine, three, ridge = by["M = 9"], by["M = 3"], by["M = 9, ln λ = −18"]
    held = (nine["train_rms"] < 1e-6 and nine["max_abs_w"] > 1e3 and nine["test_rms"] > three["test_rms"]
            and ridge["max_abs_w"] < nine["max_abs_w"] / 100)

    fig, axes = figure(1, len(fits), width=3.2, height=2.8)
    grid = np.linspace(0, 1, 400)
    for ax, (name, w) in zip(axes[0], fits.items()):
        ax.plot(grid, np.sin(2 * np.pi * grid), color="tab:green", lw=1)
        ax.plot(grid, np.polynomial.polynomial.polyval(grid, w), color="tab:red")
        ax.plot(x, t, "o", mfc="none", color="tab:blue")
        ax.set(ylim=(-1.6, 1.6), title=name)
    return Outcome(
        verdict(held),
        f"M = 9: training E_RMS {nine['train_rms']:.1e}, test {nine['test_rms']:.2f} (M = 3: {three['test_rms']:.2f}), "
        f"largest |w| {nine['max_abs_w']:.3g}; with ln λ = −18 the largest |w| is {ridge['max_abs_w']:.3g} "
        f"and test E_RMS {ridge['test_rms']:.2f}.",
        f"10 training points x evenly spaced in [0, 1], t = sin(2πx) + N(0, 0.3²) (Bishop's set-up, seed {ctx.seed}); "
        f"{len(x_test)} random test points; least squares (numpy lstsq).",
        {"x": x.tolist(), "t": t.tolist(), "errors": rows,
         "coefficients": {name: w.tolist() for name, w in fits.items()}},
        [save_figure(fig, ctx, "polynomial-fits.png")], table + [{"coefficient": "test E_RMS",
                                                                  **{r["fit"]: round(r["test_rms"], 3) for r in rows}}])
