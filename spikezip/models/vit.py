"""A small vision transformer for 28x28 and 32x32 images, trainable on a CPU.

ViT (Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale", ICLR 2021; arXiv:2010.11929) at patch size 4: a convolutional
patch embedding, a class token and learned positional embedding, pre-norm blocks of
multi-head self-attention (``F.scaled_dot_product_attention``) and a GELU MLP, the class
token's LayerNorm-ed features into a linear head. ``spikezip.quant.to_qann`` writes its
attention out and places the quantizers its SNN needs (:mod:`spikezip.quant.placement`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"the width {dim} is not a multiple of the {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Input ``[B, C, H, W]`` (H = W = ``image_size``, a multiple of ``patch``), output
    ``[B, num_classes]``."""

    def __init__(self, num_classes=10, in_channels=1, image_size=28, patch=4, dim=64,
                 depth=4, heads=4, mlp_ratio=2.0):  # fmt: skip
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the patch {patch}")
        tokens = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def vit(num_classes: int = 10, in_channels: int = 1, width: float = 1.0, image_size: int = 28,
        depth: int = 4) -> ViT:  # fmt: skip
    """The small ViT: width 64 x ``width`` (4 heads), ``depth`` blocks, patch 4."""
    dim = max(4, int(round(64 * width / 4)) * 4)
    return ViT(num_classes, in_channels, image_size, dim=dim, depth=depth)
