"""Datasets over manifests: alignment (captions), instruction tuning (conversations) and requests (prompts).

``__getitem__`` loads the record's inputs with the official preprocessing (the registry's loaders), builds the
sequence through the processor (``OneLLMProcessor``: placeholder ids after BOS, labels) and returns a
:class:`~onellm.processing.PackedSample`; a record that cannot be used becomes a :class:`FailedSample` (id and the
error) instead of raising, so a DataLoader worker never dies on bad data and nothing retries forever. The
:class:`Collator` drops failed samples from the batch and reports them under ``batch["failed"]``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Collection, Literal, Sequence

import torch
from torch.utils.data import Dataset

from ..modalities import get as modality_definition
from ..processing import OneLLMProcessor, PackedSample
from .errors import InputError
from .input_cache import InputCache, cache_key
from .manifest import ManifestIndex, Record, text_chars


@dataclass
class FailedSample:
    id: str
    error: str
    modality_key: str | None = None  # of the record, so a batch that failed entirely still names its modality


def default_prompt(record: Record) -> str:
    """The record's prompt, else the original evaluation prompt for its first modality (spec §5)."""
    if record.prompt:
        return record.prompt
    if not record.inputs:
        raise ValueError(f"{record.id}: a request without inputs needs a 'prompt'")
    return modality_definition(record.inputs[0].modality).caption_prompt


class ManifestDataset(Dataset):
    """Shared machinery: input loading, building the sequence, length limits, lengths for grouping.

    Args:
        records: a list of records, or a :class:`~onellm.data.manifest.ManifestIndex` (a manifest of any size in
            bounded memory: records are parsed when an item is read).
        processor: builds every sequence (and knows the model's config).
        train: training augmentations on; sequences longer than ``max_length`` are cut (requests fail instead).
        seed: augmentations draw from RNGs seeded per (seed, epoch, index), so the same sample gets the same crop
            in a resumed run as in an uninterrupted one, whatever worker loads it.
        feature_store: an ``onellm.features.FeatureStore``: cached CLIP features of frozen-path inputs.
        input_cache: an :class:`~onellm.data.input_cache.InputCache` for the loaded tensors of inputs whose
            loading draws no augmentation (video, IMU, fMRI in training; every input when ``train`` is False).
        augment: in training, the modalities whose loads draw the original augmentations (True: all, False:
            none); the others load as in eval.
    """

    truncate = True

    def __init__(self, records: Sequence[Record], processor: OneLLMProcessor, train: bool = True,
                 max_length: int | None = None, seed: int | None = None, feature_store=None,
                 input_cache: InputCache | None = None, augment: bool | Collection[str] = True):
        self.records = records if isinstance(records, ManifestIndex) else list(records)
        self.processor = processor
        self.config = processor.config
        self.train = train
        self.max_length = max_length or self.config.max_seq_len
        self.block_length = self.config.block_length
        self.seed = seed
        self.epoch = 0
        self.feature_store = feature_store
        self.input_cache = input_cache
        self.augment = augment if isinstance(augment, bool) else frozenset(augment)

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, record: Record, inputs: list[tuple[str, Any]]) -> PackedSample:
        raise NotImplementedError

    def load_inputs(self, record: Record) -> list[tuple[str, Any]]:
        from ..features import CachedFeatures, feature_key

        out = []
        for k, ref in enumerate(record.inputs):
            key = feature_key(record.id, k)
            if self.feature_store is not None and key in self.feature_store:
                out.append((ref.modality, CachedFeatures(self.feature_store.get(key))))
            else:
                out.append((ref.modality, self.load_input(ref.modality, ref.as_source())))
        return out

    def augments(self, modality: str) -> bool:
        """Whether loading ``modality`` draws random augmentations here."""
        definition = modality_definition(modality)
        chosen = self.augment if isinstance(self.augment, bool) else definition.name in self.augment
        return self.train and chosen and definition.loader.augments

    def load_input(self, modality: str, source: Any) -> torch.Tensor:
        augments = self.augments(modality)
        cacheable = self.input_cache is not None and not augments
        key = cache_key(modality, source) if cacheable else ""
        tensor = self.input_cache.get(key) if cacheable else None
        if tensor is None:
            tensor = self.processor.load_input(modality, source, train=augments)
            if cacheable:
                self.input_cache.put(key, tensor)
        return tensor

    def __getitem__(self, index: int) -> PackedSample | FailedSample:
        return self.build_item(index, self.records[index])

    def build_item(self, index: int, record: Record) -> PackedSample | FailedSample:
        """The sample of ``record`` at ``index`` (which seeds its augmentations), or why it cannot be used."""
        key = record.modality_key
        if self.train and self.seed is not None:
            sample_seed = (self.seed * 1_000_003 + self.epoch * 10_007 + index) % (2**63)
            torch.default_generator.manual_seed(sample_seed)  # loaders run on the CPU; skips seeding accelerators
            random.seed(sample_seed)
        if self.block_length * len(record.inputs) + 2 > self.max_length:
            return FailedSample(record.id, f"{len(record.inputs)} inputs leave no room for text in "
                                           f"{self.max_length} positions", key)
        try:
            sample = self.sample(record, self.load_inputs(record))
        except (InputError, ValueError) as exc:
            return FailedSample(record.id, str(exc), key)
        except Exception as exc:  # a decoder bug must not kill the worker; report it as this sample's error
            return FailedSample(record.id, f"{type(exc).__name__}: {exc}", key)
        if len(sample) > self.max_length:
            if not self.truncate:
                return FailedSample(record.id, f"prompt of {len(sample)} positions exceeds the model's "
                                               f"{self.max_length}; shorten it or raise max_seq_len", key)
            sample.input_ids, sample.labels = sample.input_ids[:self.max_length], sample.labels[:self.max_length]
        return sample

    def modality_keys(self) -> list[str]:
        if isinstance(self.records, ManifestIndex):
            return self.records.modality_keys()
        return [r.modality_key for r in self.records]

    def data_types(self) -> list[str]:
        if isinstance(self.records, ManifestIndex):
            return self.records.data_types()
        return [r.type or r.modality_key for r in self.records]

    def lengths(self) -> list[int]:
        """Cheap length proxy (characters of text + block positions) for length grouping."""
        if isinstance(self.records, ManifestIndex):
            chars, inputs = self.records.column("chars"), self.records.column("inputs")
            return (chars // 4 + self.block_length * inputs).tolist()
        return [self._text_chars(r) // 4 + self.block_length * len(r.inputs) for r in self.records]

    @staticmethod
    def _text_chars(r: Record) -> int:
        return text_chars(r)

    def _meta(self, record: Record) -> dict[str, Any]:
        return {"modality_key": record.modality_key}


class AlignmentDataset(ManifestDataset):
    """``[bos] [blocks] caption [eos]``; a list caption is sampled at random in training (first one in eval)."""

    def sample(self, record: Record, inputs: list[tuple[str, Any]]) -> PackedSample:
        if record.caption is None:
            raise ValueError(f"{record.id}: alignment records need a 'caption'")
        caption = record.caption
        if isinstance(caption, list):
            caption = random.choice(caption) if self.train else caption[0]
        return self.processor.caption_sample(caption, inputs, id=record.id, meta=self._meta(record))


class InstructionDataset(ManifestDataset):
    """The training template; only answers (+ separators and the final EOS) are supervised."""

    def sample(self, record: Record, inputs: list[tuple[str, Any]]) -> PackedSample:
        if not record.conversations:
            raise ValueError(f"{record.id}: instruction records need 'conversations'")
        return self.processor.conversation_sample(record.conversations, inputs, id=record.id, meta=self._meta(record))


class RequestDataset(ManifestDataset):
    """Inference prompts: the chat template (legacy or not), or the raw prompt with ``template="none"``
    (an alignment-only model continues ``[bos] [blocks] prompt`` as a caption). A prompt longer than the model
    takes is an error of that request (never cut: it would lose the "Assistant:" the answer follows)."""

    truncate = False

    def __init__(self, records: Sequence[Record], processor: OneLLMProcessor,
                 template: Literal["chat", "none"] = "chat", **kwargs: Any):
        kwargs.setdefault("train", False)
        super().__init__(records, processor, **kwargs)
        self.template = template

    def text_ids(self, record: Record) -> list[int]:
        """The prompt's token ids without the blocks (cheap: no input is loaded)."""
        question = (record.prompt or "") if self.template == "none" else default_prompt(record)
        history = record.extra.get("history", [])
        if not isinstance(history, list) or not all(isinstance(t, (list, tuple)) and len(t) == 2 and
                                                    all(isinstance(x, str) for x in t) for t in history):
            raise ValueError(f"{record.id}: 'history' must be a list of [question, answer] string pairs")
        return self.processor.prompt_ids(question, [tuple(t) for t in history], self.template)

    def sample(self, record: Record, inputs: list[tuple[str, Any]]) -> PackedSample:
        return self.processor.pack(self.text_ids(record), None, inputs, id=record.id, meta=self._meta(record))


class Collator:
    """Pads to the longest sample (dynamic padding) through the processor. A batch is
    ``{"inputs": BatchFeature for model(**...), "ids", "modality_keys", "failed": [(id, error)]}``."""

    def __init__(self, processor: OneLLMProcessor, padding_side: Literal["right", "left"] = "right",
                 with_labels: bool = True):
        self.processor, self.padding_side, self.with_labels = processor, padding_side, with_labels

    def __call__(self, items: Sequence[PackedSample | FailedSample]) -> dict[str, Any]:
        good = [s for s in items if isinstance(s, PackedSample)]
        bad = [s for s in items if isinstance(s, FailedSample)]
        failed = [(s.id, s.error) for s in bad]
        failed_keys = [s.modality_key for s in bad]  # the modality of each failed sample (None when unknown)
        if not good:
            return {"failed": failed, "ids": [], "modality_keys": [], "failed_keys": failed_keys}
        return {"inputs": self.processor.collate(good, self.padding_side, self.with_labels),
                "ids": [s.id for s in good], "modality_keys": [s.meta.get("modality_key") for s in good],
                "failed": failed, "failed_keys": failed_keys}
