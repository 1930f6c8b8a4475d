"""Distributed, seeded, resumable batch samplers (spec §4.4).

* :class:`ModalityBatchSampler` (alignment): every micro-batch on every rank holds one modality key, so all
  ranks run the same modules in a step (ZeRO-3 would hang otherwise). Groups (a dataset's records of one modality
  key) carry repeat factors; global batches of ``micro_batch * world_size`` are cut per group and then shuffled
  together (``interleave="shuffle"``) or interleaved round-robin truncated to the smallest group, as the original
  ``ConcatDataset.get_indices`` does (``interleave="round_robin"``).
* :class:`LengthGroupedBatchSampler` (instruction tuning): indices grouped by data type, sorted by length, cut into
  optimizer-step batches of ``micro_batch * world_size * accumulation`` (a whole step uses one type and similar
  lengths: little padding), steps shuffled per epoch, as the original ``FinetuneDistSampler``.

Incomplete batches are filled by wrapping around their group (no sample is dropped, a few repeat). Both yield the
micro-batches of ``rank`` only; ``set_state(epoch, position)`` resumes at a micro-batch position, and the order is
a pure function of (seed, epoch), so a resumed run sees exactly the batches the uninterrupted run would.
"""
from __future__ import annotations

import math
from typing import Iterator, Literal, Sequence

import numpy as np
from torch.utils.data import Sampler


def _wrap_to_multiple(idx: np.ndarray, size: int) -> np.ndarray:
    n = max(math.ceil(len(idx) / size), 1) * size
    return np.resize(idx, n)  # cyclic repeat to fill the last batch


def _repeat(idx: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """``factor`` shuffled passes over ``idx`` (the fractional part takes a prefix of one more shuffled pass)."""
    whole, frac = int(factor), factor - int(factor)
    parts = [rng.permutation(idx) for _ in range(whole)]
    if frac > 0:
        parts.append(rng.permutation(idx)[: max(1, round(frac * len(idx)))])
    return np.concatenate(parts) if parts else idx[:0]


class _StatefulBatchSampler(Sampler[list[int]]):
    def __init__(self, micro_batch: int, world_size: int, rank: int, seed: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.micro_batch, self.world_size, self.rank, self.seed = micro_batch, world_size, rank, seed
        self.epoch, self.position = 0, 0

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0

    def set_state(self, epoch: int, position: int) -> None:
        """Continue at micro-batch ``position`` of ``epoch`` (what a checkpoint records)."""
        self.epoch, self.position = epoch, position

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def __iter__(self) -> Iterator[list[int]]:
        lo, hi = self.rank * self.micro_batch, (self.rank + 1) * self.micro_batch
        for gb in self.global_batches(self.epoch)[self.position:]:
            yield gb[lo:hi].tolist()

    def __len__(self) -> int:
        return len(self.global_batches(self.epoch)) - self.position


class ModalityBatchSampler(_StatefulBatchSampler):
    """Args:
        groups: global index lists, one per single-modality group.
        repeats: per-group repeat factor (the original's per-dataset ``epochs``), default 1.
        micro_batch: samples per rank per micro-step.
    """

    def __init__(self, groups: Sequence[Sequence[int]], micro_batch: int, world_size: int = 1, rank: int = 0,
                 seed: int = 0, repeats: Sequence[float] | None = None,
                 interleave: Literal["shuffle", "round_robin"] = "shuffle"):
        super().__init__(micro_batch, world_size, rank, seed)
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups if len(g)]
        self.repeats = list(repeats) if repeats is not None else [1.0] * len(self.groups)
        if len(self.repeats) != len(self.groups):
            raise ValueError("one repeat factor per non-empty group")
        self.interleave = interleave
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        if self._cache and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        size = self.micro_batch * self.world_size
        per_group = []
        for idx, factor in zip(self.groups, self.repeats):
            rep = _repeat(idx, factor, rng)
            if len(rep):
                per_group.append(list(_wrap_to_multiple(rep, size).reshape(-1, size)))
        if self.interleave == "round_robin":  # the original: smallest group sets the length
            n = min(len(b) for b in per_group)
            batches = [b[i] for i in range(n) for b in per_group]
        else:
            batches = [b for group in per_group for b in group]
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cache = (epoch, batches)
        return batches


def group_indices(keys: Sequence[str], offset: int = 0) -> dict[str, list[int]]:
    """{key: [global indices]} preserving first-seen key order."""
    out: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(offset + i)
    return out


class LengthGroupedBatchSampler(_StatefulBatchSampler):
    """Args:
        types: data type per index (a whole optimizer step draws from one type).
        lengths: length per index (sorting key within a type).
        accumulation: micro-steps per optimizer step.
    """

    def __init__(self, types: Sequence[str], lengths: Sequence[int], micro_batch: int, world_size: int = 1,
                 rank: int = 0, seed: int = 0, accumulation: int = 1, repeats: Sequence[float] | None = None):
        super().__init__(micro_batch, world_size, rank, seed)
        if len(types) != len(lengths):
            raise ValueError("one type and one length per index")
        self.groups = group_indices(types)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        # per-index repeat factor (its dataset entry's `repeat`): whole copies + a seeded fraction
        self.repeats = np.ones(len(types)) if repeats is None else np.asarray(repeats, dtype=np.float64)
        self.accumulation = accumulation
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        if self._cache and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        micro = self.micro_batch * self.world_size
        step = micro * self.accumulation
        steps = []
        for idx in self.groups.values():
            idx = np.asarray(idx)
            reps = self.repeats[idx]
            idx = np.repeat(idx, np.floor(reps).astype(np.int64) + (rng.random(len(idx)) < reps % 1))
            idx = idx[np.lexsort((rng.random(len(idx)), self.lengths[idx]))]  # by length, random tie-break
            steps += list(_wrap_to_multiple(idx, step).reshape(-1, step))
        order = rng.permutation(len(steps))
        batches = [mb for i in order for mb in steps[i].reshape(self.accumulation, micro)]
        self._cache = (epoch, batches)
        return batches
