"""Assemble tokenised samples into the batch dict the model reads (see ``onellm.model.onellm``).

A :class:`PackedSample` is one sequence with its modality blocks already laid out: block positions hold
``pad_id`` in ``input_ids``, -100 in ``labels`` and True in ``modality_mask``; ``inputs`` lists the block inputs
in reading order. :func:`collate_packed` pads to the longest sample (dynamic padding, right for training, left
for generation), stacks each modality's inputs and records every input's reading-order rank.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import torch

from ..features import CachedFeatures
from ..modalities import resolve as resolve_modality


@dataclass
class PackedSample:
    input_ids: list[int]
    labels: list[int]
    modality_mask: list[bool]
    inputs: list[tuple[str, torch.Tensor]] = field(default_factory=list)
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)


def pack_sample(text_ids: Sequence[int], text_labels: Sequence[int] | None,
                inputs: Sequence[tuple[str, torch.Tensor]], block_length: int, pad_id: int = 0,
                insert_at: int = 1, id: str | None = None, meta: dict | None = None) -> PackedSample:
    """Insert one block of ``block_length`` positions per input into a tokenised text at ``insert_at``
    (after BOS, as the original lays out ``[bos, start, tokens, end, text...]``)."""
    text_labels = list(text_labels) if text_labels is not None else [-100] * len(text_ids)
    if len(text_labels) != len(text_ids):
        raise ValueError("labels and input ids differ in length")
    n = block_length * len(inputs)
    ids = list(text_ids[:insert_at]) + [pad_id] * n + list(text_ids[insert_at:])
    labels = list(text_labels[:insert_at]) + [-100] * n + list(text_labels[insert_at:])
    mask = [False] * insert_at + [True] * n + [False] * (len(text_ids) - insert_at)
    return PackedSample(ids, labels, mask, [(resolve_modality(m), x) for m, x in inputs], id, dict(meta or {}))


def collate_packed(samples: Sequence[PackedSample], padding_side: Literal["right", "left"] = "right",
                   pad_id: int = 0, with_labels: bool = True) -> dict[str, Any]:
    """Pad and stack samples into a model batch (tensors on the CPU)."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    B, S = len(samples), max(len(s) for s in samples)
    input_ids = torch.full((B, S), pad_id, dtype=torch.long)
    labels = torch.full((B, S), -100, dtype=torch.long)
    attention = torch.zeros((B, S), dtype=torch.long)
    modality_mask = torch.zeros((B, S), dtype=torch.bool)
    grouped: dict[str, list[torch.Tensor]] = {}
    order: dict[str, list[int]] = {}
    cached: dict[str, list[torch.Tensor]] = {}  # frozen-path CLIP features from a feature cache
    cached_order: dict[str, list[int]] = {}
    rank = 0
    for i, s in enumerate(samples):
        n = len(s)
        sl = slice(S - n, S) if padding_side == "left" else slice(0, n)
        input_ids[i, sl] = torch.tensor(s.input_ids, dtype=torch.long)
        labels[i, sl] = torch.tensor(s.labels, dtype=torch.long)
        attention[i, sl] = 1
        modality_mask[i, sl] = torch.tensor(s.modality_mask, dtype=torch.bool)
        for modality, x in s.inputs:
            if isinstance(x, CachedFeatures):
                cached.setdefault(modality, []).append(x.tensor)
                cached_order.setdefault(modality, []).append(rank)
            else:
                grouped.setdefault(modality, []).append(x)
                order.setdefault(modality, []).append(rank)
            rank += 1
    batch: dict[str, Any] = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "modality_mask": modality_mask,
        "modality_inputs": {m: torch.stack(xs) for m, xs in grouped.items()},
        "modality_order": {m: torch.tensor(o, dtype=torch.long) for m, o in order.items()},
        "ids": [s.id for s in samples],
    }
    if cached:
        batch["modality_features"] = {m: torch.stack(xs) for m, xs in cached.items()}
        batch["feature_order"] = {m: torch.tensor(o, dtype=torch.long) for m, o in cached_order.items()}
    if with_labels:
        batch["labels"] = labels
    return batch


def move_batch(batch: dict[str, Any], device: torch.device | str, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Move every tensor of a batch to ``device``; floating modality inputs are cast to ``dtype`` if given."""
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.to(device, non_blocking=True)
        elif isinstance(value, dict):
            out[key] = {k: (v.to(device, dtype=dtype if (dtype and v.is_floating_point()) else None,
                                  non_blocking=True) if isinstance(v, torch.Tensor) else v)
                        for k, v in value.items()}
        else:
            out[key] = value
    return out
