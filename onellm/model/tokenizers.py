"""Per-modality tokenizers of the modalities that do not reuse CLIP's patch embedding (spec §1.4).

Each turns its raw input into a sequence of D-wide tokens for the shared CLIP transformer, and owns the learned
positional embedding (CLS slot included) that replaces CLIP's for that modality. Parameter names follow the
released checkpoint: ``conv1.{audio,point,imu,fmri}`` and ``positional_embedding.{audio,point,imu,fmri}``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import OneLLMConfig
from ..modality import Modality, OWN_TOKENIZER_MODALITIES
from .point import PointPatchEmbed


class FMRITokenizer(nn.Linear):
    """Linear(voxels, tokens * D); token t of channel c is output[c * tokens + t] as in the original reshape."""

    def __init__(self, voxels: int, dim: int, tokens: int):
        super().__init__(voxels, tokens * dim)
        self.dim, self.tokens = dim, tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, V) -> (B, D, tokens)
        out = super().forward(x.reshape(x.shape[0], -1))  # (B, D * tokens)
        return out.reshape(x.shape[0], self.dim, self.tokens)  # (B, D, tokens)


def num_tokens(config: OneLLMConfig, modality: Modality) -> int:
    """Tokens entering CLIP for one input of ``modality``, CLS included (image 257, audio 1213, ...)."""
    inp = config.inputs
    if modality is Modality.AUDIO:
        f, t = inp.audio_grid
        n = f * t
    elif modality is Modality.POINT:
        n = inp.point_num_groups
    elif modality is Modality.IMU:
        n = inp.imu_tokens
    elif modality is Modality.FMRI:
        n = inp.fmri_tokens
    else:
        n = config.vision.num_patches
    return n + 1


class ModalityTokenizers(nn.Module):
    """``conv1[m]`` and ``positional_embedding[m]`` for audio, point, imu and fmri."""

    def __init__(self, config: OneLLMConfig):
        super().__init__()
        inp, dim = config.inputs, config.dim
        self.conv1 = nn.ModuleDict({
            Modality.AUDIO.value: nn.Conv2d(1, dim, kernel_size=inp.audio_kernel, stride=inp.audio_stride),
            Modality.POINT.value: PointPatchEmbed(inp.point_channels, dim, inp.point_num_groups,
                                                  inp.point_group_size, inp.point_sampling),
            Modality.IMU.value: nn.Conv1d(inp.imu_channels, dim, kernel_size=inp.imu_kernel, stride=inp.imu_stride,
                                          bias=False),
            Modality.FMRI.value: FMRITokenizer(inp.fmri_voxels, dim, inp.fmri_tokens),
        })
        self.positional_embedding = nn.ParameterDict({
            m.value: nn.Parameter(torch.empty(num_tokens(config, m), dim)) for m in OWN_TOKENIZER_MODALITIES
        })
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.positional_embedding.values():
            nn.init.normal_(p, std=0.02)

    def forward(self, modality: Modality, x: torch.Tensor) -> torch.Tensor:
        """Raw input -> (B, L, D) tokens (no CLS).

        audio (B, 1, F, T) -> (B, F'*T', D) frequency-major; point (B, N, 6) -> (B, M, D) in FPS order;
        imu (B, C, L) -> (B, (L - k) // stride + 1, D); fmri (B, 1, V) -> (B, tokens, D).
        """
        conv = self.conv1[modality.value]
        weight = next(conv.parameters())
        if modality is Modality.POINT:
            out = conv(x)  # (B, D, M), FPS/kNN in float32 inside
        else:
            out = conv(x.to(weight.dtype))  # audio (B, D, F', T'); imu (B, D, L'); fmri (B, D, tokens)
        out = out.reshape(out.shape[0], out.shape[1], -1)  # (B, D, L)
        return out.transpose(1, 2)  # (B, L, D)


def input_shape(config: OneLLMConfig, modality: Modality) -> tuple[int, ...]:
    """Shape of one input of ``modality`` (no batch axis), as the loaders produce it.

    image (3, S, S); video (15, 3, S, S); depth/normal (2, 3, S, S) = [RGB, map]; audio (1, mel, frames);
    point (N, 6); imu (6, length); fmri (1, voxels). Video/depth/normal accept any frame count.
    """
    inp, size = config.inputs, config.vision.image_size
    shapes = {
        Modality.IMAGE: (3, size, size),
        Modality.VIDEO: (inp.video_clips * inp.video_crops, 3, size, size),
        Modality.DEPTH: (2, 3, size, size),
        Modality.NORMAL: (2, 3, size, size),
        Modality.AUDIO: (1, inp.audio_mel_bins, inp.audio_frames),
        Modality.POINT: (inp.point_num_points, inp.point_channels),
        Modality.IMU: (inp.imu_channels, inp.imu_length),
        Modality.FMRI: (1, inp.fmri_voxels),
    }
    return shapes[modality]
