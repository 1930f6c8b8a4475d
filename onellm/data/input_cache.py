"""A bounded in-memory cache of loaded input tensors, for inputs whose loading has no randomness.

A training run reads every input once per epoch. Where a modality's training load draws no augmentation (video:
the original samples fixed frames and crops; IMU; fMRI; every modality in eval), each read decodes the same file
into the same tensor again: for the quickstart's small videos that decode is a third of a stage II step on two
cores. The cache keeps the tensors of the most recently used inputs up to a byte budget (least recently used
first out). Each data-loading process holds its own cache (workers do not share memory), so the budget applies per
process. ``functools.lru_cache`` bounds entries, not bytes, and cannot skip inputs that augment; hence this class.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import torch

__all__ = ["InputCache", "cache_key"]


def cache_key(modality: str, source: Any) -> str:
    """A key for one manifest input (``source``: a path or the manifest's input dict with resolved paths)."""
    return modality + "\0" + json.dumps(source, sort_keys=True, default=str)


class InputCache:
    """Least-recently-used tensors up to ``max_bytes``; a tensor larger than the budget is never kept."""

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"input cache budget must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> torch.Tensor | None:
        """The cached tensor (callers must not modify it in place), or None (counted as a miss)."""
        tensor = self._items.get(key)
        if tensor is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return tensor

    def put(self, key: str, tensor: torch.Tensor) -> None:
        size = tensor.element_size() * tensor.nelement()
        if size > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old.element_size() * old.nelement()
        self._items[key] = tensor
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self.bytes -= dropped.element_size() * dropped.nelement()
