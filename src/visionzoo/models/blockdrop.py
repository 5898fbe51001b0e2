"""BlockDrop: Wu, Nagarajan, Kumar, Rennie, Davis, Grauman, Feris, "BlockDrop: Dynamic Inference Paths
in Residual Networks", CVPR 2018 (the notes' adaptive inference, "version 1: skip some residuals").

A pretrained ResNet with K residual blocks, and a small policy network that reads a downsampled copy
of the image and outputs K Bernoulli probabilities s ∈ [0, 1]^K, one per block (Sec. 3.1). Block k runs
when its action u_k = 1; otherwise its output is its shortcut (the identity, or option A's strided,
zero-padded input). At inference the policy is greedy, u_k = [s_k > 0.5].

Training (Sec. 3.2–3.3), `train_blockdrop_policy`: the backbone frozen, the policy learns by
REINFORCE with the reward (Eq. 2)

    R(u) = 1 − (|u|₀ / K)²  if the prediction of the network executing u is correct, −γ otherwise,

and the self-critical baseline R(ũ) of the greedy policy ũ (Eq. 5): the loss is
−(R(u) − R(ũ)) Σ_k log π(u_k). The probabilities are bounded for exploration,
s' = α·s + (1 − α)(1 − s) (α = 0.8, the authors' setting). Curriculum learning (optional): in the first
epochs only the last blocks are learned, the earlier ones kept on, one more block per step. Joint
fine-tuning (Sec. 3.3) then also trains the backbone with cross-entropy on the sampled paths.
It is a function (not a task): the paper's own algorithm for a policy over a frozen, trained backbone.

`visionzoo train --model blockdrop_…` trains the backbone with every block on (the pretrained ResNet
BlockDrop starts from; the policy network does not run in training mode); evaluation and export use
the greedy policy. Cost: `executed_macs(policy)` is the MACs per image of executing that policy —
the backbone's stem and head, the branches of the executed blocks, and the policy network
(measured with FlopCounterMode on one image, per block; tests compare it with `count_macs` of the
network of only the executed blocks).

Feature stages: the backbone's stem, then the output of each stage's last block as computed (the
batched forward computes every block and keeps, per image, its output or its shortcut; the policy
picks between them, and its choice depends on the image). `blockdrop_resnet110`: the paper's CIFAR-10 network, ResNet-110 (54 blocks) with a ResNet-8
policy network on the 32×32 image. `blockdrop_resnet32_fmnist`: a CIFAR-style ResNet-32 (15 blocks)
for Fashion-MNIST, its policy on the image downsampled to 14×14.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..core.runtime import evaluating
from ..layers.residual import BasicBlock
from ..registry import register_model
from .base import ImageClassifier
from .resnet import ResNet

_PAPER = ("Wu, Nagarajan, Kumar, Rennie, Davis, Grauman, Feris. BlockDrop: Dynamic Inference Paths in "
          "Residual Networks. CVPR 2018")
EXPLORATION_ALPHA = 0.8


class BlockDropResNet(ImageClassifier):
    """A CIFAR-style ResNet (`backbone`) whose residual blocks a ResNet-8 `policy` keeps or drops per image."""
    classifier_name = "backbone.fc"

    def __init__(self, depth: int = 110, num_classes: int = 10, in_chans: int = 3, policy_side: int | None = None,
                 shortcut: str = "A"):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (n ≥ 1), not {depth}")
        self.num_classes = num_classes
        self.backbone = ResNet(BasicBlock, ((depth - 2) // 6,) * 3, (16, 32, 64), num_classes, in_chans,
                               stem="small", shortcut=shortcut)
        self.blocks = [m for m in self.backbone.modules() if isinstance(m, BasicBlock)]
        self.num_blocks = len(self.blocks)
        # ResNet-8: one basic block per stage; its K outputs are the blocks' logits
        self.policy = ResNet(BasicBlock, (1, 1, 1), (16, 32, 64), self.num_blocks, in_chans, stem="small",
                             shortcut="A")
        self.policy_side = policy_side
        self._block_macs: dict[tuple, tuple[float, list[float]]] = {}

    def policy_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """s = σ(f_p(x↓)), (batch, K)."""
        if self.policy_side is not None and x.shape[-1] != self.policy_side:
            x = F.interpolate(x, size=(self.policy_side, self.policy_side), mode="bilinear", align_corners=False,
                              antialias=True)
        return torch.sigmoid(self.policy(x).float())

    def greedy_policy(self, x: torch.Tensor) -> torch.Tensor:
        return self.policy_probabilities(x) > 0.5

    def forward_features(self, x: torch.Tensor, policy: torch.Tensor | None = None) -> torch.Tensor:
        """The backbone's last map executing `policy` (batch, K) of 0/1; None: the greedy policy in eval
        mode, every block in training mode (pretraining the backbone)."""
        if policy is None and not self.training:
            policy = self.greedy_policy(x)
        net = self.backbone
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        for k, block in enumerate(self.blocks):
            if policy is None:
                x = block(x)
                continue
            shortcut = x if block.downsample is None else block.downsample(x)
            keep = policy[:, k].bool()[:, None, None, None]
            x = torch.where(keep, block(x), shortcut)
        return net.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.backbone.forward_head(x, pre_logits)

    def forward(self, x: torch.Tensor, policy: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, policy))

    def reset_classifier(self, num_classes: int) -> None:
        self.backbone.reset_classifier(num_classes)
        self.num_classes = num_classes
        self._block_macs.clear()

    def stage_modules(self) -> list[str]:
        stem, *stages = self.backbone.stage_modules()
        return [f"backbone.{stem}",
                *(f"backbone.{stage}.{len(getattr(self.backbone, stage)) - 1}.relu" for stage in stages)]

    def block_macs(self, input_size) -> tuple[float, list[float]]:
        """(MACs of the stem, the shortcuts, the head and the policy; MACs of each block's residual branch)."""
        device = self.backbone.conv1.weight.device
        key = (tuple(input_size), str(device))
        if key not in self._block_macs:
            x = torch.zeros((1, *input_size), device=device)
            counter = FlopCounterMode(display=False)
            branches = []
            with torch.no_grad(), evaluating(self), counter:
                self.policy_probabilities(x)
                net = self.backbone
                x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
                for block in self.blocks:
                    before = counter.get_total_flops()
                    block.residual_branch(x)
                    branches.append((counter.get_total_flops() - before) // 2)
                    x = block(x)   # the branch again, and its shortcut
                net.forward_head(net.norm(x))
            self._block_macs[key] = counter.get_total_flops() // 2 - 2 * sum(branches), branches
        return self._block_macs[key]

    def executed_macs(self, policy: torch.Tensor, input_size) -> torch.Tensor:
        """MACs per image (batch,) of executing `policy` (batch, K), the policy network included."""
        base, branches = self.block_macs(input_size)
        return base + policy.double().cpu() @ torch.tensor(branches, dtype=torch.float64)


def blockdrop_reward(policy: torch.Tensor, correct: torch.Tensor, gamma: float) -> torch.Tensor:
    """R(u) = 1 − (|u|₀/K)² where the prediction is correct, −γ where it is not (Eq. 2)."""
    used = policy.float().mean(1)
    return torch.where(correct, 1 - used.square(), torch.full_like(used, -gamma))


def reinforce_loss(probabilities: torch.Tensor, actions: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """−A · Σ_k log π(u_k | s), averaged over the batch: its gradient raises the probability of the
    actions with a positive advantage (Eq. 4–5)."""
    log_prob = torch.distributions.Bernoulli(probs=probabilities.clamp(1e-6, 1 - 1e-6)).log_prob(actions.float())
    return -(advantage.detach() * log_prob.sum(1)).mean()


def train_blockdrop_policy(model: BlockDropResNet, batches: Callable[[int], Iterable], *, epochs: int,
                           lr: float = 1e-3, gamma: float = 5.0, alpha: float = EXPLORATION_ALPHA,
                           curriculum_epochs: int = 0, finetune_epochs: int = 0, finetune_lr: float = 1e-4,
                           seed: int = 0) -> list[dict]:
    """Train `model.policy` by REINFORCE on the frozen backbone for `epochs`, then `finetune_epochs` of
    joint fine-tuning (backbone with cross-entropy on the sampled paths, policy by REINFORCE).

    `batches(epoch)` yields (normalised images, labels) on the model's device. With `curriculum_epochs`,
    epoch e < curriculum_epochs learns only the last ⌈K(e + 1)/curriculum_epochs⌉ blocks, the others on.
    Adam for the policy (the authors' choice), SGD for the backbone. One record per epoch: mean reward,
    blocks used and accuracy of the sampled policies.
    """
    if not 0.5 < alpha <= 1:
        raise ValueError(f"alpha bounds the probabilities to [1 − α, α]; it must lie in (0.5, 1], not {alpha}")
    torch.manual_seed(seed)
    policy_optimizer = torch.optim.Adam(model.policy.parameters(), lr=lr)
    backbone_optimizer = torch.optim.SGD(model.backbone.parameters(), lr=finetune_lr, momentum=0.9)
    k = model.num_blocks
    history = []
    for epoch in range(epochs + finetune_epochs):
        joint = epoch >= epochs
        model.policy.train()
        model.backbone.train(joint)
        model.backbone.requires_grad_(joint)
        learned = k if epoch >= curriculum_epochs else -(-k * (epoch + 1) // curriculum_epochs)
        fixed_on = torch.arange(k) < k - learned
        totals = torch.zeros(4, dtype=torch.float64)   # images, reward, blocks used, correct
        for images, labels in batches(epoch):
            s = model.policy_probabilities(images)
            bounded = alpha * s + (1 - alpha) * (1 - s)
            fixed = fixed_on.to(s.device)[None].expand_as(s)
            sampled = torch.where(fixed, True, torch.bernoulli(bounded.detach()).bool())
            greedy = torch.where(fixed, True, s.detach() > 0.5)
            logits = model(images, policy=sampled)
            with torch.no_grad(), evaluating(model.backbone):
                greedy_correct = model(images, policy=greedy).argmax(1) == labels
            correct = logits.detach().argmax(1) == labels
            reward = blockdrop_reward(sampled, correct, gamma)
            advantage = reward - blockdrop_reward(greedy, greedy_correct, gamma)
            free = ~fixed_on.to(s.device)
            loss = reinforce_loss(bounded[:, free], sampled[:, free], advantage)
            if joint:
                loss = loss + F.cross_entropy(logits.float(), labels)
                backbone_optimizer.zero_grad(set_to_none=True)
            policy_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            policy_optimizer.step()
            if joint:
                backbone_optimizer.step()
            totals += torch.tensor([len(labels), reward.sum().item(), sampled.float().sum().item(),
                                    correct.sum().item()], dtype=torch.float64)
        n = max(totals[0].item(), 1)
        history.append({"epoch": epoch + 1, "joint": joint, "learned_blocks": learned,
                        "reward": totals[1].item() / n, "blocks_used": totals[2].item() / n,
                        "train_top1": totals[3].item() / n})
    model.backbone.requires_grad_(True)
    return history


def blockdrop_cifar_resnet(num_classes=10, in_chans=3, depth=110, policy_side=None, shortcut="A"):
    return BlockDropResNet(depth, num_classes, in_chans, policy_side, shortcut)


register_model("blockdrop_resnet110", family="blockdrop", paper=_PAPER, year=2018, input_size=(3, 32, 32),
               num_classes=10, dataset="cifar10", depth=110)(blockdrop_cifar_resnet)
register_model("blockdrop_resnet32_fmnist", family="blockdrop", paper=_PAPER, year=2018, input_size=(1, 28, 28),
               num_classes=10, dataset="fashion-mnist", depth=32, policy_side=14)(blockdrop_cifar_resnet)
