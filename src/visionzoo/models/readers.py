"""Cloze-style readers: a document, a query with @placeholder, and a score for every entity id
(notes 003, "Cloze Style Comprehension using LSTM", Fig. 1–2 and Table 3).

Every reader: forward(document (B, N), query (B, Q), candidates=None, segments=None) → logits (B, E)
over the E entity ids; indices PAD = 0 are padding (at the right of each row). With `candidates`, a
(B, E) boolean mask of the entities in each document, the other ids score −∞ (`mask_candidates`),
so that the answer is chosen among the candidates. `segments` (B, N) numbers each document token's
sentence (−1 at padding); only the single-pass reader needs it (None: one sentence). `attend` also
returns the attention weights, which sum to one over each document's (or sentence's) tokens.

Documents and queries are read by a "preprocessing" bidirectional LSTM (`BidirectionalEncoder`: two
of our RecurrentNetworks, fused, the backward one on each row reversed within its length so that
padding never enters a state); h_j = [h→_j; h←_j].

- `attentive_reader`: Hermann et al., "Teaching Machines to Read and Comprehend", NeurIPS 2015,
  Sec. 3.2: y_d(t) = [h→_d(t); h←_d(t)], u = [h→_q(|q|); h←_q(1)], m(t) = tanh(W_ym y_d(t) + W_um u),
  s(t) ∝ exp(w_ms m(t)), r = y_d s, g = tanh(W_rg r + W_ug u), p(a | d, q) ∝ exp(W(a) g), here over
  the entity ids (Table 3's first row: 61.6 / 63.0 on CNN dev / test).
- `multipass_reader`, the notes' Multi-pass Reader (Fig. 1): for question word i and document word j,
  m_ij = tanh(W^q h_i^q + W^d h_j^d + W^a h_{i−1}^a), s_ij = exp(w^s m_ij); the answer LSTM reads
  (h̄_i^{q,d}, h_i^q) at step i and its final state gives the output (a linear layer over the
  entities). The notes print the total score as h̄_i^{q,d} = Σ_j s_ij, a scalar; Fig. 1's caption
  calls it "a document attention representation", the attention-weighted document,
  h̄_i^{q,d} = Σ_j α_ij h_j^d with α_ij = s_ij / Σ_j' s_ij', which is what we compute (the weights of
  the other readers are normalised in the same way). The answer LSTM thus re-reads the document once
  per question word. Table 3: 67.5 / 70.0 on CNN.
- `singlepass_reader`, the notes' Single-pass Reader (Fig. 2): the document's sentences m = 1 … M
  (h_{m,n}^d from the document's preprocessing LSTM, read across sentences), and for each sentence an
  answer LSTM over the question words as the multi-pass reader's, with m_ij and s_ij over the tokens j
  of that sentence only and inputs (h̄_i^{q,d_m}, h_i^q); the final states of the M answer LSTMs, in
  document order, are the inputs of a top-layer LSTM that keeps the sentences that match the question
  and forgets the rest (the notes' Fig. 4 plots its input gates); its last state gives the output.
  All M answer LSTMs share weights and run in parallel. Table 3: 73.3 / 74.3 on CNN. (Fig. 2's caption
  names instead h̄_{m,i}^q, "the weighted sum of question hidden states", attention the other way
  round; we follow the bullets' equations, the same form as the multi-pass reader's.)

Padded question steps leave the answer LSTM's state as it was; padded sentences come after a row's
real ones and the top-layer LSTM's state is read at the last real sentence. A card measures a short
passage, CARD_DOCUMENT_TOKENS tokens in CARD_SENTENCES sentences and a CARD_QUERY_TOKENS-token query (on
the meta device the flop counter runs torch's LSTM step by step: a CNN-sized document took half a
minute a card). The encoders' MACs grow linearly with the document, the attention's with document ×
query, so a CNN document (762 tokens, 33.4 sentences on average; Table 2) costs about 24 times as much.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..layers.recurrent import LSTMCell, RecurrentNetwork
from ..registry import register_model

PAD = 0
CARD_DOCUMENT_TOKENS, CARD_SENTENCES, CARD_QUERY_TOKENS = 32, 2, 8
_HERMANN = "Teaching Machines to Read and Comprehend (Hermann et al.)"
# The notes do not name the paper of these two readers; its Table 3 cites work of 2017 (GA, BiDAF, ReasoNet), the
# year the registry records.
_NOTES = "notes 003: Cloze Style Comprehension using LSTM (Multi-pass and Single-pass Readers, Table 3)"


def mask_candidates(logits: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
    """Non-candidate entity ids set to −∞: the answer is chosen among the (B, E) True entries."""
    if candidates is None:
        return logits
    if candidates.shape != logits.shape:
        raise UsageError(f"candidates of shape {tuple(candidates.shape)} for logits {tuple(logits.shape)}: "
                         "give one row of E entity flags per example")
    return logits.masked_fill(~candidates, float("-inf"))


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax over the last dimension's True positions; a row with none gives zeros (not NaN)."""
    some = mask.any(-1, keepdim=True)
    scores = scores.masked_fill(~mask, float("-inf")).masked_fill(~some, 0.0)
    return F.softmax(scores, -1) * some


def _reversal_index(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) positions that reverse each row's first `length` entries and keep the rest."""
    positions = torch.arange(width, device=lengths.device)[None, :]
    return torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)


class BidirectionalEncoder(nn.Module):
    """forward(x (B, T, F), lengths (B,)) → (outputs (B, T, 2H) [h→_t; h←_t], zero at padding;
    summary (B, 2H) = [h→ at the last token; h← at the first]), padding never read."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.ahead = RecurrentNetwork("lstm", input_size, hidden_size)
        self.behind = RecurrentNetwork("lstm", input_size, hidden_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        index = _reversal_index(lengths, x.shape[1])[..., None]
        ahead, _ = self.ahead(x)
        behind, _ = self.behind(x.gather(1, index.expand_as(x)))
        behind = behind.gather(1, index.expand_as(behind))
        valid = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None])[..., None]
        outputs = torch.cat([ahead, behind], -1) * valid
        last = ahead.gather(1, (lengths - 1).clamp(min=0)[:, None, None].expand(-1, 1, ahead.shape[-1]))[:, 0]
        return outputs, torch.cat([last, behind[:, 0]], -1)


class _CardView(nn.Module):
    """What a registry card measures: a document of `input_size`'s CARD_DOCUMENT_TOKENS tokens in
    CARD_SENTENCES sentences and a query of CARD_QUERY_TOKENS (module docstring)."""

    def __init__(self, reader: nn.Module):
        super().__init__()
        self.reader = reader

    def example_input(self, input_size) -> torch.Tensor:
        return torch.ones((1, input_size[-1]), dtype=torch.long, device=self.reader.embedding.weight.device)

    def forward(self, document: torch.Tensor) -> torch.Tensor:
        # the sentences' layout is built on the CPU: the card runs on the meta device, which has no values
        segments = torch.arange(document.shape[1])[None, :] * CARD_SENTENCES // document.shape[1]
        logits, _ = self.reader.attend(document, document[:, :CARD_QUERY_TOKENS], segments.to(document.device),
                                       layout=sentence_layout(segments).to(document.device))
        return logits


class ClozeReader(nn.Module):
    """The readers' common parts: embeddings, the bidirectional preprocessing LSTMs of the document and
    the query, the output layer over the entity ids and the candidate mask (module docstring)."""

    def __init__(self, num_classes: int, vocab_size: int, embedding: int, hidden_size: int, dropout: float):
        super().__init__()
        if min(num_classes, vocab_size, embedding, hidden_size) < 1:
            raise UsageError(f"num_classes={num_classes}, vocab_size={vocab_size}, embedding={embedding}, "
                             f"hidden_size={hidden_size}: all must be positive")
        self.num_classes, self.vocab_size = num_classes, vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding, padding_idx=PAD)
        self.document_encoder = BidirectionalEncoder(embedding, hidden_size)
        self.query_encoder = BidirectionalEncoder(embedding, hidden_size)
        self.dropout = nn.Dropout(dropout)

    @property
    def card_module(self) -> nn.Module:
        return _CardView(self)

    def read(self, document: torch.Tensor, query: torch.Tensor):
        """(document states (B, N, 2H), query states (B, Q, 2H), query summary u (B, 2H), document lengths,
        query lengths)."""
        if document.dim() != 2 or query.dim() != 2 or len(document) != len(query):
            raise UsageError(f"a reader takes document (B, N) and query (B, Q) token indices; got "
                             f"{tuple(document.shape)} and {tuple(query.shape)}")
        document_lengths = (document != PAD).sum(1)
        query_lengths = (query != PAD).sum(1)
        if not document.is_meta and ((document_lengths == 0).any() or (query_lengths == 0).any()):
            raise UsageError("a document or query has no tokens; every example needs at least one")
        h_d, _ = self.document_encoder(self.dropout(self.embedding(document)), document_lengths)
        h_q, u = self.query_encoder(self.dropout(self.embedding(query)), query_lengths)
        return h_d, h_q, u, document_lengths, query_lengths

    def forward(self, document: torch.Tensor, query: torch.Tensor, candidates: torch.Tensor | None = None,
                segments: torch.Tensor | None = None) -> torch.Tensor:
        logits, _ = self.attend(document, query, segments)
        return mask_candidates(logits, candidates)

    def attend(self, document, query, segments=None, *, layout=None):
        """(logits (B, E), attention weights); `layout`: `sentence_layout(segments)` if computed already."""
        raise NotImplementedError


class AttentiveReader(ClozeReader):
    """Hermann et al.'s Attentive Reader (module docstring)."""

    def __init__(self, num_classes: int, vocab_size: int, embedding: int = 64, hidden_size: int = 64,
                 attention_size: int = 64, output_size: int = 64, dropout: float = 0.0):
        super().__init__(num_classes, vocab_size, embedding, hidden_size, dropout)
        self.W_ym = nn.Linear(2 * hidden_size, attention_size, bias=False)
        self.W_um = nn.Linear(2 * hidden_size, attention_size)
        self.w_ms = nn.Linear(attention_size, 1, bias=False)
        self.W_rg = nn.Linear(2 * hidden_size, output_size, bias=False)
        self.W_ug = nn.Linear(2 * hidden_size, output_size)
        self.output = nn.Linear(output_size, num_classes)

    def attend(self, document, query, segments=None, *, layout=None):
        """(logits (B, E), attention s (B, N) over the document's tokens)."""
        y_d, _, u, lengths, _ = self.read(document, query)
        m = torch.tanh(self.W_ym(y_d) + self.W_um(u)[:, None])
        valid = torch.arange(document.shape[1], device=document.device)[None, :] < lengths[:, None]
        s = masked_softmax(self.w_ms(m).squeeze(-1), valid)
        r = torch.einsum("bn,bnh->bh", s, y_d)
        g = torch.tanh(self.W_rg(r) + self.W_ug(u))
        return self.output(self.dropout(g)), s


class AnswerLSTM(nn.Module):
    """The notes' answer LSTM with its attention: for each question word i, m_ij = tanh(W^q h_i^q +
    W^d h_j^d + W^a h_{i−1}^a), s_ij = exp(w^s m_ij), h̄_i = Σ_j α_ij h_j^d (α = s normalised over j),
    then h_i^a = LSTM([h̄_i; h_i^q], h_{i−1}^a). forward(h_d (B, N, D), valid (B, N), h_q (B, Q, D),
    query_lengths (B,)) → (final h^a (B, A), α (B, Q, N))."""

    def __init__(self, state_size: int, attention_size: int, answer_size: int):
        super().__init__()
        self.W_q = nn.Linear(state_size, attention_size, bias=False)
        self.W_d = nn.Linear(state_size, attention_size, bias=False)
        self.W_a = nn.Linear(answer_size, attention_size)
        self.w_s = nn.Linear(attention_size, 1, bias=False)
        self.cell = LSTMCell(2 * state_size, answer_size)

    def forward(self, h_d, valid, h_q, query_lengths):
        document_terms, question_terms = self.W_d(h_d), self.W_q(h_q)   # computed once for every step
        width = h_d.shape[-1]
        # the input is [h̄_i; h_i^q]: the h_i^q half of W_ih x + b_ih is computed for every step at once
        projected = F.linear(h_q, self.cell.weight_ih[:, width:], self.cell.bias_ih)
        state = self.cell.initial_state(len(h_d), h_d)
        weights = []
        for i in range(h_q.shape[1]):
            m = torch.tanh(question_terms[:, i, None] + document_terms + self.W_a(state[0])[:, None])
            alpha = masked_softmax(self.w_s(m).squeeze(-1), valid)
            h_bar = torch.einsum("bn,bnd->bd", alpha, h_d)
            step_input = projected[:, i] + F.linear(h_bar, self.cell.weight_ih[:, :width])
            _, new_state = self.cell.step(step_input, state)
            running = (i < query_lengths)[:, None]                      # padded question steps keep the state
            state = tuple(torch.where(running, new, old) for new, old in zip(new_state, state))
            weights.append(alpha)
        return state[0], torch.stack(weights, 1)


class MultiPassReader(ClozeReader):
    """The notes' Multi-pass Reader (module docstring)."""

    def __init__(self, num_classes: int, vocab_size: int, embedding: int = 64, hidden_size: int = 64,
                 attention_size: int = 64, answer_size: int = 64, dropout: float = 0.0):
        super().__init__(num_classes, vocab_size, embedding, hidden_size, dropout)
        self.answer = AnswerLSTM(2 * hidden_size, attention_size, answer_size)
        self.output = nn.Linear(answer_size, num_classes)

    def attend(self, document, query, segments=None, *, layout=None):
        """(logits (B, E), α (B, Q, N): each question word's attention over the document's tokens)."""
        h_d, h_q, _, lengths, query_lengths = self.read(document, query)
        valid = torch.arange(document.shape[1], device=document.device)[None, :] < lengths[:, None]
        final, alpha = self.answer(h_d, valid, h_q, query_lengths)
        return self.output(self.dropout(final)), alpha


def sentence_layout(segments: torch.Tensor) -> torch.Tensor:
    """(B, M, L) document positions of each sentence's tokens, −1 where a sentence is shorter than L
    (M sentences, L the longest), from (B, N) sentence numbers (−1 at padding)."""
    valid = segments >= 0
    sentences = int(segments.max()) + 1
    members = F.one_hot(segments.clamp(min=0), sentences) * valid[..., None]            # (B, N, M)
    place = (members.cumsum(1) - 1).gather(2, segments.clamp(min=0)[..., None])[..., 0]  # rank within its sentence
    width = int(members.sum(1).max())
    layout = segments.new_full((len(segments), sentences, width), -1)
    rows, positions = valid.nonzero(as_tuple=True)
    layout[rows, segments[rows, positions], place[rows, positions]] = positions
    return layout


class SinglePassReader(ClozeReader):
    """The notes' Single-pass Reader (module docstring)."""

    def __init__(self, num_classes: int, vocab_size: int, embedding: int = 64, hidden_size: int = 64,
                 attention_size: int = 64, answer_size: int = 64, top_size: int = 64, dropout: float = 0.0):
        super().__init__(num_classes, vocab_size, embedding, hidden_size, dropout)
        self.answer = AnswerLSTM(2 * hidden_size, attention_size, answer_size)
        self.top = RecurrentNetwork("lstm", answer_size, top_size)
        self.output = nn.Linear(top_size, num_classes)

    def attend(self, document, query, segments=None, *, layout=None):
        """(logits (B, E), α (B, M, Q, L): each question word's attention over sentence m's tokens, in the
        positions of `sentence_layout(segments)`)."""
        h_d, h_q, _, lengths, query_lengths = self.read(document, query)
        positions = torch.arange(document.shape[1], device=document.device)[None, :]
        if segments is None:
            segments = torch.zeros_like(document)
        if segments.shape != document.shape:
            raise UsageError(f"segments of shape {tuple(segments.shape)} for a document of {tuple(document.shape)}: "
                             "give every token's sentence number")
        if layout is None:
            layout = sentence_layout(segments.masked_fill(positions >= lengths[:, None], -1))   # (B, M, L)
        batch, sentences, width = layout.shape
        gathered = h_d.gather(1, layout.clamp(min=0).flatten(1)[..., None].expand(-1, -1, h_d.shape[-1]))
        h_sentences = gathered.view(batch * sentences, width, -1)
        valid = (layout >= 0).view(batch * sentences, width)
        final, alpha = self.answer(h_sentences, valid, h_q.repeat_interleave(sentences, 0),
                                   query_lengths.repeat_interleave(sentences))
        top, _ = self.top(final.view(batch, sentences, -1))
        counts = (layout >= 0).any(-1).sum(1)                              # real sentences of each row
        last = top.gather(1, (counts - 1).clamp(min=0)[:, None, None].expand(-1, 1, top.shape[-1]))[:, 0]
        return self.output(self.dropout(last)), alpha.view(batch, sentences, *alpha.shape[1:])


_CARD = dict(input_size=(1, CARD_DOCUMENT_TOKENS), num_classes=405, task="cloze")   # Table 2: CNN's 405 classes
_CNN_VOCABULARY = 118_497                                                           # Table 2


@register_model("attentive_reader", family="cloze_reader", paper=_HERMANN, year=2015, **_CARD)
def attentive_reader(num_classes: int = 405, in_chans: int = 1, vocab_size: int = _CNN_VOCABULARY,
                     embedding: int = 64, hidden_size: int = 64, attention_size: int = 64, output_size: int = 64,
                     dropout: float = 0.0) -> AttentiveReader:
    """Hermann et al.'s Attentive Reader at a CPU size (64 units throughout)."""
    return AttentiveReader(num_classes, vocab_size, embedding, hidden_size, attention_size, output_size, dropout)


@register_model("multipass_reader", family="cloze_reader", paper=_NOTES, year=2017, **_CARD)
def multipass_reader(num_classes: int = 405, in_chans: int = 1, vocab_size: int = _CNN_VOCABULARY,
                     embedding: int = 64, hidden_size: int = 64, attention_size: int = 64, answer_size: int = 64,
                     dropout: float = 0.0) -> MultiPassReader:
    """The notes' Multi-pass Reader (Fig. 1) at a CPU size."""
    return MultiPassReader(num_classes, vocab_size, embedding, hidden_size, attention_size, answer_size, dropout)


@register_model("singlepass_reader", family="cloze_reader", paper=_NOTES, year=2017, **_CARD)
def singlepass_reader(num_classes: int = 405, in_chans: int = 1, vocab_size: int = _CNN_VOCABULARY,
                      embedding: int = 64, hidden_size: int = 64, attention_size: int = 64, answer_size: int = 64,
                      top_size: int = 64, dropout: float = 0.0) -> SinglePassReader:
    """The notes' Single-pass Reader (Fig. 2) at a CPU size."""
    return SinglePassReader(num_classes, vocab_size, embedding, hidden_size, attention_size, answer_size, top_size,
                            dropout)
