"""ODE solvers and the ODE block of Chen, Rubanova, Bettencourt, Duvenaud, "Neural Ordinary
Differential Equations", NeurIPS 2018 (the notes' "Neural Ordinary Differential Equations":
ODESolve, the adjoint sensitivity method, continuous-depth residual networks).

Solvers of dy/dt = func(t, y), written here:

- `odeint_fixed`: equal Euler or classical 4th-order Runge–Kutta steps (the paper's RK-Net).
- `odeint_dopri5`: the adaptive Runge–Kutta 5(4) pair of Dormand & Prince, "A family of embedded
  Runge–Kutta formulae", J. Comput. Appl. Math. 6 (1980), Table 2 — the paper's default solver.
  Seven stages with the First Same As Last property (the last stage of an accepted step is the
  first of the next: six evaluations per step); the 5th-order solution is propagated and its
  difference from the embedded 4th-order one estimates the local error. As in torchdiffeq, a step
  is accepted when the RMS norm of err / (atol + rtol·max(|y0|, |y1|)) is at most 1, and the next
  step is h·min(10, max(0.2, 0.9·ratio^(−1/5))), never shrinking after an accepted step. The first
  step is chosen by the algorithm of Hairer, Nørsett, Wanner, "Solving Ordinary Differential
  Equations I" (2nd ed., Sec. II.4, "Starting step size"). Steps end exactly at the last requested
  time; the earlier requested times are read off the 4th-order dense output of the accepted step
  that covers them (Hairer et al. Sec. II.6, the coefficients of their DOPRI5 code). The number of
  function evaluations (NFE) — the cost the paper's Fig. 3 plots — is counted.

`ODEBlock` turns a dynamics module f(t, h) into a layer h(0) ↦ h(1). Its gradients come from
backpropagation through the solver's operations (memory O(steps)) or, with ``adjoint=True``, from
the adjoint method: the forward pass keeps only h(1); the backward pass integrates h(t), a(t) =
∂L/∂h(t) (da/dt = −aᵀ∂f/∂h) and the parameter adjoint (dg/dt = −aᵀ∂f/∂θ) from t = 1 back to 0
with the same solver — for dopri5, the same adaptive solver with the same tolerances, its error
norm taken over the whole augmented state — the vector-Jacobian products by autograd.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..core.errors import UsageError

FIXED_SOLVERS = ("euler", "rk4")
SOLVERS = (*FIXED_SOLVERS, "dopri5")

# Dormand & Prince (1980), Table 2: nodes c, stage coefficients a, the 5th-order weights b (equal to
# the last row of a: FSAL) and the error weights e = b − b̂ (b̂ the embedded 4th-order weights).
DOPRI5_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
DOPRI5_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
DOPRI5_B = DOPRI5_A[6] + (0.0,)
DOPRI5_B_HAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
DOPRI5_E = tuple(b - b_hat for b, b_hat in zip(DOPRI5_B, DOPRI5_B_HAT))
# Dense output (Hairer et al., DOPRI5): weights of the θ²(1 − θ)² correction term, stages 1, 3–7.
DOPRI5_DENSE = (-12715105075 / 11282082432, 0.0, 87487479700 / 32700410799, -10690763975 / 1880347072,
                701980252875 / 199316789632, -1453857185 / 822651844, 69997945 / 29380423)
ORDER = 5


@dataclass
class SolverStats:
    """What a solve cost: function evaluations and accepted / rejected steps."""
    nfe: int = 0
    accepted: int = 0
    rejected: int = 0


def odeint_fixed(func, h0: torch.Tensor, t0: float = 0.0, t1: float = 1.0, steps: int = 4,
                 method: str = "rk4") -> torch.Tensor:
    """h(t1) of dh/dt = func(t, h), h(t0) = h0, by `steps` equal Euler or RK4 steps."""
    if method not in FIXED_SOLVERS:
        raise UsageError(f"fixed-step solver must be one of {FIXED_SOLVERS}, not {method!r}")
    dt = (t1 - t0) / steps
    h = h0
    for i in range(steps):
        t = t0 + i * dt
        if method == "euler":
            h = h + dt * func(t, h)
            continue
        k1 = func(t, h)
        k2 = func(t + dt / 2, h + dt / 2 * k1)
        k3 = func(t + dt / 2, h + dt / 2 * k2)
        k4 = func(t + dt, h + dt * k3)
        h = h + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return h


def _rms(x: torch.Tensor) -> float:
    return float(x.detach().square().mean().sqrt())


def _combine(y: torch.Tensor, h: float, weights: Sequence[float], ks: Sequence[torch.Tensor]) -> torch.Tensor:
    """y + h·Σ wᵢkᵢ, skipping zero weights."""
    total = None
    for w, k in zip(weights, ks):
        if w:
            total = w * k if total is None else total + w * k
    return y if total is None else y + h * total


def initial_step(func, t0: float, y0: torch.Tensor, f0: torch.Tensor, direction: float, rtol: float,
                 atol: float) -> float:
    """|h| of the first step (Hairer et al., Sec. II.4): one Euler probe estimates the second derivative."""
    scale = atol + rtol * y0.detach().abs()
    d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    f1 = func(t0 + direction * h0, y0 + direction * h0 * f0)
    d2 = _rms((f1 - f0) / scale) / h0
    largest = max(d1, d2)
    h1 = max(1e-6, h0 * 1e-3) if largest <= 1e-15 else (0.01 / largest) ** (1 / ORDER)
    return min(100 * h0, h1)


def _dense_output(y0, y1, k, h: float, theta: float) -> torch.Tensor:
    """y(t0 + θh) of one accepted step from its stages (Hairer et al.'s DOPRI5 dense output)."""
    difference = y1 - y0
    slope_gap = h * k[0] - difference
    curvature = difference - h * k[6] - slope_gap
    correction = _combine(torch.zeros_like(y0), h, DOPRI5_DENSE, k)
    rest = 1 - theta
    return y0 + theta * (difference + rest * (slope_gap + theta * (curvature + rest * correction)))


def odeint_dopri5(func: Callable[[float, torch.Tensor], torch.Tensor], y0: torch.Tensor, times, rtol: float = 1e-7,
                  atol: float = 1e-9, *, first_step: float | None = None, safety: float = 0.9,
                  max_growth: float = 10.0, max_shrink: float = 0.2,
                  max_steps: int = 100_000) -> tuple[torch.Tensor, SolverStats]:
    """y at each of `times` (stacked on a new first dimension, y0 first) and the solve's SolverStats.

    `times` is strictly increasing or strictly decreasing (integration backwards). The operations
    are differentiable: backpropagation through them differentiates the discretised solution.
    """
    times = [float(t) for t in times]
    if len(times) < 2:
        raise UsageError(f"give at least two times (a start and an end), not {times}")
    steps_between = [b - a for a, b in zip(times, times[1:])]
    if not (all(s > 0 for s in steps_between) or all(s < 0 for s in steps_between)):
        raise UsageError(f"times must be strictly increasing or strictly decreasing, not {times}")
    if rtol < 0 or atol < 0 or rtol + atol == 0:
        raise UsageError(f"tolerances must be ≥ 0 and not both 0, not rtol={rtol}, atol={atol}")
    stats = SolverStats()

    def evaluate(t: float, y: torch.Tensor) -> torch.Tensor:
        stats.nfe += 1
        return func(t, y)

    direction = 1.0 if times[-1] > times[0] else -1.0
    t, y, t_end = times[0], y0, times[-1]
    k_first = evaluate(t, y)
    size = first_step if first_step is not None else initial_step(evaluate, t, y, k_first, direction, rtol, atol)
    outputs, next_output = [y0], 1
    while next_output < len(times):
        if stats.accepted + stats.rejected >= max_steps:
            raise RuntimeError(f"dopri5 took {max_steps} steps without reaching t = {t_end} (stiff dynamics?)")
        last = direction * (t_end - t) <= size
        h = t_end - t if last else direction * size
        if abs(h) <= 4 * math.ulp(max(abs(t), 1.0)):
            raise RuntimeError(f"dopri5 step size underflow at t = {t} (rtol={rtol}, atol={atol})")
        k = [k_first]
        for c, a in zip(DOPRI5_C[1:], DOPRI5_A[1:]):
            k.append(evaluate(t + c * h, _combine(y, h, a, k)))
        # the 7th stage is evaluated at the 5th-order solution itself: y_new = y + h·Σ a7ᵢkᵢ
        y_new = _combine(y, h, DOPRI5_A[6], k)
        error = _combine(torch.zeros_like(y), h, DOPRI5_E, k)
        tolerance = atol + rtol * torch.maximum(y.detach().abs(), y_new.detach().abs())
        ratio = _rms(error / tolerance)
        if ratio <= 1:
            stats.accepted += 1
            t_new = t_end if last else t + h
            while next_output < len(times) and direction * (times[next_output] - t_new) <= 0:
                theta = (times[next_output] - t) / h
                outputs.append(y_new if next_output == len(times) - 1 else _dense_output(y, y_new, k, h, theta))
                next_output += 1
            t, y, k_first = t_new, y_new, k[6]
        else:
            stats.rejected += 1
        if not math.isfinite(ratio):
            size *= max_shrink
        elif ratio == 0:
            size *= max_growth
        else:
            factor = safety * ratio ** (-1 / ORDER)
            size *= min(max_growth, max(1.0 if ratio <= 1 else max_shrink, factor))
    return torch.stack(outputs), stats


def integrate(func, y0: torch.Tensor, t0: float, t1: float, solver: str = "rk4", steps: int = 4,
              rtol: float = 1e-3, atol: float = 1e-3) -> tuple[torch.Tensor, int]:
    """y(t1) and the number of function evaluations, by the fixed-step solvers or dopri5."""
    if solver == "dopri5":
        ys, stats = odeint_dopri5(func, y0, (t0, t1), rtol, atol)
        return ys[-1], stats.nfe
    evaluations = {"euler": 1, "rk4": 4}[solver] * steps
    return odeint_fixed(func, y0, t0, t1, steps, solver), evaluations


class _AdjointSolve(torch.autograd.Function):
    """h(1) without a graph; backward by the adjoint ODE, solved from t = 1 back to t = 0."""

    @staticmethod
    def forward(ctx, h0, block, *params):
        with torch.no_grad():
            h1, block.nfe = integrate(block.func, h0, 0.0, 1.0, block.solver, block.steps, block.rtol, block.atol)
        ctx.block = block
        ctx.save_for_backward(h1, *params)
        return h1

    @staticmethod
    def backward(ctx, grad_h1):
        block = ctx.block
        h1, *params = ctx.saved_tensors
        shapes = [h1.shape, h1.shape, *(p.shape for p in params)]
        sizes = [math.prod(shape) for shape in shapes]

        def augmented(t, state):
            h, a, *_ = (part.view(shape) for part, shape in zip(state.split(sizes), shapes))
            with torch.enable_grad():
                h = h.detach().requires_grad_()
                f = block.func(t, h)
                vjps = torch.autograd.grad(f, (h, *params), a, allow_unused=True)
            vjps = [torch.zeros_like(x) if v is None else v for v, x in zip(vjps, (h, *params))]
            return torch.cat([f.detach().flatten(), *(-v.flatten() for v in vjps)])

        start = torch.cat([h1.flatten(), grad_h1.flatten(), h1.new_zeros(sum(sizes[2:]))])
        end, block.backward_nfe = integrate(augmented, start, 1.0, 0.0, block.solver, block.steps, block.rtol,
                                            block.atol)
        _, grad_h0, *grad_params = (part.view(shape) for part, shape in zip(end.split(sizes), shapes))
        return (grad_h0, None, *grad_params)


class ODEBlock(nn.Module):
    """h(1) = h(0) + ∫₀¹ f(h(t), t) dt by a fixed-step solver or dopri5 (adjoint gradients on request).

    After each forward pass `nfe` holds its number of evaluations of f; after a backward pass with
    ``adjoint=True``, `backward_nfe` holds the adjoint solve's.
    """

    def __init__(self, func: nn.Module, steps: int = 4, solver: str = "rk4", adjoint: bool = False,
                 rtol: float = 1e-3, atol: float = 1e-3):
        super().__init__()
        if solver not in SOLVERS or steps < 1:
            raise UsageError(f"solver must be one of {SOLVERS} with steps ≥ 1, not {solver!r}, {steps}")
        if rtol < 0 or atol < 0 or rtol + atol == 0:
            raise UsageError(f"tolerances must be ≥ 0 and not both 0, not rtol={rtol}, atol={atol}")
        self.func, self.steps, self.solver, self.adjoint = func, steps, solver, adjoint
        self.rtol, self.atol = rtol, atol
        self.nfe, self.backward_nfe = 0, 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.adjoint and torch.is_grad_enabled():
            return _AdjointSolve.apply(h, self, *self.func.parameters())
        out, self.nfe = integrate(self.func, h, 0.0, 1.0, self.solver, self.steps, self.rtol, self.atol)
        return out
