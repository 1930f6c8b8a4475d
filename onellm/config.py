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
from typing import Any, Iterable, Mapping

from .modalities import DEFAULT_MODALITIES, parse_modalities
from .modalities import get as modality_definition
from .modalities import names as registered_modalities
from .modalities import resolve as resolve_modality

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


class InputsConfig:
    """The per-modality input sections, ``config.inputs.<modality>`` (e.g. ``config.inputs.audio.mel_bins``).

    Each section is its modality definition's ``input_config`` dataclass (spec §1.4, §3); loaders and tokenizers
    both read it. Modalities without input fields of their own (image: ``vision.image_size`` is its geometry) have
    no section. In ``config.json`` the sections are nested objects; the flat names of configs written before the
    registry (``audio_mel_bins`` ...) are read through each definition's ``legacy_input_fields``.
    """

    def __init__(self, sections: "Mapping[str, Any] | None" = None):
        self._sections: dict[str, Any] = {}
        for name, value in (sections or {}).items():
            self.set_section(name, value)

    def set_section(self, name: str, value: Any) -> None:
        """Set a section from its dataclass or a dict of its fields (unknown fields are an error)."""
        definition = modality_definition(name)
        cls = definition.input_config
        if cls is None:
            raise ValueError(f"modality {definition.name!r} has no input config section")
        if isinstance(value, cls):
            self._sections[definition.name] = value
            return
        if not isinstance(value, Mapping):
            raise ValueError(f"inputs.{definition.name} must be an object, got {value!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        bad = set(value) - known
        if bad:
            raise ValueError(f"unknown keys in config section 'inputs.{definition.name}': {sorted(bad)}")
        self._sections[definition.name] = cls(**value)

    def ensure(self, names: Iterable[str]) -> None:
        """Add the default section of every modality in ``names`` that has fields and no section yet."""
        for name in names:
            definition = modality_definition(name)
            if definition.input_config is not None and definition.name not in self._sections:
                self._sections[definition.name] = definition.input_config()

    def restrict(self, names: Iterable[str]) -> None:
        """Keep only the sections of ``names``, in that order (a config describes its own modalities only)."""
        self._sections = {k: self._sections[k] for k in names if k in self._sections}

    def get(self, name: str, default: Any = None) -> Any:
        return self._sections.get(resolve_modality(name), default)

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("_sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(f"config.inputs has no section {name!r} (sections: {', '.join(sections) or 'none'})")

    def __contains__(self, name: str) -> bool:
        return name in self._sections

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InputsConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"InputsConfig({self.to_dict()})"

    def __deepcopy__(self, memo) -> "InputsConfig":
        return InputsConfig({k: copy.deepcopy(v, memo) for k, v in self._sections.items()})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(section) for name, section in self._sections.items()}

    @staticmethod
    def from_legacy(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Flat pre-registry fields (``audio_mel_bins`` ...) -> nested sections; unknown names are an error."""
        table = {old: (d.name, new) for d in map(modality_definition, registered_modalities())
                 for old, new in d.legacy_input_fields.items()}
        nested: dict[str, dict[str, Any]] = {}
        bad = []
        for key, value in flat.items():
            if key not in table:
                bad.append(key)
                continue
            name, field_name = table[key]
            nested.setdefault(name, {})[field_name] = value
        if bad:
            raise ValueError(f"unknown keys in config section 'inputs': {sorted(bad)}")
        return nested


def _is_legacy_inputs(data: Mapping[str, Any]) -> bool:
    return any(not isinstance(v, Mapping) for v in data.values())


@dataclass
class OneLLMConfig:
    name: str = "custom"
    vision: VisionConfig = field(default_factory=VisionConfig)
    upm: UPMConfig = field(default_factory=UPMConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    inputs: InputsConfig = field(default_factory=InputsConfig)
    # The model's own modalities, in order: it has tokenizers and UPM parts for these and no others.
    modalities: list[str] = field(default_factory=lambda: list(DEFAULT_MODALITIES))
    max_seq_len: int = 2048  # text tokens + modality blocks per sequence
    # Reproduce the released scripts' generation bug: KV cache offset by 30 instead of 32 (spec §1.7, §7.1).
    legacy_kv_offset: bool = False
    # Inference prompt "###Human:" (released scripts) instead of the training template's "### Human:" (§3.8).
    legacy_prompt: bool = False
    # Gradient checkpointing of expert and LLM blocks (training only).
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.inputs, Mapping):
            self.inputs = InputsConfig(self.inputs)
        self.modalities = parse_modalities(self.modalities)
        if not self.modalities:
            raise ValueError("a OneLLM config needs at least one modality")
        self.inputs.ensure(self.modalities)
        self.inputs.restrict(self.modalities)

    def add_modalities(self, names: Iterable[str]) -> list[str]:
        """Append modalities (with their default input sections); returns the ones that were new."""
        added = [m for m in parse_modalities(names) if m not in self.modalities]
        self.modalities += added
        self.inputs.ensure(added)
        return added

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
        """Set a field by dotted name: ``upm.num_tokens``, ``inputs.audio.mel_bins`` (or the pre-registry flat
        ``inputs.audio_mel_bins``), ``modalities``."""
        parts = dotted.replace("__", ".").split(".")
        if parts[0] == "inputs" and len(parts) == 2:  # a flat pre-registry name
            [(section, field_name)] = [(k, next(iter(v))) for k, v in InputsConfig.from_legacy({parts[1]: 0}).items()]
            parts = ["inputs", section, field_name]
        if parts[0] == "inputs":
            if len(parts) != 3:
                raise KeyError(f"config has no field {dotted!r} (inputs fields are inputs.<modality>.<field>)")
            obj = self.inputs.get(parts[1])
            if obj is None:
                raise KeyError(f"config has no field {dotted!r}: {parts[1]!r} is not one of this model's "
                               f"modalities with input fields ({', '.join(self.inputs.to_dict()) or 'none'})")
            parts = parts[2:]
        else:
            obj = self
        *path, last = parts
        for part in path:
            obj = getattr(obj, part)
        if not hasattr(obj, last):
            raise KeyError(f"config has no field {dotted!r}")
        setattr(obj, last, value)
        if obj is self and last == "modalities":
            self.__post_init__()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, InputsConfig):
                out[f.name] = value.to_dict()
            elif dataclasses.is_dataclass(value):
                out[f.name] = dataclasses.asdict(value)
            else:
                out[f.name] = copy.deepcopy(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OneLLMConfig":
        """Build from ``to_dict`` output; also reads configs written before the registry (no ``modalities``: the
        released eight; flat ``inputs`` names)."""
        data = dict(data)
        sections = {"vision": VisionConfig, "upm": UPMConfig, "llm": LLMConfig}
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
            elif key == "inputs":
                if not isinstance(value, Mapping):
                    raise ValueError(f"config section 'inputs' must be an object, got {value!r}")
                nested = InputsConfig.from_legacy(value) if _is_legacy_inputs(value) else value
                kwargs[key] = InputsConfig(nested)
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
        inputs=InputsConfig({"audio": {"mel_bins": 32, "frames": 128},
                             "point": {"num_points": 1024, "num_groups": 64, "group_size": 16}}),
        max_seq_len=512,
    ),
    # The quickstart's miniature: big enough to learn the synthetic world in minutes on a 2-core CPU.
    "quickstart": OneLLMConfig(
        name="quickstart",
        vision=VisionConfig(image_size=32, patch_size=4, width=96, layers=2, head_width=32, embed_dim=64),
        upm=UPMConfig(num_experts=3, expert_layers=1, num_heads=4, multiple_of=32, num_tokens=8),
        llm=LLMConfig(vocab_size=512, hidden_size=128, intermediate_size=352, num_layers=3, num_heads=4,
                      num_kv_heads=4, max_position_embeddings=512),
        inputs=InputsConfig({"audio": {"mel_bins": 32, "frames": 128},
                             "point": {"num_points": 1024, "num_groups": 64, "group_size": 16},
                             "imu": {"stride": 5}, "fmri": {"voxels": 2048}}),
        max_seq_len=256,
    ),
    "small": OneLLMConfig(
        name="small",
        vision=VisionConfig(image_size=112, patch_size=14, width=384, layers=6, head_width=64, embed_dim=256),
        upm=UPMConfig(num_experts=3, expert_layers=2, num_heads=6, multiple_of=128, num_tokens=30),
        llm=LLMConfig(vocab_size=4096, hidden_size=768, intermediate_size=2048, num_layers=6, num_heads=12,
                      num_kv_heads=12, max_position_embeddings=2048),
        inputs=InputsConfig({"audio": {"mel_bins": 64, "frames": 512},
                             "point": {"num_points": 4096, "num_groups": 256, "group_size": 32}}),
        max_seq_len=1024,
    ),
}
