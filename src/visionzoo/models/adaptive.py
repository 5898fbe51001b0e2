"""ConvNet-AIG: Veit, Belongie, "Convolutional Networks with Adaptive Inference Graphs", ECCV 2018
(the notes' adaptive inference, "version 1: skip some residuals").

Every residual block l gets a gate deciding, per example, whether its residual branch runs:
x_l = relu(shortcut(x_{l−1}) + z_l(x_{l−1}) · F_l(x_{l−1})), z_l ∈ {0, 1} (Sec. 3.1).
The gate (Sec. 3.2) reads the block input: global average pool → FC (16 units) → BN → ReLU →
FC → two logits (execute / skip). Training draws z with the Gumbel-softmax straight-through
estimator (τ = 1; hard 0/1 forward, soft gradient, Sec. 3.3); evaluation takes the argmax of
the logits, a hard threshold. Gates start biased open (execute logit +2) so that early training
sees the whole network.

Loss (`training_loss`, Sec. 3.4): cross-entropy plus the target-rate term
L_target = 1/L Σ_l (z̄_l − t)², z̄_l the fraction of the batch executing block l and t the target
rate (``target_rate``, 0.6 by default; the paper trains with several targets and reports the
accuracy/computation trade-off).

Cost: the batched forward evaluates every branch and multiplies it by its gate (so a batch stays
one tensor); `executed_macs(x)` reports what executing only the open branches costs, per image:
the network's MACs minus (1 − z̄_l) × the MACs of branch l, with z̄_l from `block_execution_rates(x)`
(its mean is the fraction of blocks executed). `model_card` counts every branch (the upper bound).

Feature stages: those of the ResNet, except that a stage's map is the output ReLU of its last
block (the blocks run through `gated_forward`, never as ``layer{i}`` modules).

`aig_resnet20_cifar`: the CIFAR ResNet-20 of He et al. (3 stages × 3 basic blocks, 16/32/64
filters, option-A shortcuts) with every block gated, downsampling blocks included. The paper's
CIFAR-10 network, ConvNet-AIG 110, is the same construction on ResNet-110: ``depth=110``
(``--model-arg depth=110``); it is not registered on its own to keep the registry-wide tests fast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..core.runtime import evaluating
from ..layers.residual import BasicBlock
from ..registry import register_model
from .resnet import ResNet

_PAPER = "Veit, Belongie. Convolutional Networks with Adaptive Inference Graphs. ECCV 2018"
GATE_HIDDEN = 16


class Gate(nn.Module):
    """GAP → FC → BN → ReLU → FC → (skip, execute) logits; a hard 0/1 decision per example."""

    def __init__(self, channels: int, hidden: int = GATE_HIDDEN):
        super().__init__()
        self.estimator = nn.Sequential(nn.Linear(channels, hidden), nn.BatchNorm1d(hidden),
                                       nn.ReLU(inplace=True), nn.Linear(hidden, 2))
        with torch.no_grad():
            self.estimator[-1].bias.copy_(torch.tensor([0.0, 2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.estimator(x.mean((2, 3))).float()
        if self.training:
            return F.gumbel_softmax(logits, tau=1.0, hard=True)[:, 1]
        return (logits[:, 1] > logits[:, 0]).float()


class GatedBlock(BasicBlock):
    """A post-activation basic block whose residual branch is switched by a `Gate` per example."""

    def __init__(self, cin: int, planes: int, stride: int = 1, **kwargs):
        super().__init__(cin, planes, stride, **kwargs)
        self.gate = Gate(cin)

    def gated_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate = self.gate(x)
        branch = self.residual_branch(x) * gate.to(x.dtype)[:, None, None, None]
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(branch + shortcut), gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gated_forward(x)[0]


class AIGResNet(ResNet):
    """A ResNet of `GatedBlock`s; in training mode the forward returns ``(logits, gates)``."""

    def __init__(self, *args, target_rate: float = 0.6, **kwargs):
        super().__init__(*args, block=GatedBlock, **kwargs)
        if not 0 <= target_rate <= 1:
            raise ValueError(f"target_rate must lie in [0, 1], not {target_rate}")
        self.target_rate = target_rate

    def gated_blocks(self) -> list[tuple[str, GatedBlock]]:
        return [(name, m) for name, m in self.named_modules() if isinstance(m, GatedBlock)]

    def forward_with_gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The last feature map and the gate decisions, (batch, blocks)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        gates = []
        for _, block in self.gated_blocks():
            x, gate = block.gated_forward(x)
            gates.append(gate)
        return self.norm(x), torch.stack(gates, 1)

    def stage_modules(self):
        stem, *stages = super().stage_modules()
        return [stem, *(f"{stage}.{len(getattr(self, stage)) - 1}.relu" for stage in stages)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_gates(x)[0]

    def forward(self, x: torch.Tensor):
        features, gates = self.forward_with_gates(x)
        logits = self.forward_head(features)
        return (logits, gates) if self.training else logits

    def training_loss(self, output, labels: torch.Tensor, label_smoothing: float = 0.0):
        logits, gates = output
        classification = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        target = (gates.mean(0) - self.target_rate).square().mean()
        return classification + target, logits

    @torch.no_grad()
    def block_execution_rates(self, x: torch.Tensor) -> torch.Tensor:
        """z̄_l at evaluation: the fraction of the images of `x` that execute each block."""
        with evaluating(self):
            return self.forward_with_gates(x)[1].mean(0)

    @torch.no_grad()
    def executed_macs(self, x: torch.Tensor) -> float:
        """Average MACs per image of `x` when only the open residual branches are computed."""
        rates = self.block_execution_rates(x)
        counter = FlopCounterMode(display=False)
        with evaluating(self), counter:
            self(x[:1])
        counts = {key: sum(per_op.values()) // 2 for key, per_op in counter.get_flop_counts().items()}
        root = type(self).__name__
        skipped = 0.0
        for rate, (name, _) in zip(rates.tolist(), self.gated_blocks()):
            branch = sum(counts.get(f"{root}.{name}.{conv}", 0) for conv in ("conv1", "conv2"))
            skipped += (1 - rate) * branch
        return counts[root] - skipped


def aig_cifar_resnet(num_classes=10, in_chans=3, depth=20, **kwargs):
    return AIGResNet(layers=((depth - 2) // 6,) * 3, widths=(16, 32, 64), num_classes=num_classes,
                     in_chans=in_chans, stem="small", shortcut="A", **kwargs)


register_model("aig_resnet20_cifar", family="convnet_aig", paper=_PAPER, year=2018,
               input_size=(3, 32, 32), num_classes=10, dataset="cifar10", depth=20)(aig_cifar_resnet)
