"""Adaptive inference: MSDNet's scales, exits, early-exit rule and per-exit cost (Huang et al. ICLR 2018);
BlockDrop's policy-executed ResNet, its per-policy cost, reward and REINFORCE gradient (Wu et al. CVPR 2018)."""
import math

import pytest
import torch
from torch import nn

import visionzoo as vz
from visionzoo.core.profile import count_macs
from visionzoo.models.blockdrop import blockdrop_reward, reinforce_loss, train_blockdrop_policy
from visionzoo.models.msdnet import (
    first_confident_exit,
    geometric_proportions,
    thresholds_for_budget,
    thresholds_for_proportions,
)

from conftest import randomise_batchnorm

SHAPE = (1, 28, 28)


@pytest.fixture(scope="module")
def msdnet():
    torch.manual_seed(0)
    model = vz.create_model("msdnet_fmnist")
    return randomise_batchnorm(model, torch.randn(8, *SHAPE))


@pytest.fixture(scope="module")
def blockdrop():
    torch.manual_seed(0)
    model = vz.create_model("blockdrop_resnet32_fmnist")
    return randomise_batchnorm(model, torch.randn(8, *SHAPE))


def test_msdnet_scales_halve_the_side_and_exits_read_the_coarsest_scale(msdnet):
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        scales = []
        for s, conv in enumerate(msdnet.stem):
            scales.append(conv(x if s == 0 else scales[-1]))
        assert [tuple(m.shape[-2:]) for m in scales] == [(28, 28), (14, 14), (7, 7)]
        xs = scales
        for i, layer in enumerate(msdnet.layers):
            grown = layer(xs)
            # the finer scales go in the last S − 1 layers only; each kept scale keeps its side
            assert len(grown) == min(3, len(msdnet.layers) - i)
            assert [tuple(m.shape[-2:]) for m in grown] == [tuple(m.shape[-2:]) for m in xs[len(xs) - len(grown):]]
            assert [m.shape[1] for m in grown] == layer.out_channels[3 - len(grown):]
            xs = grown
        maps = msdnet.coarsest_maps(x)
        assert len(maps) == len(msdnet.exits) == 4 and all(m.shape[-2:] == (7, 7) for m in maps)
        logits = msdnet.exit_logits(x)
    assert [tuple(t.shape) for t in logits] == [(2, 10)] * 4
    torch.testing.assert_close(logits[-1], msdnet(x))


def test_msdnet_training_forward_sums_every_exits_loss(msdnet):
    from visionzoo.tasks.classification import classification_loss
    x, labels = torch.randn(4, *SHAPE), torch.tensor([0, 1, 2, 3])
    msdnet.train()
    torch.manual_seed(1)
    out = msdnet(x)
    msdnet.eval()
    last, earlier = out
    assert len(earlier) == 3
    expected = sum(nn.functional.cross_entropy(t, labels) for t in [*earlier, last])
    loss, logits = classification_loss(out, labels, msdnet, 0.0)
    torch.testing.assert_close(loss, expected)
    assert logits is last


def test_early_exit_thresholds_zero_and_above_one(msdnet):
    x = torch.randn(5, *SHAPE)
    costs = msdnet.exit_macs(SHAPE)
    with torch.no_grad():
        logits = msdnet.exit_logits(x)
    predictions, exits, macs = msdnet.early_exit_predict(x, 0.0)
    assert exits.tolist() == [0] * 5 and torch.equal(predictions, logits[0].argmax(1))
    assert macs.tolist() == [costs[0]] * 5
    predictions, exits, macs = msdnet.early_exit_predict(x, [1.1, 1.1, 1.1])
    assert exits.tolist() == [3] * 5 and torch.equal(predictions, logits[-1].argmax(1))
    assert macs.tolist() == [costs[-1]] * 5


def test_first_confident_exit_picks_the_first_exit_over_its_threshold():
    confidence = torch.tensor([[0.9, 0.2, 0.3], [0.1, 0.6, 0.9], [0.1, 0.2, 0.3]])
    assert first_confident_exit(confidence, [0.5, 0.5]).tolist() == [0, 1, 2]
    assert first_confident_exit(confidence, 0.95).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="2 thresholds"):
        first_confident_exit(confidence, [0.5, 0.5, 0.5, 0.5])
    assert first_confident_exit(confidence, [0.5, 0.5, 0.0]).tolist() == [0, 1, 2]


def test_exit_macs_grow_and_the_last_is_the_network_plus_the_earlier_classifiers(msdnet):
    costs = msdnet.exit_macs(SHAPE)
    assert all(a < b for a, b in zip(costs, costs[1:]))
    with torch.no_grad():
        maps = msdnet.coarsest_maps(torch.zeros(1, *SHAPE))
    earlier_heads = sum(count_macs(head, tuple(m.shape[1:])) for head, m in zip(msdnet.exits[:-1], maps))
    assert costs[-1] == count_macs(msdnet, SHAPE) + earlier_heads
    assert costs[0] < count_macs(msdnet, SHAPE) / 2


def test_thresholds_send_the_geometric_proportions_out_and_fit_the_budget():
    generator = torch.Generator().manual_seed(0)
    confidence = torch.rand(1000, 4, generator=generator)
    proportions = geometric_proportions(0.6, 4)
    assert math.isclose(float(proportions.sum()), 1.0) and all(proportions.diff() < 0)
    exits = first_confident_exit(confidence, thresholds_for_proportions(confidence, proportions))
    observed = torch.bincount(exits, minlength=4) / 1000
    torch.testing.assert_close(observed.double(), proportions, atol=2e-3, rtol=0)
    costs = [1.0, 2.0, 3.0, 4.0]
    assert all(geometric_proportions(1.5, 4).diff() > 0)
    for budget in (1.5, 2.5, 3.5):
        thresholds = thresholds_for_budget(confidence, costs, budget)
        spent = torch.tensor(costs)[first_confident_exit(confidence, thresholds)].mean()
        assert spent <= budget and spent > budget - 0.25
    with pytest.raises(ValueError, match="below the first exit"):
        thresholds_for_budget(confidence, costs, 0.5)
    assert first_confident_exit(confidence, thresholds_for_budget(confidence, costs, 4.0)).eq(3).all()


def test_blockdrop_all_ones_is_the_plain_resnet_and_all_zeros_the_stem_and_head(blockdrop):
    x = torch.randn(3, *SHAPE)
    k = blockdrop.num_blocks
    assert k == 15
    with torch.no_grad():
        full = blockdrop(x, policy=torch.ones(3, k, dtype=torch.bool))
        assert torch.equal(full, blockdrop.backbone(x))
        net = blockdrop.backbone
        stem = net.relu(net.bn1(net.conv1(x)))
        shortcuts = stem
        for block in blockdrop.blocks:
            shortcuts = shortcuts if block.downsample is None else block.downsample(shortcuts)
        torch.testing.assert_close(blockdrop(x, policy=torch.zeros(3, k)), net.fc(shortcuts.mean((2, 3))))
        greedy = blockdrop.greedy_policy(x)
        torch.testing.assert_close(blockdrop(x), blockdrop(x, policy=greedy))


def _executed_network(model, policy_row) -> nn.Module:
    """Only the executed blocks, the skipped ones' shortcuts, and the policy network beside them."""
    class Executed(nn.Module):
        def __init__(self):
            super().__init__()
            net = model.backbone
            self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
            self.path = nn.Sequential(*[block if keep else (block.downsample or nn.Identity())
                                        for block, keep in zip(model.blocks, policy_row.tolist())])
            self.fc, self.policy = net.fc, model.policy

        def forward(self, x):
            self.policy(nn.functional.interpolate(x, size=(model.policy_side,) * 2, mode="bilinear", antialias=True))
            return self.fc(self.path(self.stem(x)).mean((2, 3)))
    return Executed()


def test_blockdrop_macs_per_policy_are_those_of_the_executed_network(blockdrop):
    generator = torch.Generator().manual_seed(3)
    policies = torch.rand(4, blockdrop.num_blocks, generator=generator) < 0.5
    policies[0], policies[1] = True, False
    macs = blockdrop.executed_macs(policies, SHAPE)
    for row, cost in zip(policies, macs.tolist()):
        assert cost == count_macs(_executed_network(blockdrop, row), SHAPE)
    assert macs[0] == count_macs(blockdrop, SHAPE)   # every block: the eval forward computes them all


def test_blockdrop_reward():
    policy = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]])
    correct = torch.tensor([True, True, False])
    torch.testing.assert_close(blockdrop_reward(policy, correct, gamma=5.0), torch.tensor([0.0, 1 - 1 / 16, -5.0]))


def test_reinforce_gradient_moves_probabilities_toward_rewarded_actions():
    logits = torch.zeros(1, 3, requires_grad=True)
    actions = torch.tensor([[1.0, 0.0, 1.0]])
    for advantage, direction in ((1.0, 1), (-1.0, -1)):
        logits.grad = None
        reinforce_loss(torch.sigmoid(logits), actions, torch.tensor([advantage])).backward()
        # a gradient-descent step on the logits: p(u_k) rises for a positive advantage, falls for a negative one
        moved = torch.sigmoid(logits - 0.1 * logits.grad)
        toward = torch.where(actions.bool(), moved - 0.5, 0.5 - moved)
        assert (direction * toward > 0).all()


def test_train_blockdrop_policy_learns_to_drop_blocks_a_frozen_backbone_does_not_need():
    """A backbone whose blocks add nothing (zeroed branches): every path predicts the same, so the reward
    is highest with the fewest blocks, and REINFORCE drives the greedy policy's block count down."""
    torch.manual_seed(0)
    model = vz.create_model("blockdrop_resnet32_fmnist", depth=14)   # 6 blocks, small images: a fast test
    for block in model.blocks:
        nn.init.zeros_(block.bn2.weight)
    images = torch.randn(16, 1, 14, 14)
    with torch.no_grad():
        labels = model.eval()(images, policy=torch.ones(16, model.num_blocks)).argmax(1)
        before = model.greedy_policy(images).float().sum(1).mean()
    frozen = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    history = train_blockdrop_policy(model, lambda epoch: [(images, labels)] * 3, epochs=3, lr=0.05, seed=0)
    with torch.no_grad():
        after = model.eval().greedy_policy(images).float().sum(1).mean()
    assert after < before and after < model.num_blocks / 2
    assert all(torch.equal(frozen[k], v) for k, v in model.backbone.state_dict().items())
    assert len(history) == 3 and history[-1]["blocks_used"] < history[0]["blocks_used"]


def test_an_exit_answers_at_exactly_its_threshold_and_a_budget_may_be_spent_exactly():
    # MSDNet Sec. 3: an image leaves at the first classifier whose max softmax probability reaches (≥) θ_k;
    # the thresholds for a budget B are those of the largest validation cost ≤ B (equality allowed)
    confidence = torch.tensor([[0.5, 0.3, 0.2], [0.4, 0.7, 0.1]])
    assert first_confident_exit(confidence, [0.5, 0.7]).tolist() == [0, 1]
    validation = torch.tensor([[0.9, 0.5], [0.1, 0.5]])
    costs = [1.0, 3.0]
    thresholds = thresholds_for_budget(validation, costs, 2.0)
    assert torch.tensor(costs)[first_confident_exit(validation, thresholds)].mean().item() == 2.0


def test_blockdrops_greedy_policy_keeps_a_block_only_above_one_half(blockdrop, monkeypatch):
    # BlockDrop at inference: u_k = [s_k > 0.5], so a block whose probability is exactly 0.5 is dropped
    probabilities = torch.tensor([[0.5, 0.5001, 0.4999, 1.0]])
    monkeypatch.setattr(blockdrop, "policy_probabilities", lambda x: probabilities)
    assert blockdrop.greedy_policy(torch.zeros(1, *SHAPE)).tolist() == [[False, True, False, True]]
