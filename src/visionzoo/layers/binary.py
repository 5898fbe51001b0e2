"""Binary-weight networks and XNOR-Net: Rastegari, Ordonez, Redmon, Farhadi, "XNOR-Net: ImageNet
Classification Using Binary Convolutional Neural Networks", ECCV 2016 (the notes' XNOR-Net section).

- Binary weights (Sec. 3.1, Eqs. 2–6): W ≈ αB with B = sign(W) and α = ‖W‖₁ / n per output filter
  (n = c·w·h), so I ⊛ W ≈ (I ⊕ B) α. Training keeps the real-valued W: the forward pass uses
  W̃ = αB and the update is W ← W − η ∂J/∂W̃ (the notes' training rule), i.e. the gradient with
  respect to W̃ is passed straight to W.
- XNOR (Sec. 3.2, Eq. 11): the input is binarised too, I ⊛ W ≈ (sign(I) ⊛ sign(W)) ⊙ K α, where
  K = A ⊛ k, A = mean over channels of |I| and k a w×h box filter of 1/(w·h) with the
  convolution's stride and padding. sign is ±1 (sign(0) = +1) and its gradient is the
  straight-through estimator g_r = g_q 1_{|r| ≤ 1} (Sec. 3.2, "Training"). The paper's XNOR block
  is BN → BinActiv → BinConv (Fig. 3): an XNOR layer therefore batch-normalises its input before
  taking signs, which also gives the signs meaning after a host network's ReLU.
- Fully connected layers are binarised the same way (a linear layer is a 1×1 convolution over a
  1×1 map, K reduces to the mean |I| of each example).

`binarize(model, mode)` swaps every Conv2d and Linear of a built network for its binary
counterpart, except the first and the last weight layer, which stay real-valued as in the paper.
Weights, biases and their parameter names are kept, so a real network's state_dict still loads.
`weight_memory_bits` counts the storage of the weights: 32 bits per real weight, 1 bit per
binary weight plus one 32-bit α per filter (the paper's ~32× saving).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("bwn", "xnor")


def checked_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return mode


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """±1 with sign(0) = +1; backward g · 1_{|x| ≤ 1}, the interval's ends included."""
    passed = x * (x.abs() <= 1).to(x.dtype)
    return passed + (torch.where(x >= 0, 1.0, -1.0).to(x.dtype) - passed).detach()


def filter_scale(weight: torch.Tensor) -> torch.Tensor:
    """α = ‖W‖₁ / n of each output filter, shaped to broadcast against the weight."""
    return weight.abs().mean(dim=tuple(range(1, weight.dim())), keepdim=True)


def binary_weight(weight: torch.Tensor) -> torch.Tensor:
    """W̃ = αB in the forward pass; ∂J/∂W̃ goes to W unchanged in the backward pass."""
    approximation = filter_scale(weight) * torch.where(weight >= 0, 1.0, -1.0).to(weight.dtype)
    return weight + (approximation - weight).detach()


class BinaryLayer:
    """The shared forward of binary layers: `apply_weight(x, w, bias)` is the layer's own product,
    `input_scale(x)` its K (the box-filtered mean |I| of a convolution, the mean |I| of a linear)."""

    def init_binary(self, mode: str, norm: type[nn.Module], features: int) -> None:
        self.mode = checked_mode(mode)
        self.input_norm = norm(features) if mode == "xnor" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = binary_weight(self.weight)
        if self.mode == "bwn":
            return self.apply_weight(x, weight, self.bias)
        x = self.input_norm(x)
        out = self.apply_weight(sign_ste(x), weight, None) * self.input_scale(x)
        if self.bias is None:
            return out
        return out + self.bias.view(1, -1, *[1] * (out.dim() - 2))


class BinaryConv2d(BinaryLayer, nn.Conv2d):
    """A Conv2d computing with αB (``mode="bwn"``) or with sign(I), αB and K (``mode="xnor"``)."""

    def __init__(self, *args, mode: str = "bwn", **kwargs):
        nn.Conv2d.__init__(self, *args, **kwargs)
        self.init_binary(mode, nn.BatchNorm2d, self.in_channels)

    def apply_weight(self, x, weight, bias):
        return self._conv_forward(x, weight, bias)

    def input_scale(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.kernel_size
        box = x.new_full((1, 1, height, width), 1.0 / (height * width))
        return F.conv2d(x.abs().mean(1, keepdim=True), box, None, self.stride, self.padding,
                        self.dilation)


class BinaryLinear(BinaryLayer, nn.Linear):
    """A Linear computing with αB (``mode="bwn"``) or with sign(I), αB and the mean |I| (``"xnor"``)."""

    def __init__(self, *args, mode: str = "bwn", **kwargs):
        nn.Linear.__init__(self, *args, **kwargs)
        self.init_binary(mode, nn.BatchNorm1d, self.in_features)

    def apply_weight(self, x, weight, bias):
        return F.linear(x, weight, bias)

    def input_scale(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs().mean(1, keepdim=True)


def low_precision_twin(layer: nn.Module, conv_class: type, linear_class: type, mode: str) -> nn.Module:
    """`layer` (a Conv2d or Linear) rebuilt as `conv_class` or `linear_class` with the same shape and `mode`,
    its real-valued weights carried over: the low-precision layers quantise them in the forward pass."""
    device, dtype = layer.weight.device, layer.weight.dtype
    if isinstance(layer, nn.Conv2d):
        twin = conv_class(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                          layer.dilation, layer.groups, layer.bias is not None, layer.padding_mode, mode=mode,
                          device=device, dtype=dtype)
    else:
        twin = linear_class(layer.in_features, layer.out_features, layer.bias is not None, mode=mode, device=device,
                            dtype=dtype)
    with torch.no_grad():
        twin.weight.copy_(layer.weight)
        if layer.bias is not None:
            twin.bias.copy_(layer.bias)
    return twin.to(device)  # the XNOR input norm too


def replace_inner_layers(model: nn.Module, twin) -> nn.Module:
    """Replace every Conv2d/Linear of `model` (in place) but its first and last by `twin(layer)`:
    the low-precision networks keep full precision at their input and output, as the papers do."""
    names = [name for name, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    for name in names[1:-1]:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, twin(getattr(parent, child)))
    return model


def binarize(model: nn.Module, mode: str = "bwn") -> nn.Module:
    """Replace every Conv2d/Linear of `model` (in place) but its first and last by binary twins."""
    checked_mode(mode)
    return replace_inner_layers(model, lambda layer: low_precision_twin(layer, BinaryConv2d, BinaryLinear, mode))


def weight_memory_bits(model: nn.Module) -> int:
    """Bits to store the conv/linear weights: 1 per binary weight + 32 per α, 32 per real weight."""
    bits = 0
    for m in model.modules():
        if isinstance(m, BinaryLayer):
            bits += m.weight.numel() + 32 * m.weight.shape[0]
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            bits += 32 * m.weight.numel()
    return bits
