"""The frozen universal encoder: open_clip's ViT visual tower, run on tokens from any modality (spec §1.3).

``model.encoder`` *is* the open_clip ``VisionTransformer`` (same parameter names as open_clip, so OpenAI /
LAION checkpoints load into it directly). OneLLM does not call its ``forward``: it embeds patches itself (or takes
a modality tokenizer's tokens), prepends CLIP's CLS embedding, adds a positional embedding, then runs
``ln_pre -> transformer -> ln_post`` on *all* tokens. ``visual.proj`` is never applied (features stay D wide).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # type names only: the config imports the registry, which builds these modules
    from ..config import VisionConfig



def build_clip_visual(vision: VisionConfig) -> nn.Module:
    """Build the open_clip visual tower described by ``vision`` (random weights; nothing is downloaded)."""
    try:
        from open_clip.model import CLIPVisionCfg, _build_vision_tower
    except ImportError as exc:  # pragma: no cover - open_clip is a hard dependency
        raise ImportError("open_clip_torch is required to build the OneLLM encoder") from exc
    cfg = CLIPVisionCfg(layers=vision.layers, width=vision.width, head_width=vision.head_width,
                        mlp_ratio=vision.mlp_ratio, patch_size=vision.patch_size, image_size=vision.image_size)
    return _build_vision_tower(vision.embed_dim, cfg, quick_gelu=vision.quick_gelu)


def patch_embed(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """CLIP's frozen patch embedding: (N, 3, H, W) -> (N, H/p * W/p, D)."""
    weight = visual.conv1.weight
    x = visual.conv1(images.to(weight.dtype))  # (N, D, g, g)
    x = x.reshape(x.shape[0], x.shape[1], -1)  # (N, D, g*g)
    return x.transpose(1, 2)  # (N, L, D)


def is_batch_first(transformer: nn.Module) -> bool:
    """open_clip >= 2.26 transformers take (N, L, D) (and transpose internally when not batch-first);
    older ones have no ``batch_first`` attribute and take (L, N, D)."""
    return hasattr(transformer, "batch_first")


def encode_tokens(visual: nn.Module, tokens: torch.Tensor, pos_embed: torch.Tensor) -> torch.Tensor:
    """Run the CLIP transformer on a token sequence.

    Args:
        tokens: (N, L, D) patch tokens (no CLS).
        pos_embed: (L + 1, D) positional embedding, CLS slot first.
    Returns:
        (N, L + 1, D) features after ``ln_post`` for every token.
    """
    dtype = visual.conv1.weight.dtype
    tokens = tokens.to(dtype)
    cls = visual.class_embedding.to(dtype).expand(tokens.shape[0], 1, -1)  # (N, 1, D)
    x = torch.cat([cls, tokens], dim=1) + pos_embed.to(dtype)  # (N, L+1, D)
    x = visual.ln_pre(x)
    if is_batch_first(visual.transformer):
        x = visual.transformer(x)  # (N, L+1, D)
    else:
        x = visual.transformer(x.transpose(0, 1)).transpose(0, 1)  # via (L+1, N, D)
    return visual.ln_post(x)
