"""Data layer: loaders, manifests, datasets, collation, templates, samplers, synthetic data."""
from .collate import PackedSample, collate_packed, move_batch, pack_sample
from .errors import InputError

__all__ = ["InputError", "PackedSample", "collate_packed", "move_batch", "pack_sample"]
