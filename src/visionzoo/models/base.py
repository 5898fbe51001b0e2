"""The one interface every visionzoo network shares.

``forward(x) = forward_head(forward_features(x))``; ``reset_classifier(k)`` swaps the last
linear layer for a fresh one with k outputs (0 removes it, leaving pre-logit features).
A family sets ``self.classifier_name`` to the dotted path of its last linear layer and either
uses the default head (global average pool → flatten → dropout → that linear; ``global_pool``
"max" takes the maximum instead, "" keeps the map) or overrides `forward_head`.

Backbone features (timm's ``feature_info`` and ``features_only``, models/features.py): a family
declares `stage_modules()`, the dotted names of the modules whose outputs are its stage feature
maps, shallow to deep; ``feature_info`` measures each stage's channels and input stride
(reduction) on the meta device at ``pretrained_cfg["input_size"]`` (set by `create_model`).
A network built for one input size (position embeddings, a flattening linear layer) sets
``fixed_input_size``, timm's name for it.
"""
from __future__ import annotations

import torch
from torch import nn

from .features import probe_feature_info


class ImageClassifier(nn.Module):
    classifier_name = "fc"
    fixed_input_size = False

    def stage_modules(self) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} declares no feature stages")

    def stage_map(self, output: torch.Tensor, image_size) -> torch.Tensor:
        """A stage module's output as a (B, C, H, W) map: a feature vector becomes a 1×1 map;
        token networks override this."""
        return output[..., None, None] if output.dim() == 2 else output

    @property
    def feature_info(self) -> list[dict]:
        """``[{"num_chs", "reduction", "module"}, …]``, one per stage (timm's feature_info)."""
        if getattr(self, "_feature_info", None) is None:
            cfg = getattr(self, "pretrained_cfg", None)
            if cfg is None:
                raise RuntimeError(f"{type(self).__name__}.feature_info is measured at "
                                   "pretrained_cfg['input_size']; build the network with create_model")
            self._feature_info = probe_feature_info(self, cfg["input_size"])
        return [dict(stage) for stage in self._feature_info]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pool = getattr(self, "global_pool", "avg")   # timm's global_pool, set by create_model
        if x.dim() == 4 and pool:
            x = x.amax((2, 3)) if pool == "max" else x.mean((2, 3))
        x = getattr(self, "head_drop", nn.Identity())(x)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        old = self.get_classifier()
        if isinstance(old, nn.Linear):   # remembered, so that a head removed by reset_classifier(0) can come back
            self._head_in_features, self._head_placement = old.in_features, (old.weight.device, old.weight.dtype)
        new = nn.Linear(self._head_in_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            new.to(*self._head_placement)
        parent_name, _, child = self.classifier_name.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self
        setattr(parent, child, new)
        self.num_classes = num_classes
