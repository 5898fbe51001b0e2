"""Transformer and normalizer-free families: ViT's Eq. 1–4, MLP-Mixer's mixing equations,
ConvNeXt's block and small-image maps, scaled weight standardisation, γ and the analytic β of
NF-ResNets, and the small-image ViT and Mixer (4×4 patches) against timm's. Twin logits at the
twins' own patch sizes: test_twins.py."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionzoo as vz
from visionzoo.layers.se import SqueezeExcite
from visionzoo.layers.transformer import EncoderBlock, PatchEmbed, init_transformer_weights
from visionzoo.layers.weight_std import GELU_GAIN, RELU_GAIN, ScaledStdConv2d, nonlinearity_gain
from visionzoo.models.mixer import MixerBlock


def _max_diff(ours, twin, x):
    ours.eval()
    twin.eval()
    with torch.no_grad():
        a, b = ours(x), twin(x)
    assert b.abs().max() > 1e-2, "twin logits are ~0: the comparison would prove nothing"
    return (a - b).abs().max().item()


# --- Vision Transformer -------------------------------------------------------------------

def test_patch_embedding_is_flattened_patches_times_E():
    """x_p E with x_p the N flattened P×P×C patches and E ∈ R^{(P²C)×D} (Eq. 1)."""
    torch.manual_seed(0)
    embed = PatchEmbed(patch_size=4, in_chans=3, embed_dim=8)
    x = torch.randn(2, 3, 12, 8)
    patches = F.unfold(x, kernel_size=4, stride=4).transpose(1, 2)      # (B, N, P²C)
    E = embed.proj.weight.flatten(1).T                                  # (P²C, D)
    expected = patches @ E + embed.proj.bias
    assert embed(x).shape == (2, 6, 8)
    torch.testing.assert_close(embed(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel, dilation", [(3, 1), (3, 2), (5, 3)])
def test_scaled_std_conv_pads_to_keep_the_size_at_any_dilation(kernel, dilation):
    # the default padding dilation·(k − 1)/2 per side ("same"), as timm's get_padding
    conv = ScaledStdConv2d(2, 4, kernel, dilation=dilation)
    assert conv.padding == (dilation * (kernel - 1) // 2,) * 2
    assert conv(torch.randn(1, 2, 13, 11)).shape == (1, 4, 13, 11)


def test_patch_embedding_starts_lecun_normal_with_variance_one_over_fan_in():
    """The reference ViT/Mixer init: E ~ N(0, 1/fan_in), fan_in = P²C, zero bias (LeCun normal)."""
    torch.manual_seed(0)
    embed = vz.create_model("vit_tiny_patch4_28").patch_embed.proj   # P = 4, C = 1: fan_in 16
    assert embed.weight[0].numel() == 16
    assert embed.weight.std().item() == pytest.approx(math.sqrt(1 / 16), rel=0.05)
    assert not embed.bias.any()
    wide = nn.Sequential(PatchEmbed(patch_size=4, in_chans=3, embed_dim=256))   # fan_in 48
    init_transformer_weights(wide)
    assert wide[0].proj.weight.std().item() == pytest.approx(math.sqrt(1 / 48), rel=0.05)


def test_z0_is_class_token_then_patch_embeddings_plus_positions():
    """Eq. 1: z_0 = [x_class; x_p¹E; …; x_pᴺE] + E_pos, with N + 1 rows of E_pos."""
    torch.manual_seed(0)
    model = vz.create_model("vit_tiny_patch4_28").eval()
    assert model.pos_embed.shape == (1, 49 + 1, 192)
    x = torch.randn(3, 1, 28, 28)
    seen = {}
    model.blocks[0].register_forward_pre_hook(lambda m, args: seen.setdefault("z0", args[0]))
    with torch.no_grad():
        model(x)
        patches = model.patch_embed(x)
    z0 = seen["z0"]
    assert z0.shape == (3, 50, 192)
    x_class_row = (model.cls_token + model.pos_embed[:, :1])[:, 0]
    torch.testing.assert_close(z0[:, 0], x_class_row.expand(3, -1))
    torch.testing.assert_close(z0[:, 1:], patches + model.pos_embed[:, 1:])


def _msa_by_hand(attn, z):
    """[q, k, v] = z U_qkv; A = softmax(q kᵀ / √D_h); SA = A v; MSA = [SA_1; …; SA_k] U_msa."""
    k_heads, dim = attn.num_heads, z.shape[-1]
    d_h = dim // k_heads
    q, k, v = (z @ attn.qkv.weight.T + attn.qkv.bias).split(dim, dim=-1)
    heads = []
    for h in range(k_heads):
        s = slice(h * d_h, (h + 1) * d_h)
        A = torch.softmax(q[..., s] @ k[..., s].transpose(-1, -2) / math.sqrt(d_h), dim=-1)
        heads.append(A @ v[..., s])
    return torch.cat(heads, dim=-1) @ attn.proj.weight.T + attn.proj.bias


def test_encoder_block_is_eq_2_and_3():
    torch.manual_seed(0)
    block = EncoderBlock(dim=12, num_heads=3, mlp_dim=20).eval()
    for p in block.parameters():  # LayerNorm's 1/0 start would hide a missing affine transform
        nn.init.normal_(p, std=0.5)
    z = torch.randn(2, 5, 12)
    z_prime = _msa_by_hand(block.attn, block.norm1(z)) + z
    mlp = block.mlp
    z_next = mlp.fc2(F.gelu(mlp.fc1(block.norm2(z_prime)))) + z_prime
    with torch.no_grad():
        torch.testing.assert_close(block(z), z_next, rtol=1e-5, atol=1e-5)


def test_head_reads_only_the_class_token_after_the_final_layernorm():
    """y = LN(z_L⁰) (Eq. 4): changing any other token of z_L leaves the logits unchanged."""
    torch.manual_seed(0)
    model = vz.create_model("vit_tiny_patch4_28").eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(2, 1, 28, 28))
        changed = features.clone()
        changed[:, 1:] += torch.randn_like(changed[:, 1:])
        torch.testing.assert_close(model.forward_head(changed), model.forward_head(features))
        changed[:, 0] += 1.0
        assert not torch.allclose(model.forward_head(changed), model.forward_head(features))


@pytest.mark.parametrize("image_size, patch, tokens", [(224, 16, 196), (28, 4, 49), (32, 4, 64)])
def test_position_embeddings_follow_the_image_size(image_size, patch, tokens):
    with torch.device("meta"):
        model = vz.create_model("vit_b_16", image_size=image_size)
    assert model.patch_embed.patch_size == patch
    assert model.pos_embed.shape == (1, tokens + 1, 768)


def test_vit_rejects_an_input_of_another_size():
    model = vz.create_model("vit_tiny_patch4_28")
    with pytest.raises(ValueError, match="image_size=32"):
        model(torch.randn(1, 1, 32, 32))


def test_vit_ti_16_matches_timm_on_small_images():
    import timm
    torch.manual_seed(0)
    twin = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4)
    nn.init.normal_(twin.head.weight, std=0.02)
    ours = vz.create_model("vit_ti_16", image_size=32)
    ours.load_state_dict(vz.convert_state_dict("vit_ti_16", twin.state_dict(), "timm"))
    assert _max_diff(ours, twin, torch.randn(2, 3, 32, 32)) <= 1e-4


# --- MLP-Mixer ----------------------------------------------------------------------------

def test_mixer_block_is_token_then_channel_mixing():
    """U_{*,i} = X_{*,i} + W₂σ(W₁ LN(X)_{*,i}); Y_{j,*} = U_{j,*} + W₄σ(W₃ LN(U)_{j,*})."""
    torch.manual_seed(0)
    S, C = 6, 10
    block = MixerBlock(num_tokens=S, dim=C, tokens_mlp_dim=7, channels_mlp_dim=13).eval()
    for p in block.parameters():
        nn.init.normal_(p, std=0.5)
    X = torch.randn(2, S, C)
    W1, W2 = block.mlp_tokens.fc1, block.mlp_tokens.fc2
    W3, W4 = block.mlp_channels.fc1, block.mlp_channels.fc2
    LX = block.norm1(X)
    U = torch.empty_like(X)
    for i in range(C):   # each column: one channel across all S patches
        U[:, :, i] = X[:, :, i] + W2(F.gelu(W1(LX[:, :, i])))
    LU = block.norm2(U)
    Y = torch.stack([U[:, j] + W4(F.gelu(W3(LU[:, j]))) for j in range(S)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(block(X), Y, rtol=1e-5, atol=1e-5)


def test_mixer_token_mlp_width_follows_the_patch_count():
    with torch.device("meta"):
        paper = vz.create_model("mixer_b16_224")
        small = vz.create_model("mixer_b16_224", image_size=28)
    assert paper.blocks[0].mlp_tokens.fc1.in_features == 196
    assert small.blocks[0].mlp_tokens.fc1.in_features == 49


def test_mixer_s16_matches_timm_on_small_images():
    from timm.models.mlp_mixer import MlpMixer
    torch.manual_seed(0)
    # timm's mixer_s16_224 (8 layers, C = 512, D_S = C/2, D_C = 4C) with 4×4 patches on 32².
    twin = MlpMixer(img_size=32, patch_size=4, num_blocks=8, embed_dim=512)
    nn.init.normal_(twin.head.weight, std=0.02)
    ours = vz.create_model("mixer_s16_224", image_size=32)
    ours.load_state_dict(vz.convert_state_dict("mixer_s16_224", twin.state_dict(), "timm"))
    assert _max_diff(ours, twin, torch.randn(2, 3, 32, 32)) <= 1e-4


# --- ConvNeXt ------------------------------------------------------------------------------

def test_convnext_block_depthwise_7x7_inverted_x4_layer_scale():
    model = vz.create_model("convnext_tiny")
    block = model.features[1][0]
    dw, _, norm, fc1, _, fc2, _ = block.block
    assert dw.kernel_size == (7, 7) and dw.groups == dw.in_channels == 96
    assert isinstance(norm, nn.LayerNorm)
    assert (fc1.in_features, fc1.out_features, fc2.out_features) == (96, 384, 96)
    assert torch.all(block.layer_scale == 1e-6)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_convnext_small_images_keep_a_2x2_last_stage():
    model = vz.create_model("convnext_tiny", image_size=28, in_chans=1)
    sizes, x = [], torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        for layer in model.features:
            x = layer(x)
            sizes.append(x.shape[-1])
    assert sizes == [14, 14, 7, 7, 4, 4, 2, 2]


# --- Normalizer-free networks ---------------------------------------------------------------

def test_scaled_ws_rows_have_zero_mean_and_variance_one_over_fan_in():
    """Ŵ_ij = γ (W_ij − μ_i) / (√N σ_i): per output unit mean 0, variance γ²/N (g = 1)."""
    torch.manual_seed(0)
    conv = ScaledStdConv2d(16, 32, 3, gamma=RELU_GAIN, eps=1e-12)  # ε > 0 is required; 1e-12 vanishes next to σ² = 4
    nn.init.normal_(conv.weight, mean=0.3, std=2.0)
    rows = conv.standardized_weight().flatten(1) / RELU_GAIN
    fan_in = 16 * 9
    torch.testing.assert_close(rows.mean(1), torch.zeros(32), atol=1e-6, rtol=0)
    torch.testing.assert_close(rows.var(1, unbiased=False), torch.full((32,), 1 / fan_in))
    nn.init.uniform_(conv.gain, 0.5, 2.0)   # the learnable gain g scales each unit's row
    scaled = conv.standardized_weight().flatten(1) / RELU_GAIN
    torch.testing.assert_close(scaled, rows * conv.gain.flatten(1))


def test_scaled_ws_equals_eq_3_with_its_gradients_for_a_channels_last_grouped_conv():
    """The fused computation gives Eq. 3 and its gradients w.r.t. W and g, as float64 autograd does."""
    torch.manual_seed(0)
    conv = ScaledStdConv2d(8, 12, 3, groups=2, gamma=GELU_GAIN).to(memory_format=torch.channels_last)
    nn.init.normal_(conv.weight, mean=-0.2, std=0.5)
    nn.init.uniform_(conv.gain, 0.5, 2.0)
    upstream = torch.randn(conv.weight.shape)
    (conv.standardized_weight() * upstream).sum().backward()

    w = conv.weight.detach().double().requires_grad_(True)
    g = conv.gain.detach().double().requires_grad_(True)
    rows = w.flatten(1)
    var, mean = torch.var_mean(rows, dim=1, unbiased=False, keepdim=True)
    expected = (GELU_GAIN * g.flatten(1) * (rows - mean) / torch.sqrt(rows.shape[1] * (var + conv.eps))).view_as(w)
    (expected * upstream.double()).sum().backward()
    torch.testing.assert_close(conv.standardized_weight().double(), expected.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(conv.weight.grad.double(), w.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(conv.gain.grad.double(), g.grad, rtol=1e-4, atol=1e-5)


def test_gamma_makes_the_activation_unit_variance():
    """Var(γ · act(x)) = 1 for x ~ N(0, 1), by Monte Carlo; γ_ReLU = √(2 / (1 − 1/π))."""
    torch.manual_seed(0)
    x = torch.randn(2_000_000, dtype=torch.float64)
    assert nonlinearity_gain(F.relu) == pytest.approx(RELU_GAIN, rel=1e-7)
    assert (RELU_GAIN * F.relu(x)).var().item() == pytest.approx(1.0, abs=3e-3)
    assert (GELU_GAIN * F.gelu(x)).var().item() == pytest.approx(1.0, abs=3e-3)


def test_scaled_ws_conv_after_gamma_relu_preserves_variance():
    torch.manual_seed(0)
    conv = ScaledStdConv2d(256, 256, 3, gamma=RELU_GAIN, bias=False)
    with torch.no_grad():
        out = conv(F.relu(torch.randn(4, 256, 16, 16)))
    assert out.var().item() == pytest.approx(1.0, abs=0.1)


def test_analytic_beta_matches_the_measured_std_at_init():
    """β_i = √Var(h_i): 1, then + α² per block, back to 1 + α² after each transition."""
    torch.manual_seed(0)
    model = vz.create_model("nf_resnet50")
    assert model.expected_vars[:5] == pytest.approx([1.0, 1.04, 1.08, 1.12, 1.04])
    measured = []
    for stage in model.stages:
        for block in stage:
            block.register_forward_pre_hook(lambda m, args: measured.append(args[0].std().item()))
    # A unit-variance input straight into the stages. It is smooth (bicubic-upsampled 3×3 noise),
    # like an image's features: the analysis takes the transitions' 2×2 average-pooled shortcut
    # to preserve variance, which holds for spatially correlated signals (white noise would
    # lose 3/4 of its variance in the pool).
    h = F.interpolate(torch.randn(2, 64, 3, 3), scale_factor=32, mode="bicubic")
    with torch.no_grad():
        model.stages(h / h.std())
    betas = [block.beta for stage in model.stages for block in stage]
    assert betas == pytest.approx([math.sqrt(v) for v in model.expected_vars])
    assert measured == pytest.approx(betas, rel=0.1)


@pytest.mark.parametrize("name", ["nf_resnet50", "nfnet_f0"])
def test_normalizer_free_networks_have_no_normalisation_layers(name):
    with torch.device("meta"):
        model = vz.create_model(name)
    norms = (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)
    assert not any(isinstance(m, norms) for m in model.modules())
    # Every convolution is scaled-WS except squeeze-excite's two 1×1 "fully connected" layers.
    se_layers = {id(c) for m in model.modules() if isinstance(m, SqueezeExcite) for c in m.modules()}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and id(m) not in se_layers]
    assert convs and all(isinstance(m, ScaledStdConv2d) for m in convs)
