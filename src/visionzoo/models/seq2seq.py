"""Recurrent translation models (notes 003, "Neural Machine Translation using LSTM / RNN").

- `seq2seq_lstm`: Sutskever, Vinyals, Le, "Sequence to Sequence Learning with Neural Networks",
  NeurIPS 2014, Sec. 2–3.4: a deep LSTM reads the source into a fixed vector — its final (h, c) of
  every layer — from which a second deep LSTM, started in that state, generates the translation,
  p(y_1 … y_T' | x) = Π_t p(y_t | v, y_1 … y_{t−1}) (Eq. 1), one softmax over the target vocabulary
  per step. ``reverse_source=True`` feeds the source backwards ("c, b, a" to produce "α, β, γ"), which
  the paper found to help (25.9 → 30.6 BLEU; Sec. 3.3): the first source words end up next to the
  first target words. The paper's network: 4 layers of 1000 cells, 1000-dimensional embeddings,
  160 000 source and 80 000 target words, 384 M parameters (Sec. 3.4).
- `rnnsearch`: Bahdanau, Cho, Bengio, "Neural Machine Translation by Jointly Learning to Align and
  Translate", ICLR 2015, Sec. 3 and App. A: a bidirectional GRU encoder gives annotations
  h_j = [h→_j; h←_j]; at step i the additive alignment model (layers/seq_attention.py) scores
  a(s_{i−1}, h_j), α_ij = softmax_j, context c_i = Σ_j α_ij h_j; the decoder GRU updates
  s_i = f(s_{i−1}, y_{i−1}, c_i) (its input is [E y_{i−1}; c_i]), started at s_0 = tanh(W_s h←_1);
  the output p(y_i | y_{<i}, x) = g(y_{i−1}, s_i, c_i) (Eq. 4, the notes' form) is a maxout layer
  t_i = max-pool₂(U_o s_i + V_o E y_{i−1} + C_o c_i) followed by softmax(W_o t_i) (App. A.2.2, whose
  readout reads s_{i−1} instead; Eq. 4 and the notes write s_i). The paper's sizes: 1000 hidden
  units, 620-dimensional embeddings, a 500-unit maxout layer, 1000-unit alignment model, 30 000 words.

The encoders run our RecurrentNetwork (layers/recurrent.py), fused. Padding sits at the right of each
sentence; a recurrent network reading it would carry the pads into the final state (and, backwards,
into every annotation), so the encoder reads each group of equally long sentences of the batch
separately (a length-sorted batch holds few lengths) and scatters the results back.

Decoding interface as models/transformer_nmt.py: `encode`, `decode_step`, `alignments`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..layers.recurrent import GRUCell, RecurrentNetwork
from ..layers.seq_attention import AdditiveAttention
from ..registry import register_model

PAD = 0
_SUTSKEVER = "Sequence to Sequence Learning with Neural Networks (Sutskever et al.)"
_BAHDANAU = "Neural Machine Translation by Jointly Learning to Align and Translate (Bahdanau et al.)"


def reverse_tokens(src: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """Each sentence's tokens in reverse order, its padding left at the right."""
    lengths = (src != pad).sum(1, keepdim=True)
    positions = torch.arange(src.shape[1], device=src.device)[None, :]
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)
    return src.gather(1, index)


def encode_by_length(network: RecurrentNetwork, embedded: torch.Tensor, lengths: torch.Tensor):
    """Run `network` over each group of equally long sentences without their padding: (outputs
    (B, S, H·D), zero at padded positions; final state as torch's, (layers·D, B, H) or a pair of them).
    Tensors without values (the meta device of the cost counters) are read whole, as unpadded."""
    if embedded.is_meta:
        return network(embedded)
    pieces, order, states = [], [], []
    width = embedded.shape[1]
    for length in torch.unique(lengths).tolist():
        members = (lengths == length).nonzero().squeeze(1)
        outputs, state = network(embedded[members, :length])
        pieces.append(F.pad(outputs, (0, 0, 0, width - length)))
        states.append(state)
        order.append(members)
    inverse = torch.empty_like(lengths)
    inverse[torch.cat(order)] = torch.arange(len(lengths), device=lengths.device)
    outputs = torch.cat(pieces).index_select(0, inverse)
    if isinstance(states[0], tuple):
        state = tuple(torch.cat(parts, 1).index_select(1, inverse) for parts in zip(*states))
    else:
        state = torch.cat(states, 1).index_select(1, inverse)
    return outputs, state


def _check_source(src: torch.Tensor, pad: int) -> torch.Tensor:
    lengths = (src != pad).sum(1)
    if not src.is_meta and (lengths == 0).any():
        raise UsageError("a source sentence has no tokens; every sentence needs at least one")
    return lengths


class Seq2SeqLSTM(nn.Module):
    """Sutskever's encoder–decoder: forward(src (B, S), tgt_in (B, T)) → logits (B, T, V)."""

    def __init__(self, num_classes: int, source_vocab: int | None = None, embedding: int = 256,
                 hidden_size: int = 512, num_layers: int = 2, dropout: float = 0.2, reverse_source: bool = True,
                 pad: int = PAD):
        super().__init__()
        self.pad, self.reverse_source, self.vocab_size = pad, reverse_source, num_classes
        self.src_embed = nn.Embedding(source_vocab or num_classes, embedding, padding_idx=pad)
        self.tgt_embed = nn.Embedding(num_classes, embedding, padding_idx=pad)
        self.encoder = RecurrentNetwork("lstm", embedding, hidden_size, num_layers, dropout=dropout)
        self.decoder = RecurrentNetwork("lstm", embedding, hidden_size, num_layers, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.generator = nn.Linear(hidden_size, num_classes)

    def example_input(self, input_size) -> torch.Tensor:
        return torch.full((1, input_size[-1]), self.pad + 1, dtype=torch.long, device=self.generator.weight.device)

    def encode(self, src: torch.Tensor) -> dict:
        lengths = _check_source(src, self.pad)
        if self.reverse_source:
            src = reverse_tokens(src, self.pad)
        _, (h, c) = encode_by_length(self.encoder, self.dropout(self.src_embed(src)), lengths)
        return {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}     # batch first, for beam reordering

    def _run(self, state: dict, tgt: torch.Tensor):
        carried = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())
        outputs, (h, c) = self.decoder(self.dropout(self.tgt_embed(tgt)), carried)
        return self.generator(self.dropout(outputs)), {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}

    def decode(self, memory: dict, tgt_in: torch.Tensor) -> torch.Tensor:
        return self._run(memory, tgt_in)[0]

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(src), src if tgt_in is None else tgt_in)

    def decode_step(self, memory: dict, tokens: torch.Tensor, cache: dict | None):
        logits, cache = self._run(cache if cache is not None else memory, tokens[:, -1:])
        return logits[:, -1], cache


class RNNsearch(nn.Module):
    """Bahdanau's attention model: forward(src (B, S), tgt_in (B, T)) → logits (B, T, V)."""

    def __init__(self, num_classes: int, source_vocab: int | None = None, embedding: int = 256,
                 hidden_size: int = 256, attention_size: int = 256, maxout_size: int = 256, dropout: float = 0.2,
                 pad: int = PAD):
        super().__init__()
        self.pad, self.hidden_size, self.vocab_size = pad, hidden_size, num_classes
        self.src_embed = nn.Embedding(source_vocab or num_classes, embedding, padding_idx=pad)
        self.tgt_embed = nn.Embedding(num_classes, embedding, padding_idx=pad)
        self.encoder = RecurrentNetwork("gru", embedding, hidden_size, 1, bidirectional=True)
        self.init_state = nn.Linear(hidden_size, hidden_size)                     # W_s
        self.attention = AdditiveAttention(hidden_size, 2 * hidden_size, attention_size)
        self.cell = GRUCell(embedding + 2 * hidden_size, hidden_size)
        self.U_o = nn.Linear(hidden_size, 2 * maxout_size)
        self.V_o = nn.Linear(embedding, 2 * maxout_size, bias=False)
        self.C_o = nn.Linear(2 * hidden_size, 2 * maxout_size, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.generator = nn.Linear(maxout_size, num_classes)                      # W_o

    def example_input(self, input_size) -> torch.Tensor:
        return torch.full((1, input_size[-1]), self.pad + 1, dtype=torch.long, device=self.generator.weight.device)

    def encode(self, src: torch.Tensor) -> dict:
        lengths = _check_source(src, self.pad)
        annotations, _ = encode_by_length(self.encoder, self.dropout(self.src_embed(src)), lengths)
        s0 = torch.tanh(self.init_state(annotations[:, 0, self.hidden_size:]))   # h←_1: backward, first word
        return {"annotations": annotations, "keys": self.attention.project_keys(annotations),
                "mask": src != self.pad, "s": s0}

    def _step(self, memory: dict, embedded: torch.Tensor, s: torch.Tensor):
        """One target position: (maxout output t_i, s_i, α_i)."""
        context, alignment = self.attention(s, memory["keys"], memory["annotations"], memory["mask"])
        s, _ = self.cell(torch.cat([embedded, context], -1), s)
        pre = self.U_o(s) + self.V_o(embedded) + self.C_o(context)
        return pre.view(*pre.shape[:-1], -1, 2).amax(-1), s, alignment

    def _decode(self, memory: dict, tgt_in: torch.Tensor):
        embedded = self.dropout(self.tgt_embed(tgt_in))
        s, outputs, alignments = memory["s"], [], []
        for i in range(tgt_in.shape[1]):
            t, s, alignment = self._step(memory, embedded[:, i], s)
            outputs.append(t)
            alignments.append(alignment)
        return self.generator(self.dropout(torch.stack(outputs, 1))), torch.stack(alignments, 1)

    def decode(self, memory: dict, tgt_in: torch.Tensor) -> torch.Tensor:
        return self._decode(memory, tgt_in)[0]

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(src), src if tgt_in is None else tgt_in)

    def decode_step(self, memory: dict, tokens: torch.Tensor, cache: dict | None):
        s = memory["s"] if cache is None else cache["s"]
        t, s, _ = self._step(memory, self.tgt_embed(tokens[:, -1]), s)
        return self.generator(t), {"s": s}

    @torch.no_grad()
    def alignments(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """α_ij (B, T, S): the weight of source position j for target position i (the paper's Fig. 3)."""
        return self._decode(self.encode(src), tgt_in)[1]


def _check_chans(in_chans: int) -> None:
    if in_chans != 1:
        raise UsageError(f"in_chans={in_chans}: a translation model reads one token sequence (in_chans=1)")


@register_model("seq2seq_lstm_paper", family="seq2seq", paper=_SUTSKEVER, year=2014, input_size=(1, 32),
                num_classes=80000, paper_params="384M", task="translation", source_vocab=160000, embedding=1000,
                hidden_size=1000, num_layers=4, dropout=0.0)
@register_model("seq2seq_lstm", family="seq2seq", paper=_SUTSKEVER, year=2014, input_size=(1, 32),
                num_classes=8000, task="translation")
def seq2seq_lstm(num_classes: int = 8000, in_chans: int = 1, source_vocab: int | None = None, embedding: int = 256,
                 hidden_size: int = 512, num_layers: int = 2, dropout: float = 0.2,
                 reverse_source: bool = True) -> Seq2SeqLSTM:
    """Sutskever's deep LSTM encoder–decoder; CPU size by default (2 × 512), `seq2seq_lstm_paper` the paper's."""
    _check_chans(in_chans)
    return Seq2SeqLSTM(num_classes, source_vocab, embedding, hidden_size, num_layers, dropout, reverse_source)


@register_model("rnnsearch_paper", family="seq2seq", paper=_BAHDANAU, year=2015, input_size=(1, 32),
                num_classes=30000, task="translation", embedding=620, hidden_size=1000, attention_size=1000,
                maxout_size=500, dropout=0.0)
@register_model("rnnsearch", family="seq2seq", paper=_BAHDANAU, year=2015, input_size=(1, 32),
                num_classes=8000, task="translation")
def rnnsearch(num_classes: int = 8000, in_chans: int = 1, source_vocab: int | None = None, embedding: int = 256,
              hidden_size: int = 256, attention_size: int = 256, maxout_size: int = 256,
              dropout: float = 0.2) -> RNNsearch:
    """Bahdanau's RNNsearch; CPU size by default, `rnnsearch_paper` the paper's (RNNsearch-50 sizes)."""
    _check_chans(in_chans)
    return RNNsearch(num_classes, source_vocab, embedding, hidden_size, attention_size, maxout_size, dropout)
