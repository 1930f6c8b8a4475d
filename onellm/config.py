"""Configuration of a OneLLM model: a ``transformers`` config with dataclass sections and named presets.

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

from transformers import PretrainedConfig

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


def _section(cls: type, value: Any, name: str) -> Any:
    """A config section from its dataclass, a dict of its fields (unknown fields are an error) or None (defaults)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"config section {name!r} must be an object, got {value!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    bad = set(value) - known
    if bad:
        raise ValueError(f"unknown keys in config section {name!r}: {sorted(bad)}")
    return cls(**value)


_SECTIONS = {"vision": VisionConfig, "upm": UPMConfig, "llm": LLMConfig}
# Our own fields: every one of them is always written to config.json (HF's diff against defaults is not applied).
_OWN_FIELDS = ("name", "vision", "upm", "llm", "inputs", "modalities", "max_seq_len", "legacy_kv_offset",
               "legacy_prompt", "activation_checkpointing")


class OneLLMConfig(PretrainedConfig):
    """A OneLLM model: the shared CLIP tower (``vision``), the UPM (``upm``), the LLaMA decoder (``llm``), the input
    geometry of each modality (``inputs.<modality>``) and the model's own modalities (``modalities``).

    A ``transformers`` config (``model_type = "onellm"``): ``config.json`` of a model directory, ``AutoConfig``.
    ``OneLLMConfig.preset("onellm-7b")`` has the exact dimensions of the released OneLLM-7B (spec §1);
    ``"tiny"`` keeps the same structure at toy sizes (tests, CPU demos); ``"small"`` is big enough that matrix
    multiplies dominate on a CPU (benchmarks); ``"quickstart"`` is the quickstart's miniature.
    Configs written before it became a ``transformers`` config (``"format": "onellm-v1"``, flat ``inputs``, no
    ``modalities``) load unchanged and mean the released eight modalities.
    """

    model_type = "onellm"

    name: str = "custom"
    vision: Any = None
    upm: Any = None
    llm: Any = None
    inputs: Any = None
    # The model's own modalities, in order: it has tokenizers and UPM parts for these and no others.
    modalities: Any = None
    max_seq_len: int = 2048  # text tokens + modality blocks per sequence
    # Reproduce the released scripts' generation bug: KV cache offset by 30 instead of 32 (spec §1.7, §7.1).
    legacy_kv_offset: bool = False
    # Inference prompt "###Human:" (released scripts) instead of the training template's "### Human:" (§3.8).
    legacy_prompt: bool = False
    # Activation (gradient) checkpointing of expert and LLM blocks (training only).
    activation_checkpointing: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        kwargs.pop("format", None)  # the pre-transformers model-directory format tag
        if "gradient_checkpointing" in kwargs:  # its name before: HF's own post-init would consume that key
            self.activation_checkpointing = bool(kwargs.pop("gradient_checkpointing"))
        for key, cls in _SECTIONS.items():
            setattr(self, key, _section(cls, getattr(self, key), key))
        inputs = self.inputs
        if inputs is None:
            inputs = InputsConfig()
        elif isinstance(inputs, Mapping):
            inputs = InputsConfig(InputsConfig.from_legacy(inputs) if _is_legacy_inputs(inputs) else inputs)
        elif not isinstance(inputs, InputsConfig):
            raise ValueError(f"config section 'inputs' must be an object, got {inputs!r}")
        self.inputs = inputs
        self.modalities = parse_modalities(self.modalities, default=DEFAULT_MODALITIES)
        if not self.modalities:
            raise ValueError("a OneLLM config needs at least one modality")
        self.inputs.ensure(self.modalities)
        self.inputs.restrict(self.modalities)
        super().__post_init__(**kwargs)

    # Modalities and their placeholder tokens --------------------------------------------------------------
    def add_modalities(self, names: Iterable[str]) -> list[str]:
        """Append modalities (with their default input sections); returns the ones that were new. Placeholder ids
        of the existing modalities do not change (new ones are appended)."""
        added = [m for m in parse_modalities(names) if m not in self.modalities]
        self.modalities = self.modalities + added
        self.inputs.ensure(added)
        return added

    def placeholder_token_id(self, modality: str) -> int:
        """The id that marks ``modality``'s block positions in ``input_ids``: ``llm.vocab_size + index`` in
        ``modalities``. It is outside the LLM's vocabulary, so it is never embedded: the model replaces the
        embeddings of those positions with the encoded block."""
        name = resolve_modality(modality)
        if name not in self.modalities:
            raise ValueError(f"this model has no {name!r} modality (its modalities: {', '.join(self.modalities)})")
        return self.llm.vocab_size + self.modalities.index(name)

    @property
    def placeholder_token_ids(self) -> dict[str, int]:
        return {m: self.placeholder_token_id(m) for m in self.modalities}

    @property
    def block_length(self) -> int:
        """Positions one modality input takes in the LLM sequence: start tag + K tokens + end tag."""
        return self.upm.num_tokens + 2

    @property
    def text_config(self):
        """The decoder's ``LlamaConfig`` (what ``transformers`` asks for as the text config of a composite model);
        one object per LLM section, so settings HF writes on it (attention implementation) stay."""
        key = json.dumps(dataclasses.asdict(self.llm), sort_keys=True)
        cached = self.__dict__.get("_text_config")
        if cached is None or cached[0] != key:
            cached = (key, self.llm.to_hf())
            self.__dict__["_text_config"] = cached
        return cached[1]

    def get_text_config(self, decoder=None, encoder=None):
        return self.text_config

    # Presets and overrides ------------------------------------------------------------------------------
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
        elif parts[0] not in _OWN_FIELDS:
            raise KeyError(f"config has no field {dotted!r}")
        else:
            obj = self
        *path, last = parts
        for part in path:
            obj = getattr(obj, part)
        if not hasattr(obj, last):
            raise KeyError(f"config has no field {dotted!r}")
        if obj is self and last == "modalities":
            value = parse_modalities(value)
            self.inputs.ensure(value)
            self.inputs.restrict(value)
        setattr(obj, last, value)

    # Serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("_text_config", None)
        for key in _SECTIONS:
            out[key] = dataclasses.asdict(getattr(self, key))
        out["inputs"] = self.inputs.to_dict()
        out["modalities"] = list(self.modalities)
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        out = super().to_diff_dict()
        full = self.to_dict()
        out.update({k: full[k] for k in _OWN_FIELDS})
        return out

    def own_dict(self) -> dict[str, Any]:
        """Only OneLLM's own fields (no ``transformers`` bookkeeping): what identifies the architecture."""
        full = self.to_dict()
        return {k: full[k] for k in _OWN_FIELDS}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "OneLLMConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (json.JSONDecodeError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: invalid OneLLM config: {exc}") from exc

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OneLLMConfig) and self.own_dict() == other.own_dict()

    __hash__ = None  # mutable

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
        # 640 pieces: the world's words and the chat template's system prompt each stay whole words (512 split
        # the prompt into 101 pieces, 640 gives 29: chats a third as long)
        llm=LLMConfig(vocab_size=640, hidden_size=128, intermediate_size=352, num_layers=3, num_heads=4,
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
