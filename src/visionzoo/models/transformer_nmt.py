"""The Transformer: Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (notes 003, "Transformers"),
Sec. 3 and Fig. 1, Table 3 (base model: N = 6, d_model = 512, d_ff = 2048, h = 8, P_drop = 0.1,
ε_ls = 0.1, 65 M parameters); and a decoder-only language model built from the same blocks.

Encoder layer: x + Sublayer(x) followed by LayerNorm (Sec. 3.1, "post-LN"), the sublayers being
multi-head self-attention and the position-wise feed-forward network FFN(x) = max(0, xW₁ + b₁)W₂ + b₂
(Eq. 2); decoder layer: masked self-attention (a position attends to those before it), attention
over the encoder's output, then the FFN. Dropout on every sublayer's output before the residual sum
and on the sum of embeddings and positional encodings (Sec. 5.4). Embeddings are multiplied by
√d_model and the source embedding, target embedding and pre-softmax projection share one matrix
(Sec. 3.4) when the vocabulary is joint. ``norm_first=True`` puts the LayerNorm before each sublayer
instead (Xiong et al., "On Layer Normalization in the Transformer Architecture", ICML 2020), which
trains without warm-up trouble at small scale. As in torch.nn.Transformer, a LayerNorm closes each
stack (needed by the pre-LN form; with post-LN one more normalisation), so that the network equals
nn.Transformer with the weights copied by `from_torch_transformer` (tested).

Incremental decoding (greedy and beam search, models/decoding.py) keeps per layer a key/value cache
of the decoder's self-attention and the projected encoder output (layers/seq_attention.py); a step
then costs one position instead of the whole prefix, and gives the same logits (tested).

Parameters of `transformer_base`: with a joint vocabulary of 37 000 (the paper's shared BPE vocabulary
for English–German) the architecture above counts 63.1 M (44.1 M in the layers, 18.9 M in the shared
embedding); the paper's 65 M is not derived anywhere in it — the card records the difference.

`transformer_lm`: the decoder without cross-attention (a GPT-style causal stack) reading a token
stream for the language task (tasks/language.py): forward(tokens (B, T), state) → (logits, state),
the state being the last `context` tokens already read, so that consecutive windows see what came
before (as a recurrent network's carried state does) and sampling can continue a text.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..layers.seq_attention import MultiHeadAttention, causal_mask, padding_mask, sinusoidal_encoding
from ..registry import register_model

_PAPER = "Attention Is All You Need (Vaswani et al.)"
PAD = 0
_BASE_VOCAB = 37000
_COUNT_NOTE = ("the paper prints 65M for the base model; its architecture (Sec. 3, Table 3) with the shared "
               "37 000-token vocabulary counts 63.1M")


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W₁ + b₁) W₂ + b₂ (Eq. 2)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class _Residual:
    """LayerNorm(x + Dropout(Sublayer(x))) or, pre-LN, x + Dropout(Sublayer(LayerNorm(x)))."""

    norm_first: bool

    def residual(self, x: torch.Tensor, norm: nn.LayerNorm, sublayer) -> torch.Tensor:
        if self.norm_first:
            return x + self.dropout(sublayer(norm(x)))
        return norm(x + self.dropout(sublayer(x)))


class EncoderLayer(nn.Module, _Residual):
    """Self-attention and FFN sublayers (Sec. 3.1); with ``causal=True`` a decoder-only block."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float, norm_first: bool, eps: float = 1e-5):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model, eps=eps), nn.LayerNorm(d_model, eps=eps)
        self.dropout, self.norm_first = nn.Dropout(dropout), norm_first

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.residual(x, self.norm1, lambda z: self.self_attn(z, mask=mask)[0])
        return self.residual(x, self.norm2, self.ff)


class DecoderLayer(nn.Module, _Residual):
    """Masked self-attention, encoder–decoder attention and FFN sublayers (Sec. 3.1)."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float, norm_first: bool, eps: float = 1e-5):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model, eps=eps) for _ in range(3))
        self.dropout, self.norm_first = nn.Dropout(dropout), norm_first
        self.last_alignment: torch.Tensor | None = None

    def forward(self, y: torch.Tensor, memory: torch.Tensor, self_mask, memory_mask, cache: dict | None = None,
                need_weights: bool = False) -> torch.Tensor:
        own = cache.setdefault("self", {}) if cache is not None else None
        cross = cache.setdefault("cross", {}) if cache is not None else None
        y = self.residual(y, self.norm1, lambda z: self.self_attn(z, mask=self_mask, cache=own)[0])

        def attend(z):
            out, self.last_alignment = self.cross_attn(z, memory, memory_mask, cache=cross, static=True,
                                                       need_weights=need_weights)
            return out
        y = self.residual(y, self.norm2, attend)
        return self.residual(y, self.norm3, self.ff)


class TokenEmbedding(nn.Module):
    """E x · √d_model + PE (Sec. 3.4–3.5), then dropout."""

    def __init__(self, vocab: int, d_model: int, dropout: float, pad: int | None = PAD):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model, padding_idx=pad)
        nn.init.normal_(self.embedding.weight, std=d_model ** -0.5)
        if pad is not None:
            with torch.no_grad():
                self.embedding.weight[pad].zero_()
        self.scale, self.dropout = math.sqrt(d_model), nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        x = self.embedding(tokens) * self.scale
        return self.dropout(x + sinusoidal_encoding(tokens.shape[1], x.shape[-1], offset, x.device, x.dtype))


class TransformerNMT(nn.Module):
    """forward(src (B, S), tgt_in (B, T)) → logits (B, T, V_tgt): teacher forcing, tgt_in = <bos> y₁ … y_{T−1}.

    Decoding interface (models/decoding.py): `encode(src)` → memory dict, `decode_step(memory, tokens,
    cache)` → (logits of the next token (B, V), cache), `alignments(src, tgt_in)` → the last decoder
    layer's encoder–decoder attention averaged over heads (B, T, S).
    """

    def __init__(self, num_classes: int, source_vocab: int | None = None, d_model: int = 512, num_heads: int = 8,
                 num_encoder_layers: int = 6, num_decoder_layers: int = 6, d_ff: int = 2048, dropout: float = 0.1,
                 norm_first: bool = False, share_embeddings: bool = True, pad: int = PAD):
        super().__init__()
        source_vocab = source_vocab or num_classes
        if share_embeddings and source_vocab != num_classes:
            raise UsageError(f"share_embeddings needs one joint vocabulary; source {source_vocab} ≠ target "
                             f"{num_classes} tokens (give share_embeddings=false)")
        self.pad, self.d_model, self.vocab_size = pad, d_model, num_classes
        # shared: one embedding module read by the encoder, the decoder and the pre-softmax projection
        self.src_embed = TokenEmbedding(source_vocab, d_model, dropout, pad)
        self.tgt_embed = None if share_embeddings else TokenEmbedding(num_classes, d_model, dropout, pad)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, num_heads, d_ff, dropout, norm_first)
                                     for _ in range(num_encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, num_heads, d_ff, dropout, norm_first)
                                     for _ in range(num_decoder_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.generator = None if share_embeddings else nn.Linear(d_model, num_classes)
        for layer in (*self.encoder, *self.decoder):
            for module in layer.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.zeros_(module.bias)

    def example_input(self, input_size) -> torch.Tensor:
        """A sentence of input_size[1] tokens (the cost counters translate it into one as long)."""
        return torch.full((1, input_size[-1]), PAD + 1, dtype=torch.long,
                          device=self.src_embed.embedding.weight.device)

    @property
    def target_embed(self) -> TokenEmbedding:
        return self.src_embed if self.tgt_embed is None else self.tgt_embed

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the target vocabulary: the shared embedding matrix, or the generator."""
        if self.generator is None:
            return F.linear(hidden, self.src_embed.embedding.weight)
        return self.generator(hidden)

    def encode(self, src: torch.Tensor) -> dict:
        return self.encode_embedded(self.src_embed(src), padding_mask(src, self.pad))

    def encode_embedded(self, x: torch.Tensor, mask: torch.Tensor) -> dict:
        """The encoder stack on embedded sources x (B, S, d_model), `mask` (B, 1, 1, S) True at real tokens."""
        for layer in self.encoder:
            x = layer(x, mask)
        return {"memory": self.encoder_norm(x), "mask": mask}

    def decode_hidden(self, memory: dict, y: torch.Tensor, need_weights: bool = False) -> torch.Tensor:
        """The decoder stack on embedded target inputs y (B, T, d_model): its normalised output."""
        self_mask = causal_mask(y.shape[1], y.device)
        for layer in self.decoder:
            y = layer(y, memory["memory"], self_mask, memory["mask"], need_weights=need_weights)
        return self.decoder_norm(y)

    def decode(self, memory: dict, tgt_in: torch.Tensor, need_weights: bool = False) -> torch.Tensor:
        return self.project(self.decode_hidden(memory, self.target_embed(tgt_in), need_weights))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(src), src if tgt_in is None else tgt_in)

    def decode_step(self, memory: dict, tokens: torch.Tensor, cache: dict | None) -> tuple[torch.Tensor, dict]:
        """Logits of the token after `tokens` (B, t): the new positions only are computed, the
        earlier ones read from `cache` (None at the first step)."""
        cache = cache if cache is not None else {"length": 0, "layers": [{} for _ in self.decoder]}
        offset = cache["length"]
        y = self.target_embed(tokens, offset)
        self_mask = causal_mask(tokens.shape[1], y.device, offset)
        for layer, layer_cache in zip(self.decoder, cache["layers"]):
            y = layer(y, memory["memory"], self_mask, memory["mask"], cache=layer_cache)
        cache["length"] = offset + tokens.shape[1]
        return self.project(self.decoder_norm(y[:, -1])), cache

    @torch.no_grad()
    def alignments(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        self.decode(self.encode(src), tgt_in, need_weights=True)
        return self.decoder[-1].last_alignment.mean(1)


def _translation_model(num_classes: int, in_chans: int, **kwargs) -> TransformerNMT:
    if in_chans != 1:
        raise UsageError(f"in_chans={in_chans}: a translation model reads one token sequence (in_chans=1)")
    return TransformerNMT(num_classes, **kwargs)


@register_model("transformer_base", family="transformer", paper=_PAPER, year=2017, input_size=(1, 32),
                num_classes=_BASE_VOCAB, paper_params="65M", task="translation", mismatch_reason=_COUNT_NOTE)
def transformer_base(num_classes: int = _BASE_VOCAB, in_chans: int = 1, source_vocab: int | None = None,
                     d_model: int = 512, num_heads: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                     d_ff: int = 2048, dropout: float = 0.1, norm_first: bool = False,
                     share_embeddings: bool = True) -> TransformerNMT:
    """The base model of Table 3 (post-LN, as the paper)."""
    return _translation_model(num_classes, in_chans, source_vocab=source_vocab, d_model=d_model, num_heads=num_heads,
                              num_encoder_layers=num_encoder_layers, num_decoder_layers=num_decoder_layers, d_ff=d_ff,
                              dropout=dropout, norm_first=norm_first, share_embeddings=share_embeddings)


@register_model("transformer_small", family="transformer", paper=_PAPER, year=2017, input_size=(1, 32),
                num_classes=8000, task="translation")
def transformer_small(num_classes: int = 8000, in_chans: int = 1, source_vocab: int | None = None,
                      d_model: int = 256, num_heads: int = 4, num_encoder_layers: int = 3, num_decoder_layers: int = 3,
                      d_ff: int = 1024, dropout: float = 0.1, norm_first: bool = True,
                      share_embeddings: bool = True) -> TransformerNMT:
    """A CPU-sized Transformer (d_model 256, 3 + 3 layers, 4 heads, pre-LN) for minutes of training."""
    return _translation_model(num_classes, in_chans, source_vocab=source_vocab, d_model=d_model, num_heads=num_heads,
                              num_encoder_layers=num_encoder_layers, num_decoder_layers=num_decoder_layers, d_ff=d_ff,
                              dropout=dropout, norm_first=norm_first, share_embeddings=share_embeddings)


def from_torch_transformer(torch_model: nn.Transformer) -> dict[str, torch.Tensor]:
    """Our encoder/decoder stacks' state_dict from nn.Transformer's (embeddings excluded:
    nn.Transformer has none). in_proj_weight (3d, d) splits into q_proj, k_proj, v_proj."""
    state = {}
    source = torch_model.state_dict()

    def attention(ours: str, theirs: str) -> None:
        for kind in ("weight", "bias"):
            for name, part in zip(("q_proj", "k_proj", "v_proj"), source[f"{theirs}.in_proj_{kind}"].chunk(3)):
                state[f"{ours}.{name}.{kind}"] = part.clone()
            state[f"{ours}.out_proj.{kind}"] = source[f"{theirs}.out_proj.{kind}"].clone()

    def copy(ours: str, theirs: str) -> None:
        for kind in ("weight", "bias"):
            state[f"{ours}.{kind}"] = source[f"{theirs}.{kind}"].clone()

    for stack, count in (("encoder", len(torch_model.encoder.layers)), ("decoder", len(torch_model.decoder.layers))):
        for i in range(count):
            theirs = f"{stack}.layers.{i}"
            attention(f"{stack}.{i}.self_attn", f"{theirs}.self_attn")
            if stack == "decoder":
                attention(f"{stack}.{i}.cross_attn", f"{theirs}.multihead_attn")
            copy(f"{stack}.{i}.ff.linear1", f"{theirs}.linear1")
            copy(f"{stack}.{i}.ff.linear2", f"{theirs}.linear2")
            for n in (1, 2, 3) if stack == "decoder" else (1, 2):
                copy(f"{stack}.{i}.norm{n}", f"{theirs}.norm{n}")
        copy(f"{stack}_norm", f"{stack}.norm")
    return state


class TransformerLanguageModel(nn.Module):
    """Decoder-only Transformer LM: forward(tokens (B, T), state) → (logits (B, T, V), state); the state
    (B, ≤ context) holds the tokens read before, which the window's positions attend to as well."""

    def __init__(self, num_classes: int, d_model: int = 256, num_heads: int = 4, num_layers: int = 4,
                 d_ff: int = 1024, dropout: float = 0.1, context: int = 128, norm_first: bool = True):
        super().__init__()
        if context < 1:
            raise UsageError(f"context={context}: the number of earlier tokens a position sees, ≥ 1")
        self.vocab_size, self.context = num_classes, context
        self.embed = TokenEmbedding(num_classes, d_model, dropout, pad=None)   # every index is a symbol
        self.layers = nn.ModuleList(EncoderLayer(d_model, num_heads, d_ff, dropout, norm_first)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def example_input(self, input_size) -> torch.Tensor:
        return torch.zeros((1, *input_size[1:]), dtype=torch.long, device=self.head.weight.device)

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None):
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise UsageError(f"a language model takes (batch, time) integer tokens; got {tuple(tokens.shape)} "
                             f"{tokens.dtype}")
        tokens = tokens.long()
        earlier = 0 if state is None else state.shape[1]
        text = tokens if state is None else torch.cat([state.to(tokens.device), tokens], 1)
        # query i (text position earlier + i) sees the `context` tokens before it and itself
        positions = torch.arange(text.shape[1], device=tokens.device)
        mask = causal_mask(text.shape[1], tokens.device) & (positions[None, :] > positions[:, None] - self.context - 1)
        x = self.embed(text)
        for layer in self.layers:
            x = layer(x, mask)
        logits = self.head(self.norm(x[:, earlier:]))
        return logits, text[:, -self.context:].detach()


@register_model("transformer_lm", family="transformer", paper=_PAPER, year=2017, input_size=(1, 1),
                num_classes=128, task="language")
def transformer_lm(num_classes: int = 128, in_chans: int = 1, d_model: int = 256, num_heads: int = 4,
                   num_layers: int = 4, d_ff: int = 1024, dropout: float = 0.1, context: int = 128,
                   norm_first: bool = True) -> TransformerLanguageModel:
    """A decoder-only Transformer (pre-LN) for `visionzoo train --data kjv`; each position sees `context` tokens."""
    if in_chans != 1:
        raise UsageError(f"in_chans={in_chans}: a language model reads one token stream (in_chans=1)")
    return TransformerLanguageModel(num_classes, d_model=d_model, num_heads=num_heads, num_layers=num_layers,
                                    d_ff=d_ff, dropout=dropout, context=context, norm_first=norm_first)
