"""The rest of the notes' table networks (issue 26 item 6): SENet-154 (SE paper, appendix), the
naive Inception module and GoogLeNet built from it (Szegedy et al. Fig. 2(a)), ST-CNN Multi and the
parallel spatial transformers (Jaderberg et al. Secs. 4.2, 4.3), AttentionNeXt-56 (Wang et al.
Table 5). SENet-154 gives timm's legacy_senet154 logits from its converted weights in
test_twins.py (slow); the cards are checked in test_zoo.py."""
import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.core.profile import count_macs
from visionzoo.layers.inception import googlenet_module, naive_inception_module
from visionzoo.layers.residual import PreActBlock
from visionzoo.layers.se import SqueezeExcite
from visionzoo.layers.spatial_transformer import SpatialTransformer
from visionzoo.models.attention_next import PreActResNeXtUnit
from visionzoo.models.inception import _TABLE1
from visionzoo.models.senet154 import SENet154Bottleneck
from visionzoo.models.stn_multi import AttentionTransformer

from conftest import randomise_batchnorm


def _meta(name, **kwargs):
    with torch.device("meta"):
        return vz.create_model(name, **kwargs)


# ---- SENet-154 -------------------------------------------------------------------------------

def test_senet154_has_the_appendix_modifications():
    model = _meta("senet154")
    blocks = [m for m in model.modules() if isinstance(m, SENet154Bottleneck)]
    assert len(blocks) == 3 + 8 + 36 + 3
    for block in blocks:
        # (a) the first 1×1 is half the grouped 3×3's width; 64 groups of 4·(planes/64) channels
        assert block.conv1.out_channels * 2 == block.conv2.out_channels == block.out_channels
        assert block.conv2.groups == 64 and isinstance(block.attention, SqueezeExcite)
        assert block.attention.fc1.out_channels == block.out_channels // 16
        # (c) a stride-2 projection is a 3×3 convolution; the stride-1 one of stage 1 stays 1×1
        if block.conv2.stride == (2, 2):
            assert block.downsample[0].kernel_size == (3, 3) and block.downsample[0].stride == (2, 2)
        elif block.downsample is not None:
            assert block.downsample[0].kernel_size == (1, 1)
    # (b) three 3×3 stem convolutions, BN after each; (d) dropout 0.2 before the classifier
    stem = [m for m in model.conv1 if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.out_channels) for c in stem] == [
        ((3, 3), (2, 2), 64), ((3, 3), (1, 1), 64), ((3, 3), (1, 1), 128)]
    assert isinstance(model.bn1, nn.BatchNorm2d) and model.head_drop.p == 0.2


# ---- the naïve Inception module --------------------------------------------------------------

TABLE1_3A = dict(ch1x1=64, ch3x3=128, ch5x5=32)   # Table 1's inception (3a), on 28×28×192


def test_naive_module_concatenates_the_three_convolutions_and_the_pooled_input():
    torch.manual_seed(0)
    module = naive_inception_module(12, ch1x1=3, ch3x3=4, ch5x5=5).eval()
    x = torch.randn(2, 12, 9, 9)
    out = module(x)
    assert out.shape == (2, 3 + 4 + 5 + 12, 9, 9)
    # the last cin channels are the 3×3 stride-1 max-pool of the input itself, unprojected
    torch.testing.assert_close(out[:, -12:], nn.functional.max_pool2d(x, 3, 1, 1))
    kernels = [m.kernel_size for m in module.modules() if isinstance(m, nn.Conv2d)]
    assert kernels == [(1, 1), (3, 3), (5, 5)]


def test_naive_3a_costs_its_formula_and_over_twice_table1s_reduced_module():
    naive = naive_inception_module(192, **TABLE1_3A)
    reduced = googlenet_module(192, 64, 96, 128, 16, 32, 32, k5=5)
    naive_macs, reduced_macs = count_macs(naive, (192, 28, 28)), count_macs(reduced, (192, 28, 28))
    assert naive_macs == 28 * 28 * 192 * (64 + 9 * 128 + 25 * 32)
    assert abs(reduced_macs / 128e6 - 1) < 0.01          # Table 1: 128M ops for (3a)
    assert naive_macs / reduced_macs > 2.3


def test_googlenet_naive_widths_grow_by_the_input_at_every_module():
    model = _meta("googlenet_naive", aux_logits=False)
    cin = 192
    for name, row in _TABLE1:
        if row is None:
            continue
        ch1x1, _, ch3x3, _, ch5x5, _ = row
        module = getattr(model, name)
        assert module.out_channels == ch1x1 + ch3x3 + ch5x5 + cin
        cin = module.out_channels
    assert model.fc.in_features == cin == 4944
    reduced = _meta("googlenet_paper", aux_logits=False)
    assert reduced.fc.in_features == 1024


def test_googlenet_naive_trains_with_its_auxiliary_heads_on_a_small_image():
    model = vz.create_model("googlenet_naive", num_classes=3, in_chans=1, image_size=28).train()
    logits, aux = model(torch.randn(2, 1, 28, 28))
    assert logits.shape == (2, 3) and [a.shape for a in aux] == [(2, 3), (2, 3)]
    assert model.aux1.conv.conv.in_channels == 1280 and model.aux2.conv.conv.in_channels == 2640   # 4a, 4d


# ---- ST-CNN Multi and parallel spatial transformers -----------------------------------------

def test_stcnn_multi_puts_a_transformer_before_each_of_the_first_four_convolutions():
    model = _meta("stcnn_multi")
    names = list(model.features._modules)
    for i in range(1, 5):
        assert names.index(f"st{i}") == names.index(f"conv{i}") - 1
        assert isinstance(model.features[names.index(f"st{i}")], SpatialTransformer)
    localisation = [m for m in model.features.st2.localisation if isinstance(m, nn.Linear)]
    assert [layer.out_features for layer in localisation] == [32, 32]


def test_identity_initialised_multi_transformers_leave_image_and_feature_maps_unchanged():
    torch.manual_seed(0)
    model = vz.create_model("stcnn_multi").eval()
    plain = vz.create_model("stcnn_multi").eval()
    plain.load_state_dict(model.state_dict())
    for i in range(1, 5):
        setattr(plain.features, f"st{i}", nn.Identity())
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model.features.st1(x), x)
        torch.testing.assert_close(model(x), plain(x))


def test_attention_crop_at_the_identity_halves_the_image_and_at_scale_half_is_the_centre():
    transformer = AttentionTransformer(nn.Flatten(), 28 * 28, output_size=14)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        # identity: target pixel centres fall between 2×2 source pixels, bilinear weights ¼ each
        torch.testing.assert_close(transformer(x), nn.functional.avg_pool2d(x, 2))
        transformer.theta.bias.copy_(torch.tensor([0.5, 0.0, 0.0]))   # Eq. 2 with s = ½, t = 0
        torch.testing.assert_close(transformer(x), x[..., 7:21, 7:21])


@pytest.mark.parametrize("name, count", [("stcnn_parallel2", 2), ("stcnn_parallel4", 4)])
def test_parallel_transformers_crop_independently_and_all_learn(name, count):
    torch.manual_seed(0)
    model = vz.create_model(name).eval()
    assert len(model.transformers) == len(model.branches) == count
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        before = model.forward_features(x)
        model.transformers[0].theta.bias.copy_(torch.tensor([0.5, 0.2, -0.1]))
        after = model.forward_features(x)
    width = before.shape[1] // count
    assert before.shape == (2, count * width, 7, 7)
    assert not torch.allclose(after[:, :width], before[:, :width])   # the moved crop changes its branch
    torch.testing.assert_close(after[:, width:], before[:, width:])  # and no other
    model.train()
    with torch.no_grad():   # as after a first step: θ's regressor reads the localisation features
        for transformer in model.transformers:
            transformer.theta.weight.normal_(0, 0.01)
    model(x).logsumexp(1).mean().backward()
    for transformer in model.transformers:   # every θ and every localisation network receives a gradient
        assert transformer.theta.bias.grad.abs().sum() > 0
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in transformer.localisation.parameters())


# ---- AttentionNeXt-56 -------------------------------------------------------------------------

@pytest.mark.parametrize("cin, cout, stride", [(16, 16, 1), (8, 16, 2)])
def test_resnext_unit_of_one_group_is_the_preactivation_bottleneck(cin, cout, stride):
    torch.manual_seed(0)
    reference = PreActBlock(cin, cout // 4, stride, kernels=(1, 3, 1), expansion=4)
    unit = PreActResNeXtUnit(cin, cout, stride, cardinality=1, base_width=64)
    randomise_batchnorm(reference, torch.randn(8, cin, 8, 8))
    unit.load_state_dict(reference.state_dict())
    unit.eval()
    x = torch.randn(2, cin, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), reference(x))


def test_attentionnext56_replaces_every_residual_unit_of_attention56():
    plain = [m for m in _meta("attention56").modules() if isinstance(m, PreActBlock)]
    model = _meta("attentionnext56")
    units = [m for m in model.modules() if isinstance(m, PreActResNeXtUnit)]
    assert not any(isinstance(m, PreActBlock) for m in model.modules())
    assert [(u.bn1.num_features, u.out_channels, u.conv2.stride) for u in units] == [
        (b.bn1.num_features, b.out_channels, b.conv2.stride) for b in plain]
    assert all(u.conv2.groups == 32 and u.conv2.in_channels == 32 * 4 * u.out_channels // 256 for u in units)
