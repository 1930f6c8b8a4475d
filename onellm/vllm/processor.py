"""The vLLM multimodal processor of OneLLM (vLLM 0.32.0 API): inputs -> tensors, placeholders -> K + 2 blocks.

A request is ``{"prompt_token_ids": ids, "multi_modal_data": {modality: item or [items]}}`` (or ``"prompt": text``).

* Modalities are the model's own (``config.modalities``: image, video, audio, point, depth, normal, imu, fmri for the
  released layout). An item is a preprocessed tensor of the modality's input shape (a tensor with one more leading
  axis is a batch of items), a numpy array, a file path, or a manifest input dict ``{"path": ..., <options>}``;
  paths and dicts are loaded with :func:`onellm.data.loaders.load_modality` (eval preprocessing), here in the
  front end, so the processor cache and vLLM's item hashing see the loaded tensor. What vLLM's OpenAI server
  fetches for ``image_url`` / ``audio_url`` / ``input_audio`` / ``video_url`` parts is accepted too (see
  :func:`load_media_item`): a PIL image (the image file loader's eval crop + CLIP normalisation), an audio
  ``(samples, sample_rate)`` pair (the audio loader's fbank path below the file read) and a video
  ``(frames, metadata)`` pair (the video loader's frame choice and transforms).
* Placeholders: modality ``i`` has the id ``llm.vocab_size + i`` (out of the vocabulary; vLLM masks such ids before
  the text embedding, ``configure_mm_token_handling``). Each item of a prompt is found, in order, as one of
  1. its already-expanded block: K + 2 consecutive placeholder ids (what the HF-native processor writes),
  2. one placeholder id, expanded here to the K + 2 block,
  3. nothing at all in the prompt: blocks are inserted right after BOS, in the order of ``multi_modal_data``
     (modalities in dict order, items in list order) -- the layout of the original OneLLM and of the HF path.
  A prompt must use one form for all its items; a mismatch (more items than placeholders, placeholders left over)
  is a ``ValueError`` naming the counts, raised before the request reaches the engine.
* The embedding of an item (``OneLLMForVLLM.embed_multimodal``) is the library's ``encode_modality`` block: all
  K + 2 positions are embedding positions.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import MultiModalDataItems, MultiModalDataParser, ProcessorBatchItems
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptIndexTargets,
    PromptInsertion,
    PromptReplacement,
    PromptUpdate,
)

from .encoder import block_length, model_modalities, placeholder_ids
from .hf_config import OneLLMVllmConfig

FIELD_SUFFIX = "_values"  # the processed tensors of modality m travel as the kwarg f"{m}_values"


def field_name(modality: str) -> str:
    return f"{modality}{FIELD_SUFFIX}"


def _is_stacked(modality: str) -> bool:
    """Video-like modalities (a stack of frames; any frame count)."""
    from onellm.modalities import get

    return bool(get(modality).stacked)


def _is_pil(item: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(item, Image.Image)


def _is_media_pair(item: Any) -> bool:
    """vLLM's decoded audio ``(samples, rate)`` / video ``(frames, metadata)``."""
    return (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (np.ndarray, torch.Tensor))
            and (isinstance(item[1], (int, float, np.integer, np.floating, dict)) or item[1] is None))


def audio_features(samples: Any, rate: float, config, source: str = "audio") -> torch.Tensor:
    """``(C, T)`` or ``(T,)`` samples at ``rate`` Hz -> the audio loader's (1, mel_bins, frames) eval features (its
    path below the file read, :func:`onellm.data.loaders.audio.waveform_features`)."""
    from onellm.data.errors import InputError
    from onellm.data.loaders.audio import waveform_features

    waveform = torch.as_tensor(np.ascontiguousarray(samples), dtype=torch.float32)
    if waveform.ndim == 1:
        waveform = waveform[None]
    if waveform.ndim != 2:
        raise InputError(source, f"audio samples must be (T,) or (C, T), got shape {tuple(waveform.shape)}")
    inputs = config.inputs.audio
    return waveform_features(waveform, int(round(float(rate))), train=False, mel_bins=inputs.mel_bins,
                             frames=inputs.frames, source=source)


def image_features(img: Any, config) -> torch.Tensor:
    """A PIL image -> the image file loader's eval tensor (RGB, resize + centre crop, CLIP normalisation)."""
    from onellm.data.loaders.image import eval_crop, to_clip_tensor

    return to_clip_tensor(eval_crop(img.convert("RGB"), config.vision.image_size))


def video_features(frames: Any, metadata: dict | None, config) -> torch.Tensor:
    """Decoded frames (T, H, W, 3) uint8 (+ vLLM's metadata) -> the video loader's (clips * crops, 3, S, S): when
    the frames are the whole video (``fps`` known, e.g. ``--media-io-kwargs '{"video": {"num_frames": -1}}'``) the
    loader's clip frames are taken from them, else the frames given are the clips."""
    from onellm.data.loaders.image import clip_normalize
    from onellm.data.loaders.video import clip_frame_indices, short_side_scale, spatial_crops

    raw = torch.as_tensor(np.ascontiguousarray(frames))
    if raw.ndim != 4 or raw.shape[-1] != 3:
        raise ValueError(f"video frames must be (T, H, W, 3), got {tuple(raw.shape)}")
    inputs = config.inputs.video
    meta = metadata or {}
    fps, total = meta.get("fps"), meta.get("total_num_frames")
    if fps and total and int(total) == raw.shape[0]:
        raw = raw[clip_frame_indices(int(total), float(fps), inputs.clips)]
    x = raw.permute(0, 3, 1, 2).float() / 255.0
    x = clip_normalize(short_side_scale(x, config.vision.image_size))
    return spatial_crops(x, config.vision.image_size, inputs.crops).contiguous()


def _unwrap(item: Any) -> Any:
    """vLLM's ``MediaWithBytes`` (a decoded image / video with its encoded bytes) -> the decoded media."""
    if hasattr(item, "media") and hasattr(item, "original_bytes"):
        return item.media
    return item


_DECODED_NOUNS = {"pil": "an image", "waveform": "(samples, rate) audio", "frames": "(frames, metadata) video"}


def _decoded_kind(item: Any) -> str | None:
    """Which of vLLM's decoded media ``item`` is (the names of :attr:`LoaderSpec.decoded`); None for the rest."""
    if _is_pil(item):
        return "pil"
    if _is_media_pair(item):
        return "frames" if isinstance(item[1], dict) or item[1] is None else "waveform"
    return None


def load_media_item(modality: str, item: Any, config) -> torch.Tensor | None:
    """What vLLM's OpenAI server decodes (PIL image, ``(samples, rate)``, ``(frames, metadata)``) -> the tensor the
    file loaders make of the same content, for the modality whose loader declares that form; None for anything
    else."""
    from onellm.modalities import get

    item = _unwrap(item)
    kind = _decoded_kind(item)
    if kind is None:
        return None
    if get(modality).loader.decoded != kind:
        raise ValueError(f"{_DECODED_NOUNS[kind]} was given for the {modality} input")
    if kind == "pil":
        return image_features(item, config)
    data, extra = item
    if kind == "waveform":
        return audio_features(data, extra, config)
    return video_features(data, extra, config)


def load_item(modality: str, item: Any, config) -> torch.Tensor:
    """One input of ``modality`` -> its float32 tensor of the modality's input shape (checked)."""
    from onellm.model.tokenizers import input_shape

    media = load_media_item(modality, item, config)
    if media is not None:
        x = media
    elif isinstance(item, (str, Path, dict)):
        from onellm.data.loaders import load_modality

        x = load_modality(modality, item if isinstance(item, dict) else Path(item), train=False, config=config)
    elif isinstance(item, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(item))
    elif isinstance(item, torch.Tensor):
        x = item
    else:
        raise ValueError(f"a {modality} item must be a tensor, an array, a file path or a manifest input dict, "
                         f"got {type(item).__name__}")
    x = x.detach().to("cpu", torch.float32).contiguous()
    expected = tuple(input_shape(config, modality))
    ok = (len(x.shape) == len(expected) and tuple(x.shape[1:]) == expected[1:]) if _is_stacked(modality) \
        else tuple(x.shape) == expected
    if not ok:
        raise ValueError(f"a {modality} input must have shape {expected}"
                         f"{' (any frame count)' if _is_stacked(modality) else ''}, got {tuple(x.shape)}")
    return x


def split_items(modality: str, data: Any, config) -> list[Any]:
    """``multi_modal_data[modality]`` -> a list of items (a batched tensor/array is split on its first axis)."""
    from onellm.model.tokenizers import input_shape

    rank = len(input_shape(config, modality))
    if _is_media_pair(_unwrap(data)) or _is_pil(_unwrap(data)):
        return [data]
    if isinstance(data, (torch.Tensor, np.ndarray)):
        if data.ndim == rank + 1:
            return list(data)
        return [data]
    if isinstance(data, (list, tuple)):
        return list(data)
    return [data]


class OneLLMItems(ProcessorBatchItems[torch.Tensor]):
    """The loaded tensors of one modality's items (hashed by content)."""

    def get_processor_data(self) -> Mapping[str, object]:
        return {field_name(self.modality): self.get_all()}


class OneLLMDataParser(MultiModalDataParser):
    """Parses ``multi_modal_data`` for the model's own modalities (and rejects the others)."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.onellm_config = config

    def _parse_modality(self, modality: str, data: Any) -> OneLLMItems | None:
        items = split_items(modality, data, self.onellm_config)
        if not items:
            return None
        return OneLLMItems([load_item(modality, x, self.onellm_config) for x in items], modality)

    def _get_subparsers(self):
        return {m: partial(self._parse_modality, m) for m in model_modalities(self.onellm_config)}


class OneLLMProcessingInfo(BaseProcessingInfo):
    def get_hf_config(self) -> OneLLMVllmConfig:
        return self.ctx.get_hf_config(OneLLMVllmConfig)

    @cached_property
    def onellm_config(self):
        return self.get_hf_config().onellm_config()

    @property
    def modalities(self) -> list[str]:
        return model_modalities(self.onellm_config)

    def get_hf_processor(self, **kwargs: object):
        raise NotImplementedError("OneLLM has no HF processor in vLLM: items are loaded by OneLLMDataParser")

    def get_supported_mm_processor_kwargs(self) -> dict[str, set[str]]:
        return {}

    def get_data_parser(self) -> MultiModalDataParser:
        return OneLLMDataParser(self.onellm_config, expected_hidden_size=self._get_expected_hidden_size(),
                                allow_missing_mm_embeddings=self.allow_missing_mm_embeddings)

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {m: None for m in self.modalities}

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        n = block_length(self.onellm_config)
        return {m: n for m in self.modalities}


class OneLLMDummyInputsBuilder(BaseDummyInputsBuilder[OneLLMProcessingInfo]):
    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return ""  # the processor's dummy prompt is [bos]; the blocks are inserted after it

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options=None):
        from onellm.model.tokenizers import input_shape

        config = self.info.onellm_config
        return {m: [torch.zeros(input_shape(config, m))] * n for m, n in mm_counts.items() if n}


class OneLLMMultiModalProcessor(BaseMultiModalProcessor[OneLLMProcessingInfo]):
    def get_dummy_inputs(self, seq_len: int, mm_counts: Mapping[str, int], mm_options):
        inputs = super().get_dummy_inputs(seq_len, mm_counts, mm_options)
        inputs.prompt = [int(self.info.onellm_config.llm.bos_token_id)]  # profiling prompt: [bos] + blocks
        return inputs

    def _apply_hf_processor_main(self, mm_items: MultiModalDataItems, hf_kwargs: Mapping[str, object]
                                 ) -> BatchFeature:
        data: dict[str, Any] = {}
        for modality, items in mm_items.items():
            if len(items):
                data[field_name(modality)] = items.get_all()  # list of (*input_shape) float32 tensors
        return BatchFeature(data)

    def _get_mm_fields_config(self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]
                              ) -> Mapping[str, MultiModalFieldConfig]:
        return {field_name(m): MultiModalFieldConfig.batched(m) for m in self.info.modalities}

    def _get_prompt_updates(self, mm_items: MultiModalDataItems, hf_processor_mm_kwargs: Mapping[str, object],
                            out_mm_kwargs: MultiModalKwargsItems) -> Sequence[PromptUpdate]:
        config = self.info.onellm_config
        ids, n = placeholder_ids(config), block_length(config)
        bos = [int(config.llm.bos_token_id)]
        updates: list[PromptUpdate] = []
        for modality in mm_items:  # multi_modal_data order: the order of the inserted blocks
            block = [ids[modality]] * n
            updates += [
                PromptReplacement(modality=modality, target=block, replacement=block),  # already expanded
                PromptReplacement(modality=modality, target=block[:1], replacement=block),  # one id per item
                PromptInsertion(modality=modality, target=PromptIndexTargets.prefix(bos), insertion=block),
            ]
        return updates

    def _apply_prompt_updates(self, token_ids: list[int], mm_prompt_updates):
        new_ids, result, placeholders = self._apply_token_matches_with_placeholders(token_ids, mm_prompt_updates)
        config = self.info.onellm_config
        missing = {m: sum(u is None for u in idxs) for m, idxs in result.items() if any(u is None for u in idxs)}
        if missing:
            given = {m: len(idxs) for m, idxs in result.items()}
            raise ValueError(
                f"the prompt has no placeholder for {missing} of the {given} input item(s): give every item its "
                f"block (K + 2 = {block_length(config)} placeholder ids, or one id each), or leave the prompt "
                f"without placeholders (blocks go after BOS; the prompt must then start with BOS "
                f"{config.llm.bos_token_id}); placeholder ids: {placeholder_ids(config)}")
        placeholders = {m: p for m, p in placeholders.items() if p}
        covered = np.zeros(len(new_ids), dtype=bool)
        for infos in placeholders.values():
            for info in infos:
                covered[info.start_idx:info.start_idx + info.length] = True
        stray = int(sum(1 for i, t in enumerate(new_ids) if t >= config.llm.vocab_size and not covered[i]))
        if stray:
            raise ValueError(f"the prompt has {stray} placeholder position(s) (ids >= {config.llm.vocab_size}) "
                             f"without an input item: pass one item per block in multi_modal_data")
        return new_ids, placeholders
