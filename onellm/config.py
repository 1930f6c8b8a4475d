"""Configuration of a OneLLM model: dataclasses with named presets.

``OneLLMConfig.preset("onellm-7b")`` has the exact dimensions of the released OneLLM-7B (spec §1);
``OneLLMConfig.preset("tiny")`` keeps the same structure at toy sizes (tests, CPU demos);
``OneLLMConfig.preset("small")`` is big enough that matrix multiplies dominate on a CPU (benchmarks).

A config round-trips through a plain dict (``to_dict`` / ``from_dict``), which is what ``config.json`` in a
model directory holds.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

PointSampling = Literal["xyz", "rgb"]


@dataclass
class VisionConfig:
    """The shared frozen encoder: an open_clip ``VisionTransformer`` (spec §1.3)."""

    image_size: int = 224
    patch_size: int = 14
    width: int = 1024
    layers: int = 24
    head_width: int = 64
    mlp_ratio: float = 4.0
    embed_dim: int = 768  # CLIP's output projection; OneLLM never applies it but the weights keep it
    quick_gelu: bool = True  # the OpenAI ViT-L/14 weights were trained with QuickGELU

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass
class UPMConfig:
    """The universal projection module: shared experts, per-modality routers and projections (spec §1.5)."""

    num_experts: int = 3
    expert_layers: int = 8
    num_heads: int = 16
    multiple_of: int = 256  # SwiGLU hidden size is rounded up to a multiple of this (LLaMA rule)
    norm_eps: float = 1e-5
    num_tokens: int = 30  # learnable modality tokens per input ("image_words")
    router_mlp_ratio: int = 4

    def ffn_hidden(self, dim: int) -> int:
        hidden = int(2 * (4 * dim) / 3)
        return self.multiple_of * math.ceil(hidden / self.multiple_of)


@dataclass
class LLMConfig:
    """LLaMA-2 decoder, built as a HuggingFace ``LlamaForCausalLM`` (spec §1.2, §2.4)."""

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_layers: int = 32
    num_heads: int = 32
    num_kv_heads: int = 32
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    # The original precomputes RoPE for 4096 positions; finetune sequences reach 2018 + 32 tokens.
    max_position_embeddings: int = 4096
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0

    def to_hf(self):
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            rms_norm_eps=self.rms_norm_eps,
            rope_theta=self.rope_theta,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=False,
            hidden_act="silu",
            attention_bias=False,
            mlp_bias=False,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
        )


@dataclass
class InputConfig:
    """Geometry of each modality's input tensor (spec §1.4, §3). Loaders and tokenizers both read it."""

    # audio: kaldi fbank, (1, mel_bins, frames); Conv2d(1, D, kernel, stride) -> F' x T' tokens
    audio_mel_bins: int = 128
    audio_frames: int = 1024
    audio_kernel: int = 16
    audio_stride: int = 10
    # point: (num_points, channels) xyz + rgb; FPS picks num_groups centres, kNN takes group_size neighbours
    point_num_points: int = 8192
    point_channels: int = 6
    point_num_groups: int = 1024
    point_group_size: int = 32
    # "rgb" samples and groups on channels 3:6 as the released checkpoint was trained (spec §1.4, §7.2)
    point_sampling: PointSampling = "xyz"
    # imu: (channels, length) at 200 Hz; Conv1d(channels, D, kernel, stride) -> (length - kernel) // stride + 1
    # tokens (391 with the released stride 1; small presets stride over time to cut the CLIP sequence)
    imu_channels: int = 6
    imu_length: int = 400
    imu_kernel: int = 10
    imu_stride: int = 1
    imu_rate: int = 200
    # fmri: (1, voxels); Linear(voxels, tokens * D) -> tokens
    fmri_voxels: int = 15724
    fmri_tokens: int = 8
    # video: clips x spatial crops frames per input
    video_clips: int = 5
    video_crops: int = 3

    @property
    def audio_grid(self) -> tuple[int, int]:
        f = (self.audio_mel_bins - self.audio_kernel) // self.audio_stride + 1
        t = (self.audio_frames - self.audio_kernel) // self.audio_stride + 1
        return f, t

    @property
    def imu_tokens(self) -> int:
        return (self.imu_length - self.imu_kernel) // self.imu_stride + 1


@dataclass
class OneLLMConfig:
    name: str = "custom"
    vision: VisionConfig = field(default_factory=VisionConfig)
    upm: UPMConfig = field(default_factory=UPMConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    inputs: InputConfig = field(default_factory=InputConfig)
    max_seq_len: int = 2048  # text tokens + modality blocks per sequence
    # Reproduce the released scripts' generation bug: KV cache offset by 30 instead of 32 (spec §1.7, §7.1).
    legacy_kv_offset: bool = False
    # Inference prompt "###Human:" (released scripts) instead of the training template's "### Human:" (§3.8).
    legacy_prompt: bool = False
    # Gradient checkpointing of expert and LLM blocks (training only).
    gradient_checkpointing: bool = False

    # ----------------------------------------------------------------------------------------------------
    @staticmethod
    def preset(name: str, **overrides: Any) -> "OneLLMConfig":
        """A named configuration; keyword overrides use dotted names, e.g. ``**{"llm.vocab_size": 1000}``."""
        try:
            cfg = copy.deepcopy(_PRESETS[name])
        except KeyError:
            raise ValueError(f"unknown preset {name!r}; available: {', '.join(sorted(_PRESETS))}") from None
        for key, value in overrides.items():
            cfg.set(key, value)
        return cfg

    @staticmethod
    def presets() -> list[str]:
        return sorted(_PRESETS)

    def set(self, dotted: str, value: Any) -> None:
        obj: Any = self
        *path, last = dotted.replace("__", ".").split(".")
        for part in path:
            obj = getattr(obj, part)
        if not hasattr(obj, last):
            raise KeyError(f"config has no field {dotted!r}")
        setattr(obj, last, value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OneLLMConfig":
        data = dict(data)
        sections = {"vision": VisionConfig, "upm": UPMConfig, "llm": LLMConfig, "inputs": InputConfig}
        kwargs: dict[str, Any] = {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        for key, value in data.items():
            if key in sections:
                sub = sections[key]
                sub_known = {f.name for f in dataclasses.fields(sub)}
                bad = set(value) - sub_known
                if bad:
                    raise ValueError(f"unknown keys in config section {key!r}: {sorted(bad)}")
                kwargs[key] = sub(**value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "OneLLMConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (json.JSONDecodeError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: invalid OneLLM config: {exc}") from exc

    # Derived sizes -------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Width of the CLIP encoder, the tokenizers and the UPM experts."""
        return self.vision.width


_PRESETS: dict[str, OneLLMConfig] = {
    "onellm-7b": OneLLMConfig(name="onellm-7b"),
    "tiny": OneLLMConfig(
        name="tiny",
        vision=VisionConfig(image_size=32, patch_size=8, width=64, layers=2, head_width=16, embed_dim=32),
        upm=UPMConfig(num_experts=3, expert_layers=2, num_heads=4, multiple_of=32, num_tokens=8),
        llm=LLMConfig(vocab_size=512, hidden_size=64, intermediate_size=176, num_layers=2, num_heads=4,
                      num_kv_heads=4, max_position_embeddings=1024),
        inputs=InputConfig(audio_mel_bins=32, audio_frames=128, point_num_points=1024, point_num_groups=64,
                           point_group_size=16),
        max_seq_len=512,
    ),
    # The quickstart's miniature: big enough to learn the synthetic world in minutes on a 2-core CPU.
    "quickstart": OneLLMConfig(
        name="quickstart",
        vision=VisionConfig(image_size=32, patch_size=4, width=96, layers=2, head_width=32, embed_dim=64),
        upm=UPMConfig(num_experts=3, expert_layers=1, num_heads=4, multiple_of=32, num_tokens=8),
        llm=LLMConfig(vocab_size=512, hidden_size=128, intermediate_size=352, num_layers=3, num_heads=4,
                      num_kv_heads=4, max_position_embeddings=512),
        inputs=InputConfig(audio_mel_bins=32, audio_frames=128, point_num_points=1024, point_num_groups=64,
                           point_group_size=16, imu_stride=5, fmri_voxels=2048),
        max_seq_len=256,
    ),
    "small": OneLLMConfig(
        name="small",
        vision=VisionConfig(image_size=112, patch_size=14, width=384, layers=6, head_width=64, embed_dim=256),
        upm=UPMConfig(num_experts=3, expert_layers=2, num_heads=6, multiple_of=128, num_tokens=30),
        llm=LLMConfig(vocab_size=4096, hidden_size=768, intermediate_size=2048, num_layers=6, num_heads=12,
                      num_kv_heads=12, max_position_embeddings=2048),
        inputs=InputConfig(audio_mel_bins=64, audio_frames=512, point_num_points=4096, point_num_groups=256,
                           point_group_size=32),
        max_seq_len=1024,
    ),
}
