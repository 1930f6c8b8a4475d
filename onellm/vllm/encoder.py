"""OneLLM's multimodal encoder without the language model: tokenizers + frozen CLIP + UPM -> (N, K + 2, D_llm) blocks.

:func:`build_encoder` builds a module whose state-dict names are the model's own (``encoder.*``, ``tokenizers.*``,
``upm.*``) and whose ``encode(modality, x)`` *is* the library's ``encode_modality``: the module is an instance of a
subclass of the library's model class that skips its ``__init__`` (no LLM is built, the CLIP tower is the plain-torch
:class:`~onellm.vllm.clip.CLIPVisionTower` instead of open_clip's) and inherits every encoding method unchanged, so
the blocks equal ``OneLLM.encode_modality`` by construction. ``onellm.model.tokenizers`` / ``projection`` /
``point`` are used directly (pure torch). Nothing here imports vLLM, open_clip or torchvision.

Also here: the modality list and placeholder ids of a config (the processor contract): modality ``i`` of
``config.modalities`` gets the id ``llm.vocab_size + i``; one input occupies K + 2 positions holding that id.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .clip import build_clip_visual_torch

# What a config without a ``modalities`` field means: the released model's eight, in this order.
DEFAULT_MODALITIES: tuple[str, ...] = ("image", "video", "audio", "point", "depth", "normal", "imu", "fmri")


def model_modalities(config) -> list[str]:
    """The model's modality names, in order (``config.modalities``; absent: the released eight)."""
    names = getattr(config, "modalities", None)
    return [str(getattr(m, "value", m)) for m in names] if names else list(DEFAULT_MODALITIES)


def placeholder_ids(config) -> dict[str, int]:
    """{modality: placeholder token id} = ``llm.vocab_size + index in config.modalities`` (out of vocabulary)."""
    vocab = int(config.llm.vocab_size)
    return {name: vocab + i for i, name in enumerate(model_modalities(config))}


def block_length(config) -> int:
    """Positions one input occupies in the LLM sequence: start tag, K modality tokens, end tag."""
    return int(config.upm.num_tokens) + 2


def _library_model_class() -> type:
    """The library's model class (HF-native ``OneLLMForConditionalGeneration`` when present, else ``OneLLM``)."""
    import onellm.model as model_pkg

    for name in ("OneLLMForConditionalGeneration", "OneLLM"):
        cls = getattr(model_pkg, name, None)
        if cls is not None and hasattr(cls, "encode_modality"):
            return cls
    raise ImportError("onellm.model has no model class with encode_modality")


_ENCODER_CLASSES: dict[type, type] = {}


def _encoder_class() -> type:
    base = _library_model_class()
    if base not in _ENCODER_CLASSES:
        def __init__(self, config):
            nn.Module.__init__(self)
            _init_parts(self, config)

        _ENCODER_CLASSES[base] = type("OneLLMEncoder", (base,), {
            "__init__": __init__, "__doc__": __doc__, "__module__": __name__, "encode": _encode,
            "forward": _encode, "modalities": property(lambda self: model_modalities(self.config)),
        })
    return _ENCODER_CLASSES[base]


def _init_parts(module: nn.Module, config) -> None:
    from onellm.model.projection import UniversalProjection
    from onellm.model.tokenizers import ModalityTokenizers

    module.config = config
    module.encoder = build_clip_visual_torch(config.vision)
    module.tokenizers = ModalityTokenizers(config)
    module.upm = UniversalProjection(config)
    module.tokenizer = None
    module.requires_grad_(False)  # inference only: every path runs under no_grad (``_path_is_frozen``)


def _encode(self, modality: str, x: torch.Tensor) -> torch.Tensor:
    """Raw inputs (N, *input_shape) of one modality -> blocks (N, K + 2, D_llm) = ``encode_modality``."""
    return self.encode_modality(modality, x)


def build_encoder(config) -> nn.Module:
    """The encoder module of ``config`` (random weights; load ``encoder.*`` / ``tokenizers.*`` / ``upm.*``)."""
    return _encoder_class()(config)


def encoder_state_names(names: Sequence[str]) -> list[str]:
    """The names of a model state dict that belong to the encoder (everything but ``llm.*``)."""
    return [n for n in names if n.split(".", 1)[0] in ("encoder", "tokenizers", "upm")]
