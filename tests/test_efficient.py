"""Efficient networks: the channel shuffle's definition, the depthwise-separable cost formula,
compound scaling of EfficientNet B1–B7, Fire module widths, SqueezeNet's Table 1 and bypasses,
MobileNet's Table 1 and its multipliers, inverted residuals. Twin logits: test_twins.py."""
import math

import pytest
import torch
import torchvision
from torch import nn

import visionzoo as vz
from visionzoo.core.profile import layer_table
from visionzoo.layers.fire import Fire
from visionzoo.layers.mobile import DepthwiseSeparable, InvertedResidual
from visionzoo.layers.shuffle import ShuffleUnit, channel_shuffle
from visionzoo.models import efficientnet as E


@pytest.mark.parametrize("name", [f"efficientnet_b{i}" for i in range(8)])
def test_efficientnet_derived_from_b0_matches_torchvision_shapes(name):
    """B1–B7 come from the B0 table by code (widths × w rounded to 8, layers × d rounded up);
    every tensor has the shape of torchvision's hand-configured network."""
    with torch.device("meta"):
        ours = vz.create_model(name)
        theirs = getattr(torchvision.models, name)()
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
           {k: v.shape for k, v in theirs.state_dict().items()}
    eps = {m.eps for m in ours.modules() if isinstance(m, nn.BatchNorm2d)}
    assert eps == {m.eps for m in theirs.modules() if isinstance(m, nn.BatchNorm2d)}


# φ implied by each published resolution: r = 224 · γ^φ.
IMPLIED_PHI = {b: math.log(r / 224) / math.log(E.GAMMA) for b, (_, _, r, _) in E.PUBLISHED.items()}


@pytest.mark.parametrize("b", ["b1", "b2", "b3", "b4", "b5", "b6", "b7"])
def test_compound_scaling_gives_published_width_and_resolution(b):
    """At the φ of its resolution, β^φ rounds (to the printed 0.1) to the published width."""
    width, depth, resolution, _ = E.PUBLISHED[b]
    rule_width, rule_depth, rule_resolution = E.compound_coefficients(IMPLIED_PHI[b])
    assert rule_resolution == pytest.approx(resolution)
    assert round(rule_width, 1) == width
    if b in ("b1", "b2"):
        assert round(rule_depth, 1) == depth
    else:
        # The authors scaled B3–B7 less deeply than α^φ: 4 % (B3) to 15 % (B6) fewer layers.
        assert 0.84 < depth / rule_depth < 0.96


def test_compound_scaling_rule_and_rounding():
    """α·β²·γ² ≈ 2 (Eq. 3): FLOPs ∝ d·w²·r² double per step of φ before rounding; the paper's
    rounding of channels (nearest multiple of 8) and layers (up)."""
    assert E.ALPHA * E.BETA ** 2 * E.GAMMA ** 2 == pytest.approx(2, rel=0.05)
    assert E.compound_coefficients(1) == pytest.approx((1.1, 1.2, 257.6))
    with torch.device("meta"):
        model = vz.create_model("efficientnet_b0", phi=1)
    assert model.input_resolution == 258
    assert [len(stage) for stage in model.features[1:-1]] == [2, 3, 3, 4, 4, 5, 2]  # ⌈1.2 n⌉
    # 32 × 1.1 = 35.2 → 32, 40 × 1.1 = 44 → 48 (nearest multiple of 8), 1280 × 1.1 = 1408
    assert model.features[0][0].out_channels == 32
    assert model.features[3][0].out_channels == 48 and model.num_features == 1408


def test_efficientnet_stochastic_depth_and_se():
    model = vz.create_model("efficientnet_b0")
    blocks = [m for m in model.modules() if hasattr(m, "use_residual")]
    # Linear in depth (Huang et al. 2016, Eq. 4): block l = 1..L drops its branch with (l/L)·0.2;
    # blocks without a shortcut have no branch to drop.
    expected = [0.2 * l / len(blocks) if block.use_residual else 0.0 for l, block in enumerate(blocks, 1)]
    assert [block.drop_path.drop_prob for block in blocks] == pytest.approx(expected)
    block = model.features[2][1]  # an MBConv6 with 24 input channels
    assert block.block[2].fc1.out_channels == 24 // 4  # SE squeezes a quarter of the input
    assert block.block[2].fc1.in_channels == 24 * 6


def test_channel_shuffle_is_reshape_transpose_flatten():
    """g groups of n channels: output channel j is input channel (j mod g)·n + j div g."""
    groups, per_group = 3, 4
    x = torch.arange(groups * per_group, dtype=torch.float).view(1, -1, 1, 1).expand(2, -1, 2, 2)
    out = channel_shuffle(x, groups)
    expected = [(j % groups) * per_group + j // groups for j in range(groups * per_group)]
    assert out[0, :, 0, 0].tolist() == expected
    # every run of g consecutive outputs holds one channel from each input group
    for start in range(0, groups * per_group, groups):
        assert sorted(v // per_group for v in expected[start:start + groups]) == list(range(groups))
    # shuffling with n groups undoes it (the transpose of the transpose)
    torch.testing.assert_close(channel_shuffle(out, per_group), x)


def test_shufflenet_unit_groups_and_widths():
    unit = ShuffleUnit(240, 480, stride=2, groups=3)
    assert unit.compress[0].groups == 3 and unit.expand[0].groups == 3
    assert unit.depthwise[0].groups == unit.depthwise[0].in_channels == 480 // 4
    assert unit(torch.randn(1, 240, 8, 8)).shape == (1, 480, 4, 4)
    model = vz.create_model("shufflenet_v1_g8")
    assert model.stage2[0].compress[0].groups == 1  # 24 stem channels are not split
    assert [getattr(model, f"stage{i}")[-1].expand[0].out_channels for i in (2, 3, 4)] == \
           [384, 768, 1536]


@pytest.mark.parametrize("cin, cout, side, stride", [(32, 64, 112, 1), (512, 512, 14, 1),
                                                     (64, 128, 112, 2)])
def test_depthwise_separable_cost_formula(cin, cout, side, stride):
    """D_K²·M·D_F² (depthwise) + M·N·D_F² (pointwise), D_F the output side; versus a full
    convolution, the ratio is 1/N + 1/D_K²."""
    block = DepthwiseSeparable(cin, cout, stride)
    out_side = side // stride
    formula = 3 * 3 * cin * out_side ** 2 + cin * cout * out_side ** 2
    assert vz.count_macs(block, (cin, side, side)) == formula
    full = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    ratio = formula / vz.count_macs(full, (cin, side, side))
    assert ratio == pytest.approx(1 / cout + 1 / 9)


def test_mobilenet_v1_table1_and_multipliers():
    with torch.device("meta"):
        model = vz.create_model("mobilenet_v1")
    rows = {r["layer"]: r["output"] for r in layer_table(model, (3, 224, 224), depth=2)}
    expected = [(32, 112), (64, 112), (128, 56), (128, 56), (256, 28), (256, 28), (512, 14),
                *[(512, 14)] * 5, (1024, 7), (1024, 7)]
    assert [tuple(rows[f"features.{i}"][:2]) for i in range(14)] == expected
    thin = vz.create_model("mobilenet_v1_0_5")
    assert thin.features[-1].pointwise[0].out_channels == 512
    small = vz.create_model("mobilenet_v1_128")
    assert vz.count_params(small) == vz.count_params(model)  # ρ changes the input only
    assert small.input_resolution == vz.model_card("mobilenet_v1_128")["input_size"][-1] == 128


def test_inverted_residual_shortcut_and_linear_bottleneck():
    kept = InvertedResidual(24, 24, stride=1, expand_ratio=6)
    assert kept.use_residual and not InvertedResidual(24, 32, 1).use_residual
    assert not InvertedResidual(24, 24, stride=2).use_residual
    assert kept.conv[0][0].out_channels == 144  # expansion t·k
    assert isinstance(kept.conv[-1], nn.BatchNorm2d)  # the projection has no activation
    branch = kept.conv(torch.randn(2, 24, 8, 8))
    assert (branch < 0).any()  # linear output, unlike a ReLU6 one


def test_fire_module_channels():
    """s1x1 squeeze filters feed e1x1 + e3x3 expand filters, concatenated."""
    fire = Fire(96, 16, 64, 64)
    assert (fire.squeeze.in_channels, fire.squeeze.out_channels) == (96, 16)
    assert fire.expand1x1.in_channels == fire.expand3x3.in_channels == 16
    assert fire.expand3x3.kernel_size == (3, 3) and fire.expand1x1.kernel_size == (1, 1)
    assert fire(torch.randn(1, 96, 9, 9)).shape == (1, 128, 9, 9)
    assert vz.count_params(fire) == 96 * 16 + 16 + 16 * 64 + 64 + 9 * 16 * 64 + 64


def test_squeezenet_table1_outputs():
    """Table 1: conv1 111², maxpool 55², fire2–4 55² (128, 128, 256), maxpool 27², fire5–8,
    maxpool 13², fire9 13² × 512. The table's sizes are those of the authors' Caffe model, which
    is fed 227-pixel crops (at 224, the unpadded 7×7/2 conv1 gives 109²)."""
    with torch.device("meta"):
        model = vz.create_model("squeezenet1_0")
    rows = {r["layer"]: r["output"] for r in layer_table(model, (3, 227, 227), depth=2)}
    sides = [111, 111, 55, 55, 55, 55, 27, 27, 27, 27, 27, 13, 13]
    widths = [96, 96, 96, 128, 128, 256, 256, 256, 384, 384, 512, 512, 512]
    assert [tuple(rows[f"features.{i}"]) for i in range(13)] == list(zip(widths, sides, sides))


def test_squeezenet_bypasses():
    torch.manual_seed(0)
    simple = vz.create_model("squeezenet1_0_simple_bypass")
    plain = vz.create_model("squeezenet1_0")
    complex_ = vz.create_model("squeezenet1_0_complex_bypass")
    kinds = [m.bypass_kind for m in complex_.features if isinstance(m, Fire)]
    assert kinds == ["complex", "simple"] * 4  # fire2 … fire9
    assert [m.bypass_kind for m in simple.features if isinstance(m, Fire)] == [None, "simple"] * 4
    fire3 = simple.features[4]
    x = torch.randn(1, 128, 5, 5)
    plain_fire3 = plain.features[4]
    plain_fire3.load_state_dict(fire3.state_dict())
    torch.testing.assert_close(fire3(x), plain_fire3(x) + x)


@pytest.mark.parametrize("name", ["squeezenet1_0", "squeezenet1_1", "mobilenet_v1", "mobilenet_v2",
                                  "shufflenet_v1_g3", "shufflenet_v2_x1_0", "efficientnet_b0"])
def test_small_input_keeps_a_spatial_map(name):
    """28×28×1: the adapted stems leave at least a 2×2 map for the last layers."""
    model = vz.create_model(name, num_classes=10, in_chans=1, image_size=28).eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 1, 28, 28))
    assert min(features.shape[-2:]) >= 2


@pytest.mark.parametrize("stride", [1, 2])
def test_shufflenet_v2_unit_equals_torchvisions(stride):
    # ShuffleNet V2 Fig. 3(c), (d): the stride-1 unit keeps the first half of the channels and transforms the
    # second; torchvision's InvertedResidual is the reference (same parameter names)
    shufflenetv2 = pytest.importorskip("torchvision.models.shufflenetv2")
    from visionzoo.layers.shuffle import ShuffleV2Unit

    torch.manual_seed(0)
    cin = 8 if stride == 1 else 4
    twin = shufflenetv2.InvertedResidual(cin, 8, stride).eval()
    unit = ShuffleV2Unit(cin, 8, stride).eval()
    unit.load_state_dict(twin.state_dict())
    x = torch.randn(2, cin, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), twin(x))
