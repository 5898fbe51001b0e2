"""Normalisation swaps, BN inference, activations (PReLU, maxout) and stochastic pooling."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionzoo as vz
from visionzoo.core.errors import UsageError
from visionzoo.layers.activation import Maxout, ScaledTanh, add_maxout, swap_activation
from visionzoo.layers.batchnorm import BatchNorm2dManual
from visionzoo.layers.norm import FEATURE_NORMS, LayerNorm2d, reparametrise_weights, swap_norm
from visionzoo.layers.pooling import StochasticPool2d, swap_max_pool
from visionzoo.layers.residual import BNReLU


def small_resnet():
    torch.manual_seed(0)
    return vz.create_model("resnet20_cifar", num_classes=10, in_chans=1, layers=[1, 1, 1])


def one_step(model, size=8):
    x, y = torch.randn(8, 1, size, size), torch.arange(8) % 10
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model.train()(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("norm", [nn.BatchNorm2d, BatchNorm2dManual])   # PyTorch's, and ours (--norm batch_manual)
def test_batchnorm_keeps_the_unbiased_running_variance_and_uses_it_at_inference(norm):
    x = torch.randn(4, 3, 5, 5) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1) + 1.0
    bn = norm(3, momentum=1.0)  # running statistics = this batch's
    bn(x)
    m = 4 * 5 * 5  # the effective mini-batch of a convolution: m·p·q
    biased = x.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(bn.running_var, biased * m / (m - 1))
    torch.testing.assert_close(bn.running_mean, x.mean(dim=(0, 2, 3)))
    expected = (x - bn.running_mean.view(1, 3, 1, 1)) / torch.sqrt(bn.running_var.view(1, 3, 1, 1) + bn.eps)
    torch.testing.assert_close(bn.eval()(x), expected)


@pytest.mark.parametrize("kind", FEATURE_NORMS)
def test_norm_swap_leaves_no_batchnorm_and_the_model_trains(kind):
    model = small_resnet()
    kept_gamma = model.layer1[0].bn2.weight.detach().clone()
    count = swap_norm(model, kind)
    assert count == sum(1 for _ in small_resnet().modules() if isinstance(_, nn.BatchNorm2d))
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    if kind in ("batch", "batch_manual"):
        expected = BatchNorm2dManual if kind == "batch_manual" else nn.BatchNorm2d
        assert all(type(m) is expected for m in norms) and len(norms) == count
    else:
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    if kind in ("layer", "instance", "group"):
        torch.testing.assert_close(model.layer1[0].bn2.weight, kept_gamma)  # γ carried over
    one_step(model)


@pytest.mark.parametrize("kind", [k for k in FEATURE_NORMS if k != "none"])
def test_norm_swap_copies_gamma_and_beta_from_every_kind_of_feature_norm(kind):
    """Each swapped-in norm takes over the old per-channel affine γ, β (set away from 1 and 0 here)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(8), BNReLU(8), nn.GroupNorm(4, 8), LayerNorm2d(8))
    with torch.no_grad():
        for norm in model:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0, 1)
    gammas = [norm.weight.detach().clone() for norm in model]
    betas = [norm.bias.detach().clone() for norm in model]
    assert swap_norm(model, kind) == 4
    swapped = [unit[0] if isinstance(unit, nn.Sequential) else unit for unit in model]   # BN-ReLU → (norm, ReLU)
    for norm, gamma, beta in zip(swapped, gammas, betas):
        torch.testing.assert_close(norm.weight.detach(), gamma)
        torch.testing.assert_close(norm.bias.detach(), beta)


def test_layer_norm_2d_normalises_over_the_channels_at_each_position():
    """ConvNeXt's channel LN: F.layer_norm over C of the (B, H, W, C) view; H ≠ W so a transposition shows."""
    torch.manual_seed(0)
    norm = LayerNorm2d(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_(0, 1)
    x = torch.randn(2, 6, 3, 5) * 2 + 1
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (6,), norm.weight, norm.bias, norm.eps).permute(0, 3, 1, 2)
    out = norm(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected)


def test_layer_instance_group_norm_normalise_over_their_sets():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(64))
    x = torch.randn(2, 64, 4, 4) * 3 + 1
    for kind, dims in (("layer", (1, 2, 3)), ("instance", (2, 3))):
        swap_norm(model, kind)
        y = model(x)
        torch.testing.assert_close(y.mean(dims), torch.zeros_like(y.mean(dims)), atol=1e-5, rtol=0)
        torch.testing.assert_close(y.var(dims, unbiased=False), torch.ones_like(y.mean(dims)), atol=1e-3, rtol=0)
    swap_norm(model, "group")
    assert model[0].num_groups == 32
    grouped = model(x).view(2, 32, 2 * 16)  # 32 groups of 2 channels × 4 × 4
    torch.testing.assert_close(grouped.mean(2), torch.zeros(2, 32), atol=1e-5, rtol=0)


def test_pre_activation_units_keep_their_relu_after_a_norm_swap():
    torch.manual_seed(0)
    model = vz.create_model("wrn16_4", num_classes=10, in_chans=1, widen_factor=1)
    swap_norm(model, "group")
    assert not any(isinstance(m, BNReLU) for m in model.modules())
    unit = model.layer1[0].bn1
    assert isinstance(unit[0], nn.GroupNorm) and isinstance(unit[1], nn.ReLU)


def test_norm_swap_needs_a_normalisation_but_weight_and_spectral_norm_apply_anywhere():
    lenet = vz.create_model("lenet", num_classes=10, in_chans=1)
    with pytest.raises(UsageError, match="no feature-map normalisation"):
        swap_norm(lenet, "group")
    x = torch.randn(3, 1, 28, 28)
    before = lenet(x)
    assert reparametrise_weights(lenet, "weight") == 4
    torch.testing.assert_close(lenet(x), before)  # w = g v/‖v‖ starts as the same weights
    g = lenet.fc1[0].parametrizations.weight.original0
    torch.testing.assert_close(lenet.fc1[0].weight.norm(dim=1), g.abs().flatten())
    torch.manual_seed(0)
    layer = nn.Linear(30, 20)
    with torch.no_grad():
        layer.weight.mul_(10)
    reparametrise_weights(layer, "spectral")
    for _ in range(100):  # power iterations, one per training-mode forward
        layer(torch.randn(1, 30))
    assert torch.linalg.matrix_norm(layer.eval().weight, ord=2).item() == pytest.approx(1.0, abs=1e-2)


@pytest.mark.parametrize("kind, expected", [
    ("relu", nn.ReLU), ("leaky_relu", nn.LeakyReLU), ("prelu_shared", nn.PReLU), ("elu", nn.ELU),
    ("relu6", nn.ReLU6), ("gelu", nn.GELU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid)])
def test_activation_swap_replaces_every_activation_module(kind, expected):
    for name, count in (("lenet5", 6), ("lenet", 3)):
        model = vz.create_model(name, num_classes=10, in_chans=1)
        assert swap_activation(model, kind, (1, 28, 28)) == count
        activations = [m for m in model.modules() if isinstance(m, expected)]
        assert len(activations) == count and all(type(m) is expected for m in activations)
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_scaled_tanh_is_lecuns_sigmoid_with_f_of_one_equal_to_one():
    """LeCun et al. 1998, Appendix A: f(a) = 1.7159·tanh(2a/3), chosen so that f(±1) = ±1 (and f''(1) is maximal)."""
    f = ScaledTanh()
    torch.testing.assert_close(f(torch.tensor([1.0, -1.0])), torch.tensor([1.0, -1.0]), atol=1e-4, rtol=0)
    x = torch.linspace(-4, 4, 17)
    torch.testing.assert_close(f(x), 1.7159 * torch.tanh(2 * x / 3))


def test_channel_wise_prelu_has_one_slope_per_channel_and_fused_units_are_split():
    lenet = vz.create_model("lenet", num_classes=10, in_chans=1)
    swap_activation(lenet, "prelu", (1, 28, 28))
    assert [m.num_parameters for m in lenet.modules() if isinstance(m, nn.PReLU)] == [20, 50, 500]
    wrn = vz.create_model("wrn16_4", num_classes=10, in_chans=1, widen_factor=1)
    swap_activation(wrn, "prelu", (1, 8, 8))
    unit = wrn.layer1[0].bn1
    assert isinstance(unit[0], nn.BatchNorm2d) and unit[1].num_parameters == 16 == unit[0].num_features
    one_step(wrn)


def test_swapped_in_prelu_starts_at_a_quarter_and_learns_a_slope_per_channel():
    # He et al. 2015: a_i = 0.25 at first, one learned slope per channel (--act prelu)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.ReLU())
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2).view(2, 2, 1, 1))
    assert swap_activation(model, "prelu", input_size=(2, 4, 4)) == 1
    prelu = model[1]
    torch.testing.assert_close(prelu.weight.detach(), torch.full((2,), 0.25))
    x = torch.randn(128, 2, 4, 4)
    target = torch.where(x > 0, x, torch.tensor([0.1, 0.4]).view(1, 2, 1, 1) * x)  # leaky ReLUs of two slopes
    optimizer = torch.optim.SGD(prelu.parameters(), lr=0.5)
    for _ in range(100):
        optimizer.zero_grad()
        F.mse_loss(model(x), target).backward()
        optimizer.step()
    torch.testing.assert_close(prelu.weight.detach(), torch.tensor([0.1, 0.4]), atol=1e-3, rtol=0)


def test_maxout_is_the_max_of_k_affine_pieces():
    torch.manual_seed(0)
    k, units = 3, 4
    layer = nn.Linear(5, units * k)
    x = torch.randn(7, 5)
    pieces = torch.stack([x @ layer.weight[c * k + j] + layer.bias[c * k + j]
                          for c in range(units) for j in range(k)], 1).view(7, units, k)
    torch.testing.assert_close(Maxout(k)(layer(x)), pieces.max(2).values)


def test_maxout_widens_the_layer_before_each_activation():
    torch.manual_seed(0)
    model = vz.create_model("lenet", num_classes=10, in_chans=1)
    assert add_maxout(model, 3) == 3
    assert model.features[0].out_channels == 60 and model.features[3].in_channels == 20
    assert model.fc1[0].out_features == 1500 and model.fc2.in_features == 500
    conv_out = model.features[0](torch.randn(2, 1, 28, 28))
    torch.testing.assert_close(model.features[1](conv_out), conv_out.view(2, 20, 3, 24, 24).amax(2))
    one_step(model, 28)
    with pytest.raises(UsageError, match="maxout"):
        add_maxout(small_resnet(), 2)


def test_stochastic_pooling_draws_in_proportion_to_the_activations():
    torch.manual_seed(0)
    window = torch.tensor([[1.0, 0.0], [2.0, 3.0]])
    pool = StochasticPool2d(2)
    x = window.repeat(1, 1, 150, 150)  # 22,500 copies of the region
    drawn = pool.train()(x).flatten()
    frequencies = torch.stack([(drawn == v).float().mean() for v in (1.0, 0.0, 2.0, 3.0)])
    torch.testing.assert_close(frequencies, torch.tensor([1 / 6, 0.0, 2 / 6, 3 / 6]), atol=0.012, rtol=0)
    # At test time: Σ p_i a_i = (1 + 4 + 9) / 6.
    torch.testing.assert_close(pool.eval()(window.view(1, 1, 2, 2)).flatten(), torch.tensor([14 / 6]))
    assert pool(torch.zeros(1, 1, 2, 2)).item() == 0


def test_stochastic_pooling_replaces_max_pooling_over_the_same_regions():
    x = torch.rand(2, 3, 7, 7)
    for layer in (nn.MaxPool2d(2), nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(3, 2, ceil_mode=True)):
        model = nn.Sequential(layer)
        expected_shape = model(x).shape
        swap_max_pool(model)
        assert isinstance(model[0], StochasticPool2d)
        for mode in (True, False):
            out = model.train(mode)(x)
            assert out.shape == expected_shape
            assert (out <= layer(x) + 1e-6).all()  # a region's draw or average never exceeds its max
    with pytest.raises(UsageError, match="no max-pooling"):
        swap_max_pool(small_resnet())


@pytest.mark.parametrize("size, kernel, stride, padding", [(5, 2, 2, 1), (7, 3, 2, 1), (6, 3, 2, 0), (4, 2, 2, 1)])
def test_stochastic_pooling_regions_are_max_poolings_in_both_modes_and_negatives_count_as_zero(size, kernel, stride,
                                                                                               padding):
    # the regions of nn.MaxPool2d, ceil mode included (its last window must start inside the input or its
    # left padding), and Zeiler & Fergus's rectified inputs: a negative value weighs nothing
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size)
    for ceil_mode in (False, True):
        pool = StochasticPool2d(kernel, stride, padding, ceil_mode).eval()
        assert pool(x).shape == nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)(x).shape
        torch.testing.assert_close(pool(x), pool(x.clamp(min=0)))
