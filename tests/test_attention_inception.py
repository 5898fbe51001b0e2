"""AttentionInception-56 (Wang et al., CVPR 2017, Table 5): Attention-56 whose every residual unit is
a pre-activated Inception-ResNet-v1 block A (Szegedy et al., AAAI 2017, Fig. 10). The unit is
x + F(x) with a linear last 1×1, its branches are 1×1 | 1×1-3×3 | 1×1-3×3-3×3 of the stated width,
its parameters follow the width formula; the attention modules keep H = (1 + M)·T. The card is
checked against the table in test_zoo.py (test_card_matches_paper)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionzoo as vz
from visionzoo.core.profile import count_macs
from visionzoo.layers.residual import PreActBlock
from visionzoo.models.attention_inception import PreActInceptionResNetUnit

from conftest import assert_attention_residual_learning, randomise_batchnorm


def _meta(name, **kwargs):
    with torch.device("meta"):
        return vz.create_model(name, **kwargs)


def _unit(cin, cout, width, stride):
    torch.manual_seed(0)
    unit = PreActInceptionResNetUnit(cin, cout, width, stride)
    return randomise_batchnorm(unit, torch.randn(8, cin, 10, 10))


def _unit_params(cin, cout, width, stride):
    """BN (γ, β) on the input, the three 1×1 reductions, three 3×3s, BN before each 3×3 and on
    the 3·width concatenation, the linear 1×1 to cout, and a bias-free projection if the shape changes."""
    projection = cin * cout if (cin != cout or stride != 1) else 0
    return (2 * cin + 3 * cin * width + 27 * width ** 2 + 2 * (3 * width) + 2 * (3 * width)
            + 3 * width * cout + projection)


def test_unit_is_input_plus_a_linear_1x1_of_the_branches():
    unit, x = _unit(16, 16, 4, 1), torch.randn(2, 16, 10, 10)
    with torch.no_grad():
        residual = unit(x) - x
        assert residual.abs().amax() > 0.1
        # Nothing follows the last 1×1 before the addition: F scales with its weights, sign included.
        unit.conv_out.weight.mul_(-2)
        torch.testing.assert_close(unit(x) - x, -2 * residual)
        unit.conv_out.weight.zero_()
        assert torch.equal(unit(x), x)


def test_projection_unit_with_zero_residual_is_the_strided_1x1_of_the_preactivated_input():
    unit, x = _unit(8, 16, 3, 2), torch.randn(2, 8, 10, 10)
    bn = unit.bn1
    with torch.no_grad():
        unit.conv_out.weight.zero_()
        pre = F.relu(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps))
        expected = F.conv2d(pre, unit.downsample[0].weight, stride=2)
        torch.testing.assert_close(unit(x), expected)


@pytest.mark.parametrize("cin, cout, width, stride", [(16, 16, 4, 1), (8, 16, 3, 2)])
def test_branches_are_block_a_of_the_stated_width(cin, cout, width, stride):
    unit, x = _unit(cin, cout, width, stride), torch.randn(2, cin, 10, 10)
    branches = (unit.branch1x1, unit.branch3x3, unit.branch3x3dbl)
    convs = [[m for m in branch.modules() if isinstance(m, nn.Conv2d)] for branch in branches]
    assert [[c.kernel_size[0] for c in b] for b in convs] == [[1], [1, 3], [1, 3, 3]]
    assert [[c.stride[0] for c in b] for b in convs] == [[stride], [1, stride], [1, stride, 1]]
    with torch.no_grad():
        outputs = unit.branches(unit.bn1(x))
        side = 10 // stride
        assert [tuple(o.shape) for o in outputs] == [(2, width, side, side)] * 3
        assert unit.bn_out.num_features == unit.conv_out.in_channels == 3 * width
        assert unit(x).shape == (2, cout, side, side)


def test_branches_see_one_three_and_five_pixel_squares():
    """1×1, 3×3 and two stacked 3×3s (the factorised 5×5 of Inception-v3): the receptive fields."""
    unit = _unit(16, 16, 8, 1)
    pre = torch.rand(2, 16, 11, 11, requires_grad=True)
    sides = []
    for output in unit.branches(pre):
        (grad,) = torch.autograd.grad(output[:, :, 5, 5].sum(), pre)
        rows, cols = grad.abs().sum((0, 1)).nonzero(as_tuple=True)
        assert rows.min() + rows.max() == cols.min() + cols.max() == 10   # centred on (5, 5)
        sides.append((int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1))
    assert sides == [(1, 1), (3, 3), (5, 5)]


@pytest.mark.parametrize("cin, cout, width, stride", [(16, 16, 4, 1), (8, 16, 3, 2), (64, 256, 30, 1)])
def test_unit_parameters_follow_the_width_formula(cin, cout, width, stride):
    with torch.device("meta"):
        unit = PreActInceptionResNetUnit(cin, cout, width, stride)
    assert vz.count_params(unit) == _unit_params(cin, cout, width, stride)


def test_attentioninception56_replaces_every_residual_unit_of_attention56():
    attention56 = _meta("attention56")
    plain = [m for m in attention56.modules() if isinstance(m, PreActBlock)]
    model = _meta("attentioninception56")
    units = [m for m in model.modules() if isinstance(m, PreActInceptionResNetUnit)]
    assert not any(isinstance(m, PreActBlock) for m in model.modules())
    assert [(u.bn1.num_features, u.out_channels, u.branch3x3[2].stride[0]) for u in units] == [
        (b.bn1.num_features, b.out_channels, b.conv2.stride[0]) for b in plain]
    widths = [u.branch1x1.out_channels for u in units]
    assert widths == [30 * u.out_channels // 256 for u in units] and set(widths) == {30, 60, 120, 240}
    # Everything but the units is Attention-56's.
    assert vz.count_params(model) - sum(
        _unit_params(u.bn1.num_features, u.out_channels, w, u.branch3x3[2].stride[0]) for u, w in zip(units, widths)
    ) == vz.count_params(attention56) - sum(vz.count_params(b) for b in plain)


def test_branch_width_30_gives_the_tables_size_at_224():
    """Table 5's 31.9M and 6.3 GFLOPs (Attention-56's own figures); block A's 32 per 256 is larger."""
    model = _meta("attentioninception56")
    assert abs(vz.count_params(model) / 31.9e6 - 1) < 0.01
    assert abs(count_macs(model, (3, 224, 224)) / 6.3e9 - 1) < 0.05
    assert vz.count_params(_meta("attentioninception56", branch_width=32)) > 1.05 * 31.9e6


def test_every_attention_module_is_one_plus_mask_times_trunk():
    torch.manual_seed(0)
    # The ImageNet stem at 64 px: stages at 16, 8 and 4 px, each mask pooling down to 2 px and back.
    model = randomise_batchnorm(vz.create_model("attentioninception56", num_classes=10), torch.randn(4, 3, 64, 64))
    modules = [stage[1] for stage in model.stages]
    inputs = {}
    for i, module in enumerate(modules):
        module.register_forward_pre_hook(lambda m, args, i=i: inputs.__setitem__(i, args[0]))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
        assert sorted(inputs) == [0, 1, 2]
        for i, module in enumerate(modules):
            assert isinstance(module.trunk[0], PreActInceptionResNetUnit)
            assert isinstance(module.mask.down[0][0], PreActInceptionResNetUnit)
            assert_attention_residual_learning(module, inputs[i])


def test_forward_backward_at_64_px():
    torch.manual_seed(0)
    model = vz.create_model("attentioninception56", num_classes=10).train()
    x = torch.randn(1, 3, 64, 64)
    assert model.forward_features(x).shape == (1, 2048, 2, 2)
    model(x).logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.slow
def test_forward_backward_at_the_tables_299_px():
    torch.manual_seed(0)
    model = vz.create_model("attentioninception56").train()
    assert model.pretrained_cfg["input_size"] == (3, 299, 299)
    x = torch.randn(2, 3, 299, 299)
    features = model.forward_features(x)
    assert features.shape == (2, 2048, 10, 10)   # 299 → 150 → 75 (stage 1) → 38 → 19 → 10
    logits = model.forward_head(features)
    assert logits.shape == (2, 1000)
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
