"""The notes' claim on long-term dependencies (notes 003, "Recurrent Neural Network - Drawbacks" and
"RNNs - Remembering Long Term Dependencies"): a plain RNN cannot learn dependencies across many time
steps — its gradient vanishes like the feed-forward one — while the LSTM (and the GRU) can.

The test is the adding problem of Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural
Computation 1997 (Sec. 5.4), in the form of Le, Jaitly & Hinton 2015 (data/synthetic_sequences.py,
`--data adding:T`): T pairs (value ~ U(0, 1), marker), exactly two markers — one in each half — and
the target is the sum of the two marked values. Predicting the mean 1 always gives MSE
Var(u₁ + u₂) = 2/12 ≈ 0.167, the baseline a network that has not found the markers stays at. Each
network (models/sequence_regression.py: one layer of Elman, LSTM or GRU cells, a linear read-out of
the last output) is trained by the engine as `visionzoo train` would (the sequence-regression task,
tasks/sequence_regression.py); the gradient of the loss with respect to every hidden state,
‖∂L/∂h_t‖, is plotted per time step at initialisation and after training.
"""
from __future__ import annotations

import torch

from ..data.synthetic_sequences import ADDING_BASELINE_MSE
from ..models.sequence_regression import SequenceRegressor
from ..registry import create_model
from .base import Context, Outcome, experiment, verdict
from .common import figure, save_figure, train_registered

NETWORKS = {"Elman RNN": "rnn_regressor", "LSTM": "lstm_regressor", "GRU": "gru_regressor"}
BASELINE_MSE = ADDING_BASELINE_MSE
LEARNED, FAILED = 0.1, 0.5     # test MSE as a fraction of the baseline
PROBE = 100                    # test sequences the gradient norms are averaged over


def hidden_gradient_norms(model: SequenceRegressor, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Mean over the batch of ‖∂L/∂h_t‖ for t = 1 … T (L the MSE of the last step's prediction) in a
    one-layer regressor, through its cell stepped by hand so that every h_t is a tensor of the graph."""
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


def settings(ctx: Context, length: int) -> dict:
    """The engine's settings of one run: Adam at 0.01 with a constant rate, the gradient norm clipped at
    1, batches of 64, the last epoch's weights tested; smoke 30 steps, quick 800, full 2000."""
    return dict(data=f"adding:{length}", epochs=ctx.pick(3, 20, 20), batch_size=64,
                train_limit=ctx.pick(640, 2560, 6400), val_size=ctx.pick(64, 1000, 1000),
                test_limit=ctx.pick(200, 1000, 1000), optimizer="adam", lr=0.01, schedule="constant",
                weight_decay=0.0, clip_grad=1.0, keep="last", amp="off",
                model_args={"hidden_size": ctx.pick(8, 32, 32)})


def initial_network(name: str, hidden_size: int, seed: int) -> SequenceRegressor:
    """The network the engine starts a run of `seed` from (it seeds, then builds: the data take no global draws)."""
    torch.manual_seed(seed)
    return create_model(name, hidden_size=hidden_size)


def train_adding(ctx: Context, label: str, length: int) -> dict:
    """One network trained on adding:`length` by the engine: its test MSE, validation curve and the
    gradient norms per step at initialisation and after training (on the first PROBE test sequences)."""
    name, run = NETWORKS[label], settings(ctx, length)
    summary, trainer = train_registered(ctx, name, f"long-dependency-{name}-T{length}", **run)
    test = trainer.task.data.test
    probe_x, probe_y = test.inputs[:PROBE].to(trainer.device), test.targets[:PROBE].to(trainer.device)
    at_init = initial_network(name, run["model_args"]["hidden_size"], ctx.seed).to(trainer.device)
    curve = [(record["epoch"] * trainer.steps_per_epoch, record["val_mse"]) for record in trainer.history]
    return {"test_mse": summary["test_mse"], "curve": curve, "seconds": summary["train_seconds"],
            "steps": trainer.total_steps, "gradients_at_init": hidden_gradient_norms(at_init, probe_x, probe_y),
            "gradients_trained": hidden_gradient_norms(trainer.model, probe_x, probe_y)}


@experiment("long-dependency", notes="003", heading="Recurrent Neural Network - Drawbacks",
            claim="on a long-dependency task (the adding problem) the plain RNN fails — it stays at the variance "
                  "baseline, its gradient vanishing over time — while the LSTM and the GRU learn it")
def long_dependency(ctx: Context) -> Outcome:
    lengths = ctx.pick((10,), (50,), (50, 150))
    results, rows = {}, []
    for length in lengths:
        for label in NETWORKS:
            found = train_adding(ctx, label, length)
            results[(label, length)] = found
            grads = found["gradients_trained"]
            rows.append({"cell": label, "T": length, "test_mse": found["test_mse"],
                         "mse_over_baseline": found["test_mse"] / BASELINE_MSE,
                         "grad_first_over_last_trained": grads[0] / grads[-1],
                         "grad_first_over_last_init": found["gradients_at_init"][0] / found["gradients_at_init"][-1],
                         "train_seconds": round(found["seconds"], 1)})
    fig, axes = figure(len(lengths), 2, width=5.5)
    for i, length in enumerate(lengths):
        for label in NETWORKS:
            found = results[(label, length)]
            line, = axes[i, 0].semilogy(range(1, length + 1), found["gradients_trained"], label=f"{label}, trained")
            axes[i, 0].semilogy(range(1, length + 1), found["gradients_at_init"], "--", color=line.get_color(),
                                label=f"{label}, at init")
            steps_done, mse = zip(*found["curve"])
            axes[i, 1].plot(steps_done, mse, "-o", markersize=3, label=label, color=line.get_color())
        axes[i, 0].set(xlabel="time step t", ylabel="‖∂L/∂h_t‖", title=f"adding problem, T = {length}")
        axes[i, 1].axhline(BASELINE_MSE, color="grey", linestyle=":", label="variance baseline 0.167")
        axes[i, 1].set(xlabel="training step", ylabel="validation MSE", yscale="log", title=f"T = {length}")
        axes[i, 0].legend(fontsize=7)
        axes[i, 1].legend(fontsize=7)
    by = {(row["cell"], row["T"]): row["mse_over_baseline"] for row in rows}
    held = all(by[("Elman RNN", t)] > FAILED and by[("LSTM", t)] < LEARNED and by[("GRU", t)] < LEARNED
               for t in lengths)
    summary = "; ".join(f"T = {t}: " + ", ".join(f"{label} {by[(label, t)] * BASELINE_MSE:.4f}" for label in NETWORKS)
                        for t in lengths)
    result = (f"Test MSE {summary} (variance baseline {BASELINE_MSE:.3f}). Held when, at every T, the Elman RNN "
              f"stays above {FAILED:.0%} of the baseline while the LSTM and the GRU go below {LEARNED:.0%} of it. "
              "The gradient plot shows ‖∂L/∂h_t‖ across the sequence, at initialisation and after training.")
    run = settings(ctx, lengths[0])
    steps = results[(next(iter(NETWORKS)), lengths[0])]["steps"]
    setup = (f"adding problem (Hochreiter & Schmidhuber 1997; markers one in each half), --data adding:T, T = "
             f"{', '.join(map(str, lengths))}; {', '.join(NETWORKS.values())} (one layer of "
             f"{run['model_args']['hidden_size']} units, a linear read-out) trained by the engine: Adam lr "
             f"{run['lr']} constant, batch {run['batch_size']}, {run['epochs']} epochs of {run['train_limit']} "
             f"training sequences ({steps} steps), gradient norm clipped at {run['clip_grad']:g}, the last epoch's "
             f"weights; {run['val_size']} validation and {run['test_limit']} test sequences; gradient norms on "
             f"{PROBE} test sequences")
    return Outcome(verdict(held, conclusive=ctx.budget != "smoke"), result, setup,
                   {"rows": rows, "baseline_mse": BASELINE_MSE,
                    "curves": {f"{label}, T={t}": results[(label, t)]["curve"] for label, t in results}},
                   [save_figure(fig, ctx, "long-dependency.png")], rows)
