"""The notes' claim on long-term dependencies (notes 003, "Recurrent Neural Network - Drawbacks" and
"RNNs - Remembering Long Term Dependencies"): a plain RNN cannot learn dependencies across many time
steps — its gradient vanishes like the feed-forward one — while the LSTM (and the GRU) can.

The test is the adding problem of Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural
Computation 1997 (Sec. 5.4), in the form of Le, Jaitly & Hinton 2015: a sequence of T pairs
(value ~ U(0, 1), marker), exactly two markers — one in each half — and the target is the sum of the
two marked values. Predicting the mean 1 always gives MSE Var(u₁ + u₂) = 2/12 ≈ 0.167, the baseline a
network that has not found the markers stays at. Each cell (layers/recurrent.py: Elman, LSTM, GRU, one
layer) reads the sequence, a linear layer reads its last output; the gradient of the loss with
respect to every hidden state, ‖∂L/∂h_t‖, is plotted per time step at initialisation and after training.

The training loop is written here, not run by the engine: the adding problem is a sequence regression,
and the engine's tasks (classification, segmentation, language, …) have no regression task to run it.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from ..layers.recurrent import RecurrentNetwork
from .base import Context, Outcome, experiment, verdict
from .common import figure, save_figure

CELLS = {"Elman RNN": "elman", "LSTM": "lstm", "GRU": "gru"}
BASELINE_MSE = 2 / 12          # Var(u₁ + u₂), u ~ U(0, 1): predicting the mean 1
LEARNED, FAILED = 0.1, 0.5     # test MSE as a fraction of the baseline


def adding_problem(batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (B, T, 2): value and marker, targets (B,): the sum of the two marked values)."""
    values = torch.rand(batch, length, generator=generator)
    first = torch.randint(0, length // 2, (batch,), generator=generator)
    second = torch.randint(length // 2, length, (batch,), generator=generator)
    markers = torch.zeros(batch, length)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    return torch.stack([values, markers], -1), (values * markers).sum(1)


class SequenceRegressor(nn.Module):
    """One recurrent layer, then a linear read-out of its last output."""

    def __init__(self, cell: str, hidden_size: int):
        super().__init__()
        self.rnn = RecurrentNetwork(cell, 2, hidden_size)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])[:, 0]


def hidden_gradient_norms(model: SequenceRegressor, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Mean over the batch of ‖∂L/∂h_t‖ for t = 1 … T (L the MSE of the last step's prediction), through
    the cell stepped by hand so that every h_t is a tensor of the graph."""
    cell = model.rnn.cells[0]
    projected = cell.project_input(x)
    state = cell.initial_state(x.shape[0], x)
    hidden = []
    for t in range(x.shape[1]):
        h, state = cell.step(projected[:, t], state)
        h.retain_grad()
        hidden.append(h)
    loss = (model.head(hidden[-1])[:, 0] - y).square().mean()
    model.zero_grad()
    loss.backward()
    model.zero_grad()
    return [float(h.grad.norm(dim=1).mean()) for h in hidden]


def train_adding(cell: str, length: int, *, steps: int, hidden_size: int, batch: int, lr: float, seed: int,
                 device: torch.device, test_size: int = 1000) -> dict:
    """Adam with the gradient norm clipped at 1, a fresh batch each step; the test MSE on a fixed set."""
    torch.manual_seed(seed)
    model = SequenceRegressor(cell, hidden_size).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    train_data = torch.Generator().manual_seed(seed)
    test_x, test_y = (t.to(device) for t in adding_problem(test_size, length, torch.Generator().manual_seed(seed + 1)))
    probe_x, probe_y = test_x[:100], test_y[:100]
    gradients_at_init = hidden_gradient_norms(model, probe_x, probe_y)
    start, curve = time.perf_counter(), []
    for step in range(1, steps + 1):
        x, y = (t.to(device) for t in adding_problem(batch, length, train_data))
        loss = (model(x) - y).square().mean()
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        if step % max(1, steps // 20) == 0 or step == steps:
            with torch.no_grad():
                curve.append((step, float((model(test_x) - test_y).square().mean())))
    return {"test_mse": curve[-1][1], "curve": curve, "seconds": time.perf_counter() - start,
            "gradients_at_init": gradients_at_init, "gradients_trained": hidden_gradient_norms(model, probe_x, probe_y)}


@experiment("long-dependency", notes="003", heading="Recurrent Neural Network - Drawbacks",
            claim="on a long-dependency task (the adding problem) the plain RNN fails — it stays at the variance "
                  "baseline, its gradient vanishing over time — while the LSTM and the GRU learn it")
def long_dependency(ctx: Context) -> Outcome:
    lengths = ctx.pick((10,), (50,), (50, 150))
    steps, hidden_size = ctx.pick(30, 800, 2000), ctx.pick(8, 32, 32)
    settings = dict(steps=steps, hidden_size=hidden_size, batch=64, lr=0.01)
    results, rows = {}, []
    for length in lengths:
        for label, cell in CELLS.items():
            found = train_adding(cell, length, seed=ctx.seed, device=ctx.device, **settings)
            results[(label, length)] = found
            grads = found["gradients_trained"]
            rows.append({"cell": label, "T": length, "test_mse": found["test_mse"],
                         "mse_over_baseline": found["test_mse"] / BASELINE_MSE,
                         "grad_first_over_last_trained": grads[0] / grads[-1],
                         "grad_first_over_last_init": found["gradients_at_init"][0] / found["gradients_at_init"][-1],
                         "train_seconds": round(found["seconds"], 1)})
    fig, axes = figure(len(lengths), 2, width=5.5)
    for i, length in enumerate(lengths):
        for label in CELLS:
            found = results[(label, length)]
            line, = axes[i, 0].semilogy(range(1, length + 1), found["gradients_trained"], label=f"{label}, trained")
            axes[i, 0].semilogy(range(1, length + 1), found["gradients_at_init"], "--", color=line.get_color(),
                                label=f"{label}, at init")
            steps_done, mse = zip(*found["curve"])
            axes[i, 1].plot(steps_done, mse, label=label, color=line.get_color())
        axes[i, 0].set(xlabel="time step t", ylabel="‖∂L/∂h_t‖", title=f"adding problem, T = {length}")
        axes[i, 1].axhline(BASELINE_MSE, color="grey", linestyle=":", label="variance baseline 0.167")
        axes[i, 1].set(xlabel="training step", ylabel="test MSE", yscale="log", title=f"T = {length}")
        axes[i, 0].legend(fontsize=7)
        axes[i, 1].legend(fontsize=7)
    by = {(row["cell"], row["T"]): row["mse_over_baseline"] for row in rows}
    held = all(by[("Elman RNN", t)] > FAILED and by[("LSTM", t)] < LEARNED and by[("GRU", t)] < LEARNED
               for t in lengths)
    summary = "; ".join(f"T = {t}: " + ", ".join(f"{label} {by[(label, t)] * BASELINE_MSE:.4f}" for label in CELLS)
                        for t in lengths)
    result = (f"Test MSE {summary} (variance baseline {BASELINE_MSE:.3f}). Held when, at every T, the Elman RNN "
              f"stays above {FAILED:.0%} of the baseline while the LSTM and the GRU go below {LEARNED:.0%} of it. "
              "The gradient plot shows ‖∂L/∂h_t‖ across the sequence, at initialisation and after training.")
    setup = (f"adding problem (Hochreiter & Schmidhuber 1997; markers one in each half), T = "
             f"{', '.join(map(str, lengths))}; one layer of {hidden_size} units and a linear read-out, Adam lr "
             f"{settings['lr']}, batch {settings['batch']}, {steps} steps, gradient norm clipped at 1, fresh batches, "
             "1000 test sequences; a minimal loop (the engine has no sequence-regression task)")
    return Outcome(verdict(held, conclusive=ctx.budget != "smoke"), result, setup,
                   {"rows": rows, "baseline_mse": BASELINE_MSE,
                    "curves": {f"{label}, T={t}": results[(label, t)]["curve"] for label, t in results}},
                   [save_figure(fig, ctx, "long-dependency.png")], rows)
