"""Two claims of the notes' "Neural Ordinary Differential Equations" (Chen, Rubanova, Bettencourt,
Duvenaud, NeurIPS 2018), run with our dopri5 (visionzoo.layers.ode).

latent-ode-spirals — Sec. 5 ("Time Series" in the notes): z_{t0} ~ q(z_{t0} | x), z_{t1}, …, z_{tN} =
ODESolve(z_{t0}, f, θ_f, t0, …, tN), each x_{ti} ~ p(x | z_{ti}). An RNN runs backwards in time over
irregularly sampled, noisy observations of 2-D spirals (clockwise or counter-clockwise, as the
paper's toy; our own generator: r(t) = r0 + 0.25t, angle φ ± t, noise σ = 0.1 by default) — its
input each observation and the time gap to the next one — and gives the mean and log-variance of
q(z_{t0}); a latent ODE f (an MLP) carries z forward; a decoder MLP maps z_{ti} to x_{ti}. Trained by
the ELBO: Gaussian log-likelihood of the observed points − KL(q ‖ N(0, I)). Each spiral is observed
at a random subset of a shared irregular time grid on [0, T]; it is then asked for the whole
noiseless trajectory on [0, T] (reconstruction) and on (T, 1.5T] (extrapolation, never observed).
The claim holds when the latent ODE's extrapolation error is below that of holding the last
observation and its reconstruction error below the observation noise (it denoises).

planar-vs-cnf — Sec. 4.1, Fig. 4: fitting a 2-D target density by minimising KL(q ‖ p) (samples of q,
target known up to its normaliser), a planar normalizing flow of K layers against a planar continuous
normalizing flow of M = K hidden units (Theorem 1: d log p/dt = −tr ∂f/∂z, computed exactly). The
target is Rezende & Mohamed's (ICML 2015, Table 1) U₁, a ring split in two; its normaliser is taken
on a grid so that the KL is reported exactly, not up to a constant. Held when the CNF reaches the
lower KL after the same number of Adam steps, as Fig. 4 shows.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..layers.ode import odeint_dopri5
from ..models.flows import CNF, PlanarCNFDynamics, PlanarFlows
from .base import Context, Outcome, experiment, verdict
from .common import figure, save_figure

HEADING = "Neural Ordinary Differential Equations"
NOISE = 0.1
GROWTH = 0.25


def spirals(count: int, times: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Noiseless spirals (count, len(times), 2): half clockwise, half counter-clockwise, random start."""
    direction = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)
    phase = torch.rand(count, generator=generator) * 2 * math.pi
    radius = 0.5 + torch.rand(count, generator=generator)
    angle = phase[:, None] + direction[:, None] * times[None]
    r = radius[:, None] + GROWTH * times[None]
    return torch.stack([r * torch.cos(angle), r * torch.sin(angle)], -1)


class LatentODE(nn.Module):
    """Backward RNN encoder → q(z0) → latent ODE (dopri5) → decoder, as in the paper's Sec. 5."""

    def __init__(self, obs_dim: int = 2, latent: int = 4, hidden: int = 25, rtol: float = 1e-3, atol: float = 1e-4):
        super().__init__()
        self.latent, self.rtol, self.atol = latent, rtol, atol
        self.rnn = nn.GRUCell(obs_dim + 1, hidden)
        self.posterior = nn.Linear(hidden, 2 * latent)
        self.dynamics = nn.Sequential(nn.Linear(latent, 32), nn.ELU(), nn.Linear(32, 32), nn.ELU(), nn.Linear(32, latent))
        self.decoder = nn.Sequential(nn.Linear(latent, 32), nn.ReLU(), nn.Linear(32, obs_dim))
        self.nfe = 0

    def encode(self, x: torch.Tensor, mask: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z0) from observations x (N, T, D) where mask (N, T) is 1, backwards."""
        h = x.new_zeros(len(x), self.rnn.hidden_size)
        next_seen = x.new_full((len(x),), float(times[-1]))   # time of the next (later) observation
        for i in reversed(range(len(times))):
            updated = self.rnn(torch.cat([x[:, i], (next_seen - times[i])[:, None]], 1), h)
            observed = mask[:, i]
            h = torch.where(observed[:, None].bool(), updated, h)
            next_seen = torch.where(observed.bool(), times[i], next_seen)
        mean, log_var = self.posterior(h).chunk(2, -1)
        return mean, log_var

    def decode(self, z0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """x̂ at `times` (N, T, D), from z(times[0]) = z0."""
        zs, stats = odeint_dopri5(lambda t, z: self.dynamics(z), z0, times, self.rtol, self.atol)
        self.nfe = stats.nfe
        return self.decoder(zs).transpose(0, 1)

    def elbo(self, x: torch.Tensor, mask: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Mean over spirals of E_q log p(x | z) − KL(q(z0) ‖ N(0, I)), one sample of z0."""
        mean, log_var = self.encode(x, mask, times)
        z0 = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        predicted = self.decode(z0, times)
        log_likelihood = -0.5 * ((x - predicted) / NOISE).square() - math.log(NOISE * math.sqrt(2 * math.pi))
        log_likelihood = (log_likelihood.sum(-1) * mask).sum(1)
        kl = 0.5 * (mean.square() + log_var.exp() - 1 - log_var).sum(1)
        return (log_likelihood - kl).mean()


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).square().sum(-1).mean().sqrt())


@experiment("latent-ode-spirals", notes="002", heading=HEADING,
            claim="a latent ODE fitted to irregularly sampled noisy spirals reconstructs and extrapolates their "
                  "trajectories (Chen et al. Sec. 5)")
def latent_ode_spirals(ctx: Context) -> Outcome:
    count, grid, iterations = ctx.pick((64, 20, 30), (300, 40, 1500), (1000, 60, 4000))
    generator = torch.Generator().manual_seed(ctx.seed)
    torch.manual_seed(ctx.seed)
    horizon = 2 * math.pi
    times = torch.cat([torch.zeros(1), torch.rand(grid - 1, generator=generator).sort().values * horizon])
    future = torch.linspace(horizon, 1.5 * horizon, grid // 2 + 1)[1:]
    truth = spirals(2 * count, torch.cat([times, future]), generator)
    observed = truth[:, :grid] + NOISE * torch.randn(2 * count, grid, 2, generator=generator)
    mask = (torch.rand(2 * count, grid, generator=generator) < 0.5).float()
    mask[:, 0] = 1.0                                         # every spiral is seen at t0
    train, test = slice(0, count), slice(count, 2 * count)
    model = LatentODE()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch, losses = min(64, count), []
    for step in range(iterations):
        index = torch.randint(0, count, (batch,), generator=generator)
        loss = -model.elbo(observed[train][index], mask[train][index], times)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        mean, _ = model.encode(observed[test], mask[test], times)
        predicted = model.decode(mean, torch.cat([times, future]))
    truth_test = truth[test]
    reconstruction = _rmse(predicted[:, :grid], truth_test[:, :grid])
    extrapolation = _rmse(predicted[:, grid:], truth_test[:, grid:])
    last_seen = grid - 1 - mask[test].flip(1).argmax(1)
    held_last = observed[test][torch.arange(count), last_seen][:, None].expand(-1, len(future), -1)
    baseline = _rmse(held_last, truth_test[:, grid:])
    observation_noise = _rmse(observed[test][mask[test].bool()], truth_test[:, :grid][mask[test].bool()])
    held = extrapolation < baseline and reconstruction < observation_noise
    fig, axes = figure(1, 3, width=4.0)
    for column, spiral in enumerate(range(2)):
        axis = axes[0, column]
        seen = mask[test][spiral].bool()
        axis.plot(*truth_test[spiral].T, color="0.7", label="truth")
        axis.plot(*observed[test][spiral][seen].T, ".", label="observed")
        axis.plot(*predicted[spiral, :grid].T, "-", label="reconstruction")
        axis.plot(*predicted[spiral, grid:].T, "--", label="extrapolation")
        axis.set(title=f"test spiral {spiral}", aspect="equal")
    axes[0, 0].legend(fontsize=7)
    axes[0, 2].plot(losses)
    axes[0, 2].set(xlabel="Adam step", ylabel="−ELBO", title="training")
    figures = [save_figure(fig, ctx, "latent-ode-spirals.png")]
    table = [{"quantity": "reconstruction RMSE (observed interval)", "value": reconstruction},
             {"quantity": "observation noise RMSE", "value": observation_noise},
             {"quantity": "extrapolation RMSE (latent ODE)", "value": extrapolation},
             {"quantity": "extrapolation RMSE (hold last observation)", "value": baseline},
             {"quantity": "NFE of the last decode", "value": model.nfe}]
    result = (f"on {count} held-out spirals the latent ODE's reconstruction error is {reconstruction:.3f} against "
              f"an observation noise of {observation_noise:.3f}, and its extrapolation error over the next half "
              f"interval {extrapolation:.3f} against {baseline:.3f} for holding the last observation")
    setup = (f"{count} training and {count} test spirals, a shared irregular grid of {grid} times on [0, 2π], "
             f"each spiral seeing a random half of them (noise σ = {NOISE}); latent dimension 4, GRU encoder run "
             f"backwards, dopri5 (rtol 1e-3, atol 1e-4), {iterations} Adam steps of {batch} spirals, lr 0.01")
    return Outcome(verdict(held), result, setup, {"reconstruction_rmse": reconstruction,
                                                   "extrapolation_rmse": extrapolation,
                                                   "hold_last_rmse": baseline}, figures, table)


def ring_energy(z: torch.Tensor) -> torch.Tensor:
    """Rezende & Mohamed's U₁: p(z) ∝ exp(−U₁(z)), a ring of radius 2 split at z₁ = 0."""
    ring = 0.5 * ((z.norm(dim=1) - 2) / 0.4).square()
    halves = torch.logsumexp(torch.stack([-0.5 * ((z[:, 0] - 2) / 0.6).square(),
                                          -0.5 * ((z[:, 0] + 2) / 0.6).square()]), 0)
    return ring - halves


def _grid(extent: float, points: int) -> tuple[torch.Tensor, float]:
    axis = torch.linspace(-extent, extent, points)
    xs, ys = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([xs.flatten(), ys.flatten()], 1), float((axis[1] - axis[0]) ** 2)


def fit_density(flow: nn.Module, iterations: int, batch: int, lr: float, seed: int) -> list[float]:
    """Adam on the reverse KL's Monte-Carlo estimate E_q[log q(z) + U(z)] (= KL − log Z)."""
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(flow.parameters(), lr=lr)
    losses = []
    for _ in range(iterations):
        z, log_q = flow(torch.randn(batch, 2))
        loss = (log_q + ring_energy(z)).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


@experiment("planar-vs-cnf", notes="002", heading=HEADING,
            claim="a continuous normalizing flow of M hidden units fits a 2-D target density better than a planar "
                  "normalizing flow of K = M layers (Chen et al. Fig. 4)")
def planar_vs_cnf(ctx: Context) -> Outcome:
    width, iterations, batch = ctx.pick((4, 20, 64), (16, 400, 128), (32, 1500, 256))
    grid, cell = _grid(4.0, 200)
    log_z = float(torch.logsumexp(-ring_energy(grid), 0)) + math.log(cell)
    planar = PlanarFlows(2, width)
    cnf = CNF(PlanarCNFDynamics(2, width), rtol=1e-4, atol=1e-4)
    curves = {"planar NF": fit_density(planar, iterations, batch, 1e-2, ctx.seed),
              "planar CNF": fit_density(cnf, iterations, batch, 1e-2, ctx.seed)}
    tail = max(1, iterations // 10)
    torch.manual_seed(ctx.seed + 1)
    evaluation = torch.randn(4 * batch, 2)
    kl = {}
    with torch.no_grad():
        for name, flow in (("planar NF", planar), ("planar CNF", cnf)):
            z, log_q = flow(evaluation)
            kl[name] = float((log_q + ring_energy(z)).mean()) + log_z
    held = kl["planar CNF"] < kl["planar NF"]
    fig, axes = figure(1, 3, width=4.0)
    axes[0, 0].imshow((-ring_energy(grid) - log_z).exp().view(200, 200).numpy(), origin="lower", extent=(-4, 4, -4, 4))
    axes[0, 0].set(title="target exp(−U₁)/Z")
    for column, (name, flow) in enumerate((("planar NF", planar), ("planar CNF", cnf)), start=1):
        with torch.no_grad():
            z, _ = flow(torch.randn(2000, 2))
        axes[0, column].hist2d(z[:, 0].numpy(), z[:, 1].numpy(), bins=60, range=((-4, 4), (-4, 4)))
        axes[0, column].set(title=f"{name} samples, KL {kl[name]:.3f}")
    figures = [save_figure(fig, ctx, "planar-vs-cnf.png")]
    fig, axes = figure(1, 1)
    for name, curve in curves.items():
        axes[0, 0].plot([value + log_z for value in curve], label=name)
    axes[0, 0].set(xlabel="Adam step", ylabel="KL(q ‖ p) estimate", title=f"K = M = {width}")
    axes[0, 0].legend()
    figures.append(save_figure(fig, ctx, "planar-vs-cnf-training.png"))
    table = [{"flow": name, "units": width, "kl": kl[name],
              "kl_last_tenth_of_training": sum(curves[name][-tail:]) / tail + log_z} for name in curves]
    result = (f"after {iterations} Adam steps, KL(q ‖ p) = {kl['planar CNF']:.3f} for the planar CNF of M = {width} "
              f"hidden units (its last solve: {cnf.stats.nfe} evaluations) against {kl['planar NF']:.3f} for "
              f"the planar NF of K = {width} layers")
    setup = (f"target U₁ of Rezende & Mohamed (normaliser on a 200×200 grid over [−4, 4]²), reverse KL from "
             f"{batch} samples a step, Adam lr 0.01, {iterations} steps each; CNF on t ∈ [0, 1] by dopri5 "
             f"(rtol = atol = 1e-4), exact trace by autograd; KL evaluated on {4 * batch} fresh samples")
    return Outcome(verdict(held), result, setup, kl, figures, table)
