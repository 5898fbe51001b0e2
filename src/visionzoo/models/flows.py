"""Normalizing flows, discrete and continuous: the notes' "Normalizing Flows" and "Continuous
Normalizing Flows" (Chen, Rubanova, Bettencourt, Duvenaud, "Neural Ordinary Differential
Equations", NeurIPS 2018, Sec. 4, Theorem 1 and Fig. 4).

Change of variables: z₁ = f(z₀) bijective ⇒ log p(z₁) = log p(z₀) − log|det ∂f/∂z₀|.

`PlanarFlow` — Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015,
Eq. 10–12: f(z) = z + û·h(wᵀz + b), h = tanh, log|det ∂f/∂z| = log|1 + ûᵀh'(wᵀz + b)w|. It is
invertible when wᵀû ≥ −1; their appendix A enforces this with
û = u + (m(wᵀu) − wᵀu)·w/‖w‖², m(x) = −1 + log(1 + eˣ). `PlanarFlows` stacks K of them.

`CNF` — the continuous version (Theorem 1, instantaneous change of variables): dz/dt = f(z, t) ⇒
d log p(z(t))/dt = −tr(∂f/∂z(t)); f need not be bijective. The state (z, log p) is integrated with
our dopri5 (visionzoo.layers.ode), the trace computed exactly by autograd, one input dimension at a
time (cheap in the 2-D examples here). `PlanarCNFDynamics` is the paper's planar CNF with M hidden
units, f(z, t) = Σₘ uₘ(t)·tanh(wₘ(t)ᵀz + bₘ(t)), its parameters given by a small hypernetwork of t
(their Fig. 4); `MLPDynamics` a plain tanh MLP of [z, t].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.ode import SolverStats, odeint_dopri5


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension."""
    return -0.5 * (z.square().sum(-1) + z.shape[-1] * math.log(2 * math.pi))


class PlanarFlow(nn.Module):
    """f(z) = z + û·tanh(wᵀz + b), with û constrained so that f is invertible."""

    def __init__(self, dim: int):
        super().__init__()
        self.u = nn.Parameter(torch.randn(dim) * 0.1)
        self.w = nn.Parameter(torch.randn(dim) * 0.1)
        self.b = nn.Parameter(torch.zeros(()))

    def constrained_u(self) -> torch.Tensor:
        """û = u + (m(wᵀu) − wᵀu)·w/‖w‖², so that wᵀû = m(wᵀu) = −1 + softplus(wᵀu) > −1."""
        wu = self.w @ self.u
        return self.u + (F.softplus(wu) - 1 - wu) * self.w / self.w.square().sum()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(z), log|det ∂f/∂z|) for z of shape (N, dim)."""
        u = self.constrained_u()
        activation = torch.tanh(z @ self.w + self.b)
        psi = (1 - activation.square())[:, None] * self.w          # h'(wᵀz + b)·w
        return z + activation[:, None] * u, torch.log((1 + psi @ u).abs())


class PlanarFlows(nn.Module):
    """K planar flows after a standard normal base: samples and their log-density."""

    def __init__(self, dim: int, length: int):
        super().__init__()
        self.flows = nn.ModuleList(PlanarFlow(dim) for _ in range(length))

    def forward(self, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_K, log q_K(z_K)) = (f_K∘…∘f_1(z0), log q0(z0) − Σ log|det ∂f_k/∂z|)."""
        z, log_q = z0, standard_normal_log_prob(z0)
        for flow in self.flows:
            z, log_det = flow(z)
            log_q = log_q - log_det
        return z, log_q


class MLPDynamics(nn.Module):
    """f(z, t) = MLP([z, t]) with tanh hidden layers."""

    def __init__(self, dim: int, hidden: int = 32, layers: int = 2):
        super().__init__()
        widths = [dim + 1, *[hidden] * layers]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.out = nn.Linear(hidden, dim)

    def forward(self, t: float, z: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, z.new_full((len(z), 1), t)], 1)
        for layer in self.hidden:
            h = torch.tanh(layer(h))
        return self.out(h)


class PlanarCNFDynamics(nn.Module):
    """f(z, t) = Σₘ uₘ(t)·tanh(wₘ(t)ᵀz + bₘ(t)); a hypernetwork t → (u, w, b) of M hidden units."""

    def __init__(self, dim: int, width: int, hyper_hidden: int = 32):
        super().__init__()
        self.dim, self.width = dim, width
        self.hyper = nn.Sequential(nn.Linear(1, hyper_hidden), nn.Tanh(), nn.Linear(hyper_hidden, hyper_hidden),
                                   nn.Tanh(), nn.Linear(hyper_hidden, width * (2 * dim + 1)))

    def parameters_at(self, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u (M, dim), w (M, dim), b (M,)) at time t."""
        weight = self.hyper[0].weight
        params = self.hyper(weight.new_full((1, 1), t))[0]
        u, w, b = params.split([self.width * self.dim, self.width * self.dim, self.width])
        return u.view(self.width, self.dim), w.view(self.width, self.dim), b

    def forward(self, t: float, z: torch.Tensor) -> torch.Tensor:
        u, w, b = self.parameters_at(t)
        return torch.tanh(z @ w.T + b) @ u


def divergence(f: torch.Tensor, z: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """tr(∂f/∂z) per sample, exactly: one vector-Jacobian product per dimension of z (N, D)."""
    trace = torch.zeros(len(z), dtype=f.dtype, device=f.device)
    for i in range(z.shape[1]):
        # the graph is kept for the next dimension even when no graph of the trace is wanted
        trace = trace + torch.autograd.grad(f[:, i].sum(), z, retain_graph=True, create_graph=create_graph)[0][:, i]
    return trace


class CNF(nn.Module):
    """A continuous normalizing flow on [t0, t1]: z(t0) ~ N(0, I), dz/dt = dynamics(t, z).

    After each solve, `stats` holds the solver's SolverStats (NFE, steps).
    """

    def __init__(self, dynamics: nn.Module, t0: float = 0.0, t1: float = 1.0, rtol: float = 1e-5,
                 atol: float = 1e-5):
        super().__init__()
        self.dynamics, self.t0, self.t1, self.rtol, self.atol = dynamics, t0, t1, rtol, atol
        self.stats = SolverStats()

    def _augmented(self, t: float, state: torch.Tensor) -> torch.Tensor:
        """d[z, log p]/dt = [f(z, t), −tr(∂f/∂z)]."""
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            z = state[:, :-1]
            if not z.requires_grad:
                z = z.detach().requires_grad_()
            dz = self.dynamics(t, z)
            trace = divergence(dz, z, create_graph)
        if not create_graph:
            dz, trace = dz.detach(), trace.detach()
        return torch.cat([dz, -trace[:, None]], 1)

    def _solve(self, z: torch.Tensor, log_p: torch.Tensor, start: float, end: float):
        states, self.stats = odeint_dopri5(self._augmented, torch.cat([z, log_p[:, None]], 1), (start, end),
                                           self.rtol, self.atol)
        return states[-1, :, :-1], states[-1, :, -1]

    def forward(self, z0: torch.Tensor, log_p0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z(t1), log p(z(t1))) from base samples z0 (log p0 defaults to the standard normal's)."""
        log_p0 = standard_normal_log_prob(z0) if log_p0 is None else log_p0
        return self._solve(z0, log_p0, self.t0, self.t1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log p0(z(t0)) − ∫ tr(∂f/∂z) dt, solving from x = z(t1) back to t0."""
        z0, accumulated = self._solve(x, x.new_zeros(len(x)), self.t1, self.t0)
        return standard_normal_log_prob(z0) - accumulated
