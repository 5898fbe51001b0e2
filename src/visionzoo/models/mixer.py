"""MLP-Mixer: Tolstikhin, Houlsby, Kolesnikov, Beyer, Zhai, Unterthiner, Yung, Steiner, Keysers,
Uszkoreit, Lucic, Dosovitskiy, "MLP-Mixer: An all-MLP Architecture for Vision", NeurIPS 2021.

An image becomes a table X ∈ R^{S×C} of S embedded patches (the ViT patch embedding, a
convolution with kernel = stride = P); each Mixer layer mixes it twice (Sec. 2, Eq. 1):

    token mixing:    U_{*,i} = X_{*,i} + W₂ σ(W₁ LN(X)_{*,i}),   i = 1 … C
    channel mixing:  Y_{j,*} = U_{j,*} + W₄ σ(W₃ LN(U)_{j,*}),   j = 1 … S

σ = GELU; the token-mixing MLP (hidden width D_S) acts along the columns, i.e. across patches,
the channel-mixing MLP (D_C) along the rows. Then LN, global average pooling over the patches
and a linear head. Both MLPs are `layers.transformer.Mlp`. The configurations of Table 1
(S: 8 layers, C = 512, D_S = 256, D_C = 2048; B: 12, 768, 384, 3072; L: 24, 1024, 512, 4096)
under timm's names, whose parameter names ours share. Table 1's counts leave out the 1000-way
head (mixer_s16_224: 18.0M + 0.5M).

Feature stages (timm's mlp_mixer): every Mixer layer ``blocks.i``, its table reshaped to a
(B, C, H/P, W/P) map, so every reduction is the patch size P.

Small images: with ``image_size < 64`` the patches are 4×4 (28×28 → S = 49 tokens). The token
MLP's weights are S-wide, so a Mixer is built for one input size (``image_size``, 224 by default).
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers.drop import DropPath, linear_drop_path_rates
from ..layers.transformer import Mlp, PatchEmbed, init_transformer_weights
from ..registry import register_model
from .base import ImageClassifier
from .features import tokens_to_map

_MIXER = dict(family="mixer", year=2021,
              paper="Tolstikhin, Houlsby, Kolesnikov, Beyer, Zhai, Unterthiner, Yung, Steiner, "
                    "Keysers, Uszkoreit, Lucic, Dosovitskiy. MLP-Mixer: An all-MLP Architecture "
                    "for Vision. NeurIPS 2021")
SMALL_IMAGE_PATCH = 4


class MixerBlock(nn.Module):
    """Token mixing then channel mixing, each pre-LN with a skip connection (Eq. 1)."""

    def __init__(self, num_tokens, dim, tokens_mlp_dim, channels_mlp_dim, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_tokens = Mlp(num_tokens, tokens_mlp_dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_channels = Mlp(dim, channels_mlp_dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, S, C): the token MLP runs on the transposed table, one column (channel) at a time.
        u = x + self.drop_path(self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2))
        return u + self.drop_path(self.mlp_channels(self.norm2(u)))


class MlpMixer(ImageClassifier):
    """Per-patch linear embedding → N Mixer layers → LN → average over patches → linear head."""
    classifier_name = "head"
    fixed_input_size = True

    def __init__(self, image_size=224, patch_size=16, dim=512, depth=8, tokens_mlp_dim=256,
                 channels_mlp_dim=2048, num_classes=1000, in_chans=3, drop_path_rate=0.0):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = dim
        self.stem = PatchEmbed(patch_size, in_chans, dim)
        self.num_tokens = (image_size // patch_size) ** 2
        self.blocks = nn.Sequential(*(
            MixerBlock(self.num_tokens, dim, tokens_mlp_dim, channels_mlp_dim, rate)
            for rate in linear_drop_path_rates(depth, drop_path_rate)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        init_transformer_weights(self)

    def stage_modules(self):
        return [f"blocks.{i}" for i in range(len(self.blocks))]

    def stage_map(self, tokens, image_size):
        return tokens_to_map(tokens, image_size, self.stem.patch_size)

    def forward_features(self, x):
        x = self.stem(x)
        if x.shape[1] != self.num_tokens:
            raise ValueError(f"this Mixer mixes {self.num_tokens} tokens, the input gives "
                             f"{x.shape[1]}; build it with image_size={x.shape[-1]}")
        return self.norm(self.blocks(x))

    def forward_head(self, x, pre_logits=False):
        x = x.mean(1)
        return x if pre_logits else self.head(x)


def mlp_mixer(num_classes=1000, in_chans=3, image_size=None, patch_size=16, **kwargs):
    """A Mixer for `image_size` inputs (224 by default); below 64 px the patches are 4×4."""
    image_size = image_size or 224
    if image_size < 64:
        patch_size = SMALL_IMAGE_PATCH
    return MlpMixer(image_size, patch_size, num_classes=num_classes, in_chans=in_chans, **kwargs)


_S = dict(dim=512, depth=8, tokens_mlp_dim=256, channels_mlp_dim=2048)
_B = dict(dim=768, depth=12, tokens_mlp_dim=384, channels_mlp_dim=3072)
_L = dict(dim=1024, depth=24, tokens_mlp_dim=512, channels_mlp_dim=4096)
_NO_HEAD = "Table 1 counts the network without its 1000-way head"
for _name, _patch, _cfg, _params in (
        ("mixer_s16_224", 16, _S, "18M"), ("mixer_s32_224", 32, _S, "19M"),
        ("mixer_b16_224", 16, _B, "59M"), ("mixer_b32_224", 32, _B, "60M"),
        ("mixer_l16_224", 16, _L, "207M")):
    register_model(_name, **_MIXER, paper_params=_params, mismatch_reason=_NO_HEAD,
                   twins={"timm": _name}, patch_size=_patch, **_cfg)(mlp_mixer)
