"""The degradation experiment's networks against He et al., Deep Residual Learning (CVPR 2016), Sec. 4.2:
6n+2 weighted layers of 3×3 convolutions with 16/32/64 filters, BN after every convolution and
before its ReLU, the addition before the block's last ReLU, option-A shortcuts, He initialisation;
and the experiment's reading of Fig. 6 (issue 26, item 13)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import visionzoo as vz
from visionzoo.experiments.depth import degradation_reading
from visionzoo.layers.residual import BasicBlock, ZeroPadShortcut


@pytest.mark.parametrize("name, n", [("resnet20_cifar", 3), ("resnet56_cifar", 9), ("plain56_cifar", 9)])
def test_cifar_network_is_6n_plus_2_layers_of_16_32_64_filters(name, n):
    model = vz.create_model(name, num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 6 * n + 2
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert [c.out_channels for c in convs] == [16] * (2 * n + 1) + [32] * 2 * n + [64] * 2 * n
    assert sorted({c.stride[0] for c in convs}) == [1, 2]
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 3 * n and all(b.residual == name.startswith("resnet") for b in blocks)


def test_he_initialisation_and_unit_batchnorm_at_construction():
    torch.manual_seed(0)
    model = vz.create_model("resnet56_cifar", num_classes=10)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.numel() > 20_000:   # enough weights for a tight std
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            assert m.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)
        if isinstance(m, nn.BatchNorm2d):   # no zero-γ on the last BN of a branch: the paper has none
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any()


def test_block_adds_the_identity_before_its_last_relu():
    torch.manual_seed(0)
    model = vz.create_model("resnet56_cifar", num_classes=10).eval()
    x = torch.randn(2, 16, 8, 8)
    same, down = model.layer1[4], model.layer2[0]
    with torch.no_grad():
        torch.testing.assert_close(same(x), F.relu(same.residual_branch(x) + x))
        padded = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, 16))
        torch.testing.assert_close(down(x), F.relu(down.residual_branch(x) + padded))
        # a branch silenced (the last BN's γ = β = 0) leaves relu(shortcut): the block is the identity on x ≥ 0
        same.bn2.weight.zero_()
        torch.testing.assert_close(same(x.relu()), x.relu())
    assert isinstance(down.downsample, ZeroPadShortcut)


def test_branch_is_conv_bn_relu_conv_bn():
    torch.manual_seed(0)
    block = vz.create_model("resnet20_cifar", num_classes=10).layer1[0].eval()
    x = torch.randn(2, 16, 8, 8)
    expected = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    with torch.no_grad():
        torch.testing.assert_close(block.residual_branch(x), expected)


def test_reading_of_fig6():
    def reading(plain20, plain56, resnet20, resnet56):
        return degradation_reading({"plain20_cifar": plain20, "plain56_cifar": plain56,
                                    "resnet20_cifar": resnet20, "resnet56_cifar": resnet56})
    # Converged curves, plain 56 worse by 5 points, residual 56 better: the claim holds.
    assert reading([0.11, 0.10], [0.16, 0.15], [0.09, 0.08], [0.07, 0.06]) == (True, True)
    # Residual 56 worse by 4 points and no longer falling: it does not hold.
    assert reading([0.11, 0.10], [0.16, 0.15], [0.09, 0.08], [0.125, 0.12]) == (False, True)
    # The same 4-point deficit while the residual 56 still gained 12 points in its last epoch: too early to say.
    assert reading([0.11, 0.10], [0.16, 0.15], [0.09, 0.08], [0.24, 0.12]) == (False, False)
    # The plain 56's deficit smaller than its own last gain does not count either.
    assert reading([0.11, 0.10], [0.30, 0.15], [0.09, 0.08], [0.07, 0.06]) == (False, False)
    # A residual net that has not left 80 % training error says nothing about its depth.
    assert reading([0.11, 0.10], [0.89, 0.88], [0.09, 0.08], [0.87, 0.86])[1] is False
    # The plain 56 no worse than the plain 20: the claim does not hold, however long the runs.
    assert reading([0.11, 0.10], [0.10, 0.095], [0.09, 0.08], [0.07, 0.06]) == (False, True)
