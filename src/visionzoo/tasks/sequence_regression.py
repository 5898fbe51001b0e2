"""Sequence regression: a network reads a sequence and predicts real numbers (the notes' long-dependency
claim, notes 003 "Recurrent Neural Network - Drawbacks", on the adding problem of Hochreiter &
Schmidhuber 1997, Sec. 5.4; data/synthetic_sequences.py).

The loss is the mean squared error, MSE = (1/N) Σ_n ‖ŷ_n − y_n‖² / K over K outputs, in float32. The
measures of a split: `mse` (monitored, lower is better; `loss` is the same number, the objective),
and the coefficient of determination R² = 1 − MSE / Var(y), the fraction of the targets' variance
explained (0 for the best constant prediction). Evaluation runs without autocast, so that `visionzoo
eval` repeats the run's validation exactly. The divergence check's reference (`chance_loss`) is the
MSE of the best constant, the training targets' variance.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core import distributed
from ..core.runtime import autocast, evaluating
from ..data.datasets import SPLITS
from ..data.loader import eval_batches
from ..data.synthetic_sequences import load_sequence_data
from .base import SequenceTask, SplitsTask, StepOutput
from .plots import plot_curves


def regression_measures(model: nn.Module, split, *, batch_size: int, device, rank: int = 0, world: int = 1) -> dict:
    """loss = mse, r2 and n of `model` on `split` (a SequenceSplit), in float32; rank r of W reads a
    contiguous share and the sums are added across processes."""
    sums = torch.zeros(4, dtype=torch.float64, device=device)   # Σ (ŷ − y)², Σ y, Σ y², values
    with torch.no_grad(), evaluating(model):
        for inputs, targets in eval_batches(split, batch_size, rank=rank, world=world, device=device):
            predictions = model(inputs).float().reshape_as(targets)
            sums += torch.stack([(predictions - targets).square().sum(), targets.sum(), targets.square().sum(),
                                 targets.new_tensor(float(targets.numel()))]).double()
    squared_error, total, squares, count = distributed.all_reduce_sum(sums).tolist()
    mse = squared_error / count
    variance = squares / count - (total / count) ** 2
    return {"loss": mse, "mse": mse, "r2": 1 - mse / variance if variance > 0 else float("nan"), "n": len(split)}


class SequenceRegressionTask(SequenceTask, SplitsTask):
    """Sequences → real numbers: MSE loss, `mse` monitored, R² beside it."""

    name = "sequence-regression"
    default_data = "adding:50"
    record_keys = ("loss",)
    monitor, monitor_mode = "mse", "min"
    val_keys = ("r2",)

    # ---- data and network ---------------------------------------------------------------------
    def load_data(self) -> None:
        cfg = self.cfg
        self.data = load_sequence_data(cfg.data, val_size=cfg.val_size, seed=cfg.seed)
        self.limit_splits()
        self.input_size = (self.data.features, self.data.length)   # (features, time steps)

    @property
    def chance_loss(self) -> float:
        return self.data.train.targets.double().var(unbiased=False).item()

    def describe_data(self) -> str:
        counts = " / ".join(f"{len(self.data.split(s))} {s}" for s in SPLITS)
        return f"{counts} sequences of {self.data.length} steps × {self.data.features} features"

    def build_model(self, **builder_kwargs) -> nn.Module:
        self.model_kwargs = {"num_classes": self.data.outputs, "in_chans": self.data.features, **builder_kwargs}
        return self.build_network(self.model_kwargs)

    # ---- training -----------------------------------------------------------------------------
    def training_step(self, batch, phase: str, generator: torch.Generator) -> StepOutput:
        inputs, targets = batch
        with autocast(self.device, self.amp):
            output = self.net(inputs)
        loss = F.mse_loss(output.float().reshape_as(targets), targets)
        return StepOutput({"loss": loss}, {"loss": loss.detach().double() * len(targets)}, len(targets))

    # ---- evaluation and the run directory ------------------------------------------------------
    def evaluate(self, model: nn.Module, split: str) -> dict:
        return regression_measures(model, self.data.split(split), batch_size=self.cfg.eval_batch_size,
                                   device=self.device, rank=self.rank, world=self.world)

    def test(self, model: nn.Module, out, title: str) -> dict:
        test = self.evaluate(model, "test")
        self.log(f"test mse {test['mse']:.6f}  r2 {test['r2']:.4f}  ({test['n']} sequences)")
        return {"test_mse": test["mse"], "test_loss": test["loss"], "test_r2": test["r2"], "test_n": test["n"]}

    def resolved(self) -> dict:
        return {"input_size": list(self.input_size), "outputs": self.data.outputs,
                **{f"{split}_sequences": len(self.data.split(split)) for split in SPLITS}}

    def model_meta(self) -> dict:
        cfg = self.cfg
        # no input_size: model.json's is an image's (channels, height, width); a sequence's is (features, steps)
        return {"features": self.data.features, "length": self.data.length, "data": cfg.data,
                "data_args": {"val_size": cfg.val_size, "seed": cfg.seed},
                "eval": {"batch_size": cfg.eval_batch_size, "channels_last": False}}

    def plot_curves(self, history: list[dict], path) -> None:
        plot_curves(history, path, metric="r2", metric_label="R² (validation)", loss_label="mean squared error")
