"""StyleGAN (Karras, Laine, Aila, CVPR 2019): the generator's parts by their defining properties — the
mapping network, AdaIN (Eq. 1), noise inputs, truncation in W, style mixing, w̄ — the discriminator's
minibatch standard deviation, the R1 penalty in closed form, and the FFHQ card against the paper."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionzoo as vz
from visionzoo.core.errors import UsageError
from visionzoo.core.profile import count_params
from visionzoo.layers.style import (
    AdaIN,
    Blur2d,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    NoiseInjection,
    PixelNorm,
    adaptive_instance_norm,
    r1_penalty,
)
from visionzoo.models.stylegan import (
    STYLE_GROUPS,
    StyleGenerator,
    latents,
    noise_variants,
    stochastic_variation,
    style_mixing_images,
    truncation_sweep,
)
from visionzoo.registry import get_entry, verify_card
from visionzoo.tasks.generative import sample


def _small(image_size=32, seed=0, **kwargs):
    torch.manual_seed(seed)
    return vz.create_model("stylegan_small", image_size=image_size, **kwargs).eval()


def _randomise_noise_scales(model):
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, NoiseInjection):
                module.weight.normal_(0, 0.5)


@pytest.mark.parametrize("image_size, layers", [(32, 8), (28, 6)])
def test_shapes_and_the_gan_contract(image_size, layers):
    model = _small(image_size)
    assert model.kind == "stylegan" and model.num_classes == 0 and model.latent_dim == 128
    assert model.output_shape == (1, image_size, image_size)
    assert model.generator.num_layers == layers == 2 * len(model.generator.synthesis.resolutions)
    z = torch.randn(5, model.latent_dim)
    images = model(z)
    assert images.shape == (5, 1, image_size, image_size)
    assert images.min() >= -1 and images.max() <= 1          # eval mode clips to the pixel range
    logits = model.discriminator(images)
    assert logits.shape == (5,) and torch.isfinite(logits).all()
    assert model.r1_gamma == 1.0 and vz.create_model("stylegan_ffhq_1024", image_size=32).r1_gamma == 10.0
    with pytest.raises(UsageError, match="unconditional"):
        model(z, torch.zeros(5, dtype=torch.long))
    with pytest.raises(UsageError, match="num_classes"):
        vz.create_model("stylegan_small", num_classes=10)
    with pytest.raises(UsageError, match="image_size=30"):
        vz.create_model("stylegan_small", image_size=30)


def test_extra_convs_add_style_layers_and_convolutions_at_the_first_resolution():
    plain, deep = _small(28, channel_base=512, max_channels=16), _small(28, channel_base=512, max_channels=16,
                                                                        g_extra_convs=3, d_extra_convs=2)
    synthesis = deep.generator.synthesis
    assert [layer.resolution for layer in synthesis.layers] == [7] * 5 + [14, 14, 28, 28]
    assert synthesis.layers[0].conv is None and all(layer.conv is not None for layer in synthesis.layers[1:])
    assert {name: list(layers) for name, layers in synthesis.style_groups.items()} == \
        {"coarse": [0, 1, 2, 3, 4], "middle": [5, 6], "fine": [7, 8]}
    assert [synthesis.group_resolutions(group) for group in STYLE_GROUPS] == [[7], [14], [28]]
    # Each added G layer: a 16 → 16 3 × 3 convolution, its style affine (w → 2·16), noise scale and bias.
    per_g_layer = 16 * 16 * 9 + (128 + 1) * 2 * 16 + 16 + 16
    assert count_params(deep.generator) - count_params(plain.generator) == 3 * per_g_layer
    assert count_params(deep.discriminator) - count_params(plain.discriminator) == 2 * (16 * 16 * 9 + 16)
    seen = []
    hooks = [conv.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[1:])))
             for conv in deep.discriminator.extra_convs]
    z = torch.randn(4, 128)
    assert deep(z).shape == (4, 1, 28, 28) and deep.discriminator(deep(z)).shape == (4,)
    for hook in hooks:
        hook.remove()
    assert seen == [(16, 7, 7)] * 2                      # before the minibatch standard deviation, at 7 × 7
    mixed = deep.generator(z, mix_z=torch.randn(4, 128), mix_layer=5)   # middle and fine styles from mix_z
    assert mixed.shape == (4, 1, 28, 28)
    with pytest.raises(UsageError, match="g_extra_convs=-1: give the number of 3 × 3 convolutions to add"):
        vz.create_model("stylegan_small", g_extra_convs=-1)


def test_mapping_network_is_eight_equalised_dense_layers_with_lr_multiplier():
    mapping = _small().generator.mapping
    dense = [m for m in mapping.modules() if isinstance(m, EqualizedLinear)]
    assert len(dense) == 8 and all(m.in_features == m.out_features == 128 for m in dense)
    layer = dense[3]
    # Stored weights are N(0, 1/λ²) with λ = 0.01; the weights used are He-scaled: √2/√fan_in.
    assert layer.weight.std().item() == pytest.approx(100, rel=0.05)
    assert (layer.weight * layer.weight_gain).std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.05)
    x = torch.randn(3, 128)
    torch.testing.assert_close(layer(x), x @ (layer.weight * layer.weight_gain).T + 0.01 * layer.bias)
    # z is pixel-normalised first: its scale does not change w.
    z = torch.randn(4, 128)
    torch.testing.assert_close(mapping(3.0 * z), mapping(z))


def test_pixel_norm_gives_each_feature_vector_unit_mean_square():
    """ProGAN (Karras et al. 2018) Sec. 4.2: b = a / √(1/N · Σ_j a_j² + ε), over the N channels of each pixel."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 3, 5) * 4 + 1
    out = PixelNorm()(x)
    torch.testing.assert_close(out.square().mean(1), torch.ones(2, 3, 5))
    torch.testing.assert_close(out, x / x.square().mean(1, keepdim=True).sqrt())
    z = torch.randn(4, 128) * 0.1
    torch.testing.assert_close(PixelNorm()(z).norm(dim=1), torch.full((4,), math.sqrt(128)))


def test_mapping_depth_and_lr_multiplier_are_builder_keywords():
    mapping = _small(image_size=28, mapping_layers=2, mapping_lr_multiplier=0.1).generator.mapping
    dense = [m for m in mapping.modules() if isinstance(m, EqualizedLinear)]
    assert len(dense) == 2 and all(m.bias_gain == 0.1 for m in dense)
    # The weights used do not depend on λ (the stored ones are N(0, 1/λ²), scaled by λ); Adam's first step
    # moves a stored weight by about the rate whatever its scale, so a used weight moves by about λ times it.
    for layer in dense:
        assert (layer.weight * layer.weight_gain).std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.1)
    moved = {}
    for lr_multiplier in (0.01, 0.1):
        mapping = _small(image_size=28, mapping_lr_multiplier=lr_multiplier).generator.mapping
        layer = mapping.layers[0]
        before = (layer.weight * layer.weight_gain).detach().clone()
        optimizer = torch.optim.Adam(mapping.parameters(), lr=1e-3)
        mapping(torch.randn(8, 128, generator=torch.Generator().manual_seed(1))).square().sum().backward()
        optimizer.step()
        moved[lr_multiplier] = ((layer.weight * layer.weight_gain).detach() - before).abs().median().item()
    assert moved[0.1] / moved[0.01] == pytest.approx(10, rel=0.05)


def test_adain_sets_each_channels_mean_and_std_to_the_style():
    x = torch.randn(2, 3, 8, 8) * 5 + 2
    scale, bias = torch.tensor([[0.5, 2.0, 3.0], [1.0, -1.5, 0.2]]), torch.tensor([[1.0, -2.0, 0.0], [3.0, 0.5, -1.0]])
    out = adaptive_instance_norm(x, scale, bias)
    torch.testing.assert_close(out.mean((2, 3)), bias, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std((2, 3), unbiased=False), scale.abs(), atol=1e-4, rtol=1e-4)
    # The affine map A starts with y_s = 1 + A·w's bias of 1 and y_b = 0 bias: an unscaled instance norm.
    adain = AdaIN(3, 16)
    with torch.no_grad():
        adain.affine.weight.zero_()
    normalised = adain(x, torch.randn(2, 16))
    torch.testing.assert_close(normalised.mean((2, 3)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalised.std((2, 3), unbiased=False), torch.ones(2, 3), atol=1e-4, rtol=1e-4)


def test_noise_scales_start_at_zero_and_noise_false_is_deterministic():
    model = _small()
    scales = [m.weight for m in model.modules() if isinstance(m, NoiseInjection)]
    assert len(scales) == model.generator.num_layers and all(torch.count_nonzero(s) == 0 for s in scales)
    z = torch.randn(3, 128)
    torch.testing.assert_close(model(z), model(z, noise=False))   # zero scales: noise has no effect yet
    _randomise_noise_scales(model)
    assert not torch.equal(model(z), model(z))                    # fresh noise per call
    torch.testing.assert_close(model(z, noise=False), model(z, noise=False), rtol=0, atol=0)
    fixed = model.generator.synthesis.draw_noise(3, like=z, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model(z, noise_inputs=fixed), model(z, noise_inputs=fixed), rtol=0, atol=0)
    draw = [model(z, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    torch.testing.assert_close(draw[0], draw[1], rtol=0, atol=0)


def test_seeded_samples_repeat_with_their_per_layer_noise():
    """`visionzoo sample --seed` and `eval`'s FID draw the per-layer noise from the seed's stream, not torch's
    global RNG: the same seed gives the same images, however the global RNG stands."""
    model = _small()
    _randomise_noise_scales(model)
    torch.manual_seed(1)
    first = sample(model, 5, seed=3, batch_size=2)
    torch.manual_seed(2)
    torch.testing.assert_close(sample(model, 5, seed=3, batch_size=2), first, rtol=0, atol=0)
    assert not torch.equal(first, sample(model, 5, seed=3, batch_size=2, noise=False))   # the noise is drawn


def test_noise_modes_follow_the_papers_coarse_and_fine_split():
    synthesis = vz.create_model("stylegan_ffhq_1024", image_size=64).generator.synthesis
    # 64²: 4², 8² coarse; 16², 32² middle; 64² fine — Fig. 5: coarse noise 4²–32², fine 64² up.
    coarse = {synthesis.layers[i].resolution for i in synthesis.noisy_layers("coarse")}
    fine = {synthesis.layers[i].resolution for i in synthesis.noisy_layers("fine")}
    assert coarse == {4, 8, 16, 32} and fine == {64}
    assert synthesis.noisy_layers(True) == set(range(10)) and synthesis.noisy_layers(False) == set()
    with pytest.raises(UsageError, match="noise="):
        synthesis.noisy_layers("middle")


def test_truncation_psi_zero_gives_w_avg_for_every_z_and_psi_one_changes_nothing():
    model = _small()
    with torch.no_grad():
        model.generator.w_avg.normal_()
    z = torch.randn(4, 128)
    fixed = model.generator.synthesis.draw_noise(1, like=z)
    fixed = [m.expand(4, -1, -1, -1) for m in fixed]
    truncated = model(z, truncation=0.0, noise_inputs=fixed)
    assert torch.allclose(truncated, truncated[:1].expand_as(truncated), atol=1e-6)
    ws = model.generator.broadcast(model.generator.mapping(z))
    torch.testing.assert_close(model.generator.truncate(ws, 0.0), model.generator.w_avg.expand_as(ws))
    torch.testing.assert_close(model(z, truncation=1.0, noise=False), model(z, noise=False))
    half = model.generator.truncate(ws, 0.5, 3)
    torch.testing.assert_close(half[:, :3], (ws[:, :3] + model.generator.w_avg) / 2)
    torch.testing.assert_close(half[:, 3:], ws[:, 3:])
    assert truncation_sweep(model.generator, z).shape == (6, 4, 1, 32, 32)


def test_style_mixing_switches_to_the_second_latent_at_the_mix_layer():
    model = _small()
    _randomise_noise_scales(model)
    z, z2 = torch.randn(2, 3, 128)
    generate = model.generator
    torch.testing.assert_close(model(z, mix_z=z2, mix_layer=0, noise=False), model(z2, noise=False))
    torch.testing.assert_close(model(z, mix_z=z2, mix_layer=generate.num_layers, noise=False), model(z, noise=False))
    w, w2 = generate.mapping(z), generate.mapping(z2)
    ws = torch.cat([generate.broadcast(w)[:, :3], generate.broadcast(w2)[:, 3:]], dim=1)
    torch.testing.assert_close(model(z, mix_z=z2, mix_layer=3, noise=False),
                               generate.synthesis(ws, noise=False).clamp(-1, 1))
    with pytest.raises(UsageError, match="mix_z and mix_layer"):
        model(z, mix_z=z2)


def test_training_mode_mixing_regularisation_and_w_avg():
    model = _small()
    generate = model.generator.train()
    z = torch.randn(6, 128)
    generate.mixing_probability = 0.0
    plain = generate(z, noise=False)
    # w̄ ← lerp(batch mean of w, w̄, 0.995), from 0.
    torch.testing.assert_close(generate.w_avg, 0.005 * generate.mapping(z).mean(0))
    torch.testing.assert_close(plain, generate.synthesis(generate.broadcast(generate.mapping(z)), noise=False))
    generate.mixing_probability = 1.0
    mixed = [generate(z, noise=False, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    torch.testing.assert_close(mixed[0], mixed[1], rtol=0, atol=0)   # the torch.Generator decides the draws
    assert not torch.allclose(mixed[0], plain)


def test_the_mixing_crossover_is_drawn_uniformly_from_the_second_layer_to_the_last():
    """Sec. 3.1: a random crossover point, layers before it styled by z₁ and from it on by z₂ — drawn from
    1 … L − 1, so both latents style at least one layer whenever mixing happens."""
    generate = _small().generator.train()
    generate.mixing_probability = 1.0
    z = torch.randn(2, 128)
    own = generate.broadcast(generate.mapping(z)).detach()
    seen = []
    generate.synthesis.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    crossovers = []
    with torch.no_grad():
        for seed in range(120):
            generate(z, noise=False, generator=torch.Generator().manual_seed(seed))
            from_z = (seen[-1] == own).all(-1).all(0)          # per layer: styled by z's own w
            crossovers.append(int(from_z.long().cumprod(0).sum()))
            assert not from_z[crossovers[-1]:].any()           # one crossover: z₁ before, z₂ from it on
    assert set(crossovers) == set(range(1, generate.num_layers))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_minibatch_stddev_matches_the_groupwise_definition(memory_format):
    x = torch.randn(8, 3, 4, 4).contiguous(memory_format=memory_format)
    out = MinibatchStdDev(group_size=4)(x)
    assert out.shape == (8, 4, 4, 4)
    torch.testing.assert_close(out[:, :3], x)
    for i in range(8):
        members = x[[j for j in range(8) if j % 2 == i % 2]]    # N/G = 2 groups: i mod 2
        expected = (members.var(0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(out[i, 3], expected.expand(4, 4))
    assert MinibatchStdDev(4)(torch.randn(6, 2, 3, 3)).shape == (6, 3, 3, 3)   # groups of 3


def test_blur_preserves_a_constant_image_inside_the_border():
    blurred = Blur2d()(torch.full((1, 2, 6, 6), 3.0))
    torch.testing.assert_close(blurred[..., 1:-1, 1:-1], torch.full((1, 2, 4, 4), 3.0))


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_fused_resampling_equals_resampling_then_convolving(kernel_size):
    torch.manual_seed(0)
    conv = EqualizedConv2d(4, 3, kernel_size).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(conv.upsampled(x), conv(F.interpolate(x, scale_factor=2, mode="nearest")))
    torch.testing.assert_close(conv.downsampled(x), F.avg_pool2d(conv(x), 2))


def test_discriminator_pools_before_its_bias_and_activation_as_the_papers_code():
    """Each block is act(conv0(x)), then act(avg_pool(conv1(blur(·))) + b): StyleGAN's D, written out unfused."""
    discriminator = _small(image_size=28, d_extra_convs=1).discriminator.double()
    with torch.no_grad():
        for module in discriminator.modules():
            if isinstance(module, EqualizedConv2d):
                module.bias.normal_()
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)

    def act(t):
        return F.leaky_relu(t, 0.2)

    h = act(discriminator.from_rgb(x))
    for first, second in discriminator.blocks:
        h = act(first(h))
        h = act(F.avg_pool2d(F.conv2d(discriminator.blur(h), second.weight * second.weight_gain, padding=1), 2)
                + second.bias[:, None, None])
    for conv in discriminator.extra_convs:
        h = act(conv(h))
    h = act(discriminator.final_conv(discriminator.mbstd(h)))
    expected = discriminator.output(act(discriminator.final_dense(h.flatten(1)))).squeeze(1)
    torch.testing.assert_close(discriminator(x), expected)


class _Linear(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.a = nn.Parameter(torch.randn(size))

    def forward(self, x, labels=None):
        return (x * self.a).flatten(1).sum(1) + ((x * self.a).flatten(1).sum(1)) ** 2


def test_r1_penalty_in_closed_form_and_differentiable_in_d():
    discriminator = _Linear((1, 3, 3))
    real = torch.randn(5, 1, 3, 3)
    # D(x) = s + s², s = a·x: ∇_x D = (1 + 2s) a, so R1 = mean (1 + 2s)² ‖a‖².
    s = (real * discriminator.a).flatten(1).sum(1)
    expected = ((1 + 2 * s) ** 2 * discriminator.a.square().sum()).mean()
    penalty = r1_penalty(discriminator, real)
    torch.testing.assert_close(penalty, expected)
    penalty.backward()
    assert discriminator.a.grad is not None and discriminator.a.grad.abs().sum() > 0
    assert real.grad is None


def test_lazy_r1_every_interval_steps_weighted_by_the_interval():
    from visionzoo.data.datasets import find_fashion_mnist
    from visionzoo.engine.trainer import TrainConfig, Trainer
    if find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST not installed (make test installs it)")
    with pytest.raises(UsageError, match="r1_interval=0"):
        vz.create_model("stylegan_small", r1_interval=0)
    trainer = Trainer(TrainConfig(model="stylegan_small", data="fashion-mnist", model_args={"r1_interval": 2},
                                  train_limit=8, batch_size=4, val_size=100, test_limit=100, fid_reference="none",
                                  amp="off", quiet=True, seed=0))
    task, model = trainer.task, trainer.model
    batch = task.prepare(next(iter(task.train_batches(0, 0))), None)
    regularised = []
    for step in range(4):
        task.phases(step)
        output = task.training_step(batch, "discriminator", torch.Generator().manual_seed(step))
        regularised.append("r1" in output.losses)
        if step == 2:   # γ/2 · interval · R1 on the step's real images: the same penalty on average
            penalty = r1_penalty(model.discriminator, batch[0])
            torch.testing.assert_close(output.losses["r1"], model.r1_gamma / 2 * 2 * penalty)
    assert regularised == [True, False, True, False]


def test_r1_penalty_runs_on_the_stylegan_discriminator():
    model = _small()
    real = torch.rand(4, 1, 32, 32) * 2 - 1
    penalty = r1_penalty(model.discriminator, real)
    assert penalty.dim() == 0 and penalty > 0
    penalty.backward()
    assert model.discriminator.from_rgb.weight.grad is not None


def test_ffhq_card_matches_the_paper_on_the_meta_device():
    with torch.device("meta"):
        model = vz.create_model("stylegan_ffhq_1024")
    generate = model.generator
    assert model.output_shape == (3, 1024, 1024) and generate.num_layers == 18 and generate.truncation_cutoff == 8
    assert count_params(generate.mapping) == 8 * (512 * 512 + 512)
    # Fig. 3's groups: coarse 4²–8², middle 16²–32², fine 64²–1024².
    groups = [generate.synthesis.group_resolutions(g) for g in STYLE_GROUPS]
    assert groups == [[4, 8], [16, 32], [64, 128, 256, 512, 1024]]
    card = vz.model_card("stylegan_ffhq_1024")
    assert card["params"] == count_params(generate)     # the generator's, not the discriminator's
    assert verify_card(card)[0] and abs(card["params"] - 26.2e6) < 0.05e6
    assert get_entry("stylegan_small").task == "generative" and "stylegan_small" in vz.list_models(task="generative")


def test_figure_helpers_mix_the_named_styles():
    model = _small()
    _randomise_noise_scales(model)
    generate = model.generator
    a, b = latents(generate, 2, seed=0), latents(generate, 3, seed=1)
    grid = style_mixing_images(generate, a, b, noise_seed=4)
    assert grid["a"].shape == (2, 1, 32, 32) and grid["b"].shape == (3, 1, 32, 32)
    for group in STYLE_GROUPS:
        assert grid[group].shape == (2, 3, 1, 32, 32)
    # Copying every group from B is B itself.
    ws_a = generate.broadcast(generate.mapping(a))[:1].expand(3, -1, -1)
    all_layers = range(generate.num_layers)
    mixed = generate.mix(ws_a, generate.broadcast(generate.mapping(b)), all_layers)
    torch.testing.assert_close(mixed, generate.broadcast(generate.mapping(b)))
    variants = noise_variants(generate, a)
    assert set(variants) == {"all", "none", "fine", "coarse"}
    assert not torch.allclose(variants["all"], variants["none"])
    torch.testing.assert_close(variants["none"], model(a, noise=False))
    assert stochastic_variation(generate, a, realisations=3).shape == (2, 3, 1, 32, 32)
    assert not generate.training


def test_experiment_measures_by_their_definitions():
    from visionzoo.experiments.stylegan import _diversity, _layout, _mosaic
    images = torch.randn(5, 1, 8, 8)
    pairs = [(i, j) for i in range(5) for j in range(5) if i != j]
    expected = sum((images[i] - images[j]).square().mean() for i, j in pairs) / len(pairs)
    assert _diversity(images) == pytest.approx(float(expected), rel=1e-5)
    # The layout ignores brightness and contrast: an image and 3·image + 0.5 have the same one.
    torch.testing.assert_close(_layout(images), _layout(3 * images + 0.5))
    assert _layout(images).shape == (5, 4)
    mosaic = _mosaic([[images[0].clamp(-1, 1), None], [images[1].clamp(-1, 1), images[2].clamp(-1, 1)]], pad=2)
    assert mosaic.shape == (2 * 10 + 2, 2 * 10 + 2, 1) and mosaic.min() >= 0 and mosaic.max() <= 1
    torch.testing.assert_close(mosaic[2:10, 2:10, 0], (images[0, 0].clamp(-1, 1) + 1) / 2)


def test_equalized_conv_scales_its_unit_normal_weights_by_the_he_constant_at_run_time():
    """ProGAN Sec. 4.1: the stored weights are N(0, 1), the convolution uses ŵ = w · gain/√(C_in·k²) (padding k // 2)."""
    torch.manual_seed(0)
    conv = EqualizedConv2d(8, 16, 3, gain=math.sqrt(2))
    assert conv.weight.std().item() == pytest.approx(1, rel=0.1)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 8, 5, 5)
    expected = F.conv2d(x, conv.weight * math.sqrt(2) / math.sqrt(8 * 3 * 3), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected)


def test_noise_input_is_one_noise_image_scaled_per_channel():
    """Fig. 1(b)'s "B": x + s_c · n, the single-channel noise image n added to every channel c with its own scale."""
    inject = NoiseInjection(3)
    scales = [0.0, 1.0, -2.0]
    with torch.no_grad():
        inject.weight.copy_(torch.tensor(scales))
    x, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 1, 4, 4)
    out = inject(x, noise)
    for channel, scale in enumerate(scales):
        torch.testing.assert_close(out[:, channel], x[:, channel] + scale * noise[:, 0])


def test_the_truncation_cutoff_truncates_the_first_layers_only():
    """Appendix B with the paper's code's cutoff (FFHQ: the first 8 of 18 layers): w' = w̄ + ψ (w − w̄) in the
    layers before the cutoff, w itself after it, when no `truncation_layers` is given."""
    torch.manual_seed(0)
    generate = StyleGenerator(latent_dim=16, w_dim=16, image_size=16, out_channels=1, channel_base=64,
                              max_channels=8, truncation_cutoff=3)
    with torch.no_grad():
        generate.w_avg.normal_()
    assert generate.num_layers == 6
    ws = torch.randn(2, 6, 16)
    truncated = generate.truncate(ws, 0.5)
    torch.testing.assert_close(truncated[:, :3], generate.w_avg + 0.5 * (ws[:, :3] - generate.w_avg))
    torch.testing.assert_close(truncated[:, 3:], ws[:, 3:])
    torch.testing.assert_close(generate.truncate(ws, 0.5, 6), generate.w_avg + 0.5 * (ws - generate.w_avg))


def test_ffhq_mapping_network_has_the_lr_multiplier_0_01():
    """Appendix C: the FFHQ mapping network's 8 dense layers train at λ = 0.01 times the rate: ŵ = W · √2 · λ/√512,
    bias scaled by λ."""
    with torch.device("meta"):
        mapping = vz.create_model("stylegan_ffhq_1024").generator.mapping
    dense = [m for m in mapping.modules() if isinstance(m, EqualizedLinear)]
    assert len(dense) == 8
    for layer in dense:
        assert layer.bias_gain == pytest.approx(0.01)
        assert layer.weight_gain == pytest.approx(math.sqrt(2) * 0.01 / math.sqrt(512))


def test_mapping_network_is_pixel_norm_then_eight_dense_layers_each_with_leaky_relu():
    """f(z) written out: z / √(mean z² + ε), then for each of the 8 layers x ← lrelu_0.2(x (c·W)ᵀ + λ·b),
    the last layer included (w is the output of a leaky ReLU, as the paper's code)."""
    torch.manual_seed(0)
    mapping = _small(image_size=28).generator.mapping
    with torch.no_grad():
        for layer in mapping.layers:
            layer.bias.normal_(0, 50)   # stored biases are scaled by λ = 0.01
    z = torch.randn(5, 128)
    x = z / (z.square().mean(1, keepdim=True) + 1e-8).sqrt()
    for layer in mapping.layers:
        x = F.leaky_relu(F.linear(x, layer.weight * layer.weight_gain, layer.bias * 0.01), 0.2)
    out = mapping(z)
    assert (out < 0).any()
    torch.testing.assert_close(out, x)


def test_a_style_layer_is_conv_noise_bias_leaky_relu_then_adain():
    """Fig. 1(b) in the paper's code's order: 3 × 3 convolution, + s_c · noise, + bias, leaky ReLU 0.2, then
    AdaIN with the style A(w) — written out with functional operations."""
    from visionzoo.models.stylegan import StyleLayer
    torch.manual_seed(0)
    layer = StyleLayer(4, 6, 16, 8, conv="same", blur=True)
    with torch.no_grad():
        layer.noise.weight.normal_()
        layer.bias.normal_()
        layer.adain.affine.bias.normal_()
    x, w, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 16), torch.randn(2, 1, 8, 8)
    h = F.conv2d(x, layer.conv.weight * math.sqrt(2) / math.sqrt(4 * 9), padding=1)
    h = F.leaky_relu(h + layer.noise.weight[None, :, None, None] * noise + layer.bias[None, :, None, None], 0.2)
    style = F.linear(w, layer.adain.affine.weight / 4, layer.adain.affine.bias)   # gain 1/√16
    expected = adaptive_instance_norm(h, style[:, :6], style[:, 6:])
    torch.testing.assert_close(layer(x, w, noise), expected)


def test_the_synthesis_starts_from_a_constant_of_ones():
    """The learned constant input (Sec. 2) is initialised to ones, as in the paper's code: 4 × 4 (7 × 7 at 28²)."""
    for image_size, side in ((32, 4), (28, 7)):
        const = _small(image_size).generator.synthesis.const
        assert const.shape == (1, 64, side, side) and torch.equal(const, torch.ones_like(const))


def test_the_discriminators_minibatch_stddev_uses_groups_of_four():
    """ProGAN Sec. 3 with the group size of its and StyleGAN's code: in a batch of 8, the standard deviation is
    taken over the 4 samples i ≡ j (mod 2)."""
    discriminator = _small(image_size=28, channel_base=128, max_channels=8).discriminator
    seen = []
    discriminator.mbstd.register_forward_hook(lambda m, args, out: seen.append((args[0], out)))
    with torch.no_grad():
        discriminator(torch.randn(8, 1, 28, 28))
    features, out = seen[0]
    for i in range(8):
        members = features[[j for j in range(8) if j % 2 == i % 2]]
        expected = (members.var(0, unbiased=False) + 1e-8).sqrt().mean()
        torch.testing.assert_close(out[i, -1], expected.expand_as(out[i, -1]))


def test_discriminator_layers_use_the_he_gain_before_leaky_relu_and_one_for_the_logit():
    """Equalised learning rate throughout D (ProGAN Sec. 4.1): ŵ = W · gain/√fan_in, gain √2 for every layer a
    leaky ReLU follows (fromRGB, the convolutions, the dense layer), 1 for the output logit."""
    discriminator = _small(image_size=28, d_extra_convs=1).discriminator
    layers = [m for m in discriminator.modules() if isinstance(m, (EqualizedConv2d, EqualizedLinear))]
    assert layers[0] is discriminator.from_rgb and layers[-1] is discriminator.output
    for layer in layers:
        fan_in = layer.in_features if isinstance(layer, EqualizedLinear) else layer.in_channels * layer.kernel_size ** 2
        gain = 1.0 if layer is discriminator.output else math.sqrt(2)
        assert layer.weight_gain == pytest.approx(gain / math.sqrt(fan_in))
