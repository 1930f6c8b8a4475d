"""The universal projection module (UPM): shared experts, per-modality soft routers and projections (spec §1.5).

For one modality ``m`` and CLIP features ``f`` (B, L, D):

    z = [resample_tokens[m] ; clip_proj1[m](f)]                 (B, K + L, D)   K = 30 modality tokens
    w = sigmoid(routers[m](z[:, :K])), normalised to sum 1      (B, K, E)       soft routing over E experts
    y = sum_e w[..., e] * expert_e(z)[:, :K]                    (B, K, D)
    out = clip_proj2[m](y)                                      (B, K, D_llm)

Experts are stacks of pre-RMSNorm SwiGLU transformer blocks with bidirectional attention and no RoPE.
Parameter names match the released checkpoint (``resample_layers.E.L.attention.wq`` ...).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import OneLLMConfig
from ..modality import ALL_MODALITIES, Modality


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) in float32, cast back, times weight (= the original and HF LlamaRMSNorm)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, num_queries: int | None = None) -> torch.Tensor:
        """Bidirectional self-attention; only the first ``num_queries`` positions are computed as queries."""
        B, S, D = x.shape
        H = self.num_heads
        q_in = x if num_queries is None else x[:, :num_queries]
        Q = q_in.shape[1]
        q = self.wq(q_in).view(B, Q, H, D // H).transpose(1, 2)  # (B, H, Q, hd)
        k = self.wk(x).view(B, S, H, D // H).transpose(1, 2)  # (B, H, S, hd)
        v = self.wv(x).view(B, S, H, D // H).transpose(1, 2)  # (B, H, S, hd)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, Q, hd), no mask: every token sees every token
        return self.wo(out.transpose(1, 2).reshape(B, Q, D))  # (B, Q, D)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class ExpertBlock(nn.Module):
    """Pre-norm transformer block of an expert: h = x + attn(norm(x)); out = h + ffn(norm(h))."""

    def __init__(self, dim: int, num_heads: int, hidden: int, eps: float):
        super().__init__()
        self.attention = Attention(dim, num_heads)
        self.feed_forward = FeedForward(dim, hidden)
        self.attention_norm = RMSNorm(dim, eps)
        self.ffn_norm = RMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, num_queries: int | None = None) -> torch.Tensor:
        residual = x if num_queries is None else x[:, :num_queries]
        h = residual + self.attention(self.attention_norm(x), num_queries)
        return h + self.feed_forward(self.ffn_norm(h))


class Router(nn.Module):
    """Mlp(D -> 4D -> E) with exact (erf) GELU, as the released ``routers[m]``."""

    def __init__(self, dim: int, hidden: int, num_experts: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, num_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _projection(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.LayerNorm(d_out))


class UniversalProjection(nn.Module):
    def __init__(self, config: OneLLMConfig):
        super().__init__()
        upm, dim, llm_dim = config.upm, config.dim, config.llm.hidden_size
        names = [m.value for m in ALL_MODALITIES]
        self.num_tokens = upm.num_tokens
        self.gradient_checkpointing = False
        self.resample_layers = nn.ModuleDict({
            str(e): nn.ModuleList(ExpertBlock(dim, upm.num_heads, upm.ffn_hidden(dim), upm.norm_eps)
                                  for _ in range(upm.expert_layers))
            for e in range(upm.num_experts)
        })
        self.resample_tokens = nn.ParameterDict({m: nn.Parameter(torch.empty(1, upm.num_tokens, dim)) for m in names})
        self.clip_proj1 = nn.ModuleDict({m: _projection(dim, dim) for m in names})
        self.clip_proj2 = nn.ModuleDict({m: _projection(dim, llm_dim) for m in names})
        self.routers = nn.ModuleDict({m: Router(dim, upm.router_mlp_ratio * dim, upm.num_experts) for m in names})
        self.start_tag = nn.ParameterDict({m: nn.Parameter(torch.empty(1, 1, llm_dim)) for m in names})
        self.end_tag = nn.ParameterDict({m: nn.Parameter(torch.empty(1, 1, llm_dim)) for m in names})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.resample_tokens.values():
            nn.init.normal_(p, std=0.02)
        for p in list(self.start_tag.values()) + list(self.end_tag.values()):
            nn.init.uniform_(p)  # the original's torch.rand

    def modality_parameters(self, modality: Modality):
        """Parameters owned by one modality (tokens, proj1, router, proj2, tags); the experts are shared."""
        m = modality.value
        yield self.resample_tokens[m]
        yield self.start_tag[m]
        yield self.end_tag[m]
        for module in (self.clip_proj1[m], self.clip_proj2[m], self.routers[m]):
            yield from module.parameters()

    def router_weights(self, modality: Modality, z: torch.Tensor) -> torch.Tensor:
        """Soft routing weights (B, K, E): sigmoid, then normalised to sum 1 over experts (the released code)."""
        w = torch.sigmoid(self.routers[modality.value](z).float())
        return (w / w.sum(-1, keepdim=True)).to(z.dtype)

    def _run_expert(self, layers: nn.ModuleList, z: torch.Tensor) -> torch.Tensor:
        K = self.num_tokens
        for i, block in enumerate(layers):
            queries = K if i == len(layers) - 1 else None  # the last block only needs the K modality tokens
            if self.gradient_checkpointing and torch.is_grad_enabled():
                z = checkpoint(block, z, queries, use_reentrant=False)
            else:
                z = block(z, queries)
        return z  # (B, K, D)

    def forward(self, modality: Modality, feats: torch.Tensor) -> torch.Tensor:
        """CLIP features (B, L, D) -> modality embeddings (B, K, D_llm) in the LLM's input space."""
        m = modality.value
        B = feats.shape[0]
        proj1 = self.clip_proj1[m]
        feats = proj1(feats.to(proj1[0].weight.dtype))  # (B, L, D)
        tokens = self.resample_tokens[m].expand(B, -1, -1).to(feats.dtype)  # (B, K, D)
        z = torch.cat([tokens, feats], dim=1)  # (B, K + L, D)
        weights = self.router_weights(modality, z[:, : self.num_tokens])  # (B, K, E)
        out = sum(self._run_expert(layers, z) * weights[..., e, None]
                  for e, layers in enumerate(self.resample_layers.values()))  # (B, K, D)
        return self.clip_proj2[m](out)  # (B, K, D_llm)

    def tags(self, modality: Modality) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, 1, D_llm) start and end tag embeddings."""
        return self.start_tag[modality.value], self.end_tag[modality.value]
