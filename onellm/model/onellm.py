"""OneLLM as a HuggingFace model: modality inputs -> tokenizer -> frozen CLIP -> UPM -> LLaMA-2.

``OneLLMForConditionalGeneration`` is a ``PreTrainedModel`` with HF's ``GenerationMixin``. Its inputs are what
:class:`~onellm.processing.OneLLMProcessor` produces (every tensor on the model's device):

    input_ids          (B, S) int64   text token ids; each modality input occupies K + 2 positions holding that
                                      modality's placeholder id (``config.placeholder_token_id(m)``, outside
                                      the vocabulary) -- ``input_ids`` alone says where every block goes
    attention_mask     (B, S) int64   1 for real positions (text and blocks), 0 for padding
    <m>_values         (N_m, *input_shape)  the raw inputs of modality m, in reading order (sample-major, left to
                                      right), e.g. ``image_values``, ``audio_values``
    <m>_clip_features  (N_m', L + 1, D)     cached CLIP outputs instead of raw inputs (``onellm.features``)
    <m>_cached         (N_m + N_m',) bool   only when both are given: which blocks (in reading order) are cached
    labels             (B, S) int64   optional; -100 where not supervised (blocks, prompts, padding)

Each modality group is encoded once per batch and ``masked_scatter``-ed at its placeholder positions (as HF LLaVA
does with ``image_token_id``), so a batch can mix modalities and a sample can carry several inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from transformers import GenerationConfig as HFGenerationConfig
from transformers import GenerationMixin, LlamaForCausalLM, PreTrainedModel
from transformers.utils import ModelOutput

from ..config import OneLLMConfig
from ..constants import BLOCKS_SUFFIX, IGNORE_INDEX, INPUT_SUFFIXES, all_input_names, modality_input_names
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
    past_key_values: Any = None  # the decoder's KV cache (generation)
    num_tokens: int | None = None  # supervised tokens in the batch (exact averaging across micro-batches)
    loss_sum: torch.Tensor | None = None  # summed cross-entropy, loss = loss_sum / num_tokens


class OneLLMForConditionalGeneration(PreTrainedModel, GenerationMixin):
    config_class = OneLLMConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LlamaDecoderLayer", "ExpertBlock", "ResidualAttentionBlock"]
    _skip_keys_device_placement = ["past_key_values"]
    # Attention kernels are the decoder's: HF picks SDPA (or flash-attention when installed and asked for) there.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def __init__(self, config: OneLLMConfig):
        super().__init__(config)
        self.encoder = build_clip_visual(config.vision)
        self.tokenizers = ModalityTokenizers(config)
        self.upm = UniversalProjection(config)
        self.llm = LlamaForCausalLM(config.text_config)
        llm = config.llm
        self.generation_config = HFGenerationConfig(bos_token_id=llm.bos_token_id, eos_token_id=llm.eos_token_id,
                                                    pad_token_id=llm.pad_token_id)
        self.set_trainable()
        self.post_init()

    def _init_weights(self, module) -> None:
        """Every part initialises itself when it is built (CLIP by open_clip, the decoder by HF, the tokenizers and
        the UPM as the released code); loading fills everything else (it is strict): nothing to re-initialise."""

    # ------------------------------------------------------------------------------------------------
    # Model directories (see onellm.checkpoint)
    def save_pretrained(self, save_directory, processor=None, max_shard_size: "int | str" = "5GB",
                        state_dict: Mapping[str, torch.Tensor] | None = None, **kwargs: Any):
        """Write a model directory atomically: ``config.json`` (with ``auto_map``), HF-sharded safetensors weights,
        the processor's files (tokenizer, ``processor_config.json``), the code ``trust_remote_code`` loads, and a
        model card. ``kwargs`` go to ``PreTrainedModel.save_pretrained``."""
        from ..checkpoint import save_model_directory

        return save_model_directory(self, save_directory, processor=processor, max_shard_size=max_shard_size,
                                    state_dict=state_dict, **kwargs)

    def save_weights_and_config(self, directory, **kwargs: Any) -> None:
        """HF's own ``save_pretrained`` (config + weights only): what :func:`~onellm.checkpoint.save_model_directory`
        calls inside its temporary directory."""
        super().save_pretrained(directory, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args: Any, device: "str | torch.device | None" = None,
                        dtype: "torch.dtype | str | None" = None, adapter=None, **kwargs: Any):
        """Load a model directory strictly (missing/unexpected keys are an error), in eval mode, built on the meta
        device so a 7B model never exists twice in memory. Reads directories written before the model was
        HF-native too. ``adapter``: a LoRA adapter directory to apply (the path may also be an adapter directory
        itself). ``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`` ends up here as well: the
        hub arguments it passes are ignored (everything is local), ``torch_dtype`` / ``device_map`` are honoured."""
        from ..adapters import is_adapter_dir
        from ..checkpoint import load_model_directory, read_config

        dtype = dtype if dtype is not None else kwargs.pop("torch_dtype", None)
        device_map = kwargs.pop("device_map", None)
        if device is None and isinstance(device_map, (str, torch.device)) and str(device_map) != "auto":
            device = device_map
        config = kwargs.pop("config", None)
        config = config if isinstance(config, OneLLMConfig) else None
        attn = kwargs.pop("attn_implementation", None)
        if attn is not None:  # "sdpa", "eager", "flash_attention_2" ...: HF checks it when the decoder is built
            if config is None and not is_adapter_dir(pretrained_model_name_or_path):
                config = read_config(pretrained_model_name_or_path)
            if config is not None:
                config.text_config._attn_implementation = attn
        return load_model_directory(pretrained_model_name_or_path, cls, device=device, dtype=dtype, adapter=adapter,
                                    config=config)

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
        return self.config.block_length

    # ------------------------------------------------------------------------------------------------
    # LLM inputs
    def get_input_embeddings(self):
        return self.llm.get_input_embeddings()

    def set_input_embeddings(self, value) -> None:
        self.llm.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.llm.get_output_embeddings()

    def get_decoder(self):
        return self.llm.get_decoder()

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Embeddings of the text ids; placeholder positions (ids outside the vocabulary) get the pad embedding,
        which the modality blocks then replace."""
        vocab = self.config.llm.vocab_size
        ids = input_ids.masked_fill(input_ids >= vocab, self.config.llm.pad_token_id)
        return self.llm.get_input_embeddings()(ids)

    def modality_blocks(self, modality: str, inputs: Mapping[str, Any]) -> torch.Tensor | None:
        """The encoded blocks (N, K + 2, D_llm) of one modality, in reading order, from ``inputs``' raw values
        and/or cached CLIP features, or its finished ``<m>_blocks``; None when the batch has none of them."""
        values_key, features_key, cached_key = modality_input_names(modality)
        values, features = inputs.get(values_key), inputs.get(features_key)
        blocks = inputs.get(modality + BLOCKS_SUFFIX)
        if blocks is not None:  # encoded by the caller (e.g. once per upload): used as they are
            if values is not None or features is not None:
                raise ValueError(f"{modality}_blocks cannot be mixed with {values_key} / {features_key} in one batch")
            return blocks
        if values is None and features is None:
            return None
        if features is None:
            return self.encode_modality(modality, values)
        projected = self.project(modality, features)  # (N', K+2, D_llm), CLIP skipped
        if values is None:
            return projected
        cached = inputs.get(cached_key)
        if cached is None or cached.numel() != values.shape[0] + features.shape[0]:
            raise ValueError(f"{cached_key} must mark, in reading order, which of the {values.shape[0]} + "
                             f"{features.shape[0]} {modality} blocks are cached")
        encoded = self.encode_modality(modality, values)  # (N, K+2, D_llm)
        blocks = encoded.new_empty(cached.numel(), *encoded.shape[1:])
        blocks[~cached] = encoded
        blocks[cached] = projected.to(encoded.dtype)
        return blocks

    def embed_inputs(self, input_ids: torch.Tensor, inputs: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Text embeddings with every modality block scattered at its placeholder ids: (B, S, D_llm)."""
        embeds = self.embed_text(input_ids)  # (B, S, D_llm)
        inputs = inputs or {}
        for modality in self.config.modalities:
            placeholder = input_ids == self.config.placeholder_token_id(modality)  # (B, S)
            blocks = self.modality_blocks(modality, inputs)
            n_blocks = 0 if blocks is None else blocks.shape[0]
            n_positions = int(placeholder.sum())
            if n_positions != n_blocks * self.block_length:
                raise ValueError(f"{modality} placeholder tokens and {modality} inputs do not match: input_ids has "
                                 f"{n_positions} {modality} positions, the inputs make {n_blocks} block(s) of "
                                 f"{self.block_length}")
            if blocks is not None:
                embeds = embeds.masked_scatter(placeholder[..., None], blocks.to(embeds.dtype))
        unknown = set(inputs) - {k for m in self.config.modalities for k in all_input_names(m)}
        if unknown:
            raise TypeError(f"unexpected model input(s) {sorted(unknown)}; this model's modalities: "
                            f"{', '.join(self.config.modalities)}")
        return embeds

    # ------------------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.LongTensor | None = None, past_key_values: Any = None,
                inputs_embeds: torch.FloatTensor | None = None, labels: torch.LongTensor | None = None,
                use_cache: bool | None = None, return_logits: bool = True, logits_to_keep: int = 0,
                **kwargs: Any) -> OneLLMOutput:
        """Logits, and the loss (mean over supervised tokens) when ``labels`` are given (see module docstring).

        Args:
            return_logits: False skips the (B, S, V) logits (training): only supervised positions are projected.
            logits_to_keep: when > 0, logits of the last ``logits_to_keep`` positions only (generation).
            **kwargs: ``<m>_values`` / ``<m>_clip_features`` / ``<m>_cached`` of the model's modalities; HF's
                generation passes its control arguments (``return_dict`` ...) here too, which need nothing.
        """
        modality_inputs = {k: v for k, v in kwargs.items() if k.endswith(INPUT_SUFFIXES)}
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass input_ids (with placeholder ids) or inputs_embeds")
            inputs_embeds = self.embed_inputs(input_ids, modality_inputs)
        elif modality_inputs:
            raise ValueError("modality inputs are scattered at the placeholder ids of input_ids; with inputs_embeds "
                             "pass the finished embeddings only")
        if position_ids is None and attention_mask is not None and past_key_values is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # right or left padding
        out = self.llm.get_decoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                     position_ids=position_ids, past_key_values=past_key_values,
                                     use_cache=use_cache)
        hidden = out.last_hidden_state  # (B, S, D_llm)
        lm_head = self.llm.get_output_embeddings()
        logits = None
        if return_logits:
            kept = hidden[:, -logits_to_keep:] if logits_to_keep else hidden
            logits = lm_head(kept)  # (B, S or logits_to_keep, V)
        loss = loss_sum = None
        n = 0
        if labels is not None:
            targets = labels[:, 1:]  # position t predicts token t + 1
            supervised = targets != IGNORE_INDEX  # (B, S-1)
            n = int(supervised.sum())
            if logits is not None and not logits_to_keep:
                picked = logits[:, :-1][supervised]  # (n, V)
            else:  # project only the supervised positions: saves the (B, S, V) logits in training
                picked = lm_head(hidden[:, :-1][supervised])  # (n, V)
            loss_sum = F.cross_entropy(picked.float(), targets[supervised], reduction="sum")
            loss = loss_sum / max(n, 1)
        return OneLLMOutput(loss=loss, logits=logits, past_key_values=out.past_key_values if use_cache else None,
                            num_tokens=n, loss_sum=loss_sum)

    # ------------------------------------------------------------------------------------------------
    # Generation (HF GenerationMixin)
    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None,
                                      inputs_embeds=None, is_first_iteration: bool = False, **kwargs):
        """HF's preparation, with the modality inputs passed only to the prefill: they are encoded once, and
        later steps read their blocks from the KV cache."""
        names = {k for m in self.config.modalities for k in all_input_names(m)}
        modality = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, past_key_values=past_key_values, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
            is_first_iteration=is_first_iteration, **kwargs)
        if is_first_iteration or not kwargs.get("use_cache", True):
            model_inputs.update(modality)
        model_inputs["logits_to_keep"] = 0 if model_inputs.get("labels") is not None else 1
        return model_inputs

    def _validate_model_kwargs(self, model_kwargs: dict[str, Any]) -> None:
        # The modality inputs arrive through **modality_inputs, whose names HF's signature check cannot see.
        names = {k for m in self.config.modalities for k in all_input_names(m)}
        super()._validate_model_kwargs({k: v for k, v in model_kwargs.items() if k not in names})

    @torch.no_grad()
    def generate(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                 **kwargs: Any):
        """HF generation. With ``config.legacy_kv_offset`` the released scripts' decoding is reproduced bit for bit
        (``onellm.generation.legacy_decode``); it supports greedy and temperature/top-p sampling."""
        if self.config.legacy_kv_offset:
            from ..generation import legacy_decode

            return legacy_decode(self, input_ids, attention_mask, **kwargs)
        return super().generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


    def chat(self, processor, question: str, history: Iterable[tuple[str, str]] = (), *, max_new_tokens: int = 128,
             temperature: float = 0.1, top_p: float = 0.75, **inputs: Any) -> str:
        """One answer, for people in a notebook: ``model.chat(processor, "What is in it?", image="x.jpg")``.

        Args:
            history: earlier (question, answer) turns of the conversation.
            temperature: 0.1 with top-p 0.75 as the released scripts; 0 is greedy.
            **inputs: one input (or a list) per modality: a path, a manifest input dict (``{"path": ..., "rgb":
                ...}``) or an already preprocessed tensor; blocks come first, in the order given.
        """
        from ..data.collate import move_batch
        from ..generation import GenerationConfig, generate

        items = [(m, processor.load_input(m, x)) for m, value in inputs.items()
                 for x in (value if isinstance(value, (list, tuple)) else [value])]
        sample = processor.prompt_sample(question, items, history=list(history))
        batch = move_batch(processor.collate([sample], padding_side="left", with_labels=False), self.device,
                           next(self.upm.parameters()).dtype)
        gen = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        return generate(self, processor, batch, gen).texts[0]


OneLLM = OneLLMForConditionalGeneration  # the short name used across the library
