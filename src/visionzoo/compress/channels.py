"""Structured pruning: whole filters removed, so the tensors and the MACs physically shrink.

Li, Kadav, Durdanovic, Samet, Graf, "Pruning Filters for Efficient ConvNets", ICLR 2017,
Sec. 3.1: the filters of a convolution with the smallest ℓ1 norm Σ|F| are removed together with
their output maps, the matching input channels of the next layer and, in between, the channels
of any batch normalisation; the network is then retrained (Sec. 3.4). Unstructured masks
(`prune.py`, torch.nn.utils.prune) leave the dense tensors in place and give no speed-up; this
gives a smaller dense network.

A producer convolution can lose filters when its output reaches exactly one weight layer through
channel-wise modules only: convolution → (BatchNorm, activation, pooling, dropout)* → convolution,
or → flatten → linear (each channel then owns a block of the linear layer's inputs), as in
LeNet, VGG, AlexNet and inside residual blocks (a block's output, added to its shortcut, keeps
its width, as in Li et al. Sec. 4.2). Candidates are read off the module order and each is
confirmed by running the network: with the removed channels' filters zeroed, the shrunk network
must give the same outputs; candidates that fail are left alone.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.errors import UsageError
from ..core.runtime import evaluating


def _plain(module: nn.Module, kind) -> bool:
    return type(module) is kind  # binary twins and other subclasses compute differently


def candidate_pairs(model: nn.Module) -> list[tuple[str, list[str], str]]:
    """(producer conv, batch norms in between, consumer) in module order, by shape alone."""
    weights = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    norms = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    pairs = []
    for (name, producer), (next_name, consumer) in zip(weights, weights[1:]):
        if not _plain(producer, nn.Conv2d) or producer.groups != 1:
            continue
        channels = producer.out_channels
        fits = (_plain(consumer, nn.Conv2d) and consumer.groups == 1 and consumer.in_channels == channels) or \
               (_plain(consumer, nn.Linear) and consumer.in_features % channels == 0)
        between = [n for n, bn in norms if order[name] < order[n] < order[next_name]]
        if fits and channels > 1 and all(model.get_submodule(n).num_features == channels for n in between):
            pairs.append((name, between, next_name))
    return pairs


def _slice(module: nn.Module, attribute: str, index: torch.Tensor, dim: int) -> None:
    tensor = getattr(module, attribute)
    if tensor is None:
        return
    sliced = tensor.detach().index_select(dim, index.to(tensor.device)).clone()
    if isinstance(tensor, nn.Parameter):
        setattr(module, attribute, nn.Parameter(sliced, requires_grad=tensor.requires_grad))
    else:
        setattr(module, attribute, sliced)


def remove_channels(model: nn.Module, pair, keep: torch.Tensor) -> None:
    """Keep only the producer's filters `keep` (sorted indices), in place, through to the consumer."""
    producer_name, norm_names, consumer_name = pair
    producer, consumer = model.get_submodule(producer_name), model.get_submodule(consumer_name)
    before = producer.out_channels
    _slice(producer, "weight", keep, 0)
    _slice(producer, "bias", keep, 0)
    producer.out_channels = len(keep)
    for name in norm_names:
        norm = model.get_submodule(name)
        for attribute in ("weight", "bias", "running_mean", "running_var"):
            _slice(norm, attribute, keep, 0)
        norm.num_features = len(keep)
    if isinstance(consumer, nn.Linear):
        block = consumer.in_features // before
        columns = (keep[:, None] * block + torch.arange(block)).flatten()
        _slice(consumer, "weight", columns, 1)
        consumer.in_features = len(columns)
    else:
        _slice(consumer, "weight", keep, 1)
        consumer.in_channels = len(keep)


def _zero_channels(model: nn.Module, pair, removed: torch.Tensor) -> None:
    producer_name, norm_names, _ = pair
    with torch.no_grad():
        producer = model.get_submodule(producer_name)
        producer.weight[removed] = 0
        if producer.bias is not None:
            producer.bias[removed] = 0
        for name in norm_names:  # BN(0) = 0 once its shift and running mean are 0 there
            norm = model.get_submodule(name)
            norm.running_mean[removed] = 0
            if norm.bias is not None:
                norm.bias[removed] = 0


def _touched(model: nn.Module, pair) -> list[nn.Module]:
    producer_name, norm_names, consumer_name = pair
    return [model.get_submodule(n) for n in (producer_name, *norm_names, consumer_name)]


def _confirmed(model: nn.Module, pair, input_size) -> bool:
    """Zeroing every other filter and removing those filters give the same outputs.

    Tried on the model itself: the touched modules' tensors and sizes are put back afterwards.
    """
    saved = [(m, dict(m.__dict__), dict(m._parameters), dict(m._buffers)) for m in _touched(model, pair)]
    originals = {id(t): t.detach().clone() for _, _, params, buffers in saved
                 for t in (*params.values(), *buffers.values()) if t is not None}
    channels = model.get_submodule(pair[0]).out_channels
    keep, removed = torch.arange(0, channels, 2), torch.arange(1, channels, 2)
    device = next(model.parameters()).device
    x = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        _zero_channels(model, pair, removed)
        with torch.no_grad(), evaluating(model):
            expected = model(x)
            remove_channels(model, pair, keep)
            got = model(x)
        return torch.allclose(expected, got, rtol=1e-4, atol=1e-5 * expected.abs().max().item())
    except torch.OutOfMemoryError:
        raise
    except RuntimeError:  # shapes that do not fit: the output went somewhere else too
        return False
    finally:
        with torch.no_grad():
            for module, attributes, params, buffers in saved:
                module.__dict__.update({k: v for k, v in attributes.items() if isinstance(v, int)})
                module._parameters.update(params)
                module._buffers.update(buffers)
                for t in (*params.values(), *buffers.values()):
                    if t is not None:
                        t.copy_(originals[id(t)])


def prunable_pairs(model: nn.Module, input_size) -> list[tuple[str, list[str], str]]:
    pairs = [p for p in candidate_pairs(model) if _confirmed(model, p, input_size)]
    if not pairs:
        raise UsageError(f"--method channels: {type(model).__name__} has no convolution whose output "
                         "feeds a single convolution/linear layer through channel-wise layers only; "
                         "use --method prune for unstructured sparsity")
    return pairs


def smallest_filters(weight: torch.Tensor, ratio: float) -> torch.Tensor:
    """Sorted indices of the filters kept: all but the fraction `ratio` with the smallest ℓ1 norm."""
    n_keep = max(1, round(weight.shape[0] * (1 - ratio)))
    norms = weight.detach().abs().flatten(1).sum(1)
    return torch.argsort(norms, descending=True, stable=True)[:n_keep].sort().values.cpu()


def prune_channels(model: nn.Module, ratio: float, input_size) -> list[list]:
    """Remove the fraction `ratio` of filters of every prunable convolution (in place).

    Returns the plan [[producer, norms, consumer, kept], ...] that `set_widths` replays.
    """
    if not 0 < ratio < 1:
        raise UsageError(f"--channel-ratio must lie in (0, 1), got {ratio}")
    plan = []
    for pair in prunable_pairs(model, input_size):
        keep = smallest_filters(model.get_submodule(pair[0]).weight, ratio)
        remove_channels(model, pair, keep)
        plan.append([pair[0], pair[1], pair[2], len(keep)])
    return plan


def set_widths(model: nn.Module, plan: list[list]) -> None:
    """Give a freshly built network the shapes of a channel-pruned one (weights are loaded next)."""
    for producer, norms, consumer, kept in plan:
        remove_channels(model, (producer, norms, consumer), torch.arange(kept))
