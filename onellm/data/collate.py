"""Assemble packed samples into the model's keyword inputs (see ``onellm.model.onellm``).

:func:`collate_packed` pads to the longest sample (dynamic padding: right for training, left for generation) and
stacks each modality's inputs in reading order (sample-major, left to right), which is the order of that
modality's placeholder blocks in ``input_ids``: the model scatters them there without any ordering tensor.
Cached CLIP features (``onellm.features``) go to ``<m>_clip_features``; when a modality has both raw and cached
inputs in one batch, ``<m>_cached`` marks which blocks are the cached ones. Finished blocks (``CachedBlocks``) go to
``<m>_blocks``.
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import torch

from ..constants import BLOCKS_SUFFIX, IGNORE_INDEX, modality_input_names
from ..features import CachedBlocks, CachedFeatures


def collate_packed(samples: Sequence, padding_side: Literal["right", "left"] = "right", pad_id: int = 0,
                   with_labels: bool = True, modalities: Sequence[str] | None = None):
    """Pad and stack :class:`~onellm.processing.PackedSample` s -> ``BatchFeature`` (tensors on the CPU)."""
    from transformers import BatchFeature

    if not samples:
        raise ValueError("cannot collate an empty batch")
    B, S = len(samples), max(len(s) for s in samples)
    input_ids = torch.full((B, S), pad_id, dtype=torch.long)
    labels = torch.full((B, S), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((B, S), dtype=torch.long)
    raw: dict[str, list[torch.Tensor]] = {}
    cached: dict[str, list[torch.Tensor]] = {}
    blocks: dict[str, list[torch.Tensor]] = {}
    is_cached: dict[str, list[bool]] = {}
    for i, s in enumerate(samples):
        n = len(s)
        sl = slice(S - n, S) if padding_side == "left" else slice(0, n)
        input_ids[i, sl] = torch.tensor(s.input_ids, dtype=torch.long)
        labels[i, sl] = torch.tensor(s.labels, dtype=torch.long)
        attention[i, sl] = 1
        for modality, x in s.inputs:
            if isinstance(x, CachedBlocks):
                blocks.setdefault(modality, []).append(x.tensor)
            elif isinstance(x, CachedFeatures):
                cached.setdefault(modality, []).append(x.tensor)
            else:
                raw.setdefault(modality, []).append(x)
            is_cached.setdefault(modality, []).append(isinstance(x, (CachedFeatures, CachedBlocks)))
    data: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention}
    order = list(modalities) if modalities is not None else list(is_cached)
    unknown = set(is_cached) - set(order)
    if unknown:
        raise ValueError(f"inputs of modalities the model does not have: {sorted(unknown)}")
    for modality in order:
        if modality not in is_cached:
            continue
        values_key, features_key, cached_key = modality_input_names(modality)
        if modality in blocks:
            if modality in raw or modality in cached:
                raise ValueError(f"{modality}: finished blocks and other inputs of it cannot share a batch")
            data[modality + BLOCKS_SUFFIX] = torch.stack(blocks[modality])  # (N_m, K + 2, D_llm)
            continue
        if modality in raw:
            data[values_key] = torch.stack(raw[modality])  # (N_m, *input_shape)
        if modality in cached:
            data[features_key] = torch.stack(cached[modality])  # (N_m', L + 1, D)
        if modality in raw and modality in cached:
            data[cached_key] = torch.tensor(is_cached[modality], dtype=torch.bool)
    if with_labels:
        data["labels"] = labels
    return BatchFeature(data=data)


def move_batch(batch, device: torch.device | str, dtype: torch.dtype | None = None):
    """Move every tensor of a batch (a dict or ``BatchFeature``) to ``device``; floating tensors are cast to
    ``dtype`` if given. Returns the same kind of mapping."""
    from transformers import BatchFeature

    moved = {k: (v.to(device, dtype=dtype if (dtype is not None and v.is_floating_point()) else None,
                      non_blocking=True) if isinstance(v, torch.Tensor) else v)
             for k, v in batch.items()}
    return BatchFeature(data=moved) if isinstance(batch, BatchFeature) else moved
