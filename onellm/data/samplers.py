"""Distributed, seeded, resumable batch samplers (spec §4.4).

* :class:`ModalityBatchSampler` (alignment): every micro-batch on every rank holds one modality key, so all
  ranks run the same modules in a step (ZeRO-3 would hang otherwise). Groups (a dataset's records of one modality
  key) carry repeat factors; global batches of ``micro_batch * world_size`` are cut per group and then shuffled
  together (``interleave="shuffle"``) or interleaved round-robin truncated to the smallest group, as the original
  ``ConcatDataset.get_indices`` does (``interleave="round_robin"``).
  A group may be a :class:`ShardedGroup` (an entry's samples in tar shards): its order is computed lazily from
  shard sizes (seeded shard permutation + a seeded shuffle of runs of ``window`` samples), so a billion samples
  never become an index array and a resume position is reached without reading anything.
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

    def num_batches(self, epoch: int) -> int:
        """Global batches (= micro-batches of each rank) in ``epoch``."""
        return len(self.global_batches(epoch))

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def __iter__(self) -> Iterator[list[int]]:
        lo, hi = self.rank * self.micro_batch, (self.rank + 1) * self.micro_batch
        for gb in self.global_batches(self.epoch)[self.position:]:
            yield gb[lo:hi].tolist()

    def __len__(self) -> int:
        return len(self.global_batches(self.epoch)) - self.position


class ShardedGroup:
    """A single-modality group whose samples live in shards, ordered lazily (a billion samples never become an
    index array): per pass, a seeded permutation of the shards, then a seeded shuffle of each run of ``window``
    consecutive samples of that shard order (a shuffle buffer of ``window`` samples whose state is a pure function
    of the position). Random access into indexed shards lets any position be read directly: skipping to a resume
    position costs a few array look-ups, nothing is decoded.

    Args:
        sizes: samples per shard, in the dataset's shard order; the group's sample ``i`` of shard ``s`` is global
            index ``offset + sum(sizes[:s]) + i``.
        offset: global index of the group's first sample (its dataset's place in the ConcatDataset).
        window: shuffle-buffer size in samples (>= 1); ``None`` shuffles the whole group at once like a manifest
            group (8 bytes per sample, and reads jump across every shard).
        stream: identifies the group's random streams (its index among the sampler's groups by default).
    """

    def __init__(self, sizes: Sequence[int], offset: int = 0, window: int | None = 10_000, stream: int | None = None):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.offset, self.window, self.stream = int(offset), window, stream
        if window is not None and window < 1:
            raise ValueError(f"shuffle window must be >= 1, got {window}")
        self._passes: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._windows: dict[tuple, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.sizes.sum())

    def indices(self) -> np.ndarray:
        """Every global index of the group (for ``window=None`` and tests)."""
        return np.arange(self.offset, self.offset + len(self), dtype=np.int64)

    def _pass(self, key: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if key not in self._passes:
            if len(self._passes) > 8:
                self._passes.clear()
            order = np.random.default_rng(list(key)).permutation(len(self.sizes))
            sizes = self.sizes[order]
            self._passes[key] = (order, np.cumsum(sizes), sizes)
        return self._passes[key]

    def _window_perm(self, key: tuple, size: int) -> np.ndarray:
        if key not in self._windows:
            if len(self._windows) > 64:
                self._windows.clear()
            self._windows[key] = np.random.default_rng(list(key)).permutation(size)
        return self._windows[key]

    def pass_indices(self, seed: int, epoch: int, k: int, positions: np.ndarray) -> np.ndarray:
        """Global indices at ``positions`` (0 <= p < len) of pass ``k`` of ``epoch``."""
        n = len(self)
        stream = 0 if self.stream is None else self.stream
        key = (seed, epoch, stream, k)
        order, ends, sizes = self._pass(key)
        stream_pos = np.empty_like(positions)
        for w in np.unique(positions // self.window):
            sel = positions // self.window == w
            lo = int(w) * self.window
            size = min(self.window, n - lo)
            stream_pos[sel] = lo + self._window_perm(key + (int(w),), size)[positions[sel] - lo]
        shard_pos = np.searchsorted(ends, stream_pos, side="right")  # index into the permuted shard order
        local = stream_pos - (ends[shard_pos] - sizes[shard_pos])
        return self.offset + self.starts[order[shard_pos]] + local

    def order(self, seed: int, epoch: int, factor: float) -> "_ShardedOrder":
        return _ShardedOrder(self, seed, epoch, factor)


class _ShardedOrder:
    """The epoch's sequence of a :class:`ShardedGroup`: ``factor`` passes (the fractional one a prefix of one more
    pass, at least one sample), as :func:`_repeat` does for index arrays."""

    def __init__(self, group: ShardedGroup, seed: int, epoch: int, factor: float):
        self.group, self.seed, self.epoch = group, seed, epoch
        self.n = len(group)
        whole, frac = int(factor), factor - int(factor)
        self.length = whole * self.n + (max(1, round(frac * self.n)) if frac > 0 and self.n else 0)

    def __len__(self) -> int:
        return self.length

    def take(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty_like(positions)
        passes = positions // self.n
        for k in np.unique(passes):
            sel = passes == k
            out[sel] = self.group.pass_indices(self.seed, self.epoch, int(k), positions[sel] - int(k) * self.n)
        return out


class _EpochPlan:
    """One epoch of :class:`ModalityBatchSampler`: per group its batches (an array, or a lazy sharded order), and
    the order in which the global batches of all groups are taken."""

    def __init__(self, units: list, size: int, order: np.ndarray | None, round_robin: int | None):
        self.units, self.size = units, size
        self.counts = np.array([self._count(u) for u in units], dtype=np.int64)
        self.ends = np.cumsum(self.counts)
        self.order, self.round_robin = order, round_robin

    def _count(self, unit) -> int:
        return len(unit) if isinstance(unit, np.ndarray) else math.ceil(len(unit) / self.size)

    def __len__(self) -> int:
        if self.round_robin is not None:
            return self.round_robin * len(self.units)
        return int(self.ends[-1]) if len(self.ends) else 0

    def locate(self, j: int) -> tuple[int, int]:
        """(group unit, batch within it) of global batch ``j``."""
        if self.round_robin is not None:
            return j % len(self.units), j // len(self.units)
        flat = int(self.order[j])
        u = int(np.searchsorted(self.ends, flat, side="right"))
        return u, flat - int(self.ends[u] - self.counts[u])

    def batch(self, j: int) -> np.ndarray:
        u, b = self.locate(j)
        unit = self.units[u]
        if isinstance(unit, np.ndarray):
            return unit[b]
        positions = np.arange(b * self.size, (b + 1) * self.size, dtype=np.int64) % len(unit)  # wrap: as np.resize
        return unit.take(positions)


class ModalityBatchSampler(_StatefulBatchSampler):
    """Args:
        groups: one per single-modality group: global index lists, or :class:`ShardedGroup` (samples in shards,
            ordered lazily; mixed freely with index lists).
        repeats: per-group repeat factor (the original's per-dataset ``epochs``), default 1.
        micro_batch: samples per rank per micro-step.

    Index-list groups draw from one generator seeded by (seed, epoch), in group order, exactly as before sharded
    groups existed; sharded groups draw from their own generators, so adding one never changes the others.
    """

    def __init__(self, groups: Sequence[Sequence[int] | ShardedGroup], micro_batch: int, world_size: int = 1,
                 rank: int = 0, seed: int = 0, repeats: Sequence[float] | None = None,
                 interleave: Literal["shuffle", "round_robin"] = "shuffle"):
        super().__init__(micro_batch, world_size, rank, seed)
        self.groups = [g if isinstance(g, ShardedGroup) else np.asarray(g, dtype=np.int64) for g in groups if len(g)]
        for k, g in enumerate(self.groups):
            if isinstance(g, ShardedGroup) and g.stream is None:
                g.stream = k
        self.repeats = list(repeats) if repeats is not None else [1.0] * len(self.groups)
        if len(self.repeats) != len(self.groups):
            raise ValueError("one repeat factor per non-empty group")
        self.interleave = interleave
        self._cache: tuple[int, _EpochPlan] | None = None

    def plan(self, epoch: int) -> _EpochPlan:
        if self._cache and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        size = self.micro_batch * self.world_size
        units: list = []
        for group, factor in zip(self.groups, self.repeats):
            if isinstance(group, ShardedGroup):
                if group.window is None:  # a whole-group shuffle: the manifest path, same draws
                    group = group.indices()
                else:
                    order = group.order(self.seed, epoch, factor)
                    if len(order):
                        units.append(order)
                    continue
            rep = _repeat(group, factor, rng)
            if len(rep):
                units.append(_wrap_to_multiple(rep, size).reshape(-1, size))
        counts = [len(u) if isinstance(u, np.ndarray) else math.ceil(len(u) / size) for u in units]
        if self.interleave == "round_robin":  # the original: smallest group sets the length
            plan = _EpochPlan(units, size, None, min(counts) if counts else 0)
        else:
            plan = _EpochPlan(units, size, rng.permutation(sum(counts)), None)
        self._cache = (epoch, plan)
        return plan

    def num_batches(self, epoch: int) -> int:
        return len(self.plan(epoch))

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """Every global batch of the epoch (materialised: for small datasets and tests; iteration is lazy)."""
        plan = self.plan(epoch)
        return [plan.batch(j) for j in range(len(plan))]

    def __iter__(self) -> Iterator[list[int]]:
        lo, hi = self.rank * self.micro_batch, (self.rank + 1) * self.micro_batch
        plan = self.plan(self.epoch)
        for j in range(self.position, len(plan)):
            yield plan.batch(j)[lo:hi].tolist()

    def __len__(self) -> int:
        return self.num_batches(self.epoch) - self.position


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
