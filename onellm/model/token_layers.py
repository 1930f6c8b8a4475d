"""Generic tokenizer layers for modalities with a tokenizer of their own: raw input batch -> (N, L, D) tokens.

They know nothing about modalities (the definitions in ``onellm.modalities`` pick one and its sizes); each casts its
input to its own weight dtype. Subclassing the torch layer keeps the released parameter names (``weight``, ``bias``).
"""
from __future__ import annotations

import torch
from torch import nn


class Conv2dTokenizer(nn.Conv2d):
    """A 2-D grid input (N, C, H, W) -> (N, H' * W', D) tokens, row-major (audio: frequency-major)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x.to(self.weight.dtype))  # (N, D, H', W')
        return out.flatten(2).transpose(1, 2)  # (N, H'*W', D)


class Conv1dTokenizer(nn.Conv1d):
    """A multichannel signal (N, C, T) -> (N, (T - kernel) // stride + 1, D) tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x.to(self.weight.dtype))  # (N, D, T')
        return out.transpose(1, 2)  # (N, T', D)


class LinearTokenizer(nn.Linear):
    """A flat vector (N, 1, V) -> (N, tokens, D) through Linear(V, tokens * D); token t of channel c is
    output[c * tokens + t], as the original's reshape to (N, D, tokens)."""

    def __init__(self, features: int, dim: int, tokens: int):
        super().__init__(features, tokens * dim)
        self.dim, self.tokens = dim, tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x.reshape(x.shape[0], -1).to(self.weight.dtype))  # (N, D * tokens)
        return out.reshape(x.shape[0], self.dim, self.tokens).transpose(1, 2)  # (N, D, tokens) -> (N, tokens, D)
