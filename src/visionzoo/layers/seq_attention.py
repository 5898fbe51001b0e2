"""Attention over sequences, for translation and language models.

- Scaled dot-product attention (Vaswani et al., "Attention Is All You Need", NeurIPS 2017, Sec. 3.2.1,
  Eq. 1): Attention(Q, K, V) = softmax(QKᵀ / √d_k) V, with a boolean mask (True: may attend; a padded
  key or, in a decoder, a later position is masked). The softmax is *safe*: a row whose keys are all
  masked gives zero weights and a zero output, not NaN (torch.nn.Transformer's MultiheadAttention
  returns NaN there); masked scores are filled with the dtype's lowest value, the softmax taken, and
  the row multiplied by its mask, so a partly masked row is exactly the ordinary masked softmax.
- Multi-head attention (Sec. 3.2.2): MultiHead(Q, K, V) = Concat(head_1 … head_h) W^O,
  head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V), d_k = d_v = d_model / h; the h heads' W_i^Q are the
  rows of one d_model × d_model projection `q_proj` (likewise `k_proj`, `v_proj`; W^O is `out_proj`).
  Incremental decoding keeps a key/value cache: self-attention appends the new position's keys and
  values to those of the positions before it, cross-attention projects the encoder's output once.
  Without weights requested the product runs in torch's fused `scaled_dot_product_attention`; with
  them (alignment pictures) in the explicit form; both give the same output (tested).
- Sinusoidal positional encoding (Sec. 3.5): PE(pos, 2i) = sin(pos / 10000^{2i/d_model}),
  PE(pos, 2i+1) = cos(pos / 10000^{2i/d_model}).
- Additive attention (Bahdanau, Cho, Bengio, "Neural Machine Translation by Jointly Learning to Align
  and Translate", ICLR 2015, Sec. 3.1 and App. A.1.2): the alignment model
  a(s_{i−1}, h_j) = v_aᵀ tanh(W_a s_{i−1} + U_a h_j), α_ij = softmax_j a(s_{i−1}, h_j) (padding masked),
  context c_i = Σ_j α_ij h_j. U_a h_j does not depend on i and is computed once per sentence.

The ViT's blocks (layers/transformer.py) keep their own unmasked fused self-attention: their
parameter names are timm's, which its checkpoints need.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError


def safe_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax over the last dimension of `scores` where `mask` (broadcastable, True: kept) allows;
    a fully masked row gives zeros."""
    if mask is None:
        return torch.softmax(scores, -1)
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, -1) * mask


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                                 dropout: float = 0.0, training: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax(QKᵀ/√d_k) V, the weights) for (…, T_q, d_k) queries and (…, T_k, d_k) keys; Eq. 1."""
    weights = safe_softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), mask)
    return F.dropout(weights, dropout, training) @ v, weights


def causal_mask(length: int, device=None, offset: int = 0) -> torch.Tensor:
    """(length, offset + length) booleans: query i (at position offset + i) may attend to keys 0 … offset + i."""
    keys = torch.arange(offset + length, device=device)
    return keys[None, :] <= (torch.arange(length, device=device) + offset)[:, None]


def padding_mask(tokens: torch.Tensor, pad: int) -> torch.Tensor:
    """(B, 1, 1, T) booleans, True where `tokens` (B, T) is not padding: broadcasts over heads and queries."""
    return (tokens != pad)[:, None, None, :]


class MultiHeadAttention(nn.Module):
    """forward(query (B, T_q, d), key_value (B, T_k, d), mask, cache, need_weights) →
    (output (B, T_q, d), weights (B, h, T_q, T_k) or None).

    `cache`: a dict kept by the caller across decoding steps. For self-attention (`static=False`)
    it holds the keys and values of the positions decoded so far and the new ones are appended; for
    cross-attention (`static=True`) the first call projects `key_value` into it and later calls
    reuse it.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % num_heads:
            raise UsageError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.d_model, self.num_heads, self.head_dim, self.dropout = d_model, num_heads, d_model // num_heads, dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                cache: dict | None = None, static: bool = False, need_weights: bool = False):
        key_value = query if key_value is None else key_value
        q = self._heads(self.q_proj(query))
        if cache is not None and static and "k" in cache:
            k, v = cache["k"], cache["v"]
        else:
            k, v = self._heads(self.k_proj(key_value)), self._heads(self.v_proj(key_value))
            if cache is not None and not static and "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            if cache is not None:
                cache["k"], cache["v"] = k, v
        dropout = self.dropout if self.training else 0.0
        if need_weights:
            heads, weights = scaled_dot_product_attention(q, k, v, mask, dropout, self.training)
        else:
            heads, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout), None
            if mask is not None:   # whatever the fused kernel does with a fully masked row, it gives zeros
                heads = heads.masked_fill(~mask.any(-1, keepdim=True), 0.0)
        batch, _, length, _ = heads.shape
        return self.out_proj(heads.transpose(1, 2).reshape(batch, length, self.d_model)), weights


def sinusoidal_encoding(length: int, d_model: int, offset: int = 0, device=None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(length, d_model) table of PE(pos, ·) for pos = offset … offset + length − 1 (Sec. 3.5)."""
    position = torch.arange(offset, offset + length, device=device, dtype=torch.float64)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, device=device, dtype=torch.float64)
                          * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model, device=device, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[:d_model // 2])
    return table.to(dtype)


class AdditiveAttention(nn.Module):
    """Bahdanau's alignment model: forward(s (B, n), keys (B, T, m) precomputed by `project_keys`,
    annotations h (B, T, 2n'), mask (B, T)) → (c_i (B, 2n'), α_i (B, T))."""

    def __init__(self, query_size: int, annotation_size: int, attention_size: int):
        super().__init__()
        self.W_a = nn.Linear(query_size, attention_size, bias=False)
        self.U_a = nn.Linear(annotation_size, attention_size)
        self.v_a = nn.Linear(attention_size, 1, bias=False)

    def project_keys(self, annotations: torch.Tensor) -> torch.Tensor:
        """U_a h_j for every j, once per sentence."""
        return self.U_a(annotations)

    def forward(self, state: torch.Tensor, keys: torch.Tensor, annotations: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        energies = self.v_a(torch.tanh(self.W_a(state)[:, None, :] + keys)).squeeze(-1)   # a(s_{i−1}, h_j)
        alignment = safe_softmax(energies, mask)
        return (alignment[:, :, None] * annotations).sum(1), alignment
