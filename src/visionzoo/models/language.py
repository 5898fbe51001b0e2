"""Recurrent language models: Graves, "Generating Sequences With Recurrent Neural Networks",
arXiv:1308.0850, 2013 (notes 003, "Language Modeling using LSTM"), Sec. 2–3, Fig. 1, Eq. 1–6.

A stack of N recurrent layers with skip connections from the input to every hidden layer and from
every hidden layer to the output (Eq. 1–3):
    h^1_t = H(W_{ih^1} x_t + W_{h^1h^1} h^1_{t−1} + b^1),
    h^n_t = H(W_{ih^n} x_t + W_{h^{n−1}h^n} h^{n−1}_t + W_{h^nh^n} h^n_{t−1} + b^n),  n = 2 … N,
    ŷ_t = b_y + Σ_n W_{h^ny} h^n_t,   Pr(x_{t+1} = k | y_t) = softmax(ŷ_t)_k.
(The notes' slide swaps the time indices of the last two terms, h^{n−1}_{t−1} and h^n_t; the paper's
form above is the one that can be computed.) H is the LSTM cell (layers/recurrent.py: the notes' cell,
or with ``peephole=True`` Graves' own, Eq. 7–11, whose gates also read the cell through diagonal weights
W_ci, W_cf, W_co — `lstm_lm_graves` has them), the GRU (`gru_lm`) or the Elman cell (`rnn_lm`). Character level: one-hot inputs as Graves (x_t a length-K
indicator); word level: ``embedding=E`` learns a lookup table instead. Each layer runs as one fused
recurrent network over the whole window (layer n at time t needs only layer n−1 up to t).

Regularisation and evaluation as Graves' Table 1 rows: weight noise (Sec. 3.1: Gaussian noise of
std σ added to the weights at the start of each training sequence — here once per forward call, the
window of truncated BPTT, shared by the batch; none in evaluation) and dynamic evaluation
(`dynamic_evaluate`: the network keeps training by SGD on the test sequence as it predicts it, each
window scored before the network learns from it). Sampling (Sec. 5.4): Graves' probability bias b
scales the logits, Pr(k) ∝ exp(ŷ_k (1 + b)); a temperature T divides them, softmax(ŷ/T): the same
knob, T = 1/(1 + b) (`sample` composes both as ŷ (1 + b)/T).

Card: Graves' Wikipedia network (Sec. 3.2, `lstm_lm_graves`) has seven hidden layers of 700 LSTM
cells on 205 one-byte symbols, "approximately 21.3M weights"; Eq. 1–3 with those sizes count 30.5M
(with or without peepholes; 27.1M without the input skips, 26.2M without any skip), so the paper's
figure cannot be reproduced from its own equations and is kept as printed, with the reason on the card.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..core.errors import UsageError
from ..layers.recurrent import RecurrentNetwork, detach_state
from ..registry import register_model

_PAPER = "Generating Sequences With Recurrent Neural Networks (Graves)"
# A card's example is one token: MACs per token, the usual measure of a language model's cost (a
# window of T tokens costs T times as much).
_ONE_TOKEN = (1, 1)


class RecurrentLanguageModel(nn.Module):
    """forward(tokens (B, T) int64, state=None) → (logits (B, T, V), state: one per layer, to pass back in
    for the next window); `init_state(batch)` is the zero state. `dropout` acts on every hidden layer's
    output, which both the next layer and the output layer read."""

    def __init__(self, num_classes: int, cell: str = "lstm", hidden_size: int = 256, num_layers: int = 2,
                 dropout: float = 0.0, skip: bool = True, embedding: int | None = None,
                 tie_weights: bool = False, weight_noise: float = 0.0, peephole: bool = False):
        super().__init__()
        if num_classes < 2:
            raise UsageError(f"num_classes={num_classes}: a vocabulary of at least 2 tokens")
        if weight_noise < 0:
            raise UsageError(f"weight_noise={weight_noise}: a standard deviation, ≥ 0")
        if not 0 <= dropout < 1:
            raise UsageError(f"dropout={dropout}: a probability in [0, 1)")
        self.vocab_size, self.hidden_size, self.num_layers = num_classes, hidden_size, num_layers
        self.skip, self.dropout, self.weight_noise = skip, dropout, weight_noise
        self.embed = nn.Embedding(num_classes, embedding) if embedding else None
        width = embedding or num_classes
        self.layers = nn.ModuleList(
            RecurrentNetwork(cell, width if n == 0 else hidden_size + (width if skip else 0), hidden_size,
                             peephole=peephole)
            for n in range(num_layers))
        self.head = nn.Linear(hidden_size * (num_layers if skip else 1), num_classes)
        if tie_weights:
            if self.embed is None or self.head.in_features != embedding:
                raise UsageError(f"tie_weights shares the output matrix with the embedding: it needs "
                                 f"embedding={self.head.in_features} (the output layer's input width)")
            self.head.weight = self.embed.weight
        self._adding_noise = False

    def example_input(self, input_size) -> torch.Tensor:
        """One example of input_size (1, T): T tokens (the cost counters call it; cards use T = 1)."""
        return torch.zeros((1, *input_size[1:]), dtype=torch.long, device=self.head.weight.device)

    def init_state(self, batch: int):
        weight = self.head.weight
        return tuple(layer.initial_state(batch, weight.new_zeros(())) for layer in self.layers)

    def inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            return self.embed(tokens)
        one_hot = self.head.weight.new_zeros(*tokens.shape, self.vocab_size)
        return one_hot.scatter_(-1, tokens.unsqueeze(-1), 1.0)

    def forward(self, tokens: torch.Tensor, state=None):
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise UsageError(f"a language model takes (batch, time) integer tokens; got {tuple(tokens.shape)} "
                             f"{tokens.dtype}")
        if self.training and self.weight_noise and not self._adding_noise:
            noisy = {name: p + self.weight_noise * torch.randn_like(p) for name, p in self.named_parameters()}
            self._adding_noise = True
            try:
                return functional_call(self, noisy, (tokens, state))
            finally:
                self._adding_noise = False
        x = self.inputs(tokens.long())
        state = state if state is not None else (None,) * self.num_layers
        if len(state) != self.num_layers:
            raise UsageError(f"a state of {len(state)} layers for a {self.num_layers}-layer model; pass back the "
                             "state the model returned (or init_state)")
        hidden, new_state, below = [], [], None
        for layer, carried in zip(self.layers, state):
            layer_input = x if below is None else torch.cat([x, below], -1) if self.skip else below
            below, carried = layer(layer_input, carried)
            below = F.dropout(below, self.dropout, self.training) if self.dropout else below
            hidden.append(below)
            new_state.append(carried)
        return self.head(torch.cat(hidden, -1) if self.skip else hidden[-1]), tuple(new_state)


def _language_model(cell: str, num_classes: int, in_chans: int, **kwargs) -> RecurrentLanguageModel:
    if in_chans != 1:
        raise UsageError(f"in_chans={in_chans}: a language model reads one token stream (in_chans=1)")
    return RecurrentLanguageModel(num_classes, cell, **kwargs)


_GRAVES_COUNT = ("Graves prints ~21.3M weights for 7 layers of 700 LSTM cells on 205 symbols, but his Eq. 1-3 "
                 "with those sizes count 30.5M (26.2M even without any skip connection): the figure cannot be "
                 "reproduced from the paper's own equations")


@register_model("lstm_lm_graves", family="recurrent_lm", paper=_PAPER, year=2013, input_size=_ONE_TOKEN,
                num_classes=205, paper_params="21.3M", task="language", mismatch_reason=_GRAVES_COUNT,
                hidden_size=700, num_layers=7, peephole=True)
@register_model("lstm_lm", family="recurrent_lm", paper=_PAPER, year=2013, input_size=_ONE_TOKEN,
                num_classes=128, task="language")
def lstm_lm(num_classes: int = 128, in_chans: int = 1, hidden_size: int = 256, num_layers: int = 2,
            dropout: float = 0.0, skip: bool = True, embedding: int | None = None, tie_weights: bool = False,
            weight_noise: float = 0.0, peephole: bool = False) -> RecurrentLanguageModel:
    """Graves' deep LSTM LM; the default size (2 × 256, skips, the notes' cell: fused) is the CPU one,
    `lstm_lm_graves` the paper's (7 × 700, peephole cells)."""
    return _language_model("lstm", num_classes, in_chans, hidden_size=hidden_size, num_layers=num_layers,
                           dropout=dropout, skip=skip, embedding=embedding, tie_weights=tie_weights,
                           weight_noise=weight_noise, peephole=peephole)


@register_model("gru_lm", family="recurrent_lm", paper=_PAPER, year=2013, input_size=_ONE_TOKEN,
                num_classes=128, task="language")
def gru_lm(num_classes: int = 128, in_chans: int = 1, hidden_size: int = 256, num_layers: int = 2,
           dropout: float = 0.0, skip: bool = True, embedding: int | None = None, tie_weights: bool = False,
           weight_noise: float = 0.0) -> RecurrentLanguageModel:
    """Graves' architecture with GRU cells (Cho et al. 2014) in place of the LSTM."""
    return _language_model("gru", num_classes, in_chans, hidden_size=hidden_size, num_layers=num_layers,
                           dropout=dropout, skip=skip, embedding=embedding, tie_weights=tie_weights,
                           weight_noise=weight_noise)


@register_model("rnn_lm", family="recurrent_lm", paper=_PAPER, year=2013, input_size=_ONE_TOKEN,
                num_classes=128, task="language")
def rnn_lm(num_classes: int = 128, in_chans: int = 1, hidden_size: int = 256, num_layers: int = 2,
           dropout: float = 0.0, skip: bool = True, embedding: int | None = None, tie_weights: bool = False,
           weight_noise: float = 0.0) -> RecurrentLanguageModel:
    """Graves' architecture with Elman cells (tanh), the plain RNN of the notes."""
    return _language_model("elman", num_classes, in_chans, hidden_size=hidden_size, num_layers=num_layers,
                           dropout=dropout, skip=skip, embedding=embedding, tie_weights=tie_weights,
                           weight_noise=weight_noise)


def next_token_probabilities(logits: torch.Tensor, *, temperature: float = 1.0, bias: float = 0.0) -> torch.Tensor:
    """softmax(ŷ (1 + b) / T) over the last dimension: Graves' bias b and the temperature T."""
    if temperature <= 0:
        raise UsageError(f"temperature={temperature}: must be > 0")
    if bias <= -1:
        raise UsageError(f"bias={bias}: Graves' probability bias must be > −1 (0 = unbiased)")
    return torch.softmax(logits * ((1 + bias) / temperature), -1)


@torch.no_grad()
def sample(model: RecurrentLanguageModel, prompt_tokens: torch.Tensor, length: int, *, temperature: float = 1.0,
           bias: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """`length` tokens drawn one at a time after the prompt (1-D tokens, at least one), each fed back
    in: Pr(k) ∝ exp(ŷ_k (1 + b) / T). Returns the new tokens only (1-D int64)."""
    if prompt_tokens.dim() != 1 or len(prompt_tokens) == 0:
        raise UsageError("the prompt is a non-empty 1-D sequence of token ids")
    if length < 0:
        raise UsageError(f"length={length}: a number of tokens, ≥ 0")
    was_training = model.training
    model.eval()
    try:
        device = model.head.weight.device
        logits, state = model(prompt_tokens.to(device).long()[None])
        drawn = []
        for _ in range(length):
            probabilities = next_token_probabilities(logits[0, -1].double(), temperature=temperature, bias=bias)
            token = torch.multinomial(probabilities.cpu(), 1, generator=generator)
            drawn.append(token)
            logits, state = model(token.to(device)[None], state)
        return torch.cat(drawn) if drawn else torch.zeros(0, dtype=torch.long)
    finally:
        model.train(was_training)


def dynamic_evaluate(model: RecurrentLanguageModel, tokens: torch.Tensor, lr: float, *, bptt: int = 100,
                     momentum: float = 0.0) -> float:
    """Mean cross-entropy (nats per token) of predicting `tokens` (1-D) while learning from them
    (Graves Sec. 3.1, Mikolov's dynamic evaluation): windows of `bptt` tokens in order, each scored with
    the current weights, then one SGD step on its loss; the state is carried between windows. Works on
    a copy: the caller's model is unchanged. lr = 0 is ordinary (static) evaluation."""
    if tokens.dim() != 1 or len(tokens) < 2:
        raise UsageError("dynamic evaluation needs a 1-D sequence of at least 2 tokens")
    if lr < 0 or bptt < 1:
        raise UsageError(f"lr={lr}, bptt={bptt}: lr ≥ 0 and bptt ≥ 1")
    learner = copy.deepcopy(model).eval()   # no dropout or weight noise while evaluating
    optimiser = torch.optim.SGD(learner.parameters(), lr=lr, momentum=momentum)
    device = learner.head.weight.device
    tokens = tokens.to(device).long()
    total, count, state = 0.0, 0, None
    for start in range(0, len(tokens) - 1, bptt):
        window = tokens[start:start + bptt + 1]
        logits, state = learner(window[None, :-1], state)
        loss = F.cross_entropy(logits[0], window[1:])
        total += float(loss.detach()) * (len(window) - 1)
        count += len(window) - 1
        if lr:
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        state = detach_state(state)
    return total / count
