"""Networks of the notes' tables built as configurations of existing families: Conv MobileNet
(MobileNet Table 4), SE-VGG-16 and SE-Inception-ResNet-v2 (SE Table 2), the constant-scaling
shortcut of the identity-mappings paper (Sec. 3.1). Their figures: test_zoo.py's cards."""
import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.layers.inception import InceptionResNetBlock
from visionzoo.layers.residual import BasicBlock
from visionzoo.layers.se import SqueezeExcite
from visionzoo.models.resnet import ScaledShortcutBlock


def _meta(name):
    with torch.device("meta"):
        return vz.create_model(name)


def test_conv_mobilenet_is_mobilenet_with_full_convolutions():
    full, separable = _meta("mobilenet_v1_conv"), _meta("mobilenet_v1")
    assert len(full.features) == len(separable.features)
    assert all(m.groups == 1 for m in full.modules() if isinstance(m, nn.Conv2d))
    assert ([layer[0].out_channels for layer in full.features[1:]]
            == [layer.pointwise[0].out_channels for layer in separable.features[1:]])


def test_se_vgg16_has_an_se_block_after_each_of_its_13_convolutions():
    model = _meta("se_vgg16")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    blocks = [m for m in model.modules() if isinstance(m, SqueezeExcite)]
    assert len(convs) == len(blocks) == 13


def test_se_inception_resnet_v2_excites_every_residual_branch():
    model = _meta("se_inception_resnet_v2")
    residual = [m for m in model.modules() if isinstance(m, InceptionResNetBlock)]
    assert len(residual) == 10 + 20 + 9 + 1
    assert all(isinstance(block.conv2d.se, SqueezeExcite) for block in residual)


def test_constant_scaling_at_one_is_the_plain_residual_block():
    torch.manual_seed(0)
    plain = BasicBlock(8, 8).eval()
    scaled = ScaledShortcutBlock(8, 8, shortcut_scale=1.0, branch_scale=1.0).eval()
    scaled.load_state_dict(plain.state_dict())
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(scaled(x), plain(x))


@pytest.mark.parametrize("branch_scale", [1.0, 0.5])
def test_constant_scaling_multiplies_shortcut_and_branch(branch_scale):
    torch.manual_seed(0)
    block = ScaledShortcutBlock(8, 8, shortcut_scale=0.5, branch_scale=branch_scale).eval()
    x = torch.randn(2, 8, 6, 6)
    branch = block.residual_branch(x)
    torch.testing.assert_close(block(x), torch.relu(branch_scale * branch + 0.5 * x))


def test_the_scaled_resnet110s_scale_every_block():
    for name, branch_scale in (("resnet110_cifar_scaled_shortcut", 1.0), ("resnet110_cifar_scaled_both", 0.5)):
        blocks = [m for m in _meta(name).modules() if isinstance(m, BasicBlock)]
        assert len(blocks) == 54
        assert all(isinstance(b, ScaledShortcutBlock) and b.shortcut_scale == 0.5
                   and b.branch_scale == branch_scale for b in blocks)
