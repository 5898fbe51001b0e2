"""Two claims of the notes that closed forms settle in seconds.

dropout-ridge — notes 002, "Dropout: A Simple Way to Prevent Neural Networks from Overfitting":
"Dropout with linear regression is equivalent to ridge regression" (Srivastava et al., JMLR 2014,
Sec. 9.1). With inputs kept with probability p, R_ij ~ Bernoulli(p),

    E_R ‖y − (R ∗ X)w‖² = ‖y − pXw‖² + p(1 − p)‖Γw‖²,  Γ = diag(XᵀX)^{1/2},

whose minimiser solves (pXᵀX + (1 − p)Γ²)w = Xᵀy: with w̃ = pw, ridge regression with the
data-scaled penalty ((1 − p)/p)‖Γw̃‖². Checked exactly: the expectation over all 2^d masks of a row
(rows drop independently, so the expected loss is the sum of per-row expectations), and its
minimiser by weighted least squares over every masked copy of the data, against the formulas.

fgsm-linear — notes 000, "Fast Gradient Sign Method" (Goodfellow, Shlens, Szegedy, ICLR 2015,
Sec. 3): for η = ε·sign(w), ‖η‖∞ = ε and wᵀη = Σ|w_i|ε = ε‖w‖₁ = εmn, m the mean |w_i| over the n
inputs; the activation grows linearly with n while the perturbation's max-norm stays ε, and no
η with ‖η‖∞ ≤ ε grows it more (checked against random points of the ε-box and its corners).
"""
from __future__ import annotations

import itertools

import torch

from .base import Context, Outcome, experiment, verdict
from .common import figure, save_figure

DROPOUT_TOLERANCE = 1e-9   # float64, relative
FGSM_TOLERANCE = 1e-9


def expected_dropout_loss(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, p: float) -> torch.Tensor:
    """E_R ‖y − (R ∗ X)w‖², by enumerating each row's 2^d keep masks with their probabilities."""
    d = x.shape[1]
    masks = torch.tensor(list(itertools.product((0.0, 1.0), repeat=d)), dtype=x.dtype)     # 2^d, d
    probability = (p ** masks.sum(1)) * ((1 - p) ** (d - masks.sum(1)))
    residuals = y[:, None] - (x[:, None, :] * masks[None]) @ w                               # n, 2^d
    return (residuals.square() * probability).sum()


def ridge_form_loss(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, p: float) -> torch.Tensor:
    """‖y − pXw‖² + p(1 − p)‖Γw‖² (Srivastava et al. Sec. 9.1)."""
    gamma_squared = x.square().sum(0)
    return (y - p * x @ w).square().sum() + p * (1 - p) * (gamma_squared * w.square()).sum()


def dropout_minimiser(x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    """argmin_w E_R‖y − (R ∗ X)w‖²: weighted least squares over every masked copy of every row."""
    d = x.shape[1]
    masks = torch.tensor(list(itertools.product((0.0, 1.0), repeat=d)), dtype=x.dtype)
    probability = (p ** masks.sum(1)) * ((1 - p) ** (d - masks.sum(1)))
    design = (x[:, None, :] * masks[None]).reshape(-1, d)
    weights = probability.repeat(x.shape[0])
    targets = y.repeat_interleave(len(masks))
    return torch.linalg.solve(design.T @ (weights[:, None] * design), design.T @ (weights * targets))


def ridge_solution(x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    """(pXᵀX + (1 − p)Γ²)⁻¹Xᵀy."""
    gram = x.T @ x
    return torch.linalg.solve(p * gram + (1 - p) * torch.diag(torch.diag(gram)), x.T @ y)


@experiment("dropout-ridge", notes="002", heading="Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
            claim="Dropout with linear regression is equivalent to ridge regression")
def dropout_ridge(ctx: Context) -> Outcome:
    n, d = ctx.pick((12, 4), (60, 8), (200, 12))
    generator = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64) * torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    y = x @ torch.randn(d, generator=generator, dtype=torch.float64) + 0.1 * torch.randn(
        n, generator=generator, dtype=torch.float64)
    table, worst = [], 0.0
    for p in (0.2, 0.5, 0.8):
        w = torch.randn(d, generator=generator, dtype=torch.float64)
        exact, formula = expected_dropout_loss(x, y, w, p), ridge_form_loss(x, y, w, p)
        minimiser, ridge = dropout_minimiser(x, y, p), ridge_solution(x, y, p)
        least_squares = torch.linalg.lstsq(x, y[:, None]).solution[:, 0]
        loss_error = float((exact - formula).abs() / exact)
        solution_error = float((minimiser - ridge).norm() / ridge.norm())
        worst = max(worst, loss_error, solution_error)
        table.append({"p": p, "expected_loss": float(exact), "ridge_form_loss": float(formula),
                      "loss_rel_error": loss_error, "solution_rel_error": solution_error,
                      "shrinkage_of_pw_vs_least_squares": float((p * ridge).norm() / least_squares.norm())})
    held = worst < DROPOUT_TOLERANCE
    fig, axes = figure(1, 1)
    ps = [row["p"] for row in table]
    axes[0, 0].plot(ps, [row["expected_loss"] for row in table], "o", label="E_R loss over all masks")
    axes[0, 0].plot(ps, [row["ridge_form_loss"] for row in table], "x", markersize=10, label="ridge form")
    axes[0, 0].set(xlabel="keep probability p", ylabel="loss at a random w", title="dropout = ridge (exact)")
    axes[0, 0].legend()
    figures = [save_figure(fig, ctx, "dropout-ridge.png")]
    result = (f"over all 2^{d} masks, the expected dropout loss equals ‖y − pXw‖² + p(1−p)‖Γw‖² and its "
              f"minimiser equals the ridge solution (pXᵀX + (1−p)Γ²)⁻¹Xᵀy to a relative {worst:.1e} "
              f"(tolerance {DROPOUT_TOLERANCE:.0e}); pw is shrunk against least squares by the factors in the table")
    setup = f"{n} examples, {d} inputs of different scales, float64, keep probabilities p = 0.2, 0.5, 0.8"
    return Outcome(verdict(held), result, setup, {"worst_rel_error": worst}, figures, table)


def fgsm_growth(w: torch.Tensor, eps: float) -> tuple[float, float]:
    """(wᵀη for η = ε·sign(w), ε·m·n with m = mean |w_i|)."""
    return float(w @ (eps * torch.sign(w))), eps * float(w.abs().mean()) * w.numel()


@experiment("fgsm-linear", notes="000", heading="Fast Gradient Sign Method",
            claim="for η = ε·sign(w), ‖η‖∞ = ε and the activation grows by wᵀη = εmn, linearly in the dimension n")
def fgsm_linear(ctx: Context) -> Outcome:
    dimensions = ctx.pick((10, 100, 1000), (10, 100, 1000, 10_000, 100_000), (10, 100, 1000, 10_000, 100_000,
                                                                             1_000_000))
    eps, trials = 0.01, ctx.pick(100, 1000, 1000)
    generator = torch.Generator().manual_seed(ctx.seed)
    table, identity_error, beaten = [], 0.0, 0
    for n in dimensions:
        w = torch.randn(n, generator=generator, dtype=torch.float64)
        growth, formula = fgsm_growth(w, eps)
        identity_error = max(identity_error, abs(growth - formula) / formula)
        # any other η of the ε-box: uniform points and random corners
        count = max(10, min(trials, 2_000_000 // n))  # fewer points of the larger boxes: memory
        box = (torch.rand(count, n, generator=generator, dtype=torch.float64) * 2 - 1) * eps
        corners = torch.where(torch.rand(count, n, generator=generator) < 0.5, -eps, eps).double()
        best_other = float((torch.cat([box, corners]) @ w).max())
        beaten += best_other > growth
        table.append({"n": n, "max_abs_eta": eps, "w_dot_eta": growth, "eps_m_n": formula,
                      "per_input_growth": growth / n, "box_points": 2 * count, "best_random_box_point": best_other})
    # m estimates the same E|w| for every n, so growth/n stays near ε·E|w| (n ≥ 100: m of 10 weights is noisy)
    ratios = [row["w_dot_eta"] / row["n"] for row in table if row["n"] >= 100]
    linear = max(ratios) / min(ratios) < 1.5
    held = identity_error < FGSM_TOLERANCE and beaten == 0 and linear
    fig, axes = figure(1, 1)
    ns = [row["n"] for row in table]
    axes[0, 0].loglog(ns, [row["w_dot_eta"] for row in table], "o-", label="wᵀη, η = ε·sign(w)")
    axes[0, 0].loglog(ns, [row["best_random_box_point"] for row in table], "s--", label="best random η, ‖η‖∞ ≤ ε")
    axes[0, 0].set(xlabel="dimension n", ylabel="activation change", title=f"‖η‖∞ = {eps} fixed")
    axes[0, 0].legend()
    figures = [save_figure(fig, ctx, "fgsm-linear.png")]
    result = (f"wᵀη = εmn to a relative {identity_error:.1e} for n = {dimensions[0]:,} … {dimensions[-1]:,}; "
              f"wᵀη/n stays at {min(ratios):.5f}–{max(ratios):.5f} (ε·E|w| = {eps * (2 / torch.pi) ** 0.5:.5f}) "
              f"so the growth is linear in n at a fixed ‖η‖∞ = ε; {beaten} random points or corners of the ε-box "
              f"grew the activation more than sign(w)")
    setup = (f"w ~ N(0, I) in float64, ε = {eps}, up to {trials} uniform points and as many corners of the ε-box "
             "per n (fewer for the largest n)")
    return Outcome(verdict(held), result, setup, {"identity_rel_error": identity_error, "beaten": int(beaten)},
                   figures, table)
