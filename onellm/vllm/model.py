"""``OneLLMForVLLM``: OneLLM as a vLLM 0.32.0 model (``SupportsMultiModal``).

* Language model: vLLM's own ``LlamaForCausalLM`` (``self.llm``, built from ``hf_config.text_config``); paged KV
  cache, continuous batching, vLLM's sampler.
* Multimodal encoder: :func:`onellm.vllm.encoder.build_encoder` (``self.mm_encoder``): the library's tokenizers
  and UPM with the plain-torch CLIP tower; the embedding of one item is ``encode_modality``'s (K + 2, D_llm) block.
* Weights: a OneLLM model directory as it is (``model.safetensors`` or HF shards): ``encoder.*`` /
  ``tokenizers.*`` / ``upm.*`` load into ``mm_encoder``, ``llm.model.*`` / ``llm.lm_head.weight`` into vLLM's
  LLaMA (which fuses q/k/v and gate/up itself). A key of any other name, or a parameter left unloaded, is an error.
* Placeholder ids (``llm.vocab_size + i``) are out of the vocabulary: ``configure_mm_token_handling`` makes vLLM
  mask them before the text embedding; the blocks are scattered over them.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from vllm.config import VllmConfig
from vllm.model_executor.model_loader.weight_utils import default_weight_loader
from vllm.model_executor.models.interfaces import MultiModalEmbeddings, SupportsMultiModal
from vllm.model_executor.models.utils import init_vllm_registered_model, maybe_prefix
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.sequence import IntermediateTensors

from .encoder import build_encoder, model_modalities, placeholder_ids
from .processor import (
    FIELD_SUFFIX,
    OneLLMDummyInputsBuilder,
    OneLLMMultiModalProcessor,
    OneLLMProcessingInfo,
)

ENCODER_PREFIXES = ("encoder.", "tokenizers.", "upm.")


@MULTIMODAL_REGISTRY.register_processor(OneLLMMultiModalProcessor, info=OneLLMProcessingInfo,
                                        dummy_inputs=OneLLMDummyInputsBuilder)
class OneLLMForVLLM(nn.Module, SupportsMultiModal):
    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        return None  # placeholders are token ids outside the vocabulary, not text

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        hf_config = vllm_config.model_config.hf_config
        self.config = hf_config
        self.onellm_config = hf_config.onellm_config()
        self.modalities = model_modalities(self.onellm_config)
        self.configure_mm_token_handling(vocab_size=hf_config.text_config.vocab_size,
                                         mm_token_ids=list(placeholder_ids(self.onellm_config).values()))
        with self._mark_tower_model(vllm_config, set(self.modalities)):
            self.mm_encoder = build_encoder(self.onellm_config)
        with self._mark_language_model(vllm_config):
            self.llm = init_vllm_registered_model(vllm_config=vllm_config, hf_config=hf_config.text_config,
                                                  prefix=maybe_prefix(prefix, "llm"))
        self.make_empty_intermediate_tensors = self.llm.make_empty_intermediate_tensors

    # ------------------------------------------------------------------------------------------------
    def embed_multimodal(self, **kwargs: object) -> MultiModalEmbeddings:
        """One modality's items (vLLM groups them) -> their (K + 2, D_llm) blocks, in item order."""
        out: list[torch.Tensor] = []
        for key, value in kwargs.items():
            if not key.endswith(FIELD_SUFFIX) or value is None:
                continue
            modality = key[: -len(FIELD_SUFFIX)]
            items = list(value) if not isinstance(value, torch.Tensor) else [value[i] for i in range(value.shape[0])]
            out.extend(self._encode_items(modality, items))
        return out

    def _encode_items(self, modality: str, items: list[torch.Tensor]) -> list[torch.Tensor]:
        """Encode items batched by shape (video-like items may differ in frame count); keeps the item order."""
        blocks: list[torch.Tensor | None] = [None] * len(items)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(items):
            groups.setdefault(tuple(x.shape), []).append(i)
        for idxs in groups.values():
            x = torch.stack([items[i] for i in idxs])  # (N, *input_shape)
            encoded = self.mm_encoder.encode(modality, x)  # (N, K + 2, D_llm)
            for j, i in enumerate(idxs):
                blocks[i] = encoded[j]
        return blocks  # type: ignore[return-value]

    def forward(self, input_ids: torch.Tensor | None, positions: torch.Tensor,
                intermediate_tensors: IntermediateTensors | None = None,
                inputs_embeds: torch.Tensor | None = None, **kwargs: object):
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.llm.model(input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.llm.compute_logits(hidden_states)

    # ------------------------------------------------------------------------------------------------
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        params = dict(self.mm_encoder.named_parameters())
        loaded: set[str] = set()
        unexpected: list[str] = []

        def llm_weights():
            for name, tensor in weights:
                if name.startswith("llm."):
                    yield name[len("llm."):], tensor
                elif name.startswith(ENCODER_PREFIXES) and name in params:
                    param = params[name]
                    if tuple(param.shape) != tuple(tensor.shape):
                        raise ValueError(f"{name}: checkpoint shape {tuple(tensor.shape)} vs model "
                                         f"{tuple(param.shape)} (does config.json match the weights?)")
                    getattr(param, "weight_loader", default_weight_loader)(param, tensor)
                    loaded.add(f"mm_encoder.{name}")
                else:
                    unexpected.append(name)

        loaded |= {f"llm.{n}" for n in self.llm.load_weights(llm_weights())}
        if unexpected:
            raise ValueError(f"unexpected weights for this OneLLM config ({len(unexpected)}): {unexpected[:10]}")
        missing = sorted(f"mm_encoder.{n}" for n in params if f"mm_encoder.{n}" not in loaded)
        if missing:
            raise ValueError(f"encoder weights missing from the checkpoint ({len(missing)}): {missing[:10]}")
        return loaded
