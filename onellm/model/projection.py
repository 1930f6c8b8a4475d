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

from typing import TYPE_CHECKING

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

if TYPE_CHECKING:  # type names only: the config imports the registry, which builds these modules
    from ..config import OneLLMConfig



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
    """The UPM: ``resample_layers`` (the experts) are shared; every other part is per modality, for exactly the
    model's own modalities (``config.modalities``)."""

    def __init__(self, config: OneLLMConfig):
        super().__init__()
        upm, dim = config.upm, config.dim
        self.config = config
        self.num_tokens = upm.num_tokens
        self.gradient_checkpointing = False
        self.resample_layers = nn.ModuleDict({
            str(e): nn.ModuleList(ExpertBlock(dim, upm.num_heads, upm.ffn_hidden(dim), upm.norm_eps)
                                  for _ in range(upm.expert_layers))
            for e in range(upm.num_experts)
        })
        self.resample_tokens = nn.ParameterDict()
        self.clip_proj1 = nn.ModuleDict()
        self.clip_proj2 = nn.ModuleDict()
        self.routers = nn.ModuleDict()
        self.start_tag = nn.ParameterDict()
        self.end_tag = nn.ParameterDict()
        self.add(config.modalities)

    def add(self, modalities: Iterable[str]) -> list[str]:
        """Build the per-modality parts (tokens, proj1, router, proj2, tags) of new ``modalities``, randomly
        initialised; returns their names. Parts are drawn in the released construction order (all proj1, all
        proj2, all routers, then tokens and tags), so a seeded model has the same weights as before."""
        names = [m for m in modalities if m not in self.resample_tokens]
        upm, dim, llm_dim = self.config.upm, self.config.dim, self.config.llm.hidden_size
        for m in names:
            self.resample_tokens[m] = nn.Parameter(torch.empty(1, upm.num_tokens, dim))
        for m in names:
            self.clip_proj1[m] = _projection(dim, dim)
        for m in names:
            self.clip_proj2[m] = _projection(dim, llm_dim)
        for m in names:
            self.routers[m] = Router(dim, upm.router_mlp_ratio * dim, upm.num_experts)
        for m in names:
            self.start_tag[m] = nn.Parameter(torch.empty(1, 1, llm_dim))
            self.end_tag[m] = nn.Parameter(torch.empty(1, 1, llm_dim))
        self._init_tokens_and_tags(names)
        return names

    def _init_tokens_and_tags(self, names: Iterable[str]) -> None:
        names = list(names)
        for m in names:
            nn.init.normal_(self.resample_tokens[m], std=0.02)
        for p in [self.start_tag[m] for m in names] + [self.end_tag[m] for m in names]:
            nn.init.uniform_(p)  # the original's torch.rand

    def reset_parameters(self) -> None:
        self._init_tokens_and_tags(list(self.resample_tokens))

    def modality_parameters(self, modality: str):
        """Parameters owned by one modality (tokens, proj1, router, proj2, tags); the experts are shared."""
        m = modality
        yield self.resample_tokens[m]
        yield self.start_tag[m]
        yield self.end_tag[m]
        for module in (self.clip_proj1[m], self.clip_proj2[m], self.routers[m]):
            yield from module.parameters()

    def router_weights(self, modality: str, z: torch.Tensor) -> torch.Tensor:
        """Soft routing weights (B, K, E): sigmoid, then normalised to sum 1 over experts (the released code)."""
        w = torch.sigmoid(self.routers[modality](z).float())
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

    def forward(self, modality: str, feats: torch.Tensor) -> torch.Tensor:
        """CLIP features (B, L, D) -> modality embeddings (B, K, D_llm) in the LLM's input space."""
        m = modality
        B = feats.shape[0]
        proj1 = self.clip_proj1[m]
        feats = proj1(feats.to(proj1[0].weight.dtype))  # (B, L, D)
        tokens = self.resample_tokens[m].expand(B, -1, -1).to(feats.dtype)  # (B, K, D)
        z = torch.cat([tokens, feats], dim=1)  # (B, K + L, D)
        weights = self.router_weights(modality, z[:, : self.num_tokens])  # (B, K, E)
        out = sum(self._run_expert(layers, z) * weights[..., e, None]
                  for e, layers in enumerate(self.resample_layers.values()))  # (B, K, D)
        return self.clip_proj2[m](out)  # (B, K, D_llm)

    def tags(self, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, 1, D_llm) start and end tag embeddings."""
        return self.start_tag[modality], self.end_tag[modality]
