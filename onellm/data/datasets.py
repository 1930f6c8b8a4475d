"""Datasets over manifests: alignment (captions), instruction tuning (conversations) and requests (prompts).

``__getitem__`` loads the record's inputs with the official preprocessing (``load_modality``), tokenises its text
and returns a :class:`PackedSample`; a record whose input cannot be loaded becomes a :class:`FailedSample` (id and
the error) instead of raising, so a DataLoader worker never dies on bad data and nothing retries forever. The
:class:`Collator` drops failed samples from the batch and reports them under ``batch["failed"]``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from torch.utils.data import Dataset

from ..config import OneLLMConfig
from ..modalities import get as modality_definition
from .collate import PackedSample, collate_packed, pack_sample
from .errors import InputError
from .manifest import Record
from .template import encode_caption, encode_conversation, encode_prompt
from .text import TextTokenizer


@dataclass
class FailedSample:
    id: str
    error: str


def default_prompt(record: Record) -> str:
    """The record's prompt, else the original evaluation prompt for its first modality (spec §5)."""
    if record.prompt:
        return record.prompt
    if not record.inputs:
        raise ValueError(f"{record.id}: a request without inputs needs a 'prompt'")
    return modality_definition(record.inputs[0].modality).caption_prompt


class ManifestDataset(Dataset):
    """Shared machinery: input loading, packing, truncation, lengths for grouping."""

    def __init__(self, records: Sequence[Record], tokenizer: TextTokenizer, config: OneLLMConfig,
                 train: bool = True, max_length: int | None = None, seed: int | None = None, feature_store=None):
        self.records = list(records)
        self.tokenizer = tokenizer
        self.config = config
        self.train = train
        self.max_length = max_length or config.max_seq_len
        self.block_length = config.upm.num_tokens + 2
        # Training augmentations draw from RNGs seeded per (seed, epoch, index): the same sample gets the same
        # crop in a resumed run as in an uninterrupted one, whatever worker loads it.
        self.seed = seed
        self.epoch = 0
        self.feature_store = feature_store  # onellm.features.FeatureStore: cached CLIP features of frozen-path inputs

    def __len__(self) -> int:
        return len(self.records)

    def text(self, record: Record) -> tuple[list[int], list[int]]:
        raise NotImplementedError

    def load_inputs(self, record: Record) -> list[tuple[str, torch.Tensor]]:
        from ..features import CachedFeatures, feature_key
        from .loaders import load_modality  # imported here: decoders load only in workers that need them

        out = []
        for k, ref in enumerate(record.inputs):
            key = feature_key(record.id, k)
            if self.feature_store is not None and key in self.feature_store:
                out.append((ref.modality, CachedFeatures(self.feature_store.get(key))))
            else:
                out.append((ref.modality, load_modality(ref.modality, ref.as_source(), train=self.train,
                                                        config=self.config)))
        return out

    def __getitem__(self, index: int) -> PackedSample | FailedSample:
        record = self.records[index]
        if self.train and self.seed is not None:
            sample_seed = (self.seed * 1_000_003 + self.epoch * 10_007 + index) % (2**63)
            torch.default_generator.manual_seed(sample_seed)  # loaders run on the CPU; skips seeding accelerators
            random.seed(sample_seed)
        try:
            inputs = self.load_inputs(record)
        except InputError as exc:
            return FailedSample(record.id, str(exc))
        except Exception as exc:  # a decoder bug must not kill the worker; report it as this sample's error
            return FailedSample(record.id, f"{type(exc).__name__}: {exc}")
        ids, labels = self.text(record)
        room = self.max_length - self.block_length * len(inputs)
        if room < 2:
            return FailedSample(record.id, f"{len(inputs)} inputs leave no room for text in {self.max_length} positions")
        ids, labels = ids[:room], labels[:room]
        return pack_sample(ids, labels, inputs, self.block_length, pad_id=self.tokenizer.pad_id, id=record.id,
                           meta={"modality_key": record.modality_key})

    def modality_keys(self) -> list[str]:
        return [r.modality_key for r in self.records]

    def data_types(self) -> list[str]:
        return [r.type or r.modality_key for r in self.records]

    def lengths(self) -> list[int]:
        """Cheap length proxy (characters of text + block positions) for length grouping."""
        return [self._text_chars(r) // 4 + self.block_length * len(r.inputs) for r in self.records]

    @staticmethod
    def _text_chars(r: Record) -> int:
        if r.conversations:
            return sum(len(t["value"]) for t in r.conversations)
        cap = r.caption[0] if isinstance(r.caption, list) else r.caption
        return len(cap or r.prompt or "")


class AlignmentDataset(ManifestDataset):
    """``[bos] [blocks] caption [eos]``; a list caption is sampled at random in training (first one in eval)."""

    def text(self, record: Record) -> tuple[list[int], list[int]]:
        if record.caption is None:
            raise ValueError(f"{record.id}: alignment records need a 'caption'")
        caption = record.caption
        if isinstance(caption, list):
            caption = random.choice(caption) if self.train else caption[0]
        return encode_caption(self.tokenizer, caption)


class InstructionDataset(ManifestDataset):
    """The training template; only answers (+ separators and the final EOS) are supervised."""

    def text(self, record: Record) -> tuple[list[int], list[int]]:
        if not record.conversations:
            raise ValueError(f"{record.id}: instruction records need 'conversations'")
        return encode_conversation(self.tokenizer, record.conversations)


class RequestDataset(ManifestDataset):
    """Inference prompts: the chat template (legacy or not), or the raw prompt with ``template="none"``
    (an alignment-only model continues ``[bos] [blocks] prompt`` as a caption)."""

    def __init__(self, records: Sequence[Record], tokenizer: TextTokenizer, config: OneLLMConfig,
                 template: Literal["chat", "none"] = "chat", **kwargs: Any):
        kwargs.setdefault("train", False)
        super().__init__(records, tokenizer, config, **kwargs)
        self.template = template

    def text(self, record: Record) -> tuple[list[int], list[int]]:
        if self.template == "none":
            ids = [self.tokenizer.bos_id] + self.tokenizer.encode(record.prompt or "")
        else:
            history = [tuple(t) for t in record.extra.get("history", [])]
            ids = encode_prompt(self.tokenizer, default_prompt(record), history, legacy=self.config.legacy_prompt)
        return ids, [-100] * len(ids)

    def __getitem__(self, index: int) -> PackedSample | FailedSample:
        item = super().__getitem__(index)
        if isinstance(item, PackedSample) and len(item.input_ids) > self.max_length:
            return FailedSample(item.id, f"prompt of {len(item.input_ids)} positions exceeds {self.max_length}")
        return item


class Collator:
    """Pads to the longest sample (dynamic padding) and reports failed samples under ``"failed"``."""

    def __init__(self, pad_id: int = 0, padding_side: Literal["right", "left"] = "right", with_labels: bool = True):
        self.pad_id, self.padding_side, self.with_labels = pad_id, padding_side, with_labels

    def __call__(self, items: Sequence[PackedSample | FailedSample]) -> dict[str, Any]:
        good = [s for s in items if isinstance(s, PackedSample)]
        failed = [(s.id, s.error) for s in items if isinstance(s, FailedSample)]
        if not good:
            return {"failed": failed, "ids": []}
        batch = collate_packed(good, self.padding_side, self.pad_id, self.with_labels)
        batch["failed"] = failed
        batch["modality_keys"] = [s.meta.get("modality_key") for s in good]
        return batch
