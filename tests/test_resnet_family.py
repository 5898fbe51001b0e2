"""The residual families' defining properties: plain twins, shortcut options, pre-activation
ordering, Wide ResNet sizes, ResNeXt groups and stochastic depth. Twin logits: test_twins.py."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionzoo as vz
from visionzoo.layers.drop import DropPath, linear_drop_path_rates
from visionzoo.layers.residual import PreActBlock, ZeroPadShortcut
from visionzoo.registry import parse_figure

from conftest import randomise_batchnorm


def meta_model(name, **kwargs):
    with torch.device("meta"):
        return vz.create_model(name, **kwargs)


def shortcuts(model):
    return [m.downsample for m in model.modules() if hasattr(m, "downsample")]


def convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("plain, resnet", [("plain18", "resnet18"), ("plain34", "resnet34"),
                                           ("plain20_cifar", "resnet20_cifar"),
                                           ("plain110_cifar", "resnet110_cifar")])
def test_plain_twin_has_no_shortcuts(plain, resnet):
    p, r = meta_model(plain), meta_model(resnet)
    assert all(s is None for s in shortcuts(p))
    assert not any(isinstance(m, ZeroPadShortcut) for m in p.modules())
    projections = [s for s in shortcuts(r) if s is not None and vz.count_params(s) > 0]
    assert len(convs(p)) == len(convs(r)) - len(projections)
    assert vz.count_params(p) == vz.count_params(r) - sum(vz.count_params(s) for s in projections)


def test_plain_block_is_relu_of_its_branch():
    torch.manual_seed(0)
    block = vz.create_model("plain20_cifar").layer1[0].eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(block.residual_branch(x)))


def test_shortcut_options():
    a, b, c = (meta_model("resnet20_cifar", shortcut=o) for o in "ABC")
    # A: parameter-free, zero-padding only where the shape changes (two stage transitions).
    assert sum(isinstance(s, ZeroPadShortcut) for s in shortcuts(a)) == 2
    assert all(s is None or vz.count_params(s) == 0 for s in shortcuts(a))
    assert vz.count_params(a) == vz.count_params(meta_model("plain20_cifar"))
    # B: projections only where the shape changes; C: a projection in every block.
    assert sum(s is not None for s in shortcuts(b)) == 2
    assert len(shortcuts(c)) == 9 and all(vz.count_params(s) > 0 for s in shortcuts(c))
    assert all(s is None for s in shortcuts(meta_model("plain20_cifar", shortcut="C")))
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    out = ZeroPadShortcut(16, 32, 2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]) and not out[:, 16:].any()


@pytest.mark.parametrize("name", ["resnet50", "preact_resnet18", "wrn16_4", "resnext29_8x64d"])
def test_shortcut_keyword_in_every_builder(name):
    blocks = shortcuts(meta_model(name, shortcut="C"))
    assert blocks and all(s is not None and vz.count_params(s) > 0 for s in blocks)


def test_preact_block_ordering():
    torch.manual_seed(0)
    block = PreActBlock(16, 16).eval()
    x = torch.randn(2, 16, 8, 8)
    randomise_batchnorm(block, x)
    with torch.no_grad():
        expected = x + block.conv2(F.relu(block.bn2(block.conv1(F.relu(block.bn1(x))))))
        out = block(x)
    torch.testing.assert_close(out, expected)
    assert (out < 0).any()  # nothing after the addition
    projecting = randomise_batchnorm(PreActBlock(16, 32, stride=2), x)
    with torch.no_grad():
        pre = projecting.bn1(x)
        expected = projecting.downsample(pre) + projecting.conv2(projecting.bn2(projecting.conv1(pre)))
        torch.testing.assert_close(projecting(x), expected)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in projecting.downsample.modules())


def test_preact_network_layout():
    model = meta_model("preact_resnet164")
    assert isinstance(model.bn1, nn.Identity) and isinstance(model.norm, nn.BatchNorm2d)
    block = model.layer2[0]
    assert [m.kernel_size[0] for m in (block.conv1, block.conv2, block.conv3)] == [1, 3, 1]
    assert [m.stride[0] for m in (block.conv1, block.conv2, block.conv3)] == [1, 2, 1]
    assert block.conv3.out_channels == 4 * block.conv2.out_channels == 128
    assert len(model.layer1) == 18 and len(meta_model("preact_resnet1001").layer3) == 111


def within_paper(measured, figure):
    paper, rounding = parse_figure(figure)
    return abs(measured - paper) <= max(0.01 * paper, rounding)


# The notes' WRN tables: (depth, k, block type, params).
WRN_ROWS = [(40, 1, "3,3", "0.6M"), (40, 2, "3,3", "2.2M"), (40, 4, "3,3", "8.9M"),
            (40, 8, "3,3", "35.7M"), (28, 10, "3,3", "36.5M"), (28, 12, "3,3", "52.5M"),
            (22, 8, "3,3", "17.2M"), (22, 10, "3,3", "26.8M"), (16, 8, "3,3", "11.0M"),
            (16, 10, "3,3", "17.1M"), (16, 4, "3,3", "2.7M"),
            (40, 2, "1,3,1", "1.4M"), (40, 2, "3,1", "1.2M"), (40, 2, "1,3", "1.3M"),
            (40, 2, "3,1,1", "1.3M"), (28, 2, "3,3", "1.5M"), (22, 2, "3,1,3", "1.1M")]


@pytest.mark.parametrize("depth, k, block_type, params", WRN_ROWS)
def test_wrn_params_match_the_notes(depth, k, block_type, params):
    model = meta_model("wrn28_10", depth=depth, widen_factor=k, block_type=block_type)
    assert within_paper(vz.count_params(model), params)


def test_wrn_block_dropout_sits_between_convolutions():
    block = vz.create_model("wrn16_4", dropout=0.3).layer2[0]
    assert block.dropout.p == 0.3
    calls = []
    for name in ("bn1", "conv1", "bn2", "dropout", "conv2", "downsample"):
        getattr(block, name).register_forward_hook(lambda *_, n=name: calls.append(n))
    block(torch.randn(2, 64, 8, 8))
    assert calls == ["bn1", "downsample", "conv1", "bn2", "dropout", "conv2"]
    with pytest.raises(ValueError, match="6N"):
        vz.create_model("wrn28_10", depth=30)


def test_resnext_grouped_bottlenecks():
    block = meta_model("resnext50_32x4d").layer1[0]
    assert block.conv2.groups == 32 and block.conv2.out_channels == 128
    assert block.conv3.out_channels == 256
    for name, groups in (("resnext29_8x64d", 8), ("resnext29_16x64d", 16)):
        block = meta_model(name).layer1[0]
        assert block.conv2.groups == groups and block.conv2.out_channels == 64 * groups


@pytest.mark.parametrize("name", ["plain18", "preact_resnet18", "wide_resnet50_2", "resnext50_32x4d"])
def test_imagenet_stems_adapt_to_small_inputs(name):
    assert meta_model(name).conv1.kernel_size == (7, 7)
    small = meta_model(name, image_size=28)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)


def test_drop_path_is_identity_at_eval_and_unbiased_in_training():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 2, 2)
    layer = DropPath(0.3)
    assert layer.eval()(x) is x
    batch = x.expand(200_000, -1, -1, -1)
    out = layer.train()(batch)
    kept = out.flatten(1).ne(0).all(1)
    torch.testing.assert_close(out[kept], batch[kept] / 0.7)
    assert not out[~kept].any()
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    torch.testing.assert_close(out.mean(0, keepdim=True), x, atol=0.01, rtol=0)


def test_linear_decay_rule():
    assert linear_drop_path_rates(4, 0.2) == pytest.approx([0.05, 0.1, 0.15, 0.2])
    for name in ("resnet110_cifar", "preact_resnet164", "wrn28_10", "resnext50_32x4d"):
        rates = [m.drop_prob for m in meta_model(name, drop_path_rate=0.5).modules()
                 if isinstance(m, DropPath)]
        assert rates == pytest.approx([0.5 * (l + 1) / len(rates) for l in range(len(rates))])
    with pytest.raises(ValueError, match="a plain network has none"):
        vz.create_model("plain20_cifar", drop_path_rate=0.2)
    with pytest.raises(ValueError, match="drop_path_rate must lie in"):
        vz.create_model("resnet20_cifar", drop_path_rate=1.0)


def test_dropped_blocks_follow_the_linear_rule():
    """Monte-Carlo: per sample, E[#dropped blocks] = Σ l/L · p_L = p_L (L + 1) / 2."""
    torch.manual_seed(0)
    model = vz.create_model("resnet20_cifar", drop_path_rate=0.5).train()
    layers = [m for m in model.modules() if isinstance(m, DropPath)]
    dropped = []
    for layer in layers:
        layer.register_forward_hook(lambda m, i, out: dropped.append(out.flatten(1).eq(0).all(1)))
    with torch.no_grad():
        model(torch.randn(1024, 3, 8, 8))
    dropped = torch.stack(dropped, 1).float()  # (samples, blocks)
    assert dropped.sum(1).mean().item() == pytest.approx(0.5 * 10 / 2, abs=0.2)
    torch.testing.assert_close(dropped.mean(0), torch.tensor([m.drop_prob for m in layers]),
                               atol=0.06, rtol=0)


def test_stochastic_depth_changes_nothing_at_eval():
    x = torch.randn(2, 3, 32, 32)
    outs = []
    for rate in (0.0, 0.5):
        torch.manual_seed(0)
        model = vz.create_model("wrn16_4", drop_path_rate=rate).eval()
        with torch.no_grad():
            outs.append(model(x))
    torch.testing.assert_close(outs[0], outs[1])
