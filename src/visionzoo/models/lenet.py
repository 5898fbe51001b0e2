"""LeNet: LeCun et al., "Gradient-based learning applied to document recognition", Proc. IEEE 1998.

`lenet5` is the paper's network: C1 (6@28×28) → S2 → C3 (16@10×10, the partial connection table
of Table I) → S4 → C5 (120) → F6 (84) → Euclidean RBF output, with the scaled squashing function
f(a) = 1.7159·tanh(2a/3) and trainable subsampling (sum of 2×2 × coefficient + bias).
Its 60,000 trainable parameters match the paper (the RBF centres are fixed, as in the paper).
28×28 inputs (MNIST-like) are zero-padded to the paper's 32×32, as LeCun et al. did.

`lenet` is the notes' PyTorch variant (seed 001): conv 20 → pool → conv 50 → pool → fc 500 → fc,
ReLU and max-pooling — the Caffe "LeNet-5" that Deep Compression prunes.

`lenet300_100` is the paper's fully connected 784-300-100-10 network (Sec. III.C, "2-layer NN,
300-100 HU"), ReLU here as in Han et al.'s pruning experiments: 266,610 weights ("267K", notes 000).

Feature stages: the activation before each subsampling or pooling layer, and the last layer
(LeNet-5's C5, LeNet's adaptive max-pool, whose reduction is the input side over its 4×4 map).
The fully connected network has no feature maps: its one stage is the last hidden layer (fc2,
rectified) as a 1×1 map whose reduction is the input side.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.activation import ScaledTanh
from ..registry import register_model
from .base import ImageClassifier

_PAPER = "LeCun, Bottou, Bengio, Haffner. Gradient-based learning applied to document recognition. Proc. IEEE 1998"

# Table I of the paper: which S2 maps (rows) feed each C3 map (columns), as groups of equal width.
_C3_GROUPS = (
    [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 0], [5, 0, 1]],
    [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 0], [4, 5, 0, 1], [5, 0, 1, 2]],
    [[0, 1, 3, 4], [1, 2, 4, 5], [0, 2, 3, 5]],
    [[0, 1, 2, 3, 4, 5]],
)


class Subsampling(nn.Module):
    """S-layer: each unit adds its 2×2 inputs, multiplies by a per-map coefficient, adds a bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.coefficient = nn.Parameter(torch.full((channels,), 0.25))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        summed = F.avg_pool2d(x, 2) * 4
        return summed * self.coefficient.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv(nn.Module):
    """C3: each output map sees only the input maps of the connection table (1,516 parameters).

    Maps with the same number of inputs form one grouped convolution over the gathered inputs,
    so the MACs are those of the table's connections, not of a dense 6→16 convolution.
    """

    def __init__(self, groups=_C3_GROUPS, kernel_size: int = 5):
        super().__init__()
        for i, maps in enumerate(groups):
            self.register_buffer(f"index{i}", torch.tensor(sum(maps, [])), persistent=False)
        self.convs = nn.ModuleList(
            nn.Conv2d(len(maps) * len(maps[0]), len(maps), kernel_size, groups=len(maps))
            for maps in groups)

    def forward(self, x):
        return torch.cat([conv(x.index_select(1, getattr(self, f"index{i}")))
                          for i, conv in enumerate(self.convs)], 1)


class EuclideanRBF(nn.Module):
    """Output units y_i = Σ_j (x_j − w_ij)²; the logits are −y. Centres are fixed ±1 codes."""

    def __init__(self, in_features: int, num_classes: int, seed: int = 0):
        super().__init__()
        self.in_features = in_features
        codes = torch.randint(0, 2, (num_classes, in_features),
                              generator=torch.Generator().manual_seed(seed)) * 2.0 - 1.0
        self.register_buffer("centres", codes)

    def forward(self, x):
        # ‖x‖² − 2 x·w + ‖w‖², written with a matmul so it is counted as MACs.
        distance = (x * x).sum(1, keepdim=True) - 2 * x @ self.centres.t() + (self.centres ** 2).sum(1)
        return -distance


class LeNet5(ImageClassifier):
    classifier_name = "output"

    def __init__(self, num_classes: int = 10, in_chans: int = 1):
        super().__init__()
        self.num_classes = num_classes
        act = ScaledTanh
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5), act(),            # C1
            Subsampling(6), act(),                       # S2
            PartialConv(), act(),                        # C3
            Subsampling(16), act(),                      # S4
            nn.Conv2d(16, 120, 5), act(),                # C5
        )
        self.f6 = nn.Sequential(nn.Linear(120, 84), act())
        self.output = EuclideanRBF(84, num_classes)
        self._init_weights()

    def _init_weights(self):
        # Appendix C: uniform in ±2.4/F_in, F_in the fan-in of the unit.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                nn.init.uniform_(m.weight, -2.4 / fan_in, 2.4 / fan_in)
                nn.init.zeros_(m.bias)

    def stage_modules(self):
        return ["features.1", "features.5", "features.9"]

    def forward_features(self, x):
        if x.shape[-1] < 32:  # MNIST-sized input: pad to the paper's 32×32 field
            pad_w, pad_h = 32 - x.shape[-1], 32 - x.shape[-2]
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return self.features(x)

    def forward_head(self, x, pre_logits: bool = False):
        x = self.f6(torch.flatten(x, 1))
        return x if pre_logits else self.output(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.output = EuclideanRBF(84, num_classes) if num_classes > 0 else nn.Identity()
        self.num_classes = num_classes


class LeNet(ImageClassifier):
    classifier_name = "fc2"

    def __init__(self, num_classes: int = 10, in_chans: int = 1):
        super().__init__()
        self.num_classes = num_classes
        # The second pool is adaptive: on 28×28 it is exactly the 2×2/2 max-pool of the notes
        # (8×8 → 4×4, fc1 sees 50·4·4 = 800), and it keeps fc1 at 800 inputs for other sizes.
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 20, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
            nn.Conv2d(20, 50, 5), nn.ReLU(inplace=True), nn.AdaptiveMaxPool2d(4))
        self.fc1 = nn.Sequential(nn.Linear(800, 500), nn.ReLU(inplace=True))
        self.fc2 = nn.Linear(500, num_classes)

    def stage_modules(self):
        return ["features.1", "features.4", "features.5"]

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits: bool = False):
        x = self.fc1(torch.flatten(x, 1))
        return x if pre_logits else self.fc2(x)


@register_model(family="lenet", paper=_PAPER, year=1998, input_size=(1, 32, 32), num_classes=10,
                dataset="mnist", paper_params=60_000)
def lenet5(num_classes=10, in_chans=1, **kwargs):
    return LeNet5(num_classes, in_chans, **kwargs)


@register_model(family="lenet", paper="Seed notes 001 (More on CNN), PyTorch LeNet after " + _PAPER,
                year=1998, input_size=(1, 28, 28), num_classes=10, dataset="mnist")
def lenet(num_classes=10, in_chans=1, **kwargs):
    return LeNet(num_classes, in_chans, **kwargs)


class LeNet300100(ImageClassifier):
    classifier_name = "fc3"
    fixed_input_size = True

    def __init__(self, num_classes: int = 10, in_chans: int = 1, image_size: int = 28):
        super().__init__()
        self.num_classes = num_classes
        self.fc1 = nn.Linear(in_chans * image_size * image_size, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def stage_modules(self):
        return ["fc2"]

    def stage_map(self, output, image_size):
        # The ReLU is functional, no module's output: fc2's units rectified, as forward_features gives them.
        return F.relu(output)[..., None, None]

    def forward_features(self, x):
        return F.relu(self.fc2(F.relu(self.fc1(torch.flatten(x, 1)))))

    def forward_head(self, x, pre_logits: bool = False):
        return x if pre_logits else self.fc3(x)


@register_model(family="lenet", paper=_PAPER + "; pruned in Han, Pool, Tran, Dally. Learning both Weights and "
                "Connections for Efficient Neural Networks. NeurIPS 2015", year=1998, input_size=(1, 28, 28),
                num_classes=10, dataset="mnist", paper_params="267K")
def lenet300_100(num_classes=10, in_chans=1, image_size=28, **kwargs):
    return LeNet300100(num_classes, in_chans, image_size, **kwargs)
