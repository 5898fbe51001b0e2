"""The Transformer (Vaswani et al. 2017): attention with masks and a safe softmax, positional encoding,
equality with torch.nn.Transformer, the key/value cache, the decoder-only LM and the rsqrt schedule."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from visionzoo.core.profile import count_params
from visionzoo.engine.schedules import lr_factor
from visionzoo.layers.seq_attention import (
    MultiHeadAttention,
    causal_mask,
    safe_softmax,
    scaled_dot_product_attention,
    sinusoidal_encoding,
)
from visionzoo.models.language import sample
from visionzoo.models.transformer_nmt import TransformerNMT, from_torch_transformer
from visionzoo.registry import create_model, get_entry


def test_safe_softmax_gives_zeros_for_a_fully_masked_row_and_finite_gradients():
    scores = torch.randn(3, 5, requires_grad=True)
    mask = torch.tensor([[True, True, False, True, False], [False] * 5, [True] * 5])
    weights = safe_softmax(scores, mask)
    assert torch.equal(weights[1], torch.zeros(5))
    # a partly masked row is the softmax over its kept entries alone
    kept = torch.softmax(scores[0, [0, 1, 3]], -1)
    assert torch.allclose(weights[0, [0, 1, 3]], kept) and weights[0, [2, 4]].eq(0).all()
    assert torch.allclose(weights[2], torch.softmax(scores[2], -1))
    weights.pow(2).sum().backward()
    assert torch.isfinite(scores.grad).all() and scores.grad[1].eq(0).all()


@pytest.mark.parametrize("need_weights", [False, True])
def test_attention_of_a_fully_masked_query_is_zero_not_nan(need_weights):
    attention = MultiHeadAttention(8, 2)
    nn.init.zeros_(attention.out_proj.bias)
    x = torch.randn(2, 3, 8, requires_grad=True)
    mask = torch.ones(2, 1, 3, 3, dtype=torch.bool)
    mask[0, :, 1] = False                       # query 1 of sentence 0 may attend to nothing
    out, _ = attention(x, mask=mask, need_weights=need_weights)
    assert torch.equal(out[0, 1], torch.zeros(8))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_scaled_dot_product_attention_is_equation_1():
    q, k, v = torch.randn(4, 3), torch.randn(6, 3), torch.randn(6, 2)
    out, weights = scaled_dot_product_attention(q, k, v)
    expected = torch.softmax(q @ k.T / math.sqrt(3), -1)
    assert torch.allclose(weights, expected) and torch.allclose(out, expected @ v)


def test_multi_head_attention_equals_torch_with_copied_weights():
    torch.manual_seed(0)
    ours, theirs = MultiHeadAttention(12, 3), nn.MultiheadAttention(12, 3, batch_first=True)
    with torch.no_grad():
        for name, part in zip(("q_proj", "k_proj", "v_proj"), theirs.in_proj_weight.chunk(3)):
            getattr(ours, name).weight.copy_(part)
        for name, part in zip(("q_proj", "k_proj", "v_proj"), theirs.in_proj_bias.chunk(3)):
            getattr(ours, name).bias.copy_(part)
        ours.out_proj.load_state_dict(theirs.out_proj.state_dict())
    query, memory = torch.randn(2, 4, 12), torch.randn(2, 6, 12)
    padded = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])        # torch: True = ignore
    expected, expected_weights = theirs(query, memory, memory, key_padding_mask=padded)
    keep = (~padded)[:, None, None, :]
    fused, _ = ours(query, memory, keep)
    explicit, weights = ours(query, memory, keep, need_weights=True)
    assert torch.allclose(fused, expected, atol=1e-5) and torch.allclose(explicit, expected, atol=1e-5)
    assert torch.allclose(weights.mean(1), expected_weights, atol=1e-6)


def test_sinusoidal_encoding_follows_section_3_5():
    table = sinusoidal_encoding(50, 16, offset=3)
    for pos, i in ((0, 0), (7, 3), (49, 7)):
        angle = (pos + 3) / 10000 ** (2 * i / 16)
        assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert torch.equal(sinusoidal_encoding(10, 16, offset=3)[4], sinusoidal_encoding(1, 16, offset=7)[0])


def test_causal_mask_lets_a_position_see_itself_and_earlier_ones():
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    assert torch.equal(causal_mask(1, offset=2), torch.ones(1, 3, dtype=torch.bool))


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_equals_torch_nn_transformer_with_copied_weights(norm_first):
    torch.manual_seed(1)
    ours = TransformerNMT(30, d_model=16, num_heads=4, num_encoder_layers=2, num_decoder_layers=2, d_ff=24,
                          dropout=0.0, norm_first=norm_first).eval()
    theirs = nn.Transformer(16, 4, 2, 2, 24, dropout=0.0, batch_first=True, norm_first=norm_first)
    theirs.eval()
    missing, unexpected = ours.load_state_dict(from_torch_transformer(theirs), strict=False)
    assert not unexpected and all("embed" in name for name in missing)
    src = torch.randint(4, 30, (3, 7))
    src[1, 5:] = 0
    src[2, 2:] = 0
    tgt = torch.randint(4, 30, (3, 5))
    x, y = ours.src_embed(src), ours.target_embed(tgt)
    # Sec. 3.4–3.5: the embedding × √d_model, plus the sinusoidal encoding
    table = ours.src_embed.embedding.weight
    assert torch.allclose(x, table[src] * math.sqrt(16) + sinusoidal_encoding(7, 16, 0, x.device, x.dtype), atol=1e-6)
    expected = theirs(x, y, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5), tgt_is_causal=True,
                      src_key_padding_mask=src == 0, memory_key_padding_mask=src == 0)
    with torch.no_grad():
        got = ours.decode_hidden(ours.encode(src), y)
    assert torch.allclose(got, expected, atol=1e-5)


def test_cached_decoding_equals_uncached():
    torch.manual_seed(2)
    model = create_model("transformer_small", num_classes=40, d_model=32, d_ff=64, dropout=0.0).eval()
    src = torch.randint(4, 40, (2, 9))
    src[0, 6:] = 0
    tgt = torch.randint(4, 40, (2, 6))
    with torch.no_grad():
        full = model(src, tgt)
        memory, cache, steps = model.encode(src), None, []
        for t in range(tgt.shape[1]):
            logits, cache = model.decode_step(memory, tgt[:, t:t + 1], cache)
            steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)
    assert cache["layers"][0]["self"]["k"].shape[2] == tgt.shape[1]      # one key per decoded position


def test_base_card_counts_the_architecture():
    model = create_model("transformer_base")
    assert count_params(model) == pytest.approx(63.08e6, rel=1e-3)
    # shared source, target and output embedding (Sec. 3.4): one 37 000 × 512 matrix
    assert model.generator is None and model.tgt_embed is None
    assert get_entry("transformer_base").mismatch_reason


def test_transformer_lm_carried_state_equals_reading_at_once():
    torch.manual_seed(3)
    model = create_model("transformer_lm", num_classes=20, d_model=32, d_ff=64, num_layers=2, dropout=0.0,
                         context=64).eval()
    tokens = torch.randint(0, 20, (2, 30))
    with torch.no_grad():
        whole, _ = model(tokens)
        first, state = model(tokens[:, :12])
        second, state = model(tokens[:, 12:], state)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-5)
    assert torch.equal(state, tokens)     # fewer tokens than the context: all of them are carried
    # a position sees no token more than `context` before it
    short = create_model("transformer_lm", num_classes=20, d_model=32, d_ff=64, num_layers=1, dropout=0.0,
                         context=4).eval()
    changed = tokens.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 20
    with torch.no_grad():
        assert torch.allclose(short(tokens)[0][:, 5:], short(changed)[0][:, 5:], atol=1e-6)
        assert not torch.allclose(short(tokens)[0][:, 4], short(changed)[0][:, 4])
        # more tokens than the context: the carried state is the last `context` of them, and the next piece
        # reads as if those were its first tokens (positions restart with the window)
        _, state = short(tokens[:, :12])
        second, _ = short(tokens[:, 12:], state)
        window = short(tokens[:, 8:])[0][:, 4:]
    assert torch.equal(state, tokens[:, 8:12])
    assert torch.allclose(second, window, atol=1e-5)
    drawn = sample(model, tokens[0, :5], 10, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (10,) and drawn.max() < 20


def test_rsqrt_schedule_is_vaswanis_formula_over_its_peak():
    d_model, warmup = 512, 40
    peak = d_model ** -0.5 * warmup ** -0.5
    for step in (0, 5, 39, 40, 100, 1000):
        vaswani = d_model ** -0.5 * min((step + 1) ** -0.5, (step + 1) * warmup ** -1.5)
        factor = lr_factor(step, total_steps=2000, steps_per_epoch=100, schedule="rsqrt", warmup_steps=warmup)
        assert factor * peak == pytest.approx(vaswani)


@pytest.mark.parametrize("norm_first", [False, True])
def test_dropout_acts_on_each_sublayers_output_before_the_residual_sum(norm_first):
    """Sec. 5.4: in training, dropout on every sublayer's output before it is added to the residual, and on the sum of
    embeddings and positional encodings. With P_drop = 1 each sublayer's output is dropped whole, so a layer is its
    residual path alone: the LayerNorms in turn (post-LN) or the identity (pre-LN); the embedding layer gives 0."""
    from visionzoo.models.transformer_nmt import DecoderLayer, EncoderLayer, TokenEmbedding
    torch.manual_seed(0)
    encoder = EncoderLayer(8, 2, 16, dropout=1.0, norm_first=norm_first).train()
    decoder = DecoderLayer(8, 2, 16, dropout=1.0, norm_first=norm_first).train()
    for norm in (*encoder.modules(), *decoder.modules()):
        if isinstance(norm, nn.LayerNorm):
            nn.init.normal_(norm.weight)
            nn.init.normal_(norm.bias)
    x, memory = torch.randn(2, 5, 8), torch.randn(2, 4, 8)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x, None), x if norm_first else encoder.norm2(encoder.norm1(x)))
        torch.testing.assert_close(decoder(x, memory, causal_mask(5), None),
                                   x if norm_first else decoder.norm3(decoder.norm2(decoder.norm1(x))))
        embedding = TokenEmbedding(10, 8, dropout=1.0).train()
        assert embedding(torch.randint(1, 10, (2, 5))).eq(0).all()


def test_the_shared_embedding_matrix_is_the_pre_softmax_projection():
    """Sec. 3.4: with one joint vocabulary the logits are the decoder's output times the embedding matrix (not scaled
    by √d_model, which is the embedding layers' alone), and the output layer's gradient reaches that matrix."""
    torch.manual_seed(0)
    model = TransformerNMT(12, d_model=8, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, d_ff=16,
                           dropout=0.0)
    src, tgt = torch.randint(4, 12, (2, 5)), torch.randint(4, 12, (2, 4))
    hidden = model.decode_hidden(model.encode(src), model.target_embed(tgt)).detach()
    table = model.src_embed.embedding.weight
    logits = model.project(hidden)
    torch.testing.assert_close(logits, hidden @ table.T)
    torch.testing.assert_close(model(src, tgt), logits)
    gradient, = torch.autograd.grad(logits.sum(), table)      # ∂/∂E_v Σ h·E_v = Σ over positions of h
    torch.testing.assert_close(gradient, hidden.sum((0, 1)).expand_as(table))


def test_alignments_are_the_last_decoder_layers_cross_attention_averaged_over_heads():
    """`alignments`: the weights of the last decoder layer's encoder–decoder attention averaged over the heads, as
    nn.MultiheadAttention (average_attn_weights) gives them with the same projections, for the query that
    layer reads; each row a distribution over the real source positions."""
    torch.manual_seed(0)
    model = TransformerNMT(12, d_model=8, num_heads=2, num_encoder_layers=1, num_decoder_layers=2, d_ff=16,
                           dropout=0.0).eval()
    src, tgt = torch.randint(4, 12, (2, 6)), torch.randint(4, 12, (2, 4))
    src[1, 3:] = 0
    cross = model.decoder[-1].cross_attn
    seen = {}

    def keep(module, args, output):
        seen["query"], seen["memory"] = args[0], args[1]
    cross.register_forward_hook(keep)
    alignments = model.alignments(src, tgt)
    theirs = nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([cross.q_proj.weight, cross.k_proj.weight, cross.v_proj.weight]))
        theirs.in_proj_bias.copy_(torch.cat([cross.q_proj.bias, cross.k_proj.bias, cross.v_proj.bias]))
        _, expected = theirs(seen["query"], seen["memory"], seen["memory"], key_padding_mask=src == 0)
    torch.testing.assert_close(alignments, expected)
    assert torch.allclose(alignments.sum(-1), torch.ones(2, 4)) and alignments[1, :, 3:].eq(0).all()
