"""Unsupervised pre-training (`--pretrain autoencoder`): the notes' (001) "unsupervised
pretraining" initialisation, before supervised training.

Greedy layer-wise training: Bengio, Lamblin, Popovici, Larochelle, "Greedy Layer-Wise Training
of Deep Networks", NeurIPS 2006, Algorithm TrainUnsupervisedDBN with auto-encoders in place of
RBMs (Sec. 4.3): hidden layer l is trained, on the representation h_{l−1} computed by the layers
below it (kept fixed), as the encoder of an auto-encoder that reconstructs h_{l−1}; then layer
l + 1 is trained on h_l, and so on. With `noise` ν > 0 each layer is a denoising auto-encoder
(Vincent, Larochelle, Bengio, Manzagol, ICML 2008, Sec. 2.3): a fraction ν of the input
components is set to 0 ("masking noise") and the clean input is reconstructed.

A "layer" is a Conv2d/Linear with the parameter-free and normalisation modules after it, up to the
next Conv2d/Linear; the last Conv2d/Linear is the classifier and is left to supervised training.
The decoder of each layer is discarded after its training: a Linear back to the input (unflattened
to a feature map when the input was one), or for feature map → feature map, an upsampling to the
input size and a 3×3 convolution. Loss: mean squared error; optimiser Adam (lr 10⁻³).

This needs a network that is a chain: each module's input is the previous module's output
(LeNet, VGG, AlexNet, MCDNN, MLPs). Branching networks (ResNets, Inception, …) raise a UsageError.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UsageError
from ..core.runtime import evaluating
from ..layers.init import WEIGHTED, StopForward

ADAM_LR = 1e-3


def _leaves(model: nn.Module) -> list[nn.Module]:
    """Modules without children, and Conv/Linear layers as a whole (whatever they hold)."""
    inside = set()
    leaves = []
    for module in model.modules():
        if module in inside:
            continue
        if isinstance(module, WEIGHTED):
            inside.update(module.modules())
            leaves.append(module)
        elif not list(module.children()):
            leaves.append(module)
    return leaves


def forward_chain(model: nn.Module, batch: torch.Tensor) -> list[nn.Module]:
    """The modules `model` runs on `batch`, in order, if each one's input is the previous one's
    output (up to reshaping) and the last one's output is the model's; else a UsageError."""
    calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    inputs: dict[nn.Module, torch.Tensor] = {}
    handles = []
    for leaf in _leaves(model):
        handles.append(leaf.register_forward_pre_hook(
            lambda m, args: inputs.__setitem__(m, args[0].detach().clone())))
        handles.append(leaf.register_forward_hook(
            lambda m, args, out: calls.append((m, inputs[m], out.detach().clone()))))
    try:
        with torch.no_grad(), evaluating(model):
            output = model(batch)
    finally:
        for handle in handles:
            handle.remove()
    name = type(model).__name__
    unsupported = UsageError(f"--pretrain autoencoder: {name} is not a chain of layers (each fed by "
                             "the one before); it works for sequential stacks such as lenet, vgg*, alexnet, MLPs")
    if not calls or len({id(m) for m, _, _ in calls}) != len(calls) \
            or not isinstance(output, torch.Tensor) or not _same(output, calls[-1][2]):
        raise unsupported
    for (_, _, previous_out), (_, current_in, _) in zip(calls, calls[1:]):
        if not _same(previous_out, current_in):
            raise unsupported
    return [module for module, _, _ in calls]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.numel() == b.numel() and torch.equal(a.reshape(-1), b.reshape(-1))


def _decoder(code_shape: torch.Size, input_shape: torch.Size) -> nn.Module:
    if len(code_shape) == 3 and len(input_shape) == 3:
        return nn.Sequential(nn.Upsample(size=tuple(input_shape[1:])),
                             nn.Conv2d(code_shape[0], input_shape[0], 3, padding=1))
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(code_shape), math.prod(input_shape)),
                         nn.Unflatten(1, tuple(input_shape)))


def _encode(model: nn.Module, first: nn.Module, last: nn.Module, images: torch.Tensor, noise: float):
    """(clean input of `first`, code = output of `last`), with the input detached and corrupted."""
    captured = {}
    learning = torch.is_grad_enabled()

    def corrupt(module, args):
        torch.set_grad_enabled(learning)  # the layers below run without autograd
        clean = args[0].detach()
        captured["input"] = clean
        if noise > 0:
            clean = clean * torch.empty_like(clean).bernoulli_(1.0 - noise)
        return (clean, *args[1:])

    def stop(module, args, out):
        captured["code"] = out
        raise StopForward

    handles = [first.register_forward_pre_hook(corrupt), last.register_forward_hook(stop)]
    try:
        with torch.no_grad():
            model(images)
    except StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return captured["input"], captured["code"]


def pretrain_autoencoder(model: nn.Module, batches: Callable[[], Iterable[torch.Tensor]], *,
                         epochs: int = 1, noise: float = 0.0, lr: float = ADAM_LR) -> list[dict]:
    """Greedy layer-wise (denoising) auto-encoder training of every hidden layer of `model`.

    `batches()` yields batches of normalised unlabelled images, once per call. Returns, per
    layer, its name and the reconstruction loss on the first batch before and after training.
    """
    if not 0 <= noise < 1:
        raise UsageError(f"--pretrain-noise must lie in [0, 1), got {noise}")
    if epochs < 1:
        raise UsageError(f"--pretrain-epochs must be at least 1, got {epochs}")
    probe = next(iter(batches()))
    chain = forward_chain(model, probe[:4])
    starts = [i for i, module in enumerate(chain) if isinstance(module, WEIGHTED)]
    if len(starts) < 2:
        raise UsageError(f"--pretrain autoencoder: {type(model).__name__} has no hidden layer below its classifier")
    names = {m: name for name, m in model.named_modules()}
    report = []
    was_training = model.training
    model.train()
    for begin, end in zip(starts, starts[1:]):
        first, last = chain[begin], chain[end - 1]
        layer_params = [p for m in chain[begin:end] for p in m.parameters()]
        with torch.no_grad():
            clean, code = _encode(model, first, last, probe, 0.0)
        decoder = _decoder(code.shape[1:], clean.shape[1:]).to(probe.device)
        optimizer = torch.optim.Adam(layer_params + list(decoder.parameters()), lr=lr)

        def probe_loss() -> float:
            with torch.no_grad():
                clean, code = _encode(model, first, last, probe, 0.0)
                return F.mse_loss(decoder(code), clean).item()

        before = probe_loss()
        for _ in range(epochs):
            for images in batches():
                clean, code = _encode(model, first, last, images, noise)
                loss = F.mse_loss(decoder(code), clean)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        report.append({"layer": names[first], "loss_before": before, "loss_after": probe_loss()})
    model.train(was_training)
    return report
