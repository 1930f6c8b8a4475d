"""Build the training data pipeline of a recipe: manifests -> datasets -> per-rank sampler -> DataLoader."""
from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import ConcatDataset, DataLoader

from ..data.datasets import AlignmentDataset, Collator, InstructionDataset, ManifestDataset
from ..data.manifest import Record, read_manifest
from ..data.samplers import LengthGroupedBatchSampler, ModalityBatchSampler, group_indices
from ..modalities import resolve as resolve_modality
from ..processing import OneLLMProcessor
from .recipe import DatasetSpec, Recipe


@dataclass
class TrainData:
    datasets: list[ManifestDataset]
    sampler: ModalityBatchSampler | LengthGroupedBatchSampler
    collator: Collator

    @property
    def num_samples(self) -> int:
        return sum(len(d) for d in self.datasets)

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            d.epoch = epoch

    def loader(self, num_workers: int) -> DataLoader:
        return DataLoader(ConcatDataset(self.datasets), batch_sampler=self.sampler, collate_fn=self.collator,
                          num_workers=num_workers, persistent_workers=False,
                          prefetch_factor=4 if num_workers else None, pin_memory=False)


def _filter(records: list[Record], spec: DatasetSpec) -> list[Record]:
    if spec.modalities is None:
        return records
    allowed = {m if m == "text" else resolve_modality(m) for m in spec.modalities}
    return [r for r in records if (set(r.modality_key.split("+")) <= allowed)]


def build_train_data(recipe: Recipe, processor: OneLLMProcessor, rank: int, world_size: int, log=print) -> TrainData:
    require = "caption" if recipe.task == "alignment" else "conversations"
    cls = AlignmentDataset if recipe.task == "alignment" else InstructionDataset
    datasets: list[ManifestDataset] = []
    store = None
    if recipe.feature_cache:
        from ..features import FeatureStore

        store = FeatureStore(recipe.feature_cache)
    specs = []
    for spec in recipe.datasets:
        records = _filter(read_manifest(spec.manifest, require=require), spec)
        if not records:  # e.g. a world generated without some modalities: say so, train on the rest
            log(f"WARNING: {spec.manifest}: no records of modalities {spec.modalities}; this entry is skipped")
            continue
        ds = cls(records, processor, train=True, max_length=recipe.max_seq_len, seed=recipe.seed,
                 feature_store=store)
        datasets.append(ds)
        specs.append(spec)
    if not datasets:
        raise ValueError("no training records: every dataset entry of the recipe is empty after its filters")
    if recipe.task == "alignment":
        groups, repeats, offset = [], [], 0
        for spec, ds in zip(specs, datasets):
            for idx in group_indices(ds.modality_keys(), offset).values():
                groups.append(idx)
                repeats.append(spec.repeat)
            offset += len(ds)
        sampler = ModalityBatchSampler(groups, recipe.micro_batch, world_size, rank, recipe.seed, repeats,
                                       recipe.interleave)
    else:
        types, lengths, repeats = [], [], []
        for spec, ds in zip(specs, datasets):
            types += ds.data_types()
            lengths += ds.lengths()
            repeats += [spec.repeat] * len(ds)
        sampler = LengthGroupedBatchSampler(types, lengths, recipe.micro_batch, world_size, rank, recipe.seed,
                                            recipe.accumulation, repeats)
    return TrainData(datasets, sampler, Collator(processor, padding_side="right"))
