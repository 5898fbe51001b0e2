"""Transformer encoder layers for images: Dosovitskiy et al., "An Image is Worth 16x16 Words:
Transformers for Image Recognition at Scale", ICLR 2021, Sec. 3.1, Eq. 1–3 and Appendix A.

- `PatchEmbed`: the patch embedding x_p E of Eq. 1. Flattening P×P×C patches and multiplying by
  E ∈ R^{(P²·C)×D} is exactly a convolution with kernel = stride = P, which is how it is computed.
- `MultiHeadSelfAttention`: [q, k, v] = z U_qkv, A = softmax(q kᵀ / √D_h), SA(z) = A v,
  MSA(z) = [SA_1(z); …; SA_k(z)] U_msa with D_h = D / k (Appendix A, Eq. 5–8); the softmax
  and product run in torch's fused `scaled_dot_product_attention`.
- `Mlp`: two linear layers with a GELU between them (Sec. 3.1); MLP-Mixer's token- and
  channel-mixing MLPs are the same module.
- `EncoderBlock`: pre-LN residual block, z'_ℓ = MSA(LN(z_{ℓ−1})) + z_{ℓ−1} (Eq. 2) and
  z_ℓ = MLP(LN(z'_ℓ)) + z'_ℓ (Eq. 3).

Parameter names are timm's (patch_embed.proj, attn.qkv, attn.proj, mlp.fc1, mlp.fc2) so its
ViTs load unchanged; torchvision's need the converter in models/vit.py.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .drop import DropPath


class PatchEmbed(nn.Module):
    """(B, C, H, W) image → (B, N, D) sequence of embedded P×P patches, N = HW / P²."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class MultiHeadSelfAttention(nn.Module):
    """MSA(z) over k heads of D_h = D / k dimensions; U_qkv is `qkv`, U_msa is `proj`."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding dimension {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = z.shape
        # (B, N, 3D) → three (B, k, N, D_h) tensors: every head attends on its own slice.
        q, k, v = self.qkv(z).view(batch, tokens, 3, self.num_heads, dim // self.num_heads) \
            .permute(2, 0, 3, 1, 4).unbind(0)
        heads = F.scaled_dot_product_attention(q, k, v,
                                               dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj(heads.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """fc2(dropout(GELU(fc1(x)))): hidden width `hidden_dim`, back to `dim`."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class EncoderBlock(nn.Module):
    """One layer ℓ of the Transformer encoder (Eq. 2–3); `drop_path` is stochastic depth."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MultiHeadSelfAttention(dim, num_heads, attn_drop)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_dim, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = self.drop_path(self.attn(self.norm1(z))) + z        # z'_ℓ, Eq. 2
        return self.drop_path(self.mlp(self.norm2(z))) + z      # z_ℓ, Eq. 3


def init_transformer_weights(model: nn.Module) -> None:
    """The reference (JAX) initialisation of ViT and MLP-Mixer: Xavier-uniform linear layers
    with zero biases, a LeCun-normal patch embedding (variance 1 / fan-in) and unit LayerNorms.
    The head is Xavier-uniform too: the paper zero-initialises the head it attaches for
    fine-tuning (Sec. 3.2), which from scratch would give every other weight a zero gradient."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, PatchEmbed):
            fan_in = m.proj.weight[0].numel()
            nn.init.normal_(m.proj.weight, std=math.sqrt(1.0 / fan_in))
            nn.init.zeros_(m.proj.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
