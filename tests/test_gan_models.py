"""The GAN networks (models/gan.py): the container contract the generative task relies on, DCGAN's
Fig. 1 shapes and five guidelines (each switch turning off exactly its own), the papers' MLP sizes,
conditioning, DiscoGAN's four networks, and the cards measuring the generator."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import visionzoo as vz
from visionzoo.core.errors import UsageError
from visionzoo.layers.activation import Maxout

MINE = ["gan_mlp", "gan_mlp_2d", "dcgan", "cdcgan", "cgan_mlp", "discogan", "discogan_mlp_2d"]
IMAGE_GANS = ["gan_mlp", "dcgan", "cdcgan", "cgan_mlp"]


def _labels_for(model, count: int):
    return torch.arange(count) % model.num_classes if model.num_classes else None


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registered_as_generative():
    generative = vz.list_models(task="generative")
    assert set(MINE) <= set(generative)
    for name in MINE:
        assert vz.model_card(name)["task"] == "generative"


@pytest.mark.parametrize("name", IMAGE_GANS)
@pytest.mark.parametrize("side", [28, 32])
def test_contract_at_fashion_mnist_sizes(name, side):
    torch.manual_seed(0)
    model = vz.create_model(name, in_chans=1, image_size=side)
    assert model.kind == "gan" and model.output_shape == (1, side, side)
    z = model.sample_latent(4)
    assert z.shape == (4, model.latent_dim)
    labels = _labels_for(model, 4)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(z, labels), model.generator(z, labels))   # forward is the generator
    model.train()
    images = model.generator(z, labels)
    assert images.shape == (4, 1, side, side)
    assert images.abs().max() <= 1   # Tanh
    logits = model.discriminator(images, labels)
    assert logits.shape == (4,)
    # gradients reach both networks through D(G(z))
    nn.functional.softplus(-logits).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.discriminator.parameters())


@pytest.mark.parametrize("name", MINE)
def test_create_model_takes_the_task_keywords(name):
    entry = vz.registry.get_entry(name)
    chans = 2 if entry.input_size == (2,) else 1
    model = vz.create_model(name, num_classes=entry.num_classes, in_chans=chans, image_size=28)
    assert model.output_shape[0] == chans and model.num_classes == entry.num_classes


def test_dcgan_generator_follows_fig1_at_64():
    model = vz.create_model("dcgan")
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for m in model.generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    model.eval()
    with torch.no_grad():
        model(torch.randn(2, 100))
    for hook in hooks:
        hook.remove()
    assert shapes == [(1024, 4, 4), (512, 8, 8), (256, 16, 16), (128, 32, 32), (3, 64, 64)]
    assert model.latent_dim == 100


def test_dcgan_at_28_starts_from_7x7_and_refuses_other_sizes():
    model = vz.create_model("dcgan", in_chans=1, image_size=28)
    first = next(m for m in model.generator.modules() if isinstance(m, nn.ConvTranspose2d))
    assert first.kernel_size == (7, 7)
    last = [m for m in model.discriminator.modules() if isinstance(m, nn.Conv2d)][-1]
    assert last.kernel_size == (7, 7) and last.out_channels == 1
    with pytest.raises(UsageError, match="image_size=30: give 4·2ⁿ or 7·2ⁿ pixels"):
        vz.create_model("dcgan", image_size=30)


def _kinds(module: nn.Module) -> set[type]:
    return {type(m) for m in module.modules()}


def test_dcgan_follows_the_five_guidelines():
    model = vz.create_model("dcgan", in_chans=1, image_size=32)
    g, d = model.generator, model.discriminator
    # 1. no pooling; strided convolutions in D, fractionally-strided in G
    assert not {nn.MaxPool2d, nn.AvgPool2d, nn.Upsample} & (_kinds(g) | _kinds(d))
    assert all(m.stride == (2, 2) for m in d.modules() if isinstance(m, nn.Conv2d) and m.out_channels > 1)
    assert all(m.stride == (2, 2) for m in g.body.modules() if isinstance(m, nn.ConvTranspose2d))
    # 2. batch norm in both, but not on G's output nor on D's input layer
    layers_d = [m for m in d.modules() if not isinstance(m, nn.Sequential) and m is not d]
    assert isinstance(layers_d[0], nn.Conv2d) and not isinstance(layers_d[1], nn.BatchNorm2d)
    assert nn.BatchNorm2d in _kinds(d)
    layers_g = [m for m in g.modules() if not list(m.children())]
    assert isinstance(layers_g[-1], nn.Tanh) and isinstance(layers_g[-2], nn.ConvTranspose2d)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in layers_g) == 3   # projection and two hidden steps
    # 3. no fully connected hidden layer
    assert nn.Linear not in _kinds(g) | _kinds(d)
    # 4. ReLU in G, Tanh at its output; 5. LeakyReLU (0.2) in D
    assert nn.ReLU in _kinds(g) and nn.LeakyReLU not in _kinds(g)
    assert nn.ReLU not in _kinds(d) and {m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}


@pytest.mark.parametrize("switch, changed", [
    ({"strided": False}, lambda g, d: nn.MaxPool2d in _kinds(d) and nn.Upsample in _kinds(g)
     and nn.ConvTranspose2d in _kinds(g)),   # the 1 × 1 → start projection stays
    ({"batchnorm": False}, lambda g, d: nn.BatchNorm2d not in _kinds(g) | _kinds(d)),
    ({"hidden_fc": True}, lambda g, d: nn.Linear in _kinds(g) and nn.Linear in _kinds(d)),
    ({"g_activation": "leaky_relu"}, lambda g, d: nn.ReLU not in _kinds(g) and nn.LeakyReLU in _kinds(g)),
    ({"d_activation": "relu"}, lambda g, d: nn.ReLU in _kinds(d) and nn.LeakyReLU not in _kinds(d)),
])
def test_each_guideline_switches_off_alone(switch, changed):
    plain = vz.create_model("dcgan", in_chans=1, image_size=28)
    model = vz.create_model("dcgan", in_chans=1, image_size=28, **switch)
    assert changed(model.generator, model.discriminator)
    assert not changed(plain.generator, plain.discriminator)
    others = {k: v for k, v in {"strided": nn.MaxPool2d, "batchnorm": nn.BatchNorm2d, "hidden_fc": nn.Linear}.items()
              if k not in switch}
    for key, kind in others.items():   # the other guidelines hold
        assert (kind in _kinds(model.generator) | _kinds(model.discriminator)) == (
            kind in _kinds(plain.generator) | _kinds(plain.discriminator))
    images = model(torch.randn(3, 100))
    assert images.shape == (3, 1, 28, 28) and model.discriminator(images).shape == (3,)


def _output_shapes(network: nn.Module, kind: type, run) -> list[tuple[int, ...]]:
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for m in network.modules() if type(m) is kind]
    run()
    for hook in hooks:
        hook.remove()
    return shapes


@pytest.mark.parametrize("batchnorm", [True, False])
def test_extra_convs_give_fig1s_four_convolutions_at_28_without_going_below_7x7(batchnorm):
    plain = vz.create_model("dcgan", in_chans=1, image_size=28, width=8, batchnorm=batchnorm)
    model = vz.create_model("dcgan", in_chans=1, image_size=28, width=8, batchnorm=batchnorm,
                            g_extra_convs=2, d_extra_convs=2)
    model.eval()
    z = torch.randn(3, 100)
    g_convs = _output_shapes(model.generator, nn.Conv2d, lambda: model(z))
    d_convs = _output_shapes(model.discriminator, nn.Conv2d, lambda: model.discriminator(model(z)))
    assert g_convs == [(16, 7, 7)] * 2                                   # after the 7 × 7 projection
    assert d_convs == [(8, 14, 14), (16, 7, 7), (16, 7, 7), (16, 7, 7), (1, 1, 1)]   # four, then the logit
    assert len(_output_shapes(model.generator, nn.ConvTranspose2d, lambda: model(z))) == 3   # projection + 2 steps
    added = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(added) == 4 and all(m.stride == (1, 1) and (m.bias is None) == batchnorm for m in added)
    norms_added = [sum(isinstance(m, nn.BatchNorm2d) for m in ours.modules())
                   - sum(isinstance(m, nn.BatchNorm2d) for m in theirs.modules())
                   for ours, theirs in ((model.generator, plain.generator), (model.discriminator, plain.discriminator))]
    assert norms_added == ([2, 2] if batchnorm else [0, 0])
    assert not {nn.MaxPool2d, nn.Linear} & (_kinds(model.generator) | _kinds(model.discriminator))
    assert nn.LeakyReLU not in _kinds(model.generator) and nn.ReLU not in _kinds(model.discriminator)
    assert model(z).shape == (3, 1, 28, 28) and model.discriminator(model(z)).shape == (3,)
    with pytest.raises(UsageError, match="d_extra_convs=-1: give the number of 3 × 3 convolutions to add"):
        vz.create_model("dcgan", d_extra_convs=-1)


def test_unknown_activation_is_refused():
    with pytest.raises(UsageError, match="g_activation='elu'; choose one of relu, leaky_relu"):
        vz.create_model("dcgan", g_activation="elu")


def test_dcgan_initialisation_is_normal_0_002():
    torch.manual_seed(0)
    model = vz.create_model("dcgan")
    weight = model.generator.body[0].weight   # 1024 → 512, 4 × 4: 8 M values
    assert weight.mean().abs() < 1e-4 and weight.std().item() == pytest.approx(0.02, rel=0.01)
    scales = torch.cat([m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)])
    assert scales.mean().item() == pytest.approx(1.0, abs=0.005) and scales.std().item() == pytest.approx(0.02, rel=0.1)


def test_conditioning_reaches_both_networks_and_is_checked():
    torch.manual_seed(0)
    model = vz.create_model("cdcgan").eval()
    z = torch.randn(1, 100).repeat(2, 1)
    labels = torch.tensor([1, 7])
    with torch.no_grad():
        images = model(z, labels)
        assert not torch.allclose(images[0], images[1])   # same z, other class
        same = images[:1].repeat(2, 1, 1, 1)
        logits = model.discriminator(same, labels)
        assert logits[0] != logits[1]
    with pytest.raises(UsageError, match="conditional GAN needs labels"):
        model(z)
    with pytest.raises(UsageError, match="unconditional"):
        vz.create_model("dcgan", in_chans=1, image_size=28)(z, labels)


def test_cgan_mlp_has_mirza_and_osinderos_layers():
    model = vz.create_model("cgan_mlp")
    g, d = model.generator, model.discriminator
    assert _params(g) == (100 * 200 + 200) + (10 * 1000 + 1000) + (1200 * 1200 + 1200) + (1200 * 784 + 784)
    assert [m.pieces for m in d.modules() if isinstance(m, Maxout)] == [5, 5, 4]
    assert _params(d) == (784 * 1200 + 1200) + (10 * 250 + 250) + (290 * 960 + 960) + (240 + 1)
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.5}


def test_gan_mlp_has_goodfellows_mnist_sizes_and_dropout():
    torch.manual_seed(0)
    model = vz.create_model("gan_mlp")
    assert _params(model.generator) == (100 * 1200 + 1200) + (1200 * 1200 + 1200) + (1200 * 784 + 784)
    assert _params(model.discriminator) == (784 * 1200 + 1200) + (240 * 1200 + 1200) + (240 + 1)
    x = torch.rand(8, 1, 28, 28)
    model.train()
    assert not torch.equal(model.discriminator(x), model.discriminator(x))   # dropout while training
    model.eval()
    assert torch.equal(model.discriminator(x), model.discriminator(x))


def test_gan_mlp_2d_is_metz_et_als_toy():
    model = vz.create_model("gan_mlp_2d")
    assert model.latent_dim == 256 and model.output_shape == (2,)
    linears = [m for m in model.generator.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256, 128), (128, 128), (128, 2)]
    points = model(10 * torch.randn(500, 256))
    assert points.shape == (500, 2) and points.abs().max() > 1   # no Tanh on points
    assert model.discriminator(points).shape == (500,)


def test_discogan_has_two_generators_two_discriminators():
    torch.manual_seed(0)
    model = vz.create_model("discogan")
    assert model.kind == "discogan" and model.output_shape == (3, 64, 64)
    assert model.generator is model.generator_ab and model.discriminator is model.discriminator_b
    bottleneck = []
    model.generator_ab.encoder.register_forward_hook(lambda m, i, o: bottleneck.append(tuple(o.shape[1:])))
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    model.eval()
    with torch.no_grad():
        x_ab = model.translate(x, "ab")
        x_aba = model.translate(x_ab, "ba")
    assert bottleneck == [(512, 4, 4)]   # four stride-2 convolutions: 64, 128, 256, 512 channels
    assert x_ab.shape == x_aba.shape == x.shape and x_ab.abs().max() <= 1
    assert model.discriminator_a(x).shape == model.discriminator_b(x_ab).shape == (2,)
    assert nn.LeakyReLU in _kinds(model.generator_ab.encoder) and nn.ReLU in _kinds(model.generator_ab.decoder)
    assert nn.ReLU not in _kinds(model.generator_ab.encoder)
    with pytest.raises(UsageError, match="translate direction='ac'"):
        model.translate(x, "ac")
    names = {key.split(".")[0] for key in model.state_dict()}
    assert names == {"generator_ab", "generator_ba", "discriminator_a", "discriminator_b"}
    assert not torch.equal(model.generator_ab.decoder[0].weight, model.generator_ba.decoder[0].weight)


def test_discogan_small_sizes_and_points():
    model = vz.create_model("discogan", in_chans=1, image_size=28)
    x = torch.rand(3, 1, 28, 28)
    assert model.translate(x).shape == (3, 1, 28, 28) and model.discriminator_a(x).shape == (3,)
    points = vz.create_model("discogan_mlp_2d")
    assert points.translate(torch.randn(5, 2), "ba").shape == (5, 2)
    with pytest.raises(UsageError, match="discogan is unconditional"):
        vz.create_model("discogan", num_classes=2)


def test_checkpoints_round_trip_through_safetensors(tmp_path):
    for name in ("discogan_mlp_2d", "cdcgan"):
        model = vz.create_model(name)
        save_file(model.state_dict(), tmp_path / f"{name}.safetensors")   # refuses shared tensors
        fresh = vz.create_model(name)
        fresh.load_state_dict(load_file(tmp_path / f"{name}.safetensors"))
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))


@pytest.mark.parametrize("name", ["dcgan", "cdcgan", "discogan"])
def test_the_card_measures_the_generator(name):
    card = vz.model_card(name)
    model = vz.create_model(name)
    assert card["params"] == _params(model.generator) < _params(model)
    assert card["macs"] > 0


@pytest.mark.parametrize("name, last", [("gan_mlp", nn.Linear), ("cgan_mlp", nn.Linear), ("dcgan", nn.ConvTranspose2d)])
def test_image_generators_output_tanh_of_their_last_layer(name, last):
    """Images are Tanh of the last layer's output (the module docstring's [−1, 1] contract), not a sigmoid's [0, 1]."""
    torch.manual_seed(0)
    model = vz.create_model(name, in_chans=1, image_size=28).eval()
    layer = [m for m in model.generator.modules() if isinstance(m, last)][-1]
    seen = []
    layer.register_forward_hook(lambda m, args, out: seen.append(out))
    z = 3 * torch.randn(8, model.latent_dim)
    with torch.no_grad():
        images = model(z, _labels_for(model, 8))
    torch.testing.assert_close(images, torch.tanh(seen[0]).view_as(images))
    assert images.min() < 0 < images.max()


def test_labels_reach_both_networks_as_one_hot_vectors_and_planes():
    """Conditioning (Mirza & Osindero): G reads [z, e_y] and the MLP discriminator [x, e_y]; the convolutional
    discriminator reads e_y as constant image planes after the image's channels (e_y: F.one_hot of the label)."""
    from visionzoo.models.gan import one_hot
    labels = torch.tensor([0, 3, 9, 3])
    expected = nn.functional.one_hot(labels, 10).float()
    torch.testing.assert_close(one_hot(labels, 10, torch.zeros(1)), expected, rtol=0, atol=0)
    torch.manual_seed(0)
    mlp = vz.create_model("gan_mlp", num_classes=10, hidden=(16,), d_units=(8,)).eval()
    z, x = torch.randn(4, 100), torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(mlp(z, labels), mlp.generator.net(torch.cat([z, expected], 1)).view(4, 1, 28, 28))
        torch.testing.assert_close(mlp.discriminator(x, labels),
                                   mlp.discriminator.net(torch.cat([x.flatten(1), expected], 1)).squeeze(1))
        conv = vz.create_model("cdcgan", width=8).eval()
        planes = expected[:, :, None, None].expand(-1, -1, 28, 28)
        torch.testing.assert_close(conv.discriminator(x, labels),
                                   conv.discriminator.net(torch.cat([x, planes], 1)).squeeze(1))


def test_gan_mlp_drops_its_input_at_0_2_and_its_hidden_layers_at_0_5():
    """Goodfellow et al.'s released MNIST discriminator: dropout 0.2 on the input, 0.5 after each maxout layer."""
    layers = list(vz.create_model("gan_mlp").discriminator.net)
    assert [m.p for m in layers if isinstance(m, nn.Dropout)] == [0.2, 0.5, 0.5]
    assert isinstance(layers[0], nn.Dropout) and layers[0].p == 0.2
    assert all(isinstance(layers[i + 1], nn.Dropout) and layers[i + 1].p == 0.5
               for i, m in enumerate(layers) if isinstance(m, Maxout))


@pytest.mark.parametrize("name, kwargs", [("dcgan", dict(batchnorm=False, hidden_fc=True)), ("dcgan", {}),
                                          ("discogan", {})])
def test_every_bias_starts_at_zero(name, kwargs):
    """DCGAN's initialisation (Sec. 4, `normal_init_`): weights N(0, 0.02) and every bias 0, batch norm's too."""
    torch.manual_seed(0)
    model = vz.create_model(name, in_chans=1, image_size=28, width=8, **kwargs)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm1d,
                                                           nn.BatchNorm2d))]
    biased = [m for m in layers if m.bias is not None]
    assert len(biased) >= 3 and all(torch.count_nonzero(m.bias) == 0 for m in biased)
    weights = torch.cat([m.weight.flatten() for m in layers if not isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)


def test_without_strided_convolutions_the_generator_upsamples_by_nearest_neighbour():
    """``strided=False``: each ×2 step is nearest upsampling (every pixel copied to a 2 × 2 block), then a 3 × 3
    convolution."""
    model = vz.create_model("dcgan", in_chans=1, image_size=28, width=8, strided=False).eval()
    pairs = []
    hooks = [m.register_forward_hook(lambda m, args, out: pairs.append((args[0], out)))
             for m in model.generator.modules() if isinstance(m, nn.Upsample)]
    with torch.no_grad():
        model(torch.randn(2, 100))
    for hook in hooks:
        hook.remove()
    assert len(pairs) == 2
    for before, after in pairs:
        torch.testing.assert_close(after, before.repeat_interleave(2, -2).repeat_interleave(2, -1), rtol=0, atol=0)


def test_a_hidden_fully_connected_layer_in_the_generator_is_batch_normalised():
    """Guideline 3 off (``hidden_fc=True``) leaves guideline 2 on: z → FC 1024 → batch norm → ReLU → FC to the
    start map; with ``batchnorm=False`` neither batch norm."""
    def kinds(model):
        return [type(m) for m in model.generator.project]
    assert kinds(vz.create_model("dcgan", in_chans=1, image_size=28, width=8, hidden_fc=True)) == [
        nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.Unflatten, nn.BatchNorm2d, nn.ReLU]
    assert kinds(vz.create_model("dcgan", in_chans=1, image_size=28, width=8, hidden_fc=True, batchnorm=False)) == [
        nn.Linear, nn.ReLU, nn.Linear, nn.Unflatten, nn.ReLU]
