"""Attention networks: CBAM's Eq. 1–3 by hand, where SE and CBAM sit in a block, H = (1 + M)·F of
residual attention, split attention's softmax over splits, the self-attention block's identity start
and normalised rows, and the papers' parameter counts. Twin logits: test_twins.py."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionzoo as vz
from visionzoo.layers.attention import CBAM, NonLocalBlock, ResidualAttentionModule, SplitAttention
from visionzoo.layers.residual import make_shortcut
from visionzoo.layers.se import SqueezeExcite
from visionzoo.registry import get_entry, parse_figure

from conftest import Constant, assert_attention_residual_learning, randomise_batchnorm
from test_resnet_family import meta_model


def test_cbam_is_channel_then_spatial_attention_by_hand():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 5)
    cbam = randomise_batchnorm(CBAM(8, reduction=2, kernel_size=3), x)
    w0, b0 = cbam.channel.fc1.weight.view(4, 8), cbam.channel.fc1.bias
    w1, b1 = cbam.channel.fc2.weight.view(8, 4), cbam.channel.fc2.bias

    def mlp(descriptor):  # (B, C) → (B, C), shared by both pooled descriptors
        return torch.relu(descriptor @ w0.T + b0) @ w1.T + b1

    channel_map = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))   # M_c, Eq. 2
    refined = x * channel_map[:, :, None, None]                                 # F' = M_c ⊙ F
    pooled = torch.stack([refined.mean(1), refined.amax(1)], 1)                 # [AvgPool; MaxPool]
    bn = cbam.spatial.bn
    conv = F.conv2d(pooled, cbam.spatial.conv.weight, padding=1)
    normalised = (conv - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    spatial_map = torch.sigmoid(normalised)                                     # M_s, Eq. 3
    with torch.no_grad():
        out = cbam(x)
        torch.testing.assert_close(out, refined * spatial_map)
        # The order matters: spatial first gives something else.
        spatial_first = x * cbam.spatial(x)
        assert not torch.allclose(out, spatial_first * cbam.channel(spatial_first))


class Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


@pytest.mark.parametrize("name, attention", [("seresnet18", SqueezeExcite), ("seresnet50", SqueezeExcite),
                                             ("cbam_resnet18", CBAM), ("cbam_resnet50", CBAM)])
def test_attention_sits_on_the_residual_branch_before_the_addition(name, attention):
    torch.manual_seed(0)
    model = vz.create_model(name).eval()
    blocks = [m for m in model.modules() if hasattr(m, "residual_branch")]
    assert all(isinstance(b.attention, attention) for b in blocks)
    assert sum(isinstance(m, attention) for m in model.modules()) == len(blocks)
    block = model.layer2[1]  # identity shortcut
    x = torch.randn(2, block.out_channels, 6, 6)
    with torch.no_grad():
        expected = F.relu(block.attention(block.residual_branch(x)) + x)
        torch.testing.assert_close(block(x), expected)
        block.attention = Zero()  # silencing the attention silences the branch, not the shortcut
        torch.testing.assert_close(block(x), F.relu(x))


def test_se_bn_inception_recalibrates_every_inception_module():
    model = meta_model("se_bn_inception")
    stages = [getattr(model, n) for n in model.stage_names if n.startswith("inception")]
    assert len(stages) == 10
    for stage in stages:
        assert isinstance(stage.se, SqueezeExcite)
        assert stage.se.fc1.in_channels == stage.inception.out_channels
        assert stage.se.fc1.out_channels == stage.inception.out_channels // 16
    plain = meta_model("bn_inception")
    se_params = sum(vz.count_params(s.se) for s in stages)
    assert vz.count_params(model) == vz.count_params(plain) + se_params


def test_se_resnet50_parameters_are_resnet50_plus_the_se_blocks():
    """Each SE block adds 2·C²/r weights and C/r + C biases (r = 16); 28.09M in the notes' table."""
    se, plain = meta_model("seresnet50"), meta_model("resnet50")
    widths = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    added = sum(2 * c * c // 16 + c // 16 + c for c in widths)
    assert vz.count_params(se) == vz.count_params(plain) + added
    paper, rounding = parse_figure("28.09M")
    assert abs(vz.count_params(se) - paper) <= rounding


def test_residual_attention_is_one_plus_mask_times_trunk():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 12, 12)
    module = randomise_batchnorm(ResidualAttentionModule(32, levels=2), x)
    trunk = assert_attention_residual_learning(module, x)
    with torch.no_grad():
        module.mask = Constant(0.5)
        torch.testing.assert_close(module(x), module.post(1.5 * trunk))


def test_soft_mask_adds_the_skip_unit_to_the_upsampled_lower_level():
    """Wang et al. 2017, Sec. 3.3 / Fig. 3: between bottom-up and top-down, each level above the lowest
    adds a skip unit's output to the upsampled result from below, before its own up units."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    mask = randomise_batchnorm(ResidualAttentionModule(16, levels=2), x).mask

    def up(y, size):
        return F.interpolate(y, size=size, mode="bilinear", align_corners=True)

    with torch.no_grad():
        low = mask.down[0](mask.pool(x))                                  # 4 × 4
        below = up(mask.up[1](mask.down[1](mask.pool(low))), low.shape[2:])   # 2 × 2 and back to 4 × 4
        expected = mask.output(up(mask.up[0](below + mask.skips[0](low)), x.shape[2:]))
        torch.testing.assert_close(mask(x), expected)
        without_skip = mask.output(up(mask.up[0](below), x.shape[2:]))
        assert (mask(x) - without_skip).abs().max() > 1e-2   # the skip branch changes the mask


def test_soft_mask_goes_down_to_the_last_stage_grid_and_back():
    """Attention-56 at 224 px: stage 1 (56×56) pools three times to 7×7, stage 3 (14×14) once."""
    model = meta_model("attention56").eval()  # shapes only
    seen = {}

    def record(key):
        def hook(module, args, out):
            seen[key] = out.shape[-1]
        return hook

    for i, stage in enumerate(model.stages):
        stage[1].mask.down[-1].register_forward_hook(record(f"low{i}"))
        stage[1].mask.register_forward_hook(record(f"out{i}"))
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224, device="meta"))
    assert [model.stages[i][1].mask.levels for i in range(3)] == [3, 2, 1]
    assert seen == {"low0": 7, "low1": 7, "low2": 7, "out0": 56, "out1": 28, "out2": 14}


@pytest.mark.parametrize("name, modules, tolerance", [("attention56", (1, 1, 1), 0.01),
                                                      ("attention92", (1, 2, 3), 0.025)])
def test_attention_network_parameters(name, modules, tolerance):
    """31.9M and 51.3M in the notes' table; Attention-92's difference is documented on its card."""
    model = meta_model(name)
    assert tuple(sum(isinstance(m, ResidualAttentionModule) for m in s.modules())
                 for s in model.stages) == modules
    paper, _ = parse_figure(get_entry(name).paper_params)
    assert abs(vz.count_params(model) / paper - 1) < tolerance


@pytest.mark.parametrize("radix, groups", [(2, 1), (2, 2), (4, 2), (1, 2)])
def test_split_attention_weights(radix, groups):
    """Zero logits weight every split equally (softmax over r: 1/r; r = 1: σ(0) = 1/2)."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    layer = randomise_batchnorm(SplitAttention(8, 8, radix=radix, groups=groups), x)
    with torch.no_grad():
        splits = F.relu(layer.bn0(layer.conv(x))).view(2, radix, 8, 6, 6)
        logits = torch.randn(2, radix * 8)
        weights = layer.split_weights(logits)
        assert weights.shape == (2, radix, 8, 1, 1)
        if radix > 1:
            torch.testing.assert_close(weights.sum(1), torch.ones(2, 8, 1, 1))
        nn.init.zeros_(layer.fc2.weight)
        nn.init.zeros_(layer.fc2.bias)
        expected = splits.mean(1) if radix > 1 else 0.5 * splits[:, 0]
        torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("radix, groups", [(2, 1), (2, 2), (4, 2), (1, 2)])
def test_split_attention_equals_timms_split_attn_with_the_same_weights(radix, groups):
    """ResNeSt Eq. 2–3 as timm computes it: with cardinality k > 1 each cardinal group softmaxes its own
    r logits (timm's RadixSoftmax), so the layout of the logits across (k, r) matters."""
    timm_split_attn = pytest.importorskip("timm.layers.split_attn")
    torch.manual_seed(0)
    x = torch.randn(2, 16, 5, 5)
    ours = randomise_batchnorm(SplitAttention(16, 16, radix=radix, groups=groups), x)
    with torch.no_grad():
        ours.fc2.weight.mul_(10)   # logits far apart, so a wrong softmax grouping cannot hide
    theirs = timm_split_attn.SplitAttn(16, 16, groups=groups, radix=radix, norm_layer=nn.BatchNorm2d).eval()
    theirs.load_state_dict(ours.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_resnest_downsamples_by_average_pooling():
    """avd: the strided block's 3×3 keeps stride 1 and a 3×3/2 average pool follows it; option-D
    shortcuts pool 2×2 before a stride-1 projection, so no input pixel is skipped."""
    block = meta_model("resnest50d").layer2[0]
    assert block.conv2.conv.stride == (1, 1) and isinstance(block.avd_last, nn.AvgPool2d)
    torch.manual_seed(0)
    shortcut = make_shortcut(4, 8, 2, "D").eval()
    strided = make_shortcut(4, 8, 2, "B").eval()
    x = torch.randn(1, 4, 6, 6)
    bumped = x.clone()
    bumped[:, :, 1, 1] += 1.0  # a pixel a stride-2 1×1 never reads
    with torch.no_grad():
        assert not torch.allclose(shortcut(x)[..., 0, 0], shortcut(bumped)[..., 0, 0])
        torch.testing.assert_close(strided(x), strided(bumped))


def test_nonlocal_block_starts_as_identity_and_attends_globally():
    torch.manual_seed(0)
    block = NonLocalBlock(16, reduction=4)
    x = torch.randn(2, 16, 5, 6)
    with torch.no_grad():
        assert torch.equal(block(x), x)  # v = 0
        beta = block.attention_map(x)
        assert beta.shape == (2, 30, 30) and (beta >= 0).all()
        torch.testing.assert_close(beta.sum(-1), torch.ones(2, 30))
        nn.init.normal_(block.v.weight, std=0.1)
        # o_j = v(Σ_i β_ji h(x_i)): by hand for one position j.
        f, g, h = (conv(x).flatten(2) for conv in (block.f, block.g, block.h))
        j = 7
        weights = torch.softmax(f[0].T @ g[0, :, j], 0)  # β_{j,·}
        o_j = block.v.weight.view(16, 4) @ (h[0] @ weights)
        torch.testing.assert_close(block(x)[0].flatten(1)[:, j], o_j + x[0].flatten(1)[:, j])
        # Global: a change at one corner reaches the opposite corner in one block.
        bumped = x.clone()
        bumped[:, :, 0, 0] += 1.0
        assert not torch.allclose(block(x)[:, :, -1, -1], block(bumped)[:, :, -1, -1])


def test_nonlocal_resnet_places_blocks_and_starts_as_its_resnet():
    torch.manual_seed(0)
    model = vz.create_model("nonlocal_resnet50", nonlocal_stages=(2, 3), image_size=32).eval()
    for stage in (model.layer2, model.layer3):
        assert isinstance(stage[-2], NonLocalBlock)
        assert stage[-2].f.out_channels == stage[-1].out_channels // 2  # Sec. 3.3: half the channels
    assert sum(isinstance(m, NonLocalBlock) for m in model.modules()) == 2
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        model.layer2[-2] = nn.Identity()
        model.layer3[-2] = nn.Identity()
        torch.testing.assert_close(model(x), out)
