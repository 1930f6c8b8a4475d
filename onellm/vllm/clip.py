"""open_clip's ``VisionTransformer`` (the default OpenAI/LAION ViT layout) in plain torch, for environments without
open_clip and torchvision (the vLLM environment: open_clip imports torchvision at import time).

Same parameter names, shapes and math as open_clip 3.3, so ``encoder.*`` of a OneLLM state dict loads strictly:
``conv1`` (no bias), ``class_embedding``, ``positional_embedding``, ``ln_pre``, ``transformer.resblocks.<i>``
(``ln_1``, ``attn`` = ``nn.MultiheadAttention`` with ``in_proj_weight`` / ``in_proj_bias`` / ``out_proj``, ``ln_2``,
``mlp.c_fc`` -> QuickGELU (or exact GELU) -> ``mlp.c_proj``; pre-LN residual blocks), ``ln_post`` and ``proj``.
The transformer is batch-first (``transformer.batch_first`` is True, as open_clip >= 2.26), so
:func:`onellm.model.encoder.encode_tokens` runs it unchanged. ``tests/test_clip_torch.py`` holds it equal to
open_clip.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CLIPVisionTower", "build_clip_visual_torch"]


class LayerNorm(nn.LayerNorm):
    """open_clip's LayerNorm: computed in the input dtype, cast back to it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        orig = x.dtype
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).to(orig)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """x + attn(ln_1(x)); x + mlp(ln_2(x)) (open_clip ``ResidualAttentionBlock`` without layer scale)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool):
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ls_1 = nn.Identity()
        self.ln_2 = LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)),
            ("gelu", QuickGELU() if quick_gelu else nn.GELU()),
            ("c_proj", nn.Linear(hidden, width)),
        ]))
        self.ls_2 = nn.Identity()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        q = self.ln_1(x)
        attn_mask = attn_mask.to(q.dtype) if attn_mask is not None else None
        x = x + self.ls_1(self.attn(q, q, q, need_weights=False, attn_mask=attn_mask)[0])
        return x + self.ls_2(self.mlp(self.ln_2(x)))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, quick_gelu: bool):
        super().__init__()
        self.width, self.layers = width, layers
        self.batch_first = True
        self.grad_checkpointing = False
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_ratio, quick_gelu)
                                       for _ in range(layers))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:  # (N, L, D) throughout
            x = block(x, attn_mask=attn_mask)
        return x


class CLIPVisionTower(nn.Module):
    """The visual tower's parameters and its all-token forward (what OneLLM uses; ``proj`` is kept, never applied)."""

    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, head_width: int,
                 mlp_ratio: float, embed_dim: int, quick_gelu: bool):
        super().__init__()
        if width % head_width:
            raise ValueError(f"CLIP width {width} is not a multiple of head_width {head_width}")
        self.image_size, self.patch_size = image_size, patch_size
        self.grid_size = (image_size // patch_size, image_size // patch_size)
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid_size[0] * self.grid_size[1] + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, width // head_width, mlp_ratio, quick_gelu)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, L + 1, D) features of every token after ``ln_post`` (CLS first; no pooling, no
        ``proj``), i.e. :func:`onellm.model.encoder.encode_tokens` on CLIP's own patch embedding."""
        x = self.conv1(images.to(self.conv1.weight.dtype))  # (N, D, g, g)
        x = x.reshape(x.shape[0], x.shape[1], -1).transpose(1, 2)  # (N, L, D)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # (N, 1, D)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (N, L+1, D)
        return self.ln_post(self.transformer(self.ln_pre(x)))


def build_clip_visual_torch(vision) -> CLIPVisionTower:
    """The tower described by a ``onellm.config.VisionConfig`` (random weights), without open_clip."""
    return CLIPVisionTower(image_size=vision.image_size, patch_size=vision.patch_size, width=vision.width,
                           layers=vision.layers, head_width=vision.head_width, mlp_ratio=vision.mlp_ratio,
                           embed_dim=vision.embed_dim, quick_gelu=vision.quick_gelu)
