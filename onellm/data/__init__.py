"""Data layer: loaders, manifests, datasets, collation, templates, samplers, synthetic data."""
from .collate import PackedSample, collate_packed, move_batch, pack_sample
from .datasets import AlignmentDataset, Collator, FailedSample, InstructionDataset, RequestDataset
from .errors import InputError
from .loaders import load_modality
from .manifest import InputRef, ManifestError, Record, read_manifest, write_jsonl
from .samplers import LengthGroupedBatchSampler, ModalityBatchSampler

__all__ = ["AlignmentDataset", "Collator", "FailedSample", "InputError", "InputRef", "InstructionDataset",
           "LengthGroupedBatchSampler", "ManifestError", "ModalityBatchSampler", "PackedSample", "Record",
           "RequestDataset", "collate_packed", "load_modality", "move_batch", "pack_sample", "read_manifest",
           "write_jsonl"]
