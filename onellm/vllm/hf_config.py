"""The transformers config vLLM sees for a OneLLM model directory, and the config parser that builds it.

vLLM 0.32 reads a model's config through a *config parser* chosen by ``config_format``; ours
(``LLM(..., config_format="onellm")``, registered by :func:`onellm.vllm.plugin.register`) reads ``config.json`` with
:func:`onellm.checkpoint.read_config` (whatever version of the file: today's, or the HF-native one with
``modalities``) and returns a :class:`OneLLMVllmConfig`: the LLaMA decoder as ``text_config`` (what vLLM's own
``LlamaForCausalLM`` is built from), the whole OneLLM config as a plain dict under ``onellm``, and the placeholder ids.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import LlamaConfig, PretrainedConfig

from . import ARCHITECTURE


class OneLLMVllmConfig(PretrainedConfig):
    model_type = "onellm_vllm"

    def __init__(self, onellm: dict[str, Any] | None = None, text_config: "dict | LlamaConfig | None" = None,
                 modalities: list[str] | None = None, placeholder_ids: dict[str, int] | None = None,
                 block_length: int | None = None, **kwargs: Any):
        kwargs.setdefault("architectures", [ARCHITECTURE])
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)
        self.onellm = dict(onellm or {})
        if text_config is None:
            text_config = LlamaConfig(architectures=["LlamaForCausalLM"])
        elif isinstance(text_config, dict):
            text_config = dict(text_config)
            text_config.setdefault("architectures", ["LlamaForCausalLM"])
            text_config = LlamaConfig(**text_config)
        self.text_config = text_config
        self.modalities = list(modalities or [])
        self.placeholder_ids = dict(placeholder_ids or {})
        self.block_length = block_length

    def onellm_config(self):
        """The :class:`onellm.config.OneLLMConfig` this config was made from."""
        from onellm.config import OneLLMConfig

        return OneLLMConfig.from_dict(self.onellm)


def vllm_config_from_onellm(config, dtype: str | None = None) -> OneLLMVllmConfig:
    """A :class:`OneLLMVllmConfig` for a ``onellm.config.OneLLMConfig`` (``dtype``: the weights' dtype, if known)."""
    from .encoder import block_length, model_modalities, placeholder_ids

    if getattr(config, "legacy_kv_offset", False):
        raise NotImplementedError("config.legacy_kv_offset (the released decoding bug) is not reproduced by the "
                                  "vLLM engine; use the HF engine for it")
    text = config.llm.to_hf()
    text.architectures = ["LlamaForCausalLM"]
    if dtype is not None:
        text.dtype = dtype
    extra = {"dtype": dtype} if dtype is not None else {}
    own = config.own_dict() if hasattr(config, "own_dict") else config.to_dict()  # OneLLM fields only, no HF ones
    return OneLLMVllmConfig(onellm=own, text_config=text, modalities=model_modalities(config),
                            placeholder_ids=placeholder_ids(config), block_length=block_length(config),
                            bos_token_id=config.llm.bos_token_id, eos_token_id=config.llm.eos_token_id,
                            pad_token_id=config.llm.pad_token_id, **extra)


def _weights_dtype(directory: Path) -> str | None:
    """The floating dtype of the LLM weights in a model directory (safetensors headers only), e.g. "float32"."""
    import json
    import struct

    from onellm.checkpoint import weight_files

    names = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64"}
    for f in weight_files(directory):
        with open(f, "rb") as fh:
            header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
        for key, info in header.items():
            if key.startswith("llm.") and isinstance(info, dict) and info.get("dtype") in names:
                return names[info["dtype"]]
    return None


def load_vllm_config(directory: str | Path) -> OneLLMVllmConfig:
    from onellm.checkpoint import read_config

    directory = Path(directory)
    return vllm_config_from_onellm(read_config(directory), dtype=_weights_dtype(directory))


def make_config_parser():
    """The vLLM ``ConfigParserBase`` subclass for ``config_format="onellm"`` (built lazily: imports vLLM)."""
    from vllm.transformers_utils.config_parser_base import ConfigParserBase

    class OneLLMConfigParser(ConfigParserBase):
        def parse(self, model, trust_remote_code: bool, revision=None, code_revision=None, **kwargs):
            config = load_vllm_config(model)
            return config.to_dict(), config

    return OneLLMConfigParser
