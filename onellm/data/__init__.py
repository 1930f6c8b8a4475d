"""Data layer: loaders, manifests, datasets, collation, templates, samplers, synthetic data.

Names are imported lazily (``onellm.data.read_manifest`` does not import torch).
"""
import importlib

_EXPORTS = {
    "PackedSample": "collate", "collate_packed": "collate", "move_batch": "collate", "pack_sample": "collate",
    "AlignmentDataset": "datasets", "Collator": "datasets", "FailedSample": "datasets",
    "InstructionDataset": "datasets", "RequestDataset": "datasets",
    "InputError": "errors", "load_modality": "loaders",
    "InputRef": "manifest", "ManifestError": "manifest", "Record": "manifest", "read_manifest": "manifest",
    "write_jsonl": "manifest",
    "LengthGroupedBatchSampler": "samplers", "ModalityBatchSampler": "samplers",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'onellm.data' has no attribute {name!r}")
