"""Tokenizers of the modalities that do not reuse CLIP's patch embedding (spec §1.4).

Each turns a batch of raw inputs into a sequence of D-wide tokens for the shared CLIP transformer, (N, L, D), and
owns the learned positional embedding (CLS slot included) that replaces CLIP's for that modality. Which module a
modality uses is its definition's ``OwnTokenizer.build`` (``onellm.modalities``); the generic modules here cover
the released ones (audio Conv2d, IMU Conv1d, fMRI Linear; the point tokenizer is in ``point.py``) and any new
modality of the same kind. Parameter names follow the released checkpoint: ``conv1.<modality>`` and
``positional_embedding.<modality>``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch
from torch import nn

from ..modalities import OwnTokenizer
from ..modalities import get as modality_definition
from .token_layers import Conv1dTokenizer, Conv2dTokenizer, LinearTokenizer

__all__ = ["Conv1dTokenizer", "Conv2dTokenizer", "LinearTokenizer", "ModalityTokenizers", "input_shape", "num_tokens"]

if TYPE_CHECKING:  # type names only: the config imports the registry, which builds these modules
    from ..config import OneLLMConfig


def num_tokens(config: OneLLMConfig, modality: str) -> int:
    """Tokens entering CLIP for one input of ``modality``, CLS included (image 257, audio 1213, ...)."""
    return modality_definition(modality).num_clip_tokens(config)


def input_shape(config: OneLLMConfig, modality: str) -> tuple[int, ...]:
    """Shape of one input of ``modality`` (no batch axis), as its loader produces it (stacked modalities such as
    video and depth/normal accept any number of frames)."""
    return tuple(modality_definition(modality).input_shape(config))


class ModalityTokenizers(nn.Module):
    """``conv1[m]`` and ``positional_embedding[m]`` for every modality of the model with a tokenizer of its own."""

    def __init__(self, config: OneLLMConfig):
        super().__init__()
        self.config = config
        self.conv1 = nn.ModuleDict()
        self.positional_embedding = nn.ParameterDict()
        self.add(config.modalities)

    def add(self, modalities: Iterable[str]) -> list[str]:
        """Build (randomly initialised) tokenizers for ``modalities`` that need one; returns their names.

        All modules are built before any positional embedding is drawn: the random stream (and so every weight of
        a seeded model) is the same as the released layout's construction order."""
        added = []
        for name in modalities:
            definition = modality_definition(name)
            if isinstance(definition.encoder_input, OwnTokenizer) and definition.name not in self.conv1:
                self.conv1[definition.name] = definition.encoder_input.build(self.config)
                added.append(definition.name)
        for name in added:
            pos = nn.Parameter(torch.empty(modality_definition(name).num_clip_tokens(self.config), self.config.dim))
            nn.init.normal_(pos, std=0.02)
            self.positional_embedding[name] = pos
        return added

    def reset_parameters(self) -> None:
        for p in self.positional_embedding.values():
            nn.init.normal_(p, std=0.02)

    def has(self, modality: str) -> bool:
        return modality in self.conv1

    def forward(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs (N, *input_shape) -> (N, L, D) tokens (no CLS)."""
        return self.conv1[modality](x)
