"""Vision Transformer: Dosovitskiy, Beyer, Kolesnikov, Weissenborn, Zhai, Unterthiner, Dehghani,
Minderer, Heigold, Gelly, Uszkoreit, Houlsby, "An Image is Worth 16x16 Words: Transformers for
Image Recognition at Scale", ICLR 2021.

The encoder reads like Sec. 3.1:

    z_0 = [x_class; x_p¹E; …; x_pᴺE] + E_pos,   E ∈ R^{(P²·C)×D}, E_pos ∈ R^{(N+1)×D}   (Eq. 1)
    z'_ℓ = MSA(LN(z_{ℓ−1})) + z_{ℓ−1},          ℓ = 1 … L                             (Eq. 2)
    z_ℓ = MLP(LN(z'_ℓ)) + z'_ℓ,                 ℓ = 1 … L                             (Eq. 3)
    y = LN(z_L⁰)                                                                       (Eq. 4)

with learned 1-D position embeddings and a linear head on y (layers/transformer.py holds the
patch embedding, MSA, MLP and encoder block). Table 1's variants ViT-B/L/H (86M, 307M, 632M
parameters; "/P" is the patch size) under torchvision's names, and ViT-Ti/S of Touvron et al.,
"Training data-efficient image transformers & distillation through attention", ICML 2021
(DeiT, Table 1: 5M, 22M).

Small images: the paper's 16×16 patches would leave a 28×28 image one token. With
``image_size < 64`` the patch size becomes 4 (28×28 → 7×7 = 49 patches, 32×32 → 8×8), and
E_pos always has (image_size / P)² + 1 rows, so a network is built for one input size.
`vit_tiny_patch4_28` is ViT-Ti/4 for Fashion-MNIST (28×28×1, 10 classes).

Feature stages (timm's vit): every encoder block ``blocks.i``, its patch tokens (without the
class token) reshaped to a (B, D, H/P, W/P) map, so every reduction is the patch size P.

torchvision's ViTs name their layers differently (its MSA is nn.MultiheadAttention, whose
packed in_proj_weight is our U_qkv, q, k, v stacked in that order): `torchvision_vit_to_ours`
renames them; timm's ViTs share our names.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from ..layers.drop import linear_drop_path_rates
from ..layers.transformer import EncoderBlock, PatchEmbed, init_transformer_weights
from ..registry import register_model
from .base import ImageClassifier
from .features import tokens_to_map

_VIT = dict(family="vit", year=2020,
            paper="Dosovitskiy, Beyer, Kolesnikov, Weissenborn, Zhai, Unterthiner, Dehghani, "
                  "Minderer, Heigold, Gelly, Uszkoreit, Houlsby. An Image is Worth 16x16 Words: "
                  "Transformers for Image Recognition at Scale. ICLR 2021")
_DEIT = dict(family="vit", year=2020,
             paper="Touvron, Cord, Douze, Massa, Sablayrolles, Jégou. Training data-efficient image "
                   "transformers & distillation through attention. ICML 2021")
SMALL_IMAGE_PATCH = 4


class VisionTransformer(ImageClassifier):
    """Patch embedding + class token + E_pos → L encoder blocks → LN → linear head on z_L⁰."""
    classifier_name = "head"
    fixed_input_size = True

    def __init__(self, image_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                 mlp_dim=3072, num_classes=1000, in_chans=3, dropout=0.0, attn_drop=0.0,
                 drop_path_rate=0.0):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = embed_dim
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.num_patches = (image_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.empty(1, self.num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(
            EncoderBlock(embed_dim, num_heads, mlp_dim, dropout, attn_drop, rate)
            for rate in linear_drop_path_rates(depth, drop_path_rate)))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(0.0)   # timm's drop_rate (create_model sets it)
        self.head = nn.Linear(embed_dim, num_classes)
        init_transformer_weights(self)
        nn.init.normal_(self.pos_embed, std=0.02)

    def stage_modules(self):
        return [f"blocks.{i}" for i in range(len(self.blocks))]

    def stage_map(self, tokens, image_size):
        return tokens_to_map(tokens[:, 1:], image_size, self.patch_embed.patch_size)

    def forward_features(self, x):
        patches = self.patch_embed(x)
        if patches.shape[1] != self.num_patches:
            raise ValueError(f"this ViT has position embeddings for {self.num_patches} patches, "
                             f"the {tuple(x.shape[-2:])} input gives {patches.shape[1]}; "
                             f"build it with image_size={x.shape[-1]}")
        x_class = self.cls_token.expand(x.shape[0], -1, -1)   # a symbolic batch under torch.export
        z = torch.cat([x_class, patches], dim=1) + self.pos_embed   # z_0, Eq. 1
        z = self.blocks(self.pos_drop(z))                           # z_L, Eq. 2–3
        return self.norm(z)                                         # LN of every token

    def forward_head(self, x, pre_logits=False):
        y = self.head_drop(x[:, 0])                                 # y = LN(z_L⁰), Eq. 4
        return y if pre_logits else self.head(y)


def vision_transformer(num_classes=1000, in_chans=3, image_size=None, patch_size=16, **kwargs):
    """A ViT for `image_size` inputs (224 by default); below 64 px the patches are 4×4."""
    image_size = image_size or 224
    if image_size < 64:
        patch_size = SMALL_IMAGE_PATCH
    return VisionTransformer(image_size, patch_size, num_classes=num_classes, in_chans=in_chans,
                             **kwargs)


_TORCHVISION_NAMES = (
    (r"^class_token$", "cls_token"),
    (r"^conv_proj\.", "patch_embed.proj."),
    (r"^encoder\.pos_embedding$", "pos_embed"),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.", r"blocks.\1."),
    (r"\.ln_1\.", ".norm1."), (r"\.ln_2\.", ".norm2."),
    (r"\.self_attention\.in_proj_(weight|bias)$", r".attn.qkv.\1"),
    (r"\.self_attention\.out_proj\.", ".attn.proj."),
    (r"\.mlp\.0\.", ".mlp.fc1."), (r"\.mlp\.3\.", ".mlp.fc2."),
    (r"^encoder\.ln\.", "norm."), (r"^heads\.head\.", "head."),
)


def torchvision_vit_to_ours(state_dict: dict) -> dict:
    """torchvision VisionTransformer names → ours (the tensors are the same)."""
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in _TORCHVISION_NAMES:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


_TI = dict(embed_dim=192, depth=12, num_heads=3, mlp_dim=768)
_S = dict(embed_dim=384, depth=12, num_heads=6, mlp_dim=1536)
_B = dict(embed_dim=768, depth=12, num_heads=12, mlp_dim=3072)
_L = dict(embed_dim=1024, depth=24, num_heads=16, mlp_dim=4096)
_H = dict(embed_dim=1280, depth=32, num_heads=16, mlp_dim=5120)
_B32 = ("Table 1's 86M is ViT-B/16's; a 32×32 patch embedding has four times the embedding "
        "weights (+1.8M)")
_TI_ROUNDED = "DeiT's Table 1 prints 5M for ViT-Ti (5.7M with the 1000-way head)"


def _twins(torchvision_name, timm_name):
    if torchvision_name is None:
        return dict(twins={"timm": timm_name})
    return dict(twins={"torchvision": torchvision_name, "timm": timm_name},
                converters={"torchvision": torchvision_vit_to_ours})


for _name, _timm, _patch, _cfg, _params, _why in (
        ("vit_b_16", "vit_base_patch16_224", 16, _B, "86M", None),
        ("vit_b_32", "vit_base_patch32_224", 32, _B, "86M", _B32),
        ("vit_l_16", "vit_large_patch16_224", 16, _L, "307M", None),
        ("vit_l_32", "vit_large_patch32_224", 32, _L, "307M", None),
        ("vit_h_14", "vit_huge_patch14_224", 14, _H, "632M", None)):
    register_model(_name, **_VIT, paper_params=_params, mismatch_reason=_why, patch_size=_patch,
                   **_twins(_name, _timm), **_cfg)(vision_transformer)
register_model("vit_ti_16", **_DEIT, paper_params="5M", mismatch_reason=_TI_ROUNDED,
               **_twins(None, "vit_tiny_patch16_224"), **_TI)(vision_transformer)
register_model("vit_s_16", **_DEIT, paper_params="22M", **_twins(None, "vit_small_patch16_224"),
               **_S)(vision_transformer)
register_model("vit_tiny_patch4_28", **_VIT, input_size=(1, 28, 28), num_classes=10,
               dataset="fashion-mnist", image_size=28, patch_size=SMALL_IMAGE_PATCH, **_TI)(vision_transformer)
