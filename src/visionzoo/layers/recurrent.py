"""Recurrent cells and networks, written from the notes' equations (notes 003, "Earliest Recurrent
Network Architectures", "LSTM - Cell Structure", "GRU - Cell Structure").

- Elman network: Elman, "Finding structure in time", Cognitive Science 14(2), 1990:
  h_t = tanh(W x_t + U h_{t−1} + b) — the hidden layer is copied into the context units.
- Jordan network: Jordan, "Serial order: a parallel distributed processing approach", ICS Tech.
  Rep. 8604, 1986: the state units hold the previous *output*, h_t = tanh(W x_t + U y_{t−1} + b),
  y_t = σ_y(V h_t + c); the state carried from step to step is y_t, not h_t.
- LSTM: Hochreiter & Schmidhuber 1997 with the forget gate (Gers et al. 2000), as the notes write it
  (colah's form): f_t = σ(W_f·[h_{t−1}, x_t] + b_f), i_t = σ(W_i·[h_{t−1}, x_t] + b_i),
  C̃_t = tanh(W_C·[h_{t−1}, x_t] + b_C), C_t = f_t∘C_{t−1} + i_t∘C̃_t, o_t = σ(W_o·[h_{t−1}, x_t] + b_o),
  h_t = o_t∘tanh(C_t). With ``peephole=True``, Graves' cell (Graves 2013, Eq. 7–11; Gers & Schmidhuber
  2000): the gates also see the cell through diagonal weights, i_t and f_t gain w_ci∘C_{t−1} and
  w_cf∘C_{t−1}, o_t gains w_co∘C_t (torch has no such cell: it always runs step by step).
- GRU: Cho et al., "Learning phrase representations using RNN encoder-decoder", EMNLP 2014, in the
  notes' form: z_t = σ(W^z x_t + U^z h_{t−1}), r_t = σ(W^r x_t + U^r h_{t−1}),
  h̃_t = tanh(W^c x_t + r_t ⊙ U^c h_{t−1}), h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t. The notes print
  h_t = σ(z_t ⊙ h̃_t + (1 − z_t) ⊙ h_{t−1}); the paper has no σ there (h_t is a convex combination of
  h_{t−1} and h̃_t, which keeps it in (−1, 1) without one), and we follow the paper. Cho et al. write
  the same update with z and 1 − z swapped (their z keeps the old state) and apply the reset before
  U, U(r ⊙ h_{t−1}); the notes (and cuDNN/torch) apply it after, r ⊙ (U h_{t−1}), which is what we do.

Storage and the mapping to torch. Every cell keeps torch's tensors — `weight_ih` (G·H, F),
`weight_hh` (G·H, H), `bias_ih`, `bias_hh` (G·H), gate blocks in torch's order — so that a
`RecurrentNetwork` can hand the very same parameters to the fused `torch.lstm`/`torch.gru`/`torch.rnn_tanh`
(cuDNN on CUDA) with no copy, and `to_torch_cell_state`/`from_torch_cell_state` are plain copies. The
notes' symbols are read from them (`notes_weights`):
- LSTM (torch blocks i, f, g, o): W_i = [W_hh^i | W_ih^i] (the notes' W·[h_{t−1}, x_t] concatenates h
  first), b_i = b_ih^i + b_hh^i; likewise f, C (torch's g) and o.
- GRU (torch blocks r, z, n; torch's update h' = (1 − z′)∘n + z′∘h): the notes' z is torch's 1 − z′,
  so W^z = −W_ih^z, U^z = −W_hh^z, b^z = −(b_ih^z + b_hh^z) (σ(−a) = 1 − σ(a)); W^r = W_ih^r, U^r = W_hh^r,
  b^r = b_ih^r + b_hh^r; W^c = W_ih^n, U^c = W_hh^n with torch's two candidate biases: b_ih^n outside
  the reset, b_hh^n inside it, h̃ = tanh(W^c x + b_ih^n + r ⊙ (U^c h + b_hh^n)).
- Elman: W = W_ih, U = W_hh, b = b_ih + b_hh (nn.RNNCell, tanh or relu).

Truncated BPTT: `RecurrentNetwork.forward(x, state)` continues from a carried state; `detach_state`
cuts the graph between windows. Gradient clipping is the engine's `--clip-grad`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import flop_counter

from ..core.errors import UsageError

CELLS = ("lstm", "gru", "elman", "jordan")
FUSABLE = ("lstm", "gru", "elman")
OUTPUT_ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda y: y}


class _GatedCell(nn.Module):
    """Parameters in torch's layout for G blocks of H units; `step` advances one time step from the
    input projection W_ih x + b_ih, which a network computes for all time steps at once."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, recurrent_size: int | None = None):
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise UsageError(f"input_size={input_size}, hidden_size={hidden_size}: both must be positive")
        self.input_size, self.hidden_size = input_size, hidden_size
        rows = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, recurrent_size or hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(rows))
        self.bias_hh = nn.Parameter(torch.empty(rows))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch's initialisation, U(−1/√H, 1/√H) for every tensor
        bound = 1 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def project_input(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_ih, self.bias_ih)

    def forward(self, x: torch.Tensor, state=None):
        """One step: x (B, F) → (output (B, H), new state)."""
        if state is None:
            state = self.initial_state(x.shape[0], x)
        return self.step(self.project_input(x), state)

    def initial_state(self, batch: int, like: torch.Tensor):
        return like.new_zeros(batch, self.hidden_size)


class ElmanCell(_GatedCell):
    """h_t = φ(W x_t + U h_{t−1} + b), φ = tanh (or relu); equals nn.RNNCell with the same tensors."""

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise UsageError(f"nonlinearity={nonlinearity!r}: choose tanh or relu")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size)

    def step(self, projected: torch.Tensor, h: torch.Tensor):
        pre = projected + F.linear(h, self.weight_hh, self.bias_hh)
        h = torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)
        return h, h


class JordanCell(_GatedCell):
    """h_t = tanh(W x_t + U y_{t−1} + b), y_t = σ_y(V h_t + c): the state is the previous output y.

    W = `weight_ih`, U = `weight_hh` (output → hidden, H × O), b = `bias_ih` + `bias_hh`, V = `weight_hy`,
    c = `bias_y`; `output_size` O defaults to H. No torch twin; with V = I, c = 0 and σ_y the identity it is
    the Elman cell (tested)."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None = None,
                 output_activation: str = "tanh"):
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise UsageError(f"output_activation={output_activation!r}: choose {', '.join(OUTPUT_ACTIVATIONS)}")
        self.output_size = output_size or hidden_size
        self.output_activation = output_activation
        super().__init__(input_size, hidden_size, recurrent_size=self.output_size)
        bound = 1 / math.sqrt(hidden_size)
        self.weight_hy = nn.Parameter(torch.empty(self.output_size, hidden_size).uniform_(-bound, bound))
        self.bias_y = nn.Parameter(torch.empty(self.output_size).uniform_(-bound, bound))

    def initial_state(self, batch: int, like: torch.Tensor):
        return like.new_zeros(batch, self.output_size)

    def step(self, projected: torch.Tensor, y: torch.Tensor):
        h = torch.tanh(projected + F.linear(y, self.weight_hh, self.bias_hh))
        y = OUTPUT_ACTIVATIONS[self.output_activation](F.linear(h, self.weight_hy, self.bias_y))
        return y, y


class LSTMCell(_GatedCell):
    """The notes' LSTM (module docstring); state (h, C). Equals nn.LSTMCell with the same tensors.
    ``peephole=True`` adds Graves' diagonal cell-to-gate weights `weight_ci`, `weight_cf`, `weight_co`."""

    gates = 4

    def __init__(self, input_size: int, hidden_size: int, peephole: bool = False):
        super().__init__(input_size, hidden_size)
        self.peephole = peephole
        if peephole:
            bound = 1 / math.sqrt(hidden_size)
            for name in ("weight_ci", "weight_cf", "weight_co"):
                self.register_parameter(name, nn.Parameter(torch.empty(hidden_size).uniform_(-bound, bound)))

    def initial_state(self, batch: int, like: torch.Tensor):
        zeros = like.new_zeros(batch, self.hidden_size)
        return zeros, zeros

    def step(self, projected: torch.Tensor, state):
        h_previous, c_previous = state
        # W·[h_{t−1}, x_t] + b for the four blocks at once (torch's order i, f, C̃, o)
        i, f, candidate, o = (projected + F.linear(h_previous, self.weight_hh, self.bias_hh)).chunk(4, -1)
        if self.peephole:
            i, f = i + self.weight_ci * c_previous, f + self.weight_cf * c_previous
        forget = torch.sigmoid(f)
        input_gate = torch.sigmoid(i)
        c = forget * c_previous + input_gate * torch.tanh(candidate)
        h = torch.sigmoid(o + self.weight_co * c if self.peephole else o) * torch.tanh(c)
        return h, (h, c)


class GRUCell(_GatedCell):
    """The paper's GRU in the notes' form (module docstring); equals nn.GRUCell with the same tensors."""

    gates = 3

    def step(self, projected: torch.Tensor, h_previous: torch.Tensor):
        x_r, x_z, x_c = projected.chunk(3, -1)
        h_r, h_z, h_c = F.linear(h_previous, self.weight_hh, self.bias_hh).chunk(3, -1)
        reset = torch.sigmoid(x_r + h_r)
        update = torch.sigmoid(-(x_z + h_z))            # the notes' z = 1 − torch's z′
        candidate = torch.tanh(x_c + reset * h_c)
        h = (1 - update) * h_previous + update * candidate
        return h, h


def make_cell(kind: str, input_size: int, hidden_size: int, nonlinearity: str = "tanh",
              peephole: bool = False) -> _GatedCell:
    if kind not in CELLS:
        raise UsageError(f"unknown cell {kind!r}; choose one of {', '.join(CELLS)}")
    if peephole and kind != "lstm":
        raise UsageError(f"peephole connections are an LSTM's; a {kind} cell has no cell state")
    if kind == "lstm":
        return LSTMCell(input_size, hidden_size, peephole)
    if kind == "gru":
        return GRUCell(input_size, hidden_size)
    if kind == "elman":
        return ElmanCell(input_size, hidden_size, nonlinearity)
    return JordanCell(input_size, hidden_size)


def _fused_lstm_layer_flops(inputs, weight_ih, weight_hh, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of one layer and direction of torch's fused LSTM on CPU (oneDNN's mkldnn_rnn_layer, which
    the flop counter has no formula for): 2 per weight of W_ih and W_hh per token; inputs are (T, B, F)."""
    return 2 * inputs[0] * inputs[1] * (math.prod(weight_ih) + math.prod(weight_hh))


if hasattr(torch.ops.aten, "mkldnn_rnn_layer") and torch.ops.aten.mkldnn_rnn_layer not in flop_counter.flop_registry:
    flop_counter.register_flop_formula(torch.ops.aten.mkldnn_rnn_layer)(_fused_lstm_layer_flops)


_TORCH_CELLS = {LSTMCell: nn.LSTMCell, GRUCell: nn.GRUCell, ElmanCell: nn.RNNCell}
_TENSORS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def to_torch_cell_state(cell: _GatedCell) -> dict[str, torch.Tensor]:
    """The state_dict of the equal nn.LSTMCell / nn.GRUCell / nn.RNNCell (same layout: copies)."""
    if type(cell) not in _TORCH_CELLS or getattr(cell, "peephole", False):
        raise UsageError(f"{type(cell).__name__} (peephole: {getattr(cell, 'peephole', False)}) has no torch twin")
    return {name: getattr(cell, name).detach().clone() for name in _TENSORS}


def from_torch_cell_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our cell's state_dict from a torch cell's (same layout: copies)."""
    missing = [name for name in _TENSORS if name not in state]
    if missing:
        raise UsageError(f"not a torch RNN cell state: {', '.join(missing)} missing")
    return {name: state[name].detach().clone() for name in _TENSORS}


def torch_twin_cell(cell: _GatedCell) -> nn.Module:
    """nn.LSTMCell / nn.GRUCell / nn.RNNCell computing what `cell` computes."""
    if type(cell) not in _TORCH_CELLS:
        raise UsageError(f"{type(cell).__name__} has no torch twin")
    extra = {"nonlinearity": cell.nonlinearity} if isinstance(cell, ElmanCell) else {}
    twin = _TORCH_CELLS[type(cell)](cell.input_size, cell.hidden_size, **extra)
    twin.to(cell.weight_ih.dtype).load_state_dict(to_torch_cell_state(cell))
    return twin


def notes_weights(cell: _GatedCell) -> dict[str, torch.Tensor]:
    """The notes' symbols (module docstring) read from the stored tensors."""
    def blocks(tensor):
        return tensor.detach().chunk(cell.gates, 0)
    w_ih, w_hh, b_ih, b_hh = (blocks(getattr(cell, name)) for name in _TENSORS)
    if isinstance(cell, LSTMCell):
        return {f"{symbol}_{suffix}": value for k, symbol in enumerate(("i", "f", "C", "o"))
                for suffix, value in (("W", torch.cat([w_hh[k], w_ih[k]], 1)), ("b", b_ih[k] + b_hh[k]))}
    if isinstance(cell, GRUCell):
        return {"W_z": -w_ih[1], "U_z": -w_hh[1], "b_z": -(b_ih[1] + b_hh[1]),
                "W_r": w_ih[0], "U_r": w_hh[0], "b_r": b_ih[0] + b_hh[0],
                "W_c": w_ih[2], "U_c": w_hh[2], "b_c_input": b_ih[2], "b_c_recurrent": b_hh[2]}
    return {"W": w_ih[0], "U": w_hh[0], "b": b_ih[0] + b_hh[0]}


def detach_state(state):
    """The carried state cut from the graph (truncated BPTT): tensors, tuples or lists of them."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.detach()
    return type(state)(detach_state(s) for s in state)


class RecurrentNetwork(nn.Module):
    """Stacked, optionally bidirectional recurrent layers of one cell kind, dropout between layers.

    forward(x (B, T, F) — (T, B, F) when batch_first=False —, state=None) → (outputs (B, T, H·D), state),
    state as torch's: (h, c) for the LSTM, h otherwise (Jordan: the previous outputs), each
    (layers·D, B, H); pass it back in to continue a sequence (truncated BPTT, with `detach_state`).
    With fused None or True the LSTM/GRU/Elman layers run through torch's fused kernel (cuDNN on CUDA)
    on the cells' own parameters; fused=False runs the cells step by step, as do Jordan cells and
    peephole LSTMs (``peephole=True``), which torch has no kernel for. Both give the same outputs
    and gradients (tested); only their dropout masks differ.
    """

    def __init__(self, cell: str = "lstm", input_size: int = 1, hidden_size: int = 1, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, batch_first: bool = True,
                 fused: bool | None = None, nonlinearity: str = "tanh", peephole: bool = False):
        super().__init__()
        if cell not in CELLS:
            raise UsageError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")
        if num_layers < 1:
            raise UsageError(f"num_layers={num_layers}: at least 1")
        if not 0 <= dropout < 1:
            raise UsageError(f"dropout={dropout}: a probability in [0, 1)")
        if fused and (cell not in FUSABLE or peephole):
            kind = "peephole LSTM" if peephole else cell
            raise UsageError(f"fused=True: torch has no fused {kind} network; use fused=None or False")
        self.cell, self.input_size, self.hidden_size = cell, input_size, hidden_size
        self.num_layers, self.bidirectional, self.dropout = num_layers, bidirectional, dropout
        self.batch_first, self.fused, self.nonlinearity, self.peephole = batch_first, fused, nonlinearity, peephole
        self.directions = 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            make_cell(cell, input_size if layer == 0 else hidden_size * self.directions, hidden_size, nonlinearity,
                      peephole)
            for layer in range(num_layers) for _ in range(self.directions))

    @property
    def runs_fused(self) -> bool:
        return self.fused is not False and self.cell in FUSABLE and not self.peephole

    def initial_state(self, batch: int, like: torch.Tensor):
        zeros = like.new_zeros(self.num_layers * self.directions, batch, self.hidden_size)
        return (zeros, zeros) if self.cell == "lstm" else zeros

    def forward(self, x: torch.Tensor, state=None):
        if x.dim() != 3:
            raise UsageError(f"a recurrent network takes (batch, time, features); got shape {tuple(x.shape)}")
        if not self.batch_first:
            x = x.transpose(0, 1)
        if state is None:
            state = self.initial_state(x.shape[0], x)
        outputs, state = self._fused(x, state) if self.runs_fused else self._stepped(x, state)
        return (outputs if self.batch_first else outputs.transpose(0, 1)), state

    def _fused(self, x: torch.Tensor, state):
        weights = [getattr(cell, name) for cell in self.cells for name in _TENSORS]
        arguments = (weights, True, self.num_layers, self.dropout, self.training, self.bidirectional, True)
        if self.cell == "lstm":
            outputs, h, c = torch.lstm(x, state, *arguments)
            return outputs, (h, c)
        run = torch.gru if self.cell == "gru" else torch.rnn_tanh if self.nonlinearity == "tanh" else torch.rnn_relu
        return run(x, state, *arguments)

    def _stepped(self, x: torch.Tensor, state):
        lstm = self.cell == "lstm"
        new_states, layer_input = [], x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                index = layer * self.directions + direction
                cell = self.cells[index]
                carried = (state[0][index], state[1][index]) if lstm else state[index]
                projected = cell.project_input(layer_input)             # W_ih x_t + b_ih for every t at once
                steps = range(x.shape[1]) if direction == 0 else reversed(range(x.shape[1]))
                sequence = [None] * x.shape[1]
                for t in steps:
                    sequence[t], carried = cell.step(projected[:, t], carried)
                outputs.append(torch.stack(sequence, 1))
                new_states.append(carried)
            layer_input = torch.cat(outputs, -1) if self.directions == 2 else outputs[0]
            if layer < self.num_layers - 1 and self.dropout:
                layer_input = F.dropout(layer_input, self.dropout, self.training)
        if lstm:
            return layer_input, (torch.stack([s[0] for s in new_states]), torch.stack([s[1] for s in new_states]))
        return layer_input, torch.stack(new_states)


_TORCH_NETWORKS = {"lstm": nn.LSTM, "gru": nn.GRU, "elman": nn.RNN}


def to_torch_network_state(network: RecurrentNetwork) -> dict[str, torch.Tensor]:
    """The state_dict of the equal nn.LSTM / nn.GRU / nn.RNN: cells.{layer·D + d}.weight_ih →
    weight_ih_l{layer}[_reverse], and so on."""
    if network.cell not in _TORCH_NETWORKS or network.peephole:
        raise UsageError(f"a {'peephole ' * network.peephole}{network.cell} network has no torch twin")
    state = {}
    for index, cell in enumerate(network.cells):
        layer, direction = divmod(index, network.directions)
        for name in _TENSORS:
            state[f"{name}_l{layer}{'_reverse' if direction else ''}"] = getattr(cell, name).detach().clone()
    return state


def torch_twin_network(network: RecurrentNetwork) -> nn.Module:
    """nn.LSTM / nn.GRU / nn.RNN with copies of `network`'s parameters (same batch_first)."""
    extra = {"nonlinearity": network.nonlinearity} if network.cell == "elman" else {}
    twin = _TORCH_NETWORKS.get(network.cell, nn.RNN)(
        network.input_size, network.hidden_size, network.num_layers, batch_first=network.batch_first,
        dropout=network.dropout, bidirectional=network.bidirectional, **extra)
    twin.to(network.cells[0].weight_ih.dtype).load_state_dict(to_torch_network_state(network))
    return twin
