"""Sequence regressors: recurrent layers read a sequence, a linear layer reads the last step's output
(the networks of the notes' long-dependency claim, notes 003 "Recurrent Neural Network - Drawbacks":
the adding problem of Hochreiter & Schmidhuber 1997, Sec. 5.4, with one layer of each cell and a
linear output unit).

The cells are layers/recurrent.py's, written from the notes' equations: the Elman RNN (Elman 1990,
h_t = tanh(W x_t + U h_{t−1} + b)), the LSTM (Hochreiter & Schmidhuber 1997 with the forget gate) and
the GRU (Cho et al. 2014). A network takes float sequences (B, T, F) and returns (B, K) predictions;
its card's input is one step of F = 2 features (value, marker), so its MACs are per time step.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers.recurrent import RecurrentNetwork
from ..registry import register_model

_ONE_STEP = (2, 1)   # (features, time steps) of a card's example: one step of the adding problem


class SequenceRegressor(nn.Module):
    """`num_layers` recurrent layers of one cell kind, then a linear read-out of the last output."""

    def __init__(self, cell: str, in_chans: int, hidden_size: int, num_layers: int = 1, num_classes: int = 1):
        super().__init__()
        self.rnn = RecurrentNetwork(cell, in_chans, hidden_size, num_layers)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])

    def example_input(self, input_size) -> torch.Tensor:
        """A zero sequence of input_size = (features, time steps), for the MAC count."""
        features, steps = input_size
        return torch.zeros(1, steps, features, device=self.head.weight.device)


@register_model("rnn_regressor", family="recurrent_regressor", paper="Finding Structure in Time (Elman)",
                year=1990, input_size=_ONE_STEP, num_classes=1, task="sequence-regression")
def rnn_regressor(num_classes: int = 1, in_chans: int = 2, hidden_size: int = 32,
                  num_layers: int = 1) -> SequenceRegressor:
    """The plain (Elman, tanh) RNN: the notes' network whose gradient vanishes over time."""
    return SequenceRegressor("elman", in_chans, hidden_size, num_layers, num_classes)


@register_model("lstm_regressor", family="recurrent_regressor", paper="Long Short-Term Memory (Hochreiter & "
                "Schmidhuber)", year=1997, input_size=_ONE_STEP, num_classes=1, task="sequence-regression")
def lstm_regressor(num_classes: int = 1, in_chans: int = 2, hidden_size: int = 32,
                   num_layers: int = 1) -> SequenceRegressor:
    """The LSTM (with the forget gate, as the notes write it)."""
    return SequenceRegressor("lstm", in_chans, hidden_size, num_layers, num_classes)


@register_model("gru_regressor", family="recurrent_regressor", paper="Learning Phrase Representations using RNN "
                "Encoder-Decoder for Statistical Machine Translation (Cho et al.)", year=2014, input_size=_ONE_STEP,
                num_classes=1, task="sequence-regression")
def gru_regressor(num_classes: int = 1, in_chans: int = 2, hidden_size: int = 32,
                  num_layers: int = 1) -> SequenceRegressor:
    """The GRU (the paper's update, no σ around h_t)."""
    return SequenceRegressor("gru", in_chans, hidden_size, num_layers, num_classes)
