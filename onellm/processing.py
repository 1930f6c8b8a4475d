"""``OneLLMProcessor``: text + modality inputs -> the model's ``input_ids`` with placeholder ids and input tensors.

The one way to build a batch: inference (``onellm infer`` / ``chat`` / ``eval`` / the demo), training datasets and
``model.chat`` all go through it. A processor holds the text tokenizer (HF), the model's config (modalities, input
geometry, placeholder ids, the legacy-prompt switch) and the padding side; it is saved next to the model
(``processor_config.json`` + tokenizer files) and reloads with ``OneLLMProcessor.from_pretrained(dir)`` or
``AutoProcessor.from_pretrained(dir, trust_remote_code=True)``.

Layout (spec §1.6, §3.8): each modality input becomes ``K + 2`` positions holding its placeholder id (start tag, K
tokens, end tag). In text, a marker ``<image>``, ``<audio>`` ... stands for one input; by default
(:meth:`apply_chat_template`, datasets) all blocks come right after BOS, as the released model was trained:
``[bos] [block 1] [block 2] A chat between ... ### Human: q\\n### Assistant:``.

Inputs per modality: a path or a manifest input dict (``{"path": ..., "rgb": ...}``) is loaded with the
modality's loader (the registry's, the original preprocessing); a tensor or numpy array is taken as the already
preprocessed input (its ``input_shape``).
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

from transformers import ProcessorMixin

from .config import OneLLMConfig
from .constants import IGNORE_INDEX
from .data.template import (SEPARATOR, conversation_segments, conversation_to_turns, encode_caption,
                            encode_segments, extract_answer)
from .data.text import TOKENIZER_FILE, TextTokenizer
from .modalities import get as modality_definition

PROCESSOR_FILE = "processor_config.json"
PaddingSide = Literal["left", "right"]


@dataclass
class PackedSample:
    """One sequence with its modality blocks laid out: block positions hold the modality's placeholder id in
    ``input_ids`` and -100 in ``labels``; ``inputs`` lists (modality, tensor) in reading order. A tensor may be a
    :class:`~onellm.features.CachedFeatures` (CLIP outputs from a feature cache) instead of a raw input."""

    input_ids: list[int]
    labels: list[int]
    inputs: list[tuple[str, Any]] = field(default_factory=list)
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)


def pack_sample(config: OneLLMConfig, text_ids: Sequence[int], labels: Sequence[int] | None,
                inputs: Sequence[tuple[str, Any]], id: str | None = None, meta: Mapping[str, Any] | None = None,
                insert_at: int = 1) -> PackedSample:
    """Insert one block of placeholder ids per input into tokenised text at ``insert_at`` (after BOS, the
    released layout); block positions get label -100."""
    labels = list(labels) if labels is not None else [IGNORE_INDEX] * len(text_ids)
    if len(labels) != len(text_ids):
        raise ValueError("labels and input ids differ in length")
    named = [(modality_definition(m).name, x) for m, x in inputs]
    blocks = [config.placeholder_token_id(m) for m, _ in named for _ in range(config.block_length)]
    ids = list(text_ids[:insert_at]) + blocks + list(text_ids[insert_at:])
    labels = labels[:insert_at] + [IGNORE_INDEX] * len(blocks) + labels[insert_at:]
    return PackedSample(ids, labels, named, id, dict(meta or {}))


def collate(config: OneLLMConfig, samples: Sequence[PackedSample], padding_side: PaddingSide = "right",
            with_labels: bool = True):
    """Pad samples to the longest (dynamic padding) and stack each modality's inputs in reading order ->
    ``BatchFeature`` (``input_ids``, ``attention_mask``, ``<m>_values`` ..., ``labels``)."""
    from .data.collate import collate_packed

    return collate_packed(samples, padding_side=padding_side, pad_id=config.llm.pad_token_id,
                          with_labels=with_labels, modalities=config.modalities)


class OneLLMProcessor(ProcessorMixin):
    """Tokenizer + the registry's loaders + the conversation template (module docstring).

    Args:
        tokenizer: the HF LLaMA tokenizer.
        model_config: the model's config (a ``OneLLMConfig`` or its dict).
        padding_side: "left" for generation (default), "right" for training.
    """

    def __init__(self, tokenizer=None, model_config: "OneLLMConfig | Mapping[str, Any] | None" = None,
                 padding_side: PaddingSide = "left", chat_template: str | None = None, **kwargs: Any):
        super().__init__(tokenizer, chat_template=chat_template)
        if model_config is None:
            raise ValueError("OneLLMProcessor needs the model's config (model_config=model.config)")
        self.config = model_config if isinstance(model_config, OneLLMConfig) else OneLLMConfig.from_dict(
            dict(model_config))
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.padding_side = padding_side
        self.text = TextTokenizer(tokenizer, source_model=getattr(tokenizer, "vocab_file", None))
        markers = "|".join(re.escape(modality_definition(m).marker) for m in self.config.modalities)
        self._marker_re = re.compile(f"({markers})")
        self._by_marker = {modality_definition(m).marker: m for m in self.config.modalities}

    # ------------------------------------------------------------------------------------------------
    # Saving and loading
    @property
    def model_config(self) -> dict[str, Any]:
        return self.config.own_dict()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"processor_class": type(self).__name__, "model_config": self.model_config,
                               "padding_side": self.padding_side}
        if getattr(self, "auto_map", None):
            out["auto_map"] = dict(self.auto_map)
        return out

    def save_pretrained(self, save_directory, **kwargs: Any):
        """Tokenizer files, ``tokenizer.model`` (the SentencePiece source) and ``processor_config.json``."""
        self.auto_map = {"AutoProcessor": "processing_onellm.OneLLMProcessor"}
        out = super().save_pretrained(save_directory, **kwargs)
        source = self.text.source_model
        target = Path(save_directory) / TOKENIZER_FILE
        if source and Path(source).is_file() and not target.exists():
            shutil.copyfile(source, target)
        return out

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs: Any) -> "OneLLMProcessor":
        """Load from a model directory; directories written before the processor existed (no
        ``processor_config.json``) are read from their ``config.json`` and tokenizer files."""
        directory = Path(pretrained_model_name_or_path)
        if (directory / PROCESSOR_FILE).is_file():
            return super().from_pretrained(str(directory), **kwargs)
        from .data.text import load_tokenizer

        config = OneLLMConfig.from_dict(json.loads((directory / "config.json").read_text()))
        return cls(load_tokenizer(directory).hf, model_config=config, **kwargs)

    @classmethod
    def for_config(cls, config: OneLLMConfig, tokenizer, **kwargs: Any) -> "OneLLMProcessor":
        """A processor for a model config and its tokenizer (an HF tokenizer or a ``TextTokenizer``, whose
        SentencePiece source file is then saved along)."""
        hf = tokenizer.hf if isinstance(tokenizer, TextTokenizer) else tokenizer
        proc = cls(hf, model_config=config, **kwargs)
        if isinstance(tokenizer, TextTokenizer) and tokenizer.source_model:
            proc.text.source_model = tokenizer.source_model
        return proc

    # ------------------------------------------------------------------------------------------------
    # Inputs
    def load_input(self, modality: str, item: Any, train: bool = False):
        """One modality input -> its tensor: paths and manifest dicts through the modality's loader, tensors and
        arrays as already preprocessed inputs."""
        import numpy as np
        import torch

        modality = modality_definition(modality).name
        if isinstance(item, torch.Tensor):
            return item.float()
        if isinstance(item, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(item, dtype=np.float32))
        from .modalities.loading import load_modality

        return load_modality(modality, item, train=train, config=self.config)

    def marker(self, modality: str) -> str:
        return modality_definition(modality).marker

    # ------------------------------------------------------------------------------------------------
    # Text -> ids
    def block_ids(self, modality: str) -> list[int]:
        return [self.config.placeholder_token_id(modality)] * self.config.block_length

    def encode_with_markers(self, text: str) -> tuple[list[int], list[str]]:
        """ids of ``text`` with every marker expanded into its block ([bos] first); the modalities in order."""
        ids, modalities = [self.text.bos_id], []
        for piece in self._marker_re.split(text):
            if piece in self._by_marker:
                modality = self._by_marker[piece]
                ids += self.block_ids(modality)
                modalities.append(modality)
            elif piece:
                ids += self.text.encode(piece)
        return ids, modalities

    def pack(self, text_ids: Sequence[int], labels: Sequence[int] | None, inputs: Sequence[tuple[str, Any]],
             id: str | None = None, meta: Mapping[str, Any] | None = None, insert_at: int = 1) -> PackedSample:
        """Insert one block per input into tokenised text at ``insert_at`` (after BOS, the released layout)."""
        return pack_sample(self.config, text_ids, labels, inputs, id=id, meta=meta, insert_at=insert_at)

    def prompt_ids(self, question: str, history: Sequence[tuple[str, str]] = (),
                   template: Literal["chat", "none"] = "chat") -> list[int]:
        """Inference prompt ids (BOS first, no blocks): the chat template ending in "Assistant:" (the released
        variant with ``config.legacy_prompt``), or ``[bos] question`` with ``template="none"`` (alignment-only
        models continue it as a caption)."""
        if template == "none":
            return [self.text.bos_id] + self.text.encode(question or "")
        turns = [*history, (question, None)]
        ids, _ = encode_segments(self.text, conversation_segments(turns, self.config.legacy_prompt), bos=True)
        return ids

    def prompt_sample(self, question: str, inputs: Sequence[tuple[str, Any]] = (),
                      history: Sequence[tuple[str, str]] = (), template: Literal["chat", "none"] = "chat",
                      id: str | None = None, meta: Mapping[str, Any] | None = None) -> PackedSample:
        return self.pack(self.prompt_ids(question, history, template), None, inputs, id=id, meta=meta)

    def caption_sample(self, caption: str, inputs: Sequence[tuple[str, Any]], id: str | None = None,
                       meta: Mapping[str, Any] | None = None) -> PackedSample:
        """Alignment: ``[bos] [blocks] caption [eos]`` with caption and EOS supervised."""
        ids, labels = encode_caption(self.text, caption)
        return self.pack(ids, labels, inputs, id=id, meta=meta)

    def conversation_sample(self, conversations: Sequence[Mapping[str, str]], inputs: Sequence[tuple[str, Any]],
                            id: str | None = None, meta: Mapping[str, Any] | None = None) -> PackedSample:
        """Instruction tuning: the training template; answers, separators and the final EOS supervised."""
        turns = conversation_to_turns(conversations)
        complete = turns[-1][1] is not None
        ids, labels = encode_segments(self.text, conversation_segments(turns), bos=True, eos=complete)
        return self.pack(ids, labels, inputs, id=id, meta=meta)

    def apply_chat_template(self, conversation: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                            tokenize: bool = False, **kwargs: Any) -> str:
        """HF-style messages -> the OneLLM prompt string with its markers in front (the released layout).

        ``conversation``: ``[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "..."}]},
        {"role": "assistant", "content": "..."}, ...]`` (content may be a plain string; a ``{"type": <modality>}``
        item stands for one input of that modality). The last user turn gets "Assistant:" appended.
        """
        turns: list[tuple[str, str | None]] = []
        markers: list[str] = []
        for message in conversation:
            content = message.get("content", "")
            items = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
            text = " ".join(i.get("text", "") for i in items if i.get("type") == "text").strip()
            markers += [self.marker(i["type"]) for i in items if i.get("type") not in ("text", None)]
            if message.get("role") == "user":
                turns.append((text, None))
            elif message.get("role") == "assistant":
                if not turns or turns[-1][1] is not None:
                    raise ValueError("an assistant message must follow a user message")
                turns[-1] = (turns[-1][0], text)
        if not turns:
            raise ValueError("the conversation has no user message")
        if turns[-1][1] is not None and add_generation_prompt:
            raise ValueError("the conversation ends with an answer; nothing to generate")
        # segments meet at a space of the full string (see conversation_segments)
        return "".join(markers) + " ".join(seg.text for seg in conversation_segments(turns, self.config.legacy_prompt))

    # ------------------------------------------------------------------------------------------------
    def __call__(self, text: "str | Sequence[str] | None" = None, *, padding_side: PaddingSide | None = None,
                 return_tensors: str = "pt", **modality_inputs: Any):
        """Prompt string(s) with markers + each modality's inputs -> ``BatchFeature`` for ``model(**...)`` /
        ``model.generate(**...)``.

        Inputs of a modality are consumed in the order its markers appear across the batch (one item or a list).
        A single text without any marker gets one marker per given input, in front (the released layout).
        """
        if return_tensors != "pt":
            raise ValueError("OneLLMProcessor returns PyTorch tensors only (return_tensors='pt')")
        texts = [text] if isinstance(text, str) or text is None else list(text)
        texts = ["" if t is None else t for t in texts]
        queues = {}
        for key, value in modality_inputs.items():
            name = modality_definition(key).name
            queues[name] = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(texts) == 1 and queues and not self._marker_re.search(texts[0]):
            texts[0] = "".join(self.marker(m) * len(items) for m, items in queues.items()) + texts[0]
        samples = []
        for t in texts:
            ids, order = self.encode_with_markers(t)
            inputs = []
            for m in order:
                if not queues.get(m):
                    raise ValueError(f"the text has more {self.marker(m)} markers than {m} inputs")
                inputs.append((m, self.load_input(m, queues[m].pop(0))))
            samples.append(PackedSample(ids, [IGNORE_INDEX] * len(ids), inputs))
        left = {m: len(q) for m, q in queues.items() if q}
        if left:
            raise ValueError(f"more inputs than markers in the text: {left} left over")
        return self.collate(samples, padding_side=padding_side, with_labels=False)

    def collate(self, samples: Sequence[PackedSample], padding_side: PaddingSide | None = None,
                with_labels: bool = True):
        """Pad samples to the longest (dynamic padding) and stack each modality's inputs in reading order ->
        ``BatchFeature`` (``input_ids``, ``attention_mask``, ``<m>_values`` ..., ``labels``)."""
        return collate(self.config, samples, padding_side or self.padding_side, with_labels)

    # ------------------------------------------------------------------------------------------------
    # Ids -> text
    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of token ids; placeholder ids (outside the vocabulary) are dropped."""
        vocab = self.config.llm.vocab_size
        return self.text.decode([int(i) for i in ids if int(i) < vocab])

    def batch_decode(self, sequences, skip_special_tokens: bool = True, **kwargs: Any) -> list[str]:
        return [self.decode(row) for row in (sequences.tolist() if hasattr(sequences, "tolist") else sequences)]

    def answer(self, ids: Iterable[int]) -> str:
        """The answer in generated ids: the text up to the template separator ("###"), stripped."""
        return extract_answer(self.decode(ids))

    @property
    def separator(self) -> str:
        return SEPARATOR

    @property
    def model_input_names(self) -> list[str]:
        from .constants import modality_input_names

        return ["input_ids", "attention_mask"] + [modality_input_names(m)[0] for m in self.config.modalities]


def processor_for_directory(model_dir: str | Path) -> OneLLMProcessor:
    """The processor of a model directory without loading its weights: its config and its tokenizer (what the
    vLLM engine's main process needs to build and check requests)."""
    from .checkpoint import read_config
    from .data.text import load_tokenizer
    from .errors import UsageError

    directory = Path(model_dir)
    config = read_config(directory)
    try:
        return OneLLMProcessor.for_config(config, load_tokenizer(directory))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{directory}: the model directory has no usable tokenizer files (tokenizer.model or "
                         f"tokenizer.json: {exc}); copy the tokenizer in or re-create it with `onellm init "
                         "--tokenizer`") from None
