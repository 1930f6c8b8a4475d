"""OneLLM: modality inputs -> tokenizer -> frozen CLIP -> UPM -> LLaMA-2 (HF ``LlamaForCausalLM``).

A batch (what ``onellm.data.Collator`` produces; every tensor on the model's device):

    input_ids        (B, S) int64   text token ids; positions of modality blocks hold any id (pad)
    attention_mask   (B, S) int64   1 for real positions (text and modality blocks), 0 for padding
    modality_mask    (B, S) bool    True at the K + 2 positions of every modality block [start, K tokens, end]
    modality_inputs  {name: (N_m, *input_shape)}   the raw inputs of each modality present in the batch
    modality_order   {name: (N_m,) int64}          reading-order rank of each input among all blocks of the
                                                   batch (sample-major, left to right in the sequence)
    labels           (B, S) int64   optional; -100 where not supervised (modality blocks, prompts, padding)

Each modality group is encoded once per batch; the blocks are scattered into ``inputs_embeds`` at
``modality_mask`` in reading order, so a batch can mix modalities and a sample can carry several inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaForCausalLM  # at import time: never first imported under a meta-device context
from transformers.utils import ModelOutput

from ..config import OneLLMConfig
from ..modalities import get as modality_definition
from ..modalities import parse_modalities
from .encoder import build_clip_visual, encode_tokens, patch_embed
from .projection import UniversalProjection
from .tokenizers import ModalityTokenizers, input_shape

PARTS = ("encoder", "tokenizers", "upm", "experts", "llm")


@dataclass
class OneLLMOutput(ModelOutput):
    """A HF ``ModelOutput`` (a dict as well: DeepSpeed ZeRO-3 finds the tensors to hook for the backward)."""

    loss: torch.Tensor | None = None  # mean cross-entropy over supervised tokens
    logits: torch.Tensor | None = None  # (B, S, V), None when not requested
    num_tokens: int | None = None  # supervised tokens in the batch (exact averaging across micro-batches)
    loss_sum: torch.Tensor | None = None  # summed cross-entropy, loss = loss_sum / num_tokens


class OneLLM(nn.Module):
    def __init__(self, config: OneLLMConfig):
        super().__init__()
        self.config = config
        self.encoder = build_clip_visual(config.vision)
        self.tokenizers = ModalityTokenizers(config)
        self.upm = UniversalProjection(config)
        self.llm = LlamaForCausalLM(config.llm.to_hf())
        self.tokenizer = None  # the text tokenizer, attached by from_pretrained / the CLI
        self.set_trainable()

    # ------------------------------------------------------------------------------------------------
    # Model directories (see onellm.checkpoint)
    def save_pretrained(self, directory, max_shard_size: "int | str" = "5GB", tokenizer=None):
        """Write ``config.json``, safetensors weights (sharded above ``max_shard_size``) and tokenizer files."""
        from ..checkpoint import save_model_directory

        return save_model_directory(self, directory, max_shard_size=max_shard_size, tokenizer=tokenizer)

    @classmethod
    def from_pretrained(cls, directory, device: "str | torch.device | None" = None,
                        dtype: "torch.dtype | None" = None, adapter=None) -> "OneLLM":
        """Load a model directory strictly (missing/unexpected keys are an error), in eval mode; ``adapter``: a
        LoRA adapter directory to apply (``directory`` may also be an adapter directory itself)."""
        from ..checkpoint import load_model_directory

        return load_model_directory(directory, device=device, dtype=dtype, adapter=adapter)

    # ------------------------------------------------------------------------------------------------
    # Trainability
    def set_trainable(self, *, encoder: bool = False, tokenizers: "bool | Iterable" = True,
                      upm: "bool | Iterable" = True, experts: bool | None = None, llm: bool = True) -> None:
        """Choose which parts train; everything else gets ``requires_grad=False``.

        Args:
            encoder: the CLIP visual tower (frozen in every stage of the paper).
            tokenizers: True, False, or the modalities whose own tokenizer (conv1 + positional embedding) trains.
            upm: True, False, or the modalities whose UPM parts (tokens, proj1, router, proj2, tags) train.
            experts: the shared expert blocks; default: trained when any modality's UPM parts train.
            llm: the whole language model.
        """
        own = self.config.modalities
        tok_set = set(parse_modalities(tokenizers, default=own))
        upm_set = set(parse_modalities(upm, default=own))
        experts = bool(upm_set) if experts is None else experts
        self.encoder.requires_grad_(encoder)
        for name, module in self.tokenizers.conv1.items():
            module.requires_grad_(name in tok_set)
        for name, param in self.tokenizers.positional_embedding.items():
            param.requires_grad_(name in tok_set)
        self.upm.resample_layers.requires_grad_(experts)
        for m in own:
            for p in self.upm.modality_parameters(m):
                p.requires_grad_(m in upm_set)
        self.llm.requires_grad_(llm)

    @staticmethod
    def part_of(name: str) -> str:
        """Which part a parameter name belongs to: encoder, tokenizers, upm, experts or llm."""
        if name.startswith("upm.resample_layers."):
            return "experts"
        return name.split(".", 1)[0]

    def parameter_summary(self) -> dict[str, tuple[int, int]]:
        """{part: (trainable, total)} parameter counts."""
        out = {p: [0, 0] for p in PARTS}
        for name, param in self.named_parameters():
            part = self.part_of(name)
            out[part][1] += param.numel()
            if param.requires_grad:
                out[part][0] += param.numel()
        return {k: (v[0], v[1]) for k, v in out.items()}

    # ------------------------------------------------------------------------------------------------
    # Modality encoding
    def _own_modality(self, modality: str) -> str:
        name = modality_definition(modality).name
        if name not in self.config.modalities:
            raise ValueError(f"this model has no {name!r} modality (its modalities: "
                             f"{', '.join(self.config.modalities)})")
        return name

    def _path_is_frozen(self, modality: str) -> bool:
        """True when nothing between the raw input and the CLIP output needs gradients (run under no_grad)."""
        params = list(self.encoder.parameters())
        if self.tokenizers.has(modality):
            params += list(self.tokenizers.conv1[modality].parameters())
            params.append(self.tokenizers.positional_embedding[modality])
        return not any(p.requires_grad for p in params)

    def check_input(self, modality: str, x: torch.Tensor) -> None:
        expected = input_shape(self.config, modality)
        got = tuple(x.shape[1:])
        if modality_definition(modality).stacked:
            ok = len(got) == len(expected) and got[1:] == expected[1:]  # any number of frames
        else:
            ok = got == expected
        if not ok:
            raise ValueError(f"{modality} input must have shape (N, {', '.join(map(str, expected))}), "
                             f"got {tuple(x.shape)}")

    def encode_clip(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs (N, *input_shape) -> CLIP features (N, L + 1, D), averaged over frames where there are any."""
        modality = self._own_modality(modality)
        self.check_input(modality, x)
        frozen = self._path_is_frozen(modality)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            if self.tokenizers.has(modality):
                tokens = self.tokenizers(modality, x)  # (N, L, D)
                feats = encode_tokens(self.encoder, tokens, self.tokenizers.positional_embedding[modality])
            else:  # CLIP's own patch embedding
                N = x.shape[0]
                images = x.reshape(-1, *x.shape[-3:])  # (N*T, 3, H, W); an image is one frame
                feats = encode_tokens(self.encoder, patch_embed(self.encoder, images),
                                      self.encoder.positional_embedding)  # (N*T, L+1, D)
                feats = feats.reshape(N, -1, *feats.shape[1:]).mean(1)  # (N, L+1, D), mean over frames
        return feats

    def project(self, modality: str, feats: torch.Tensor) -> torch.Tensor:
        """CLIP features (N, L + 1, D) -> modality block (N, K + 2, D_llm) = [start_tag, K tokens, end_tag]."""
        tokens = self.upm(modality, feats)  # (N, K, D_llm)
        start, end = self.upm.tags(modality)
        N = tokens.shape[0]
        return torch.cat([start.expand(N, -1, -1).to(tokens.dtype), tokens,
                          end.expand(N, -1, -1).to(tokens.dtype)], dim=1)  # (N, K+2, D_llm)

    def encode_modality(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Raw inputs (N, *input_shape) -> modality blocks (N, K + 2, D_llm)."""
        modality = self._own_modality(modality)
        return self.project(modality, self.encode_clip(modality, x))

    def add_modalities(self, names: Iterable[str]) -> list[str]:
        """Give the model parts for new modalities (tokenizer, UPM parts; the shared experts, CLIP and the LLM are
        untouched), built on the device and in the dtype of the existing parts; returns the names added."""
        added = self.config.add_modalities(names)
        if not added:
            return []
        ref = next(self.upm.parameters())
        new_tok = self.tokenizers.add(added)
        new_upm = self.upm.add(added)
        for name in new_tok:
            self.tokenizers.conv1[name].to(device=ref.device, dtype=ref.dtype)
            self.tokenizers.positional_embedding[name].data = self.tokenizers.positional_embedding[name].data.to(
                device=ref.device, dtype=ref.dtype)
        for name in new_upm:
            for module in (self.upm.clip_proj1[name], self.upm.clip_proj2[name], self.upm.routers[name]):
                module.to(device=ref.device, dtype=ref.dtype)
            for pdict in (self.upm.resample_tokens, self.upm.start_tag, self.upm.end_tag):
                pdict[name].data = pdict[name].data.to(device=ref.device, dtype=ref.dtype)
        return added

    @property
    def block_length(self) -> int:
        """Positions a modality block takes in the LLM sequence: start tag + K tokens + end tag."""
        return self.config.upm.num_tokens + 2

    # ------------------------------------------------------------------------------------------------
    # LLM inputs
    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(input_ids)

    def build_inputs_embeds(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Text embeddings with every modality block scattered in: (B, S, D_llm).

        Blocks come from raw inputs (``modality_inputs``) or, for frozen-path modalities, from cached CLIP features
        (``modality_features`` (N, L + 1, D) with ``feature_order``; see ``onellm.features``)."""
        input_ids = batch["input_ids"]
        embeds = self.embed_text(input_ids)  # (B, S, D_llm)
        inputs: Mapping[str, torch.Tensor] = batch.get("modality_inputs") or {}
        features: Mapping[str, torch.Tensor] = batch.get("modality_features") or {}
        if not inputs and not features:
            return embeds
        blocks, orders = [], []
        for name, x in inputs.items():
            blocks.append(self.encode_modality(name, x))  # (N_m, K+2, D_llm)
            orders.append(batch["modality_order"][name])
        for name, f in features.items():
            blocks.append(self.project(self._own_modality(name), f))  # (N_m, K+2, D_llm), CLIP skipped
            orders.append(batch["feature_order"][name])
        blocks_t = torch.cat(blocks)  # (N, K+2, D_llm) grouped by modality
        order = torch.cat(orders).to(blocks_t.device)
        blocks_t = blocks_t[torch.argsort(order)]  # (N, K+2, D_llm) in reading order
        mask = batch["modality_mask"]
        if int(mask.sum()) != blocks_t.shape[0] * blocks_t.shape[1]:
            raise ValueError(f"modality_mask marks {int(mask.sum())} positions but the batch has "
                             f"{blocks_t.shape[0]} blocks of {blocks_t.shape[1]}")
        return embeds.masked_scatter(mask[..., None], blocks_t.to(embeds.dtype))

    # ------------------------------------------------------------------------------------------------
    def forward(self, batch: Mapping[str, Any], return_logits: bool = True) -> OneLLMOutput:
        """Loss (mean over supervised tokens) and, optionally, logits of a batch (see module docstring)."""
        embeds = self.build_inputs_embeds(batch)
        attention_mask = batch["attention_mask"]
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # right or left padding
        hidden = self.llm.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask,
                                        position_ids=position_ids, use_cache=False).last_hidden_state
        lm_head = self.llm.get_output_embeddings()
        logits = lm_head(hidden) if return_logits else None  # (B, S, V)
        labels = batch.get("labels")
        loss = loss_sum = None
        n = 0
        if labels is not None:
            targets = labels[:, 1:]  # position t predicts token t + 1
            supervised = targets != -100  # (B, S-1)
            n = int(supervised.sum())
            if logits is not None:
                picked = logits[:, :-1][supervised]  # (n, V)
            else:  # project only the supervised positions: saves the (B, S, V) logits in training
                picked = lm_head(hidden[:, :-1][supervised])  # (n, V)
            loss_sum = F.cross_entropy(picked.float(), targets[supervised], reduction="sum")
            loss = loss_sum / max(n, 1)
        return OneLLMOutput(loss=loss, logits=logits, num_tokens=n, loss_sum=loss_sum)

    # ------------------------------------------------------------------------------------------------
    def generate(self, batch: Mapping[str, Any], max_new_tokens: int = 128, temperature: float = 0.1,
                 top_p: float = 0.75, output_logits: bool = False, **kwargs: Any):
        """Answers for a left-padded batch (see ``onellm.generation``): ``.texts``, ``.token_ids``, ``.logits``."""
        from ..generation import GenerationConfig, generate

        gen = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, **kwargs)
        return generate(self, batch, gen, output_logits=output_logits)
