"""Initialisation schemes and unsupervised pre-training, each by its defining property."""
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionzoo as vz
from visionzoo.core.errors import UsageError
from visionzoo.engine.pretrain import pretrain_autoencoder
from visionzoo.layers.init import initialise, patch_whitening, weighted_layers, whiten_first_conv


def mlp(activation=nn.Sigmoid):
    return nn.Sequential(nn.Linear(6, 5), activation(), nn.Linear(5, 4), activation(), nn.Linear(4, 3))


def sgd_steps(model, steps=3, lr=0.5):
    x, y = torch.randn(16, 6, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 3
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()


def rows_identical(tensor):
    return torch.allclose(tensor, tensor[:1].expand_as(tensor), atol=1e-7)


def test_zero_init_gives_every_hidden_unit_the_same_gradient_for_ever():
    torch.manual_seed(0)
    model = mlp()
    initialise(model, "zero")
    sgd_steps(model)
    hidden = [model[0], model[2]]
    assert model[4].weight.abs().sum() > 0  # the output layer did learn something
    for layer in hidden:
        assert rows_identical(layer.weight.grad) and rows_identical(layer.weight)
    initialise(model, "xavier_normal")
    sgd_steps(model)
    assert not rows_identical(model[0].weight.grad)


@pytest.mark.parametrize("scheme, variance", [
    ("xavier_normal", lambda fan_in, fan_out: 2 / (fan_in + fan_out)),
    ("xavier_uniform", lambda fan_in, fan_out: 2 / (fan_in + fan_out)),
    ("he_fan_in", lambda fan_in, fan_out: 2 / fan_in),
    ("he_fan_out", lambda fan_in, fan_out: 2 / fan_out),
    ("normal", lambda fan_in, fan_out: 0.03 ** 2),
    ("uniform", lambda fan_in, fan_out: 0.03 ** 2),
])
def test_weight_variance_of_each_scheme(scheme, variance):
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 128, 3)  # n_in = 64·9, n_out = 128·9
    initialise(conv, scheme, std=0.03)
    expected = variance(64 * 9, 128 * 9)
    assert conv.weight.var().item() == pytest.approx(expected, rel=0.03)
    assert conv.weight.mean().abs().item() < 0.05 * math.sqrt(expected)
    assert conv.bias.abs().sum() == 0


def test_he_init_follows_the_prelu_slope():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1000, 1000), nn.PReLU(1000, 0.25))
    initialise(model, "he_fan_in")
    assert model[0].weight.var().item() == pytest.approx(2 / ((1 + 0.25 ** 2) * 1000), rel=0.03)


@pytest.mark.parametrize("shape", [(200, 50), (50, 200)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape):
    layer = nn.Linear(shape[1], shape[0])
    initialise(layer, "orthogonal")
    w = layer.weight.detach()
    gram = w.T @ w if shape[0] > shape[1] else w @ w.T
    torch.testing.assert_close(gram, torch.eye(min(shape)), atol=1e-5, rtol=0)


def test_dirac_makes_a_convolution_the_identity():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 5, padding=2))
    initialise(model, "dirac")
    x = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(model(x), x)


def output_variances(model, batch):
    variances = {}

    def record(module, args, out):
        variances.setdefault(module, out.var().item())

    hooks = [m.register_forward_hook(record) for m in weighted_layers(model)]
    with torch.no_grad():
        model.eval()(batch)
    for hook in hooks:
        hook.remove()
    return variances


@functools.lru_cache(maxsize=None)
def digit_images(size):
    from visionzoo.data.datasets import load_data
    from visionzoo.data.loader import Normalizer
    data = load_data("digits", val_size=0.1, image_size=size)
    images, _ = data.train.fetch(torch.arange(256))
    return Normalizer(data.mean, data.std)(images)


def digit_batch(n=128, size=28):
    return digit_images(size)[:n]


def test_lsuv_gives_every_layer_unit_output_variance_on_the_batch():
    torch.manual_seed(0)
    model = vz.create_model("lenet", num_classes=10, in_chans=1)
    batch = digit_batch(64)
    before = output_variances(model, batch)
    assert any(abs(v - 1) > 0.5 for v in before.values())  # the paper's init is far from unit variance
    initialise(model, "lsuv", batch=batch)
    after = output_variances(model, batch)
    assert len(after) == 4
    for variance in after.values():
        assert abs(variance - 1) < 0.1


def test_lsuv_needs_a_batch_and_unknown_schemes_are_refused():
    with pytest.raises(UsageError, match="lsuv needs a data batch"):
        initialise(mlp(), "lsuv")
    with pytest.raises(UsageError, match="choose one of"):
        initialise(mlp(), "glorot")


def test_patch_whitening_decorrelates_the_patches_to_unit_variance():
    batch = digit_batch(128)
    filters = patch_whitening(batch, (3, 3), eps=0.0)
    assert filters.shape == (18, 1, 3, 3)
    torch.testing.assert_close(filters[9:], -filters[:9])
    components = F.conv2d(batch.double(), filters[:9].double()).permute(0, 2, 3, 1).reshape(-1, 9)
    torch.testing.assert_close(torch.cov(components.T), torch.eye(9, dtype=torch.float64), atol=1e-4, rtol=0)
    raw = F.unfold(batch.double(), 3).transpose(1, 2).reshape(-1, 9)
    assert (torch.cov(raw.T) - torch.eye(9, dtype=torch.float64)).abs().max() > 0.3  # pixels are correlated


def test_whiten_first_conv_fills_and_freezes_only_the_first_convolution():
    model = vz.create_model("resnet9", in_chans=1, widths=(24, 48, 96, 192))  # 24 channels: 18 filters, then 6 again
    first, second = [m for m in model.modules() if isinstance(m, nn.Conv2d)][:2]
    second_before = second.weight.clone()
    whiten_first_conv(model, digit_batch(128))
    filters = patch_whitening(digit_batch(128), (3, 3))
    torch.testing.assert_close(first.weight, torch.cat([filters, filters[:6]]))
    assert not first.weight.requires_grad and second.weight.requires_grad
    torch.testing.assert_close(second.weight, second_before)


def test_denoising_autoencoder_pretraining_lowers_every_layers_reconstruction_loss():
    torch.manual_seed(0)
    images = digit_batch(256, size=8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
    classifier_before = model[5].weight.detach().clone()
    report = pretrain_autoencoder(model, lambda: iter(images.split(64)), epochs=3, noise=0.3, lr=0.01)
    assert [row["layer"] for row in report] == ["1", "3"]  # the hidden layers, not the classifier
    for row in report:
        assert row["loss_after"] < 0.8 * row["loss_before"]
    assert torch.equal(model[5].weight, classifier_before)


def test_autoencoder_pretraining_of_conv_layers_and_refusal_for_branching_networks():
    torch.manual_seed(0)
    images = digit_batch(32)
    model = vz.create_model("lenet", num_classes=10, in_chans=1)
    report = pretrain_autoencoder(model, lambda: iter([images]), epochs=2, lr=0.003)
    assert [row["layer"] for row in report] == ["features.0", "features.3", "fc1.0"]
    assert all(row["loss_after"] < row["loss_before"] for row in report)
    resnet = vz.create_model("resnet20_cifar", num_classes=10, in_chans=1, layers=[1, 1, 1])
    with pytest.raises(UsageError, match="not a chain"):
        pretrain_autoencoder(resnet, lambda: iter([digit_batch(8, size=8)]))


def test_patch_whitening_orders_filters_by_decreasing_eigenvalue():
    # Page / airbench: the filters are Λ^{-1/2}Vᵀ, largest eigenvalue first, then their negatives. Two
    # independent channels of standard deviation 10 and 1 (1×1 patches): the first filter reads channel 0
    # scaled by 1/10, the second channel 1 scaled by 1
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(64, 2, 8, 8, generator=generator) * torch.tensor([10.0, 1.0])[:, None, None]
    filters = patch_whitening(images, (1, 1)).flatten(1)
    assert filters.shape == (4, 2)
    torch.testing.assert_close(filters[:2].abs(), torch.tensor([[0.1, 0.0], [0.0, 1.0]]), atol=0.02, rtol=0.05)
    torch.testing.assert_close(filters[2:], -filters[:2])
