"""Build the training data pipeline of a recipe: manifests and shard sets -> datasets -> per-rank sampler ->
DataLoader.

Manifests are read through a :class:`~onellm.data.manifest.ManifestIndex` (validated once, an offset index in
bounded memory, records parsed when a worker reads them); shard entries through a
:class:`~onellm.data.shards.ShardSet` (sample counts on the main process, members read by offset in the workers).
The batch sampler decides the whole global order on the main process, so workers only read and decode: the order
does not depend on their number, and a resume skips to its position without reading anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import ConcatDataset, DataLoader

from ..data.datasets import AlignmentDataset, Collator, InstructionDataset, ManifestDataset
from ..data.input_cache import InputCache
from ..data.manifest import ManifestIndex
from ..data.samplers import LengthGroupedBatchSampler, ModalityBatchSampler, ShardedGroup, group_indices
from ..errors import TrainingDataError
from ..modalities import resolve as resolve_modality
from ..processing import OneLLMProcessor
from .recipe import DatasetSpec, Recipe


@dataclass
class TrainData:
    datasets: list[ManifestDataset]
    sampler: ModalityBatchSampler | LengthGroupedBatchSampler
    collator: Collator
    # id -> modality key of samples that failed to load, filled from the batches as they arrive (what the step
    # planner needs to place a batch whose every sample failed); bounded
    failed_keys: dict[str, str] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return sum(len(d) for d in self.datasets)

    def num_batches(self, epoch: int = 0) -> int:
        """Micro-batches of each rank in ``epoch``."""
        return self.sampler.num_batches(epoch)

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            d.epoch = epoch

    def note_failures(self, batch: dict) -> None:
        if len(self.failed_keys) > 10_000:
            self.failed_keys.clear()  # in place: the planner holds this very dict
        for (rid, _), key in zip(batch.get("failed", []), batch.get("failed_keys", [])):
            if key is not None:
                self.failed_keys[rid] = key

    def loader(self, num_workers: int) -> DataLoader:
        return DataLoader(ConcatDataset(self.datasets), batch_sampler=self.sampler, collate_fn=self.collator,
                          num_workers=num_workers, persistent_workers=False,
                          prefetch_factor=4 if num_workers else None, pin_memory=False)


def _filter(index: ManifestIndex, spec: DatasetSpec) -> ManifestIndex:
    if spec.modalities is None:
        return index
    allowed = {m if m == "text" else resolve_modality(m) for m in spec.modalities}
    ok = np.array([set(k.split("+")) <= allowed for k in index.key_names], dtype=bool)
    return index.select(ok[index.column("keys")]) if len(ok) else index


def _key_groups(ds: ManifestDataset, offset: int) -> list[np.ndarray]:
    """Global indices per modality key, keys in first-seen order (= ``group_indices``, without a list per
    record)."""
    if not isinstance(ds.records, ManifestIndex):
        return [np.asarray(g, dtype=np.int64) for g in group_indices(ds.modality_keys(), offset).values()]
    codes = ds.records.column("keys")
    if not len(codes):
        return []
    unique, first = np.unique(codes, return_index=True)
    return [offset + np.flatnonzero(codes == unique[k]) for k in np.argsort(first)]


def _repeats(specs: list[DatasetSpec], sizes: list[int]) -> list[float]:
    """Per entry its passes per epoch. ``weight`` entries get a share of the epoch: with repeat entries (R samples)
    the weights W (< 1) make the epoch R / (1 - W) samples; with weights only, the epoch is one pass over all
    entries' samples, shared by weight."""
    if all(s.weight is None for s in specs):
        return [s.repeat for s in specs]
    fixed = sum(n * s.repeat for s, n in zip(specs, sizes) if s.weight is None)
    total_w = sum(s.weight for s in specs if s.weight is not None)
    if fixed:
        if total_w >= 1:
            raise TrainingDataError(f"dataset weights sum to {total_w:g}: next to 'repeat' entries they are shares "
                                    "of the epoch and must sum to less than 1")
        epoch, scale = fixed / (1 - total_w), 1.0
    else:
        epoch, scale = float(sum(sizes)), 1.0 / total_w
    return [s.repeat if s.weight is None else s.weight * scale * epoch / n for s, n in zip(specs, sizes)]


def _shard_dataset(spec: DatasetSpec, recipe: Recipe, processor: OneLLMProcessor, store, log):
    from ..data.shards import ShardError, ShardSet
    from ..data.shards.dataset import ShardDataset

    try:
        shards = ShardSet.open(spec.shards, Path.cwd())
    except ShardError as exc:
        raise TrainingDataError(str(exc)) from None
    for problem in shards.problems[:20]:
        log(f"WARNING: {problem}")
    key = spec.modality or shards.descriptor.get("modality")
    named = shards.descriptor.get("modality")
    if spec.modality and named and spec.modality != named:
        raise TrainingDataError(f"{spec.shards}: the entry says modality {spec.modality!r}, its shards.json "
                                f"{named!r}")
    if not key:
        raise TrainingDataError(f"{spec.shards}: name the entry's 'modality' (image, video, video+audio ...): "
                                "these shards have no shards.json that says it")
    caption_key = spec.caption_key
    if caption_key == "auto" and shards.descriptor.get("caption_key"):
        caption_key = shards.descriptor["caption_key"]
    return ShardDataset(shards, key, processor, caption_key=caption_key, train=True,
                        max_length=recipe.max_seq_len, seed=recipe.seed, feature_store=store, augment=recipe.augment)


def build_train_data(recipe: Recipe, processor: OneLLMProcessor, rank: int, world_size: int, log=print) -> TrainData:
    require = "caption" if recipe.task == "alignment" else "conversations"
    cls = AlignmentDataset if recipe.task == "alignment" else InstructionDataset
    datasets: list[ManifestDataset] = []
    store = None
    if recipe.feature_cache:
        from ..features import FeatureStore

        store = FeatureStore(recipe.feature_cache)
    # One cache for every manifest entry (an input listed in two entries is decoded once); each DataLoader worker
    # gets its own copy of the (empty) cache when it starts.
    input_cache = InputCache(recipe.input_cache_mb * 2**20) if recipe.input_cache_mb else None
    specs = []
    for spec in recipe.datasets:
        if spec.shards is not None:
            ds = _shard_dataset(spec, recipe, processor, store, log)
            if not len(ds):
                log(f"WARNING: {spec.shards}: the shards hold no samples; this entry is skipped")
                continue
        else:
            records = _filter(ManifestIndex.open(spec.manifest, require=require), spec)
            if not len(records):  # e.g. a world generated without some modalities: say so, train on the rest
                log(f"WARNING: {spec.manifest}: no records of modalities {spec.modalities}; this entry is skipped")
                continue
            ds = cls(records, processor, train=True, max_length=recipe.max_seq_len, seed=recipe.seed,
                     feature_store=store, input_cache=input_cache, augment=recipe.augment)
        datasets.append(ds)
        specs.append(spec)
    if not datasets:
        raise ValueError("no training records: every dataset entry of the recipe is empty after its filters")
    repeats_per_spec = _repeats(specs, [len(ds) for ds in datasets])
    if recipe.task == "alignment":
        from ..data.shards.dataset import ShardDataset

        groups, repeats, offset = [], [], 0
        for spec, ds, rep in zip(specs, datasets, repeats_per_spec):
            if isinstance(ds, ShardDataset):
                window = None if spec.shuffle_buffer == "all" else int(spec.shuffle_buffer)
                groups.append(ShardedGroup(ds.shards.sizes, offset, window))
                repeats.append(rep)
            else:
                for idx in _key_groups(ds, offset):
                    groups.append(idx)
                    repeats.append(rep)
            offset += len(ds)
        sampler = ModalityBatchSampler(groups, recipe.micro_batch, world_size, rank, recipe.seed, repeats,
                                       recipe.interleave)
    else:
        types, lengths, repeats = [], [], []
        for rep, ds in zip(repeats_per_spec, datasets):
            types += ds.data_types()
            lengths += ds.lengths()
            repeats += [rep] * len(ds)
        sampler = LengthGroupedBatchSampler(types, lengths, recipe.micro_batch, world_size, rank, recipe.seed,
                                            recipe.accumulation, repeats)
    return TrainData(datasets, sampler, Collator(processor, padding_side="right"))
