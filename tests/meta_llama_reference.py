"""An independent Meta-layout LLaMA forward (the released OneLLM ``Transformer`` LLM path, spec §1.2).

Written from scratch after Meta's ``llama/model.py``: it reads the OFFICIAL weight names
(``layers.N.attention.wq.weight`` ...), applies RoPE in the complex/interleaved form (pairs (2i, 2i+1) viewed as
complex numbers), causal SDPA, RMSNorm and SwiGLU. It shares no code with HF transformers or onellm, so it checks
the converter's key mapping and q/k permutation end to end.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F


def precompute_freqs_cis(dim: int, end: int, theta: float = 10000.0) -> torch.Tensor:
    """(end, dim/2) complex rotations e^{i t theta^(-2j/dim)}."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
    t = torch.arange(end, dtype=torch.float32)
    angles = torch.outer(t, freqs)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rotary_emb(xq: torch.Tensor, xk: torch.Tensor, freqs_cis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """xq, xk (B, S, H, hd); freqs_cis (S, hd/2). Pairs (2i, 2i+1) of each head are one complex number."""
    xq_ = torch.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
    xk_ = torch.view_as_complex(xk.float().reshape(*xk.shape[:-1], -1, 2))
    f = freqs_cis[None, :, None, :]  # (1, S, 1, hd/2)
    xq_out = torch.view_as_real(xq_ * f).flatten(3)
    xk_out = torch.view_as_real(xk_ * f).flatten(3)
    return xq_out.type_as(xq), xk_out.type_as(xk)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).type_as(x) * weight


def meta_llama_logits(weights: Mapping[str, torch.Tensor], inputs_embeds: torch.Tensor, n_heads: int,
                      norm_eps: float = 1e-5, rope_theta: float = 10000.0, prefix: str = "llma.") -> torch.Tensor:
    """Logits (B, S, V) of the Meta-layout LLaMA in ``weights`` (official names) on ``inputs_embeds`` (B, S, D)."""
    w = {k[len(prefix):]: v.float() for k, v in weights.items() if k.startswith(prefix)}
    B, S, D = inputs_embeds.shape
    hd = D // n_heads
    freqs_cis = precompute_freqs_cis(hd, 2 * S, rope_theta)[:S]
    n_layers = len({k.split(".")[1] for k in w if k.startswith("layers.")})
    h = inputs_embeds.float()
    for i in range(n_layers):
        p = f"layers.{i}."
        x = rms_norm(h, w[p + "attention_norm.weight"], norm_eps)
        q = (x @ w[p + "attention.wq.weight"].T).view(B, S, n_heads, hd)
        k = (x @ w[p + "attention.wk.weight"].T).view(B, S, n_heads, hd)
        v = (x @ w[p + "attention.wv.weight"].T).view(B, S, n_heads, hd)
        q, k = apply_rotary_emb(q, k, freqs_cis)
        attn = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                              is_causal=True)  # (B, H, S, hd)
        h = h + attn.transpose(1, 2).reshape(B, S, D) @ w[p + "attention.wo.weight"].T
        x = rms_norm(h, w[p + "ffn_norm.weight"], norm_eps)
        ff = F.silu(x @ w[p + "feed_forward.w1.weight"].T) * (x @ w[p + "feed_forward.w3.weight"].T)
        h = h + ff @ w[p + "feed_forward.w2.weight"].T
    return rms_norm(h, w["norm.weight"], norm_eps) @ w["output.weight"].T
