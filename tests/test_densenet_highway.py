"""DenseNet and highway networks: channel arithmetic, the notes' parameter counts, and the highway
gate's defining properties (T = 0 → identity, T = 1 → H, C = 1 − T, b_T < 0). Twin logits: test_twins.py."""
import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.layers.dense import DenseBlock, DenseLayer, Transition
from visionzoo.layers.highway import HighwayConv2d, HighwayLinear
from visionzoo.registry import parse_figure


def _block_channels(model, x):
    """(in, out) channels of every dense block and transition, in order."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.append((n, i[0].shape[1], o.shape[1])))
             for n, m in model.features.named_children() if isinstance(m, (DenseBlock, Transition))]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("name, k, theta, blocks, k0", [
    ("densenet121", 32, 0.5, (6, 12, 24, 16), 64),
    ("densenet40_12", 12, 1.0, (12, 12, 12), 16),
    ("densenet_bc_100_12", 12, 0.5, (16, 16, 16), 24),
])
def test_channel_arithmetic(name, k, theta, blocks, k0):
    """Each block outputs k0 + L·k maps; each transition passes on ⌊θm⌋ of them."""
    model = vz.create_model(name, num_classes=10, image_size=32)
    seen = _block_channels(model, torch.randn(1, 3, 32, 32))
    assert [n for n, _, _ in seen][::2] == [f"denseblock{i + 1}" for i in range(len(blocks))]
    channels = k0
    for i, num_layers in enumerate(blocks):
        _, cin, cout = seen[2 * i]
        assert (cin, cout) == (channels, channels + num_layers * k)
        channels = cout
        if i < len(blocks) - 1:
            _, cin, cout = seen[2 * i + 1]
            assert (cin, cout) == (channels, int(theta * channels))
            channels = cout
    assert model.num_features == channels == model.get_classifier().in_features


@pytest.mark.parametrize("name, figure", [("densenet40_12", "1.0M"), ("densenet_bc_100_12", "0.8M"),
                                          ("densenet_bc_250_24", "15.3M"), ("densenet_bc_190_40", "25.6M")])
def test_cifar_params_match_notes_table(name, figure):
    with torch.device("meta"):
        model = vz.create_model(name)
    paper, rounding = parse_figure(figure)
    assert abs(vz.count_params(model) - paper) <= rounding


def test_dense_layer_versions_and_dropout():
    x = torch.randn(2, 20, 8, 8)
    plain, bc = DenseLayer(20, 12, bottleneck=False), DenseLayer(20, 12, bn_size=4)
    assert plain.conv1.kernel_size == (3, 3) and not hasattr(plain, "conv2")
    assert (bc.conv1.kernel_size, bc.conv1.out_channels, bc.conv2.kernel_size) == ((1, 1), 48, (3, 3))
    for layer in (plain, bc):
        out = layer(x)
        assert out.shape == (2, 32, 8, 8) and torch.equal(out[:, :20], x)
    model = vz.create_model("densenet40_12", drop_rate=0.2)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 36 + 2
    with pytest.raises(ValueError, match="compression θ must lie in"):
        Transition(16, compression=0)


def test_he_init_of_convolutions():
    torch.manual_seed(0)
    conv = vz.create_model("densenet_bc_100_12").features.denseblock3.denselayer16.conv1
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)


def test_small_input_stem():
    small = vz.create_model("densenet121", num_classes=10, in_chans=1, image_size=28)
    assert small.features.conv0.kernel_size == (3, 3) and small.features.conv0.stride == (1, 1)
    assert not hasattr(small.features, "pool0")
    assert small.forward_features(torch.randn(1, 1, 28, 28)).shape[-2:] == (3, 3)
    assert hasattr(vz.create_model("densenet121", image_size=224).features, "pool0")


HIGHWAY_LAYERS = [pytest.param(lambda **kw: HighwayLinear(16, **kw), (4, 16), id="fc"),
                  pytest.param(lambda **kw: HighwayConv2d(8, 3, **kw), (2, 8, 5, 5), id="conv")]


@pytest.mark.parametrize("make, shape", HIGHWAY_LAYERS)
@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_highway_gate_properties(make, shape, act):
    torch.manual_seed(0)
    x = torch.randn(shape)
    layer = make(act=act)
    assert torch.all(layer.gate.bias == -2.0)
    h = layer.act(layer.h(x))
    with torch.no_grad():
        t, c = layer.transform_gate(x), layer.carry_gate(x)
        assert torch.equal(c, 1 - t) and 0 < t.mean() < 0.5
        torch.testing.assert_close(layer(x), h * t + x * c)
        layer.gate.weight.zero_()
        layer.gate.bias.fill_(-100.0)  # T = 0: the layer carries its input
        torch.testing.assert_close(layer(x), x)
        layer.gate.bias.fill_(100.0)  # T = 1: the layer is the plain layer H
        assert torch.equal(layer(x), h)
    for bias in (-1.0, -3.0):
        assert torch.all(make(act=act, gate_bias=bias).gate.bias == bias)


@pytest.mark.parametrize("name, kind", [("highway_fc", HighwayLinear), ("highway_conv", HighwayConv2d)])
def test_highway_networks_gate_bias_keyword(name, kind):
    for bias in (None, -1.0, -3.0):
        model = vz.create_model(name) if bias is None else vz.create_model(name, gate_bias=bias)
        layers = [m for m in model.modules() if isinstance(m, kind)]
        assert layers and all(torch.all(m.gate.bias == (bias or -2.0)) for m in layers)


def test_highway_fc_paper_setup():
    """Sec. 3.1: plain 784 → 50, then depth − 1 highway layers of 50 (plain twin: 71), softmax."""
    model = vz.create_model("highway_fc", depth=20)
    assert sum(isinstance(m, HighwayLinear) for m in model.modules()) == 19
    assert model.features[1].in_features == 784 and model.num_features == 50
    plain = vz.create_model("highway_fc", plain=True)
    assert not any(isinstance(m, HighwayLinear) for m in plain.modules()) and plain.num_features == 71
    per_layer = vz.count_params(HighwayLinear(50)), vz.count_params(nn.Linear(71, 71))
    assert all(abs(p - 5000) < 150 for p in per_layer)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
