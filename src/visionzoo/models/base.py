"""The one interface every visionzoo network shares.

``forward(x) = forward_head(forward_features(x))``; ``reset_classifier(k)`` swaps the last
linear layer for a fresh one with k outputs (0 removes it, leaving pre-logit features).
A family sets ``self.classifier_name`` to the dotted path of its last linear layer and either
uses the default head (global average pool → flatten → dropout → that linear) or overrides
`forward_head`.
"""
from __future__ import annotations

import torch
from torch import nn


class ImageClassifier(nn.Module):
    classifier_name = "fc"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if x.dim() == 4:
            x = x.mean((2, 3))
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
