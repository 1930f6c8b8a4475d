"""Alignment samples read from shards: the same sequences, augmentations and failure handling as
:class:`~onellm.data.datasets.AlignmentDataset` over a manifest, with inputs decoded from member bytes.

Map-style: sample ``i`` is read by offset from its indexed shard (one ``pread`` per member), so the global sample
order is decided by the batch sampler on the main process (:class:`~onellm.data.samplers.ShardedGroup`) and
DataLoader workers only read and decode; their number changes nothing. Augmentations are seeded per
(seed, epoch, index) exactly as for manifest records. A sample that cannot be read or decoded (a damaged member,
a missing caption, a bad json) becomes a :class:`~onellm.data.datasets.FailedSample` whose error names the shard
and the key; the trainer counts, logs and skips it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..datasets import AlignmentDataset, FailedSample
from ..manifest import InputRef, Record
from .decode import decode_input
from .index import ShardSet
from .members import ShardInput, assemble, canonical_key


@dataclass
class ShardRecord(Record):
    """A record whose inputs are shard members (``payload``: one :class:`ShardInput` per input)."""

    payload: list[ShardInput] = field(default_factory=list)


class ShardDataset(AlignmentDataset):
    """Args:
        shards: the entry's :class:`ShardSet`.
        modality_key: the modality (key) of every sample: ``"image"``, ``"video+audio"``.
        caption_key: where the caption is (:mod:`onellm.data.shards.members`).
        other arguments: as :class:`~onellm.data.datasets.ManifestDataset`.
    """

    def __init__(self, shards: ShardSet, modality_key: str, processor, caption_key: str = "auto", **kwargs: Any):
        super().__init__([], processor, **kwargs)
        self.shards = shards
        self.key = canonical_key(modality_key)
        self.caption_key = caption_key

    def __len__(self) -> int:
        return len(self.shards)

    def record(self, index: int) -> ShardRecord:
        s, key, members = self.shards.read(index)
        shard = self.shards.name(s)
        sample = assemble(shard, key, members, self.key, self.caption_key,
                          default_id=f"{self.shards.paths[s].stem}/{key}")
        inputs = [InputRef(i.modality, i.member.name) for i in sample.inputs]
        extra = {k: v for k, v in sample.meta.items() if k not in ("id", "caption", "inputs")}
        return ShardRecord(sample.id, inputs, sample.caption, extra=extra, payload=sample.inputs)

    def __getitem__(self, index: int):
        try:
            record = self.record(index)
        except Exception as exc:  # unreadable member, no caption, bad json: this sample's error, named
            try:
                s, key = self.shards.key(index)
                where, rid = f"{self.shards.name(s)}:{key}", f"{self.shards.paths[s].stem}/{key}"
            except Exception:
                where = rid = f"{self.shards.descriptor.get('name', 'shards')}#{index}"
            text = str(exc)
            return FailedSample(rid, text if text.startswith(where) else f"{where}: {text}", self.key)
        return self.build_item(index, record)

    def load_inputs(self, record: Record) -> list[tuple[str, Any]]:
        from ...features import CachedFeatures, feature_key

        out = []
        for k, item in enumerate(record.payload):
            fkey = feature_key(record.id, k)
            if self.feature_store is not None and fkey in self.feature_store:
                out.append((item.modality, CachedFeatures(self.feature_store.get(fkey))))
            else:
                out.append((item.modality, decode_input(item.modality, item.member, item.options,
                                                        train=self.augments(item.modality), config=self.config)))
        return out

    def modality_keys(self) -> list[str]:
        return [self.key] * len(self)

    def data_types(self) -> list[str]:
        return [self.key] * len(self)
