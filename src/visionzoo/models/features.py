"""Backbone features with timm's ``features_only`` semantics: one feature map per stage.

A family declares in `ImageClassifier.stage_modules()` the dotted names of the modules whose
outputs are its stage feature maps (timm's ``feature_info[i]["module"]``); the rest is derived:

- `stage_outputs` runs ``model.forward_features`` with forward hooks on those modules and returns
  their outputs as (B, C, H, W) maps (`stage_map`: token outputs of ViT/Mixer reshaped to
  (B, C, H/p, W/p) as timm does, a feature vector as a 1×1 map);
- `FeatureExtractor(model, out_indices)` is the module ``create_model(name, features_only=True)``
  returns: its forward gives the maps `out_indices` selects, its ``feature_info`` describes them;
- `probe_feature_info` measures ``num_chs`` and ``reduction`` on the meta device, so they cannot
  drift from the network. The reduction is the input stride of the stage: a second probe at an
  input SIZE_STEP pixels larger shows each map growing by SIZE_STEP / stride. A map that does not
  grow with the input (a network built for one input size, adaptive pooling, MCDNN's resizing)
  gets the input side over the map side instead, rounded down.

Networks without the usual stages declare fewer, in their module docstrings: the fully connected
lenet300_100 and highway_fc one 1×1 map (their last hidden layer, reduction = the input side);
capsnet Conv1 and the primary capsules as maps; odenet_mnist its two downsampling steps and the
ODE block's output; mcdnn one map per column; ConvNet-AIG the output of each stage's last gated
block. For the networks built for one input size (ViT, Mixer, stn_cnn, the MLPs) and for mcdnn
(which resizes its input) the reductions are side ratios, not strides.
"""
from __future__ import annotations

from functools import partial
from itertools import chain

import torch
from torch import nn

from ..core.errors import UsageError
from ..core.runtime import evaluating

# 2⁶·3²·5·7: every stride of the zoo (2…32, ViT-H's 14-pixel patches, MCDNN's 2·3) divides it, so
# each layer's output grows by exactly SIZE_STEP / its stride.
SIZE_STEP = 20160


def resolution_ends(prefix: str, strides) -> list[str]:
    """Names ``prefix.i`` of the blocks that end a resolution, given each block's stride: every
    block followed by a strided one, and the last."""
    strides = list(strides)
    return [f"{prefix}.{i}" for i in range(len(strides)) if i == len(strides) - 1 or strides[i + 1] > 1]


def tokens_to_map(tokens: torch.Tensor, image_size, patch_size: int) -> torch.Tensor:
    """(B, N, C) patch tokens of an (H, W) image → (B, C, H/p, W/p), row-major as the patches."""
    height, width = (side // patch_size for side in image_size)
    return tokens.transpose(1, 2).reshape(len(tokens), -1, height, width)


def stage_outputs(model: nn.Module, x: torch.Tensor, names) -> list[torch.Tensor]:
    """The maps of the stage modules `names` when ``model.forward_features(x)`` runs."""
    outputs = {}

    def keep(name, module, args, output):
        # The last call wins: a module run twice per forward (the ReLU of ConvNet-AIG's gated
        # blocks) ends with the stage output. Its version counter exposes later in-place edits.
        outputs[name] = output, None if output.is_inference() else output._version

    hooks = [model.get_submodule(name).register_forward_hook(partial(keep, name)) for name in names]
    try:
        model.forward_features(x)
    finally:
        for hook in hooks:
            hook.remove()
    maps = []
    for name in names:
        if name not in outputs:
            raise RuntimeError(f"{type(model).__name__}: stage module {name!r} did not run in "
                               "forward_features")
        output, version = outputs[name]
        if version is not None and output._version != version:
            raise RuntimeError(f"{type(model).__name__}: a later layer changed the output of stage module "
                               f"{name!r} in place; declare a module whose output stays as it was")
        maps.append(model.stage_map(output, tuple(x.shape[-2:])))
    return maps


def resolve_out_indices(num_stages: int, out_indices=None) -> list[int]:
    """timm's ``out_indices``: None → every stage, an int n → the last n, a sequence → those stages
    (negative ones counted from the end). Returned in network order, shallow to deep."""
    if out_indices is None:
        return list(range(num_stages))
    if isinstance(out_indices, int):
        if not 0 < out_indices <= num_stages:
            raise UsageError(f"out_indices={out_indices}: take the last 1 to {num_stages} stages")
        return list(range(num_stages - out_indices, num_stages))
    chosen = set()
    for index in out_indices:
        if not -num_stages <= index < num_stages:
            raise UsageError(f"out_indices: no stage {index}; this network has {num_stages} "
                             f"(0 to {num_stages - 1}, or negative from the end)")
        chosen.add(index % num_stages)
    if not chosen:
        raise UsageError("out_indices selects no stage")
    return sorted(chosen)


class StageMaps(nn.Module):
    """forward(x) = the maps of the stage modules `names` of `model` (its state_dict under ``model.``)."""

    def __init__(self, model: nn.Module, names):
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return stage_outputs(self.model, x, self.names)


class FeatureExtractor(StageMaps):
    """A classifier's stage feature maps, those `out_indices` selects (timm's ``features_only``).

    ``feature_info`` lists the selected stages' ``num_chs``, ``reduction`` and ``module``.
    """

    def __init__(self, model: nn.Module, out_indices=None):
        info = model.feature_info
        indices = resolve_out_indices(len(info), out_indices)
        super().__init__(model, [info[i]["module"] for i in indices])
        self.out_indices = indices
        self.feature_info = [info[i] for i in indices]
        self.pretrained_cfg = self.default_cfg = getattr(model, "pretrained_cfg", None)


def _meta_stage_maps(model: nn.Module, names, input_size) -> list[torch.Tensor]:
    """Stage maps of one (C, H, W) input on the meta device: shapes only, at no cost, with meta
    stand-ins for the model's own tensors (wherever they are), which stay untouched."""
    stand_ins = {f"model.{name}": torch.empty_like(tensor, device="meta")
                 for name, tensor in chain(model.named_parameters(), model.named_buffers())}
    x = torch.empty(1, *input_size, device="meta")
    with torch.no_grad(), evaluating(model):
        return torch.func.functional_call(StageMaps(model, names), stand_ins, (x,))


def probe_feature_info(model: nn.Module, input_size) -> list[dict]:
    """``[{"num_chs", "reduction", "module"}, …]`` of `model`'s stages at a (C, H, W) input."""
    names = model.stage_modules()
    channels, height, width = input_size
    maps = _meta_stage_maps(model, names, (channels, height, width))
    grown = None if model.fixed_input_size else \
        _meta_stage_maps(model, names, (channels, height + SIZE_STEP, width + SIZE_STEP))
    info = []
    for i, (name, stage) in enumerate(zip(names, maps)):
        side = stage.shape[-2]
        growth = 0 if grown is None else grown[i].shape[-2] - side
        reduction = round(SIZE_STEP / growth) if growth else height // side
        info.append({"num_chs": stage.shape[1], "reduction": reduction, "module": name})
    return info
